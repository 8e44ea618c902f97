"""Delegation through real installed distributions shaped like the Tenstorrent backends.

Each test runs a fresh interpreter that plays one vLLM process (see conftest.PROCESS_SCRIPT).
Both simulated backends name their platform entry point `tt`: only distribution tells them
apart.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from conftest import (
    TWO_BACKENDS_POLICY,
    VLLM_ARGV0,
    ProcessRunner,
    SiteMaker,
    assert_delegated,
    assert_refused,
    build_wheel,
    write_project,
)

METAL_CLASS = "tt_vllm_plugin.platform.TTPlatform"
FORGE_CLASS = "vllm_tt.platform.TTPlatform"
SERVE = [VLLM_ARGV0, "serve"]


def test_both_installed_metal_model_runs_metal_only(
    make_site: SiteMaker, run_process: ProcessRunner, policy_file: Callable[[str], Path]
) -> None:
    site = make_site("tt-vllm-plugin", "vllm-tt", "pjrt-plugin-tt")
    result = run_process(site, [*SERVE, "metal-org/llama"],
                         TT_META_POLICY=str(policy_file(TWO_BACKENDS_POLICY)))
    # Re-entrant: vLLM's two calls reach the backend's function once; general plugins once.
    assert_delegated(result, "tt-vllm-plugin")
    assert result.dists("general_plugin") == ["tt-vllm-plugin"]
    decision = json.loads(str(result.result["decision"]))
    assert decision["backend"] == "metal" and decision["distribution"] == "tt-vllm-plugin"
    assert decision["model"] == "metal-org/llama"
    # Ray workers get the decision through the job's runtime environment (test_ray.py).
    assert result.result["ray"] == "tt_meta_plugin.ray_entry.runtime_env_hook"


def test_both_installed_forge_model_runs_forge_only(
    make_site: SiteMaker, run_process: ProcessRunner, policy_file: Callable[[str], Path]
) -> None:
    site = make_site("tt-vllm-plugin", "vllm-tt", "pjrt-plugin-tt")
    result = run_process(site, [*SERVE, "forge-org/qwen"],
                         TT_META_POLICY=str(policy_file(TWO_BACKENDS_POLICY)))
    assert_delegated(result, "vllm-tt")
    assert result.dists("general_plugin") == ["vllm-tt"]


def test_vllm_plugins_unset_is_refused_with_our_explanation(
    make_site: SiteMaker, run_process: ProcessRunner, policy_file: Callable[[str], Path]
) -> None:
    site = make_site("tt-vllm-plugin", "vllm-tt", "pjrt-plugin-tt")
    result = run_process(site, [*SERVE, "metal-org/llama"], VLLM_PLUGINS="<unset>",
                         TT_META_POLICY=str(policy_file(TWO_BACKENDS_POLICY)))
    assert_refused(result, "VLLM_PLUGINS is not set", "set VLLM_PLUGINS=tt_meta",
                   where="environment variable VLLM_PLUGINS", code="config")


def test_vllm_plugins_naming_tt_is_refused(
    make_site: SiteMaker, run_process: ProcessRunner, policy_file: Callable[[str], Path]
) -> None:
    site = make_site("tt-vllm-plugin")
    result = run_process(site, [*SERVE, "metal-org/llama"], VLLM_PLUGINS="tt_meta,tt",
                         TT_META_POLICY=str(policy_file(TWO_BACKENDS_POLICY)))
    assert_refused(result, "VLLM_PLUGINS also names 'tt'",
                   "remove 'tt' from VLLM_PLUGINS; tt_meta delegates to it",
                   where="environment variable VLLM_PLUGINS", code="config")


def test_vllm_plugins_naming_a_backend_general_plugin_is_refused(
    make_site: SiteMaker, run_process: ProcessRunner, policy_file: Callable[[str], Path]
) -> None:
    site = make_site("vllm-tt", "pjrt-plugin-tt")
    result = run_process(site, [*SERVE, "forge-org/x"], VLLM_PLUGINS="tt_meta,tt_oots",
                         TT_META_POLICY=str(policy_file(TWO_BACKENDS_POLICY)))
    assert_refused(result, "VLLM_PLUGINS also names 'tt_oots'",
                   where="environment variable VLLM_PLUGINS", code="config")


def test_backend_not_installed(
    make_site: SiteMaker, run_process: ProcessRunner, policy_file: Callable[[str], Path]
) -> None:
    site = make_site("tt-vllm-plugin")
    result = run_process(site, [*SERVE, "forge-org/qwen"],
                         TT_META_POLICY=str(policy_file(TWO_BACKENDS_POLICY)))
    assert_refused(result, "backend 'forge' needs distribution 'vllm-tt', which is not "
                   "installed in this environment", code="delegation")


def test_forge_runtime_missing_is_named(
    make_site: SiteMaker, run_process: ProcessRunner, policy_file: Callable[[str], Path]
) -> None:
    site = make_site("vllm-tt")  # no pjrt-plugin-tt: vllm_tt.register cannot import it
    result = run_process(site, [*SERVE, "forge-org/qwen"],
                         TT_META_POLICY=str(policy_file(TWO_BACKENDS_POLICY)))
    # vllm_tt's own code ran (its register() failed importing the runtime): verified code,
    # so only the refusal, its message and that no decision is left are asserted here.
    assert result.refused, (result.result, result.stderr[-2000:])
    assert "ERROR" in result.stderr and "Traceback" not in result.stderr
    assert result.result["code"] == "delegation"
    assert "failed in its platform function vllm_tt:register" in result.stderr
    assert "runtime module 'pjrt_plugin_tt' cannot be imported" in result.stderr
    assert result.result["decision"] is None
    assert "general_plugin" not in {e["event"] for e in result.events}


def _metal_variant(tmp_path: Path, name: str, body: str, requires: list[str] | None = None
                   ) -> Path:
    package = name.replace("-", "_")
    project = write_project(
        tmp_path / "src", name, package, {"__init__.py": body},
        {"vllm.platform_plugins": {"tt": f"{package}.entrypoints:platform_plugin"},
         "vllm.general_plugins": {"tt_model_registry": f"{package}.entrypoints:register"}},
        dependencies=requires,
    )
    (project / package / "entrypoints.py").write_text(body)
    return build_wheel(project, tmp_path / "wheels")


NONE_WHEN_NO_TTNN = """
from tt_sim_record import record

def platform_plugin():
    record("vllm-tt-plugin", "platform_function")
    try:
        import ttnn  # noqa: F401
    except ImportError:
        return None
    return "vllm_tt_plugin.platform.TTPlatform"

def register():
    record("vllm-tt-plugin", "general_plugin")
"""


def test_backend_answering_none_is_explained(
    tmp_path: Path, make_site: SiteMaker, run_process: ProcessRunner,
    policy_file: Callable[[str], Path],
) -> None:
    wheel = _metal_variant(tmp_path, "vllm-tt-plugin", NONE_WHEN_NO_TTNN)
    site = make_site(extra=[wheel])
    result = run_process(site, [*SERVE, "metal-org/x"],
                         TT_META_POLICY=str(policy_file(TWO_BACKENDS_POLICY)))
    assert result.refused, (result.result, result.stderr[-2000:])
    assert "ERROR" in result.stderr and "Traceback" not in result.stderr
    assert result.result["code"] == "delegation"
    assert "says it cannot run here" in result.stderr and "answered None" in result.stderr
    assert "runtime module 'ttnn' cannot be imported" in result.stderr
    assert result.result["decision"] is None
    assert result.dists("platform_function") == ["vllm-tt-plugin"]
    assert "general_plugin" not in {e["event"] for e in result.events}


def test_two_metal_distributions_are_refused(
    tmp_path: Path, make_site: SiteMaker, run_process: ProcessRunner,
    policy_file: Callable[[str], Path],
) -> None:
    wheel = _metal_variant(tmp_path, "vllm-tt-plugin", NONE_WHEN_NO_TTNN)
    site = make_site("tt-vllm-plugin", extra=[wheel])
    result = run_process(site, [*SERVE, "metal-org/x"],
                         TT_META_POLICY=str(policy_file(TWO_BACKENDS_POLICY)))
    assert_refused(result, "provided by 2 installed distributions", code="delegation")


PINNED = """
from tt_sim_record import record

def platform_plugin():
    record("vllm-tt-plugin", "platform_function")
    return "vllm_tt_plugin.platform.TTPlatform"

def register():
    record("vllm-tt-plugin", "general_plugin")
"""


def test_vllm_version_mismatch_refuse_and_warn(
    tmp_path: Path, make_site: SiteMaker, run_process: ProcessRunner,
    policy_file: Callable[[str], Path],
) -> None:
    wheel = _metal_variant(tmp_path, "vllm-tt-plugin", PINNED, requires=["vllm==0.10.1.1"])
    site = make_site(extra=[wheel])
    refused = run_process(site, [*SERVE, "metal-org/x"],
                          TT_META_POLICY=str(policy_file(TWO_BACKENDS_POLICY)))
    assert_refused(refused, "vllm-tt-plugin 1.0.0 needs vllm==0.10.1.1",
                   "vllm_version_mismatch", code="delegation")
    text = 'vllm_version_mismatch = "warn"\n' + TWO_BACKENDS_POLICY
    warned = run_process(site, [*SERVE, "metal-org/x"], TT_META_POLICY=str(policy_file(text)))
    assert_delegated(warned, "vllm-tt-plugin")
    assert "WARNING" in warned.stderr and "needs vllm==0.10.1.1" in warned.stderr


def test_third_party_backend_from_entry_point(
    tmp_path: Path, make_site: SiteMaker, run_process: ProcessRunner,
    policy_file: Callable[[str], Path],
) -> None:
    body = """
    from tt_meta_plugin import Backend, hookimpl
    from tt_sim_record import record

    class Plugin:
        @hookimpl
        def tt_meta_backends(self):
            return [Backend("quasar", ("quasar-vllm",))]

    def platform_plugin():
        record("quasar-vllm", "platform_function")
        return "quasar_vllm.platform.QuasarPlatform"

    def register_models():
        record("quasar-vllm", "general_plugin")
    """
    project = write_project(
        tmp_path / "src", "quasar-vllm", "quasar_vllm", {"__init__.py": body},
        {"vllm.platform_plugins": {"tt": "quasar_vllm:platform_plugin"},
         "vllm.general_plugins": {"quasar_models": "quasar_vllm:register_models"},
         "tt_meta.backends": {"quasar": "quasar_vllm:Plugin"}},
    )
    site = make_site(extra=[build_wheel(project, tmp_path / "wheels")])
    policy = 'version = 1\nallowed_backends = ["quasar"]\ndefault_backend = "quasar"\n'
    result = run_process(site, [*SERVE, "any/model"], TT_META_POLICY=str(policy_file(policy)))
    assert_delegated(result, "quasar-vllm")
    unknown = run_process(site, [*SERVE, "any/model"], TT_META_POLICY=str(policy_file(
        'version = 1\nallowed_backends = ["nova"]\ndefault_backend = "nova"\n')))
    assert_refused(unknown, "unknown backend 'nova'", code="config")


def test_extra_general_plugins_pass_through(
    tmp_path: Path, make_site: SiteMaker, run_process: ProcessRunner,
    policy_file: Callable[[str], Path],
) -> None:
    body = """
    from tt_sim_record import record

    def resolver():
        record("lora-resolver", "general_plugin")
    """
    project = write_project(
        tmp_path / "src", "lora-resolver", "lora_resolver", {"__init__.py": body},
        {"vllm.general_plugins": {"lora_filesystem_resolver": "lora_resolver:resolver"}},
    )
    site = make_site("tt-vllm-plugin", "vllm-tt", "pjrt-plugin-tt",
                     extra=[build_wheel(project, tmp_path / "wheels")])
    text = 'extra_general_plugins = ["lora_filesystem_resolver", "tt_oots"]\n' + TWO_BACKENDS_POLICY
    result = run_process(site, [*SERVE, "metal-org/x"], TT_META_POLICY=str(policy_file(text)))
    # The pass-through runs; a backend's own entry point named there (tt_oots) does not.
    assert_delegated(result, "tt-vllm-plugin", also=["lora-resolver"])
    assert result.dists("general_plugin") == ["tt-vllm-plugin", "lora-resolver"], result.stderr


def test_a_child_verifying_for_itself_checks_its_own_vllm(
    tmp_path: Path, make_site: SiteMaker, run_process: ProcessRunner,
    policy_file: Callable[[str], Path]
) -> None:
    """A child on a node without its first process's record runs the first process's checks of
    the environment too: here that node's vLLM is not the one the backend needs."""
    wheel = _metal_variant(tmp_path, "vllm-tt-plugin", PINNED, requires=["vllm==0.26.0"])
    site = make_site(extra=[wheel])
    policy = str(policy_file(TWO_BACKENDS_POLICY))
    argv = [*SERVE, "metal-org/x"]
    pinned = tmp_path / "node-a" / "vllm-0.26.0.dist-info"  # node A: the vLLM it needs
    pinned.mkdir(parents=True)
    (pinned / "METADATA").write_text("Metadata-Version: 2.1\nName: vllm\nVersion: 0.26.0\n")
    parent = run_process(site, argv, TT_META_POLICY=policy,
                         PYTHONPATH=f"{pinned.parent}{os.pathsep}{site}")
    assert_delegated(parent, "vllm-tt-plugin")
    shutil.rmtree(json.loads(str(parent.decision))["state_dir"])  # node B: its own disk
    child = run_process(site, ["/venv/bin/worker.py"], TT_META_POLICY=policy,
                        TT_META_DECISION=str(parent.decision))
    assert_refused(child, "needs vllm==0.26.0", code="delegation")
