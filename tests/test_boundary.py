"""At the vLLM boundary nothing but a clean refusal escapes: vLLM swallows any other exception
from a platform plugin and goes on with another platform (the CPU)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import (
    TWO_BACKENDS_POLICY,
    PolicyFile,
    ProcessRunner,
    SiteMaker,
    assert_refused,
    clean_env,
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
