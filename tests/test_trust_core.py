"""The trust core's promises: only signed entry points are called, every verified distribution
stays guarded, a signed package is never looked for elsewhere, and a child acts on the
settings its first process sealed, from records only root or the serving user can write."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import (
    METAL,
    METAL_INFO,
    Scene,
    SiteMaker,
    assert_delegated,
    assert_refused,
    build_wheel,
    clean_env,
    platform_py,
    read_events,
    refused,
    sign_site,
    tamper_bytecode,
    write_project,
)

from tt_meta_plugin.trust.verification_record import identity as record_identity

# An unsigned module at the install root that an edited entry_points.txt could name.
EVIL_MODULE = textwrap.dedent(
    """
    from tt_sim_record import record
    record("evil", "imported")
    def register():
        record("evil", "platform_function")
        return "tt_vllm_plugin.platform.TTPlatform"
    def register_models():
        record("evil", "general_plugin")
    """
)


def _point_entry_points_at_evil(scene: Scene) -> None:
    (scene.site / "evil_mod.py").write_text(EVIL_MODULE)
    path = scene.site / METAL_INFO / "entry_points.txt"
    path.write_text(path.read_text().replace("tt_vllm_plugin:register_models",
                                             "evil_mod:register_models")
                    .replace("tt_vllm_plugin:register", "evil_mod:register"))


SWAP_DURING_START_UP = textwrap.dedent(
    """
    import os, sys
    sys.argv = ["/venv/bin/vllm", "serve", "metal-org/llama"]
    from tt_meta_plugin.activation import first_process as fp
    from tt_meta_plugin.activation.backend import call_platform, run_general_plugins
    info = os.path.join(os.environ["SITE"], os.environ["INFO"], "entry_points.txt")
    signed = open(info).read()
    evil = signed.replace("tt_vllm_plugin:register", "evil_mod:register")

    def swap(text):
        with open(info, "w") as f:
            f.write(text)

    policy = fp.load_checked_policy(os.environ)
    trusted = fp.trusted_set_for(policy)
    swap(evil)                                         # swapped while the process decides,
    plan = fp.plan(os.environ, sys.argv, fp.catalog_for(trusted), policy)
    swap(signed)                                       # put back before verification,
    target = fp.trusted_target(trusted, plan)
    swap(evil)                                         # and swapped again after it
    print("PLATFORM", call_platform(target))
    run_general_plugins(target, (), ())
    """
)


def test_entry_points_swapped_during_start_up_are_not_called(scene: Scene) -> None:
    (scene.site / "evil_mod.py").write_text(EVIL_MODULE)
    proc = subprocess.run(
        [sys.executable, "-c", SWAP_DURING_START_UP], capture_output=True, text=True,
        timeout=120, env=clean_env(PYTHONPATH=str(scene.site), SITE=str(scene.site),
                                   INFO=METAL_INFO, TT_META_POLICY=str(scene.policy),
                                   VLLM_PLUGINS="",  # no plugin of vLLM's own in this script
                                   TT_SIM_RECORD_DIR=str(scene.root)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "PLATFORM tt_vllm_plugin.platform.TTPlatform" in proc.stdout
    events = read_events(scene.root)
    assert {e["dist"] for e in events} == {METAL}, events
    assert {"platform_function", "general_plugin"} <= {e["event"] for e in events}


def test_entry_points_edited_before_start_up_are_refused(scene: Scene) -> None:
    _point_entry_points_at_evil(scene)
    refused(scene, scene.run(), "the vLLM entry points installed for tt-vllm-plugin 0.1.0 "
            "differ from the signed ones", where=scene.manifest)


def test_entry_points_edited_after_the_first_process_are_not_called_by_a_child(
        scene: Scene) -> None:
    parent = scene.run()
    assert_delegated(parent, METAL)
    _point_entry_points_at_evil(scene)
    child = scene.child(parent.decision)
    assert_delegated(child, METAL, inherited=True)  # events of tt-vllm-plugin only: no evil


def test_a_moved_package_never_falls_through_to_another_copy(scene: Scene, tmp_path: Path
                                                             ) -> None:
    parent = scene.run()
    assert_delegated(parent, METAL)
    shutil.move(str(scene.site / "tt_vllm_plugin"), str(tmp_path / "moved"))
    other = tmp_path / "elsewhere" / "tt_vllm_plugin"
    other.mkdir(parents=True)
    (other / "__init__.py").write_text(EVIL_MODULE)
    scene.watch.before()
    child = scene.run_process(
        scene.site, ["/venv/bin/worker.py"], TT_META_POLICY=str(scene.policy),
        TT_META_DECISION=parent.decision,
        PYTHONPATH=f"{scene.site}{os.pathsep}{other.parent}")
    refused(scene, child, "tt_vllm_plugin is signed as part of tt-vllm-plugin but is no "
            f"longer in its verified install root {scene.site}")


# -- A third-party backend plugin in a distribution of its own ------------------------------

PLUGIN = """
from tt_meta_plugin import Backend, hookimpl

class Plugin:
    @hookimpl
    def tt_meta_backends(self):
        return [Backend("quasar", ("quasar-vllm",))]
"""
LATER = """
from tt_sim_record import record
record("quasar-plugin", "later-verified")
"""
LATER_TAMPERED = """
from tt_sim_record import record
record("quasar-plugin", "TAMPERED")
"""
BACKEND = """
from tt_sim_record import record

def platform_plugin():
    record("quasar-vllm", "platform_function")
    return "quasar_vllm.platform.QuasarPlatform"

def register_models():
    import quasar_plugin.later  # the plugin's code, imported long after it was verified
    record("quasar-vllm", "general_plugin")
"""
QUASAR_POLICY = 'version = 1\nallowed_backends = ["quasar"]\ndefault_backend = "quasar"\n'


@pytest.fixture
def quasar(tmp_path: Path, make_site: SiteMaker, signing_key: tuple[Path, str]) -> Path:
    """A site with a backend plugin distribution and the backend's own distribution, both
    signed; the plugin's bytecode for a module it imports later is tampered with a header
    that matches its source (what Python would run unless the import guard holds)."""
    src, wheels = tmp_path / "src", tmp_path / "wheels"
    plugin = write_project(src, "quasar-plugin", "quasar_plugin",
                           {"__init__.py": PLUGIN, "later.py": LATER},
                           {"tt_meta.backends": {"quasar": "quasar_plugin:Plugin"}})
    backend = write_project(
        src, "quasar-vllm", "quasar_vllm", {"__init__.py": BACKEND},
        {"vllm.platform_plugins": {"tt": "quasar_vllm:platform_plugin"},
         "vllm.general_plugins": {"quasar_models": "quasar_vllm:register_models"}})
    site = make_site(extra=[build_wheel(plugin, wheels), build_wheel(backend, wheels)],
                     sign=False)
    shutil.rmtree(site / "quasar_plugin" / "__pycache__")  # signed without bytecode ...
    sign_site(site, signing_key[0] / "release.key")
    tamper_bytecode(site / "quasar_plugin" / "later.py", LATER_TAMPERED)  # ... planted after
    return site


def test_a_third_party_plugin_stays_guarded_in_parent_and_children(
        scene: Scene, quasar: Path) -> None:
    policy = scene.policy_with(body=QUASAR_POLICY,
                               signers=f'quasar = ["{scene.keyid}"]')
    scene.site = quasar
    parent = scene.run(policy)
    assert_delegated(parent, "quasar-vllm", also=["quasar-plugin"])
    assert [e["event"] for e in parent.events if e["dist"] == "quasar-plugin"] == [
        "later-verified"]
    assert len(json.loads(parent.decision)["trusted"]) == 2  # the plugin and the backend
    child = scene.child(parent.decision, policy)
    assert_delegated(child, "quasar-vllm", also=["quasar-plugin"], inherited=True)
    assert [e["event"] for e in child.events if e["dist"] == "quasar-plugin"] == [
        "later-verified"]


def test_vllm_plugins_naming_a_third_party_backends_entry_point_is_refused(
        scene: Scene, quasar: Path) -> None:
    policy = scene.policy_with(body=QUASAR_POLICY, signers=f'quasar = ["{scene.keyid}"]')
    scene.site = quasar
    # Found once the plugin (verified) has said which distributions provide its backend:
    # the plugin's verification is recorded by then, as any verified distribution's.
    assert_refused(scene.run(policy, VLLM_PLUGINS="tt_meta,quasar_models"),
            "VLLM_PLUGINS also names 'quasar_models', an entry point of quasar",
            where="environment variable VLLM_PLUGINS=tt_meta,quasar_models")


# -- What a child believes ------------------------------------------------------------------

def test_a_decision_cannot_waive_signatures(scene: Scene) -> None:
    parent = scene.run()
    assert_delegated(parent, METAL)
    forged = json.loads(parent.decision)
    forged["require_signatures"] = False
    refused(scene, scene.child(json.dumps(forged)),
            "TT_META_DECISION holds a decision in a format this tt_meta does not read")


def test_a_decision_naming_another_state_directory_is_refused(scene: Scene, tmp_path: Path
                                                              ) -> None:
    parent = scene.run()
    assert_delegated(parent, METAL)
    elsewhere = tmp_path / "other-state"
    elsewhere.mkdir(mode=0o700)
    forged = json.loads(parent.decision)
    forged["state_dir"] = str(elsewhere)
    # It finds nothing there, so it verifies for itself, under the policy's own state
    # directory, which is not the decision's.
    refused(scene, scene.child(json.dumps(forged)),
            f"the decision names the state directory {elsewhere}, but the policy",
            code="handoff")
    # A seal and records copied there pass as the first process's: then the seal's own
    # state directory gives the forgery away.
    for sub in ("policies", "verified"):
        shutil.copytree(scene.state / sub, elsewhere / sub, copy_function=shutil.copy2)
    forged["trusted"] = [
        [name, digest, *record_identity(os.stat(elsewhere / "verified" / f"{digest}.idx"))]
        for name, digest, *_ in forged["trusted"]]
    refused(scene, scene.child(json.dumps(forged)),
            "the sealed policy settings are not those of the decision")


def test_a_record_another_user_can_write_is_refused(scene: Scene) -> None:
    parent = scene.run()
    assert_delegated(parent, METAL)
    (record,) = (scene.state / "verified").iterdir()
    os.chmod(record, 0o664)
    # (Changing its mode changed its identity: the child verifies for itself, and refuses the
    # record as the first process would.)
    refused(scene, scene.child(parent.decision), "is writable by group or others",
            where=record)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_a_record_owned_by_another_user_is_refused(scene: Scene) -> None:
    parent = scene.run()
    assert_delegated(parent, METAL)
    (record,) = (scene.state / "verified").iterdir()
    os.chown(record, 12345, -1)
    refused(scene, scene.child(parent.decision), "is owned by uid 12345", where=record)


def test_a_child_warns_in_every_process_when_signatures_are_waived(scene: Scene) -> None:
    policy = scene.policy_with(top="require_signatures = false\n")
    parent = scene.run(policy)
    assert_delegated(parent, METAL)
    child = scene.child(parent.decision, policy)
    assert_delegated(child, METAL, inherited=True)
    for result in (parent, child):
        assert "WITHOUT verifying it" in result.stderr and "WARNING" in result.stderr
    assert json.loads(parent.decision)["trusted"] == []
    assert platform_py(scene).exists()


def test_a_backend_module_imported_before_tt_meta_is_refused(scene: Scene) -> None:
    """Code that runs at interpreter start (here a sitecustomize.py on the path) imported the
    backend before tt_meta verified it: those bytes were never checked, so the process does
    not go on as if they had been, in a first process or a child."""
    parent = scene.run()
    assert_delegated(parent, METAL)
    (scene.site / "sitecustomize.py").write_text("import tt_vllm_plugin\n")
    for result in (scene.run(), scene.child(parent.decision)):
        # (assert_refused would also require that no backend code ran: here it ran before
        # tt_meta, at import; what must not happen is tt_meta going on to call it.)
        assert result.refused and result.result.get("code") == "tampered", result.stderr
        assert ("tt_vllm_plugin of tt-vllm-plugin was imported before tt_meta verified it"
                in result.stderr)
        assert f"where: {scene.site / 'tt_vllm_plugin' / '__init__.py'}" in result.stderr
        assert {e["event"] for e in result.events} == {"imported"}, result.events
        assert "Traceback" not in result.stderr
