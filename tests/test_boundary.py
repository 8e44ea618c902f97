"""At the vLLM boundary nothing but a clean refusal escapes: vLLM swallows any other exception
from a platform plugin and goes on with another platform (the CPU)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import (
    TWO_BACKENDS_POLICY,
    PolicyFile,
    ProcessRunner,
    SiteMaker,
    assert_refused,
    clean_env,
    trust_table,
)

UNFORESEEN = textwrap.dedent(
    """
    import sys
    sys.argv = ["/venv/bin/vllm", "serve", "metal-org/llama"]
    from tt_meta_plugin.selection import decide

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    decide.decide = broken  # what no test of ours foresaw, standing in for a bug
    from tt_meta_plugin import vllm_entry
    for call in (vllm_entry.platform_plugin, vllm_entry.platform_plugin,
                 vllm_entry.general_plugin):
        try:
            call()
        except SystemExit as stop:
            print("STOPPED", stop.code, stop.error.code)
    """
)


def test_an_unforeseen_exception_is_a_refusal(make_site: SiteMaker,
                                              policy_file: PolicyFile) -> None:
    site = make_site("tt-vllm-plugin")
    proc = subprocess.run(
        [sys.executable, "-c", UNFORESEEN], capture_output=True, text=True, timeout=120,
        env=clean_env(PYTHONPATH=str(site), VLLM_PLUGINS="tt_meta",
                      TT_META_POLICY=str(policy_file(TWO_BACKENDS_POLICY))))
    assert proc.stdout.splitlines() == ["STOPPED 1 internal"] * 3, proc.stdout + proc.stderr
    assert "ERROR" in proc.stderr and "Traceback" not in proc.stderr
    assert "tt_meta failed unexpectedly: RuntimeError('a bug')" in proc.stderr


def test_a_deeply_nested_model_config_is_refused(
        tmp_path: Path, make_site: SiteMaker, run_process: ProcessRunner,
        policy_file: PolicyFile) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("[" * 100000 + "]" * 100000)
    site = make_site("tt-vllm-plugin")
    policy = policy_file('version = 1\nallowed_backends = ["metal"]\n'
                         '[[rule]]\narchitecture = "X"\nbackend = "metal"\n')
    result = run_process(site, ["/venv/bin/vllm", "serve", str(model)],
                         TT_META_POLICY=str(policy))
    assert_refused(result, "the model's config.json is nested too deeply", code="config",
                   where=model / "config.json")


def test_a_model_path_component_too_long_is_refused(
        tmp_path: Path, make_site: SiteMaker, run_process: ProcessRunner,
        policy_file: PolicyFile) -> None:
    model = tmp_path / ("m" * 300)  # over the 255 bytes a path component may have
    site = make_site("tt-vllm-plugin")
    policy = policy_file('version = 1\nallowed_backends = ["metal"]\n'
                         '[[rule]]\narchitecture = "X"\nbackend = "metal"\n')
    result = run_process(site, ["/venv/bin/vllm", "serve", str(model)],
                         TT_META_POLICY=str(policy))
    assert_refused(result, "cannot look for the model's config.json: File name too long",
                   code="config")


def test_a_nul_byte_in_a_policy_path_is_refused(
        make_site: SiteMaker, run_process: ProcessRunner, policy_file: PolicyFile) -> None:
    site = make_site("tt-vllm-plugin")
    policy = policy_file('version = 1\nallowed_backends = ["metal"]\ndefault_backend = "metal"'
                         '\n[trust]\nstate_dir = "/tmp/a\\u0000b"\n')
    result = run_process(site, ["/venv/bin/vllm", "serve", "m"], TT_META_POLICY=str(policy))
    assert_refused(result, "'trust.state_dir' must be a path without NUL characters",
                   where=f"{policy}, key 'trust.state_dir'", code="config")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write any directory (the unprivileged "
                    "run covers this)")
def test_a_state_directory_the_serving_user_cannot_write_is_refused(
        make_site: SiteMaker, run_process: ProcessRunner, policy_file: PolicyFile,
        signing_key: tuple[Path, str]) -> None:
    site = make_site("tt-vllm-plugin")
    readonly = Path("/usr")  # exists, root's, not writable by this user
    policy = policy_file(TWO_BACKENDS_POLICY + trust_table(signing_key[0], signing_key[1],
                                                           readonly))
    result = run_process(site, ["/venv/bin/vllm", "serve", "metal-org/llama"],
                         TT_META_POLICY=str(policy))
    assert_refused(result, "cannot lock the state directory: Permission denied",
                   where=readonly / ".lock", code="state")
