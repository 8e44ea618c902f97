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
    assert_delegated,
    assert_refused,
    platform_py,
    refused,
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
    # Named explicitly: the built-in policy, whatever /etc/tt-meta holds on this machine.
    result = run_process(site, [MODEL[0], "serve", "meta-llama/Llama-3.1-8B-Instruct"],
                         TT_META_POLICY=str(BUILTIN_POLICY))
    assert_refused(result, "no signed manifest found for tt-vllm-plugin 0.1.0")
