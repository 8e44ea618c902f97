"""Threats 23-25: the policy, and what a failure leaves (docs/threat-model.md, numbered as
there; how each is checked: `Scene` and `assert_refused` in conftest.py)."""

from __future__ import annotations

import os

import pytest
from conftest import (
    BUILTIN_POLICY,
    METAL,
    MODEL,
    TWO_BACKENDS_POLICY,
    PolicyFile,
    ProcessResult,
    ProcessRunner,
    Scene,
    SiteMaker,
    StateWatch,
    assert_delegated,
    assert_refused,
    platform_py,
    refused,
    sign_site,
)

# -- Policy ---------------------------------------------------------------------------------

def test_23_backend_not_on_the_allowlist(scene: Scene) -> None:
    policy = scene.policy_with(body=TWO_BACKENDS_POLICY.replace('["metal", "forge"]',
                                                                '["forge"]'))
    refused(scene, scene.run(policy), "backend 'metal', chosen by rule 2", "not in "
            "allowed_backends ['forge']", where=policy, code="selection")


def test_23_deny_rule_beats_allow_rule(scene: Scene) -> None:
    policy = scene.policy_with(body=TWO_BACKENDS_POLICY.replace(
        "[[rule]]", '[[rule]]\nmodel = "metal-org/llama"\ndeny = true\n\n[[rule]]', 1))
    refused(scene, scene.run(policy, TT_META_BACKEND="metal"),
            "model 'metal-org/llama' is denied by rule 1", where=policy, code="selection")


@pytest.mark.parametrize("what", ["policy", "key", "manifest", "state"])
def test_24_writable_by_group_or_others(scene: Scene, what: str) -> None:
    target = {"policy": scene.policy, "key": scene.keys / "release.pub",
              "manifest": scene.manifest, "state": scene.state}[what]
    target.mkdir(exist_ok=True) if what == "state" else None
    mode = target.stat().st_mode
    os.chmod(target, mode | 0o022)
    try:
        # The refusal names the file, so a refusal of some other file cannot pass for it.
        refused(scene, scene.run(), "is writable by group or others", f"chmod go-w {target}",
                where=target, code="permissions")
    finally:
        os.chmod(target, mode)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_24_owned_by_another_user(scene: Scene) -> None:
    os.chown(scene.policy, 12345, -1)
    refused(scene, scene.run(), "is owned by uid 12345", where=scene.policy, code="permissions")


def test_24_relaxed_for_development_with_a_warning(scene: Scene) -> None:
    os.chmod(scene.manifest, 0o666)
    result = scene.run(scene.policy_with("strict_permissions = false\n"))
    assert_delegated(result, METAL)
    assert "WARNING" in result.stderr and "strict_permissions = false" in result.stderr
    assert str(scene.manifest) in result.stderr


def test_38_state_directory_renamed_away_by_whoever_can_write_its_parent(scene: Scene) -> None:
    """Rollback protection must not be reset by renaming the state directory away: tt_meta
    would recreate it empty and take an older manifest. Every directory above the state
    directory is checked up to / (sshd's StrictModes), so a parent others can write is a
    refusal; a sticky one (like /tmp) is not, since others cannot rename what is not theirs."""
    parent = scene.root / "var"
    parent.mkdir()
    scene.state = parent / "state"
    scene.watch = StateWatch(scene.state, scene.audit)
    policy = scene.policy_with()
    key = scene.keys / "release.key"
    sign_site(scene.site, key, serial=2)
    assert_delegated(scene.run(policy), METAL)  # the machine has seen serial 2
    newer = scene.manifest.read_bytes()
    sign_site(scene.site, key, serial=1)  # an older manifest, validly signed
    os.chmod(parent, 0o777)
    try:
        os.rename(scene.state, parent / "moved")  # what any user can now do
        refused(scene, scene.run(policy), "refusing the state directory: "
                f"{parent} is writable by group or others (mode 777)", f"chmod go-w {parent}",
                where=scene.state, code="permissions")
        if scene.state.exists():
            scene.state.rmdir()  # what the refused run recreated: empty
        os.rename(parent / "moved", scene.state)
        os.chmod(parent, 0o1777)  # sticky: the parent is accepted, and the marks hold
        refused(scene, scene.run(policy), "rollback", code="rollback")
        scene.manifest.write_bytes(newer)
        assert_delegated(scene.run(policy), METAL)
    finally:
        os.chmod(parent, 0o755)


@pytest.mark.parametrize("what", ["policy", "key directory", "manifest directory"])
def test_38_directory_above_a_trusted_path_writable_by_others(scene: Scene, what: str) -> None:
    """Not only a file and its directory: every directory above it, up to /."""
    above = scene.root / "above"
    below = above / "dir"
    below.mkdir(parents=True)
    if what == "policy":
        moved = below / "policy.toml"
        scene.policy.rename(moved)
        policy = moved
    elif what == "key directory":
        for pub in scene.keys.glob("*.pub"):
            (below / pub.name).write_bytes(pub.read_bytes())
        policy = scene.policy_with(keys=below)
    else:
        from tt_meta_plugin.trust.manifest import manifest_file_names

        scene.manifest.rename(below / manifest_file_names(METAL, "0.1.0")[0])
        policy = scene.policy_with(f'manifest_dirs = ["{below}"]\n')
    assert_delegated(scene.run(policy), METAL)
    os.chmod(above, 0o777)
    try:
        where = policy if what == "policy" else below
        refused(scene, scene.run(policy), f"refusing the {what}: {above} is writable by group "
                "or others (mode 777)", where=where, code="permissions")
    finally:
        os.chmod(above, 0o755)


def _child_of(scene: Scene, failed: ProcessResult) -> ProcessResult:
    """A worker started from the environment the failed process was left with."""
    decision = failed.result.get("decision")
    return scene.run(argv=["/venv/bin/worker.py"],
                     TT_META_DECISION=decision if isinstance(decision, str) else "<unset>")


def test_25_a_failed_process_leaves_nothing_for_another(scene: Scene) -> None:
    path = platform_py(scene)
    good = path.read_bytes()
    path.write_bytes(good + b"\n# tampered\n")
    failed = scene.run()
    refused(scene, failed, "changed size", where=path, code="tampered")
    # A worker started from the failed process's environment has nothing to inherit: it
    # finds no model on its own command line and refuses too, without backend code.
    path.write_bytes(good)
    refused(scene, _child_of(scene, failed), "no model found")
    # A fresh process after the repair decides again and succeeds.
    assert_delegated(scene.run(), METAL)


@pytest.mark.parametrize("step", ["platform_function", "general_plugin"])
def test_25_a_failure_after_verification_leaves_no_decision(scene: Scene, step: str) -> None:
    """Verification succeeded, then the backend failed: the process still exits 1, and a
    worker started from what it left behind does not inherit its decision."""
    failed = scene.run(TT_SIM_FAIL=step)
    assert failed.refused, (failed.result, failed.stderr[-2000:])
    assert "ERROR" in failed.stderr and f"simulated failure in {step}" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert failed.result.get("decision") is None, "a decision was left for children"
    refused(scene, _child_of(scene, failed), "no model found")



# -- Beyond the list ------------------------------------------------------------------------

def test_require_signatures_false_delegates_with_a_warning(
    make_site: SiteMaker, run_process: ProcessRunner, policy_file: PolicyFile
) -> None:
    site = make_site("tt-vllm-plugin", sign=False)
    policy = policy_file("require_signatures = false\n" + TWO_BACKENDS_POLICY)
    result = run_process(site, MODEL, TT_META_POLICY=str(policy))
    assert_delegated(result, METAL)
    assert "WITHOUT verifying it" in result.stderr and "WARNING" in result.stderr


def test_default_policy_requires_signatures(make_site: SiteMaker,
                                             run_process: ProcessRunner) -> None:
    site = make_site("tt-vllm-plugin", sign=False)
    # Named explicitly: the built-in policy, whatever /etc/tt-meta holds on this machine. Its
    # rules (Tenstorrent's model spec) name devices: Llama-3.1-8B-Instruct is metal's on n150.
    result = run_process(site, [MODEL[0], "serve", "meta-llama/Llama-3.1-8B-Instruct"],
                         TT_META_POLICY=str(BUILTIN_POLICY), TT_META_DEVICE="n150")
    assert_refused(result, "no signed manifest found for tt-vllm-plugin 0.1.0")
