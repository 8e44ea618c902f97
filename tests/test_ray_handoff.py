"""How the decision reaches Ray workers, and what a Ray worker does without it.

The real cluster is in test_ray.py; these run one interpreter per process, as the rest of the
delegation tests do.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    TWO_BACKENDS_POLICY,
    VLLM_ARGV0,
    ProcessRunner,
    SiteMaker,
    assert_delegated,
    assert_refused,
)

from tt_meta_plugin import ray_entry

RAY_WORKER = "/venv/lib/python3.11/site-packages/ray/_private/workers/default_worker.py"
DEFAULT_METAL = TWO_BACKENDS_POLICY.replace("version = 1", 'version = 1\ndefault_backend = "metal"')


def _chained(runtime_env: dict[str, Any] | None) -> dict[str, Any]:
    env = dict(runtime_env or {})
    env["env_vars"] = {**env.get("env_vars", {}), "FROM_OPERATOR_HOOK": "1",
                       "TT_META_DECISION": "stale"}
    return env


def test_hook_carries_the_decision_and_keeps_an_operators_hook(
        monkeypatch: pytest.MonkeyPatch) -> None:
    environ = {"RAY_RUNTIME_ENV_HOOK": f"{__name__}._chained"}
    ray_entry.install(environ)
    assert environ["RAY_RUNTIME_ENV_HOOK"] == ray_entry.HOOK
    assert environ[ray_entry.ENV_NEXT_HOOK] == f"{__name__}._chained"
    ray_entry.install(environ)  # a second first process (restart) keeps the chain as it is
    assert environ[ray_entry.ENV_NEXT_HOOK] == f"{__name__}._chained"
    # An operator's hook set later replaces the one inherited; none set clears it.
    stale = {**environ, "RAY_RUNTIME_ENV_HOOK": "ops.new_hook"}
    ray_entry.install(stale)
    assert stale[ray_entry.ENV_NEXT_HOOK] == "ops.new_hook"
    cleared = {ray_entry.ENV_NEXT_HOOK: "ops.old_hook"}
    ray_entry.install(cleared)
    assert cleared == {"RAY_RUNTIME_ENV_HOOK": ray_entry.HOOK}
    for name, value in {**environ, "TT_META_DECISION": "{decision}", "VLLM_PLUGINS": "tt_meta",
                        "TT_META_POLICY": "/etc/p.toml"}.items():
        monkeypatch.setenv(name, value)
    job = ray_entry.runtime_env_hook({"env_vars": {"VLLM_PLUGINS": "other", "KEEP": "1"},
                                      "working_dir": "/w"})
    # The operator's hook ran first; the driver's values win over the job's and the hook's.
    assert job == {"working_dir": "/w", "env_vars": {
        "KEEP": "1", "FROM_OPERATOR_HOOK": "1", "TT_META_DECISION": "{decision}",
        "VLLM_PLUGINS": "tt_meta", "TT_META_POLICY": "/etc/p.toml"}}
    monkeypatch.delenv(ray_entry.ENV_NEXT_HOOK)
    monkeypatch.delenv("TT_META_POLICY")
    assert ray_entry.runtime_env_hook(None) == {"env_vars": {
        "TT_META_DECISION": "{decision}", "VLLM_PLUGINS": "tt_meta"}}


def test_ray_worker_without_a_decision_never_decides_on_its_own(
    make_site: SiteMaker, run_process: ProcessRunner, policy_file: Callable[[str], Path]
) -> None:
    """A policy default would choose a backend for a worker that knows no model: the worker
    might then run another backend than its driver. It refuses instead."""
    site = make_site("tt-vllm-plugin", "vllm-tt", "pjrt-plugin-tt")
    policy = str(policy_file(DEFAULT_METAL))
    result = run_process(site, [RAY_WORKER, "--node-ip-address=127.0.0.1"],
                         TT_META_POLICY=policy)
    assert_refused(result, "this Ray worker has no decision", "does not decide on its own",
                   where="environment variable TT_META_DECISION", code="handoff")
    # With the model named in its runtime environment (an engine created inside a Ray actor),
    # it is a first process like any other.
    named = run_process(site, [RAY_WORKER], TT_META_POLICY=policy,
                        TT_META_MODEL="forge-org/m")
    assert_delegated(named, "vllm-tt")
    assert json.loads(str(named.decision))["model"] == "forge-org/m"


@pytest.mark.parametrize("target", ["cpu", "CPU", "rocm"])
def test_vllm_target_device_of_a_builtin_platform_is_refused(
    target: str, make_site: SiteMaker, run_process: ProcessRunner,
    policy_file: Callable[[str], Path]
) -> None:
    """vLLM would run its own platform (with cpu it skips platform plugins altogether) while
    tt_meta delegates and runs the backend's general plugins."""
    site = make_site("tt-vllm-plugin", "vllm-tt", "pjrt-plugin-tt")
    policy = str(policy_file(TWO_BACKENDS_POLICY))
    result = run_process(site, [VLLM_ARGV0, "serve", "metal-org/llama"],
                         TT_META_POLICY=policy, VLLM_TARGET_DEVICE=target)
    assert_refused(result, f"VLLM_TARGET_DEVICE={target} asks vLLM for its own",
                   where="environment variable VLLM_TARGET_DEVICE", code="config")
    tt = run_process(site, [VLLM_ARGV0, "serve", "metal-org/llama"], TT_META_POLICY=policy,
                     VLLM_TARGET_DEVICE="tt")  # what Tenstorrent's images set
    assert_delegated(tt, "tt-vllm-plugin")
