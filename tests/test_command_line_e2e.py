"""Command lines end to end: the decision names the model vLLM serves, a deny rule is not
bypassed by how the command line is written, and commands that load no model run unchanged
through the real `vllm` console script with VLLM_PLUGINS=tt_meta."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    METAL,
    VLLM_ARGV0,
    Scene,
    assert_delegated,
    clean_env,
    refused,
)

# The default backend is forge; only the rule sends metal-org/* to metal.
WITH_DEFAULT = 'default_backend = "forge"\n'
DENY = """
    version = 1
    allowed_backends = ["metal", "forge"]
    default_backend = "metal"

    [[rule]]
    model = "metal-org/secret*"
    deny = true
"""


@pytest.mark.parametrize("args", [
    ["serve", "--port", "8001", "metal-org/llama"],
    ["serve", "--enforce-eager", "metal-org/llama"],
    ["serve", "-tp", "1", "metal-org/llama"],
    ["serve", "--model", "metal-org/llama", "--model", "forge-org/other"],
    ["bench", "latency", "--input-len", "8", "--model", "metal-org/llama"],
])
def test_the_rule_of_the_model_vllm_serves(scene: Scene, args: list[str]) -> None:
    policy = scene.policy_with(top=WITH_DEFAULT)
    result = scene.run(policy, [VLLM_ARGV0, *args])
    assert_delegated(result, METAL)
    decision = json.loads(result.decision)
    assert decision["model"] == "metal-org/llama" and decision["backend"] == "metal"


def test_config_file_model(scene: Scene, tmp_path: Path) -> None:
    config = tmp_path / "serve.yaml"
    config.write_text("port: 8001\nmodel: forge-org/x\nmodel: metal-org/llama\n")
    result = scene.run(scene.policy_with(top=WITH_DEFAULT),
                       [VLLM_ARGV0, "serve", "--config", str(config)])
    assert_delegated(result, METAL)


@pytest.mark.parametrize("args", [
    ["serve", "--port", "8001", "metal-org/secret"],
    ["serve", "--enforce-eager", "metal-org/secret"],
    ["serve", "--model", "metal-org/secret", "--model", "metal-org/llama"],
])
def test_a_deny_rule_is_not_bypassed(scene: Scene, args: list[str]) -> None:
    result = scene.run(scene.policy_with(body=DENY), [VLLM_ARGV0, *args])
    refused(scene, result, "denied", code="selection")


def test_a_denied_symlinked_directory(scene: Scene, tmp_path: Path) -> None:
    real = tmp_path / "models" / "secret"
    real.mkdir(parents=True)
    (tmp_path / "innocent").symlink_to(real)
    body = DENY.replace("metal-org/secret*", f"{tmp_path}/models/secret")
    for spelling in (str(tmp_path / "innocent"), "/" + str(real)):
        result = scene.run(scene.policy_with(body=body), [VLLM_ARGV0, "serve", spelling])
        refused(scene, result, "denied", code="selection")


def test_tt_meta_model_cannot_override_the_command_line(scene: Scene) -> None:
    result = scene.run(scene.policy_with(body=DENY),
                       [VLLM_ARGV0, "serve", "--port", "1", "metal-org/secret"],
                       TT_META_MODEL="metal-org/llama")
    refused(scene, result, "TT_META_MODEL names", code="config")


def test_unknown_option_is_refused(scene: Scene) -> None:
    result = scene.run(scene.policy_with(top=WITH_DEFAULT),
                       [VLLM_ARGV0, "serve", "--not-an-option", "metal-org/llama"])
    refused(scene, result, "unknown option '--not-an-option'", code="config")


# What vLLM does with our entry points in one process (conftest's PROCESS_SCRIPT also asks
# for the activation itself, which vLLM never does).
AS_VLLM = """
import json, sys
sys.argv = json.loads(sys.argv[1])
from tt_meta_plugin import vllm_entry
platforms = [vllm_entry.platform_plugin(), vllm_entry.platform_plugin()]
vllm_entry.general_plugin()
print("RESULT " + json.dumps(platforms))
"""


@pytest.mark.parametrize("args", [["--version"], ["chat"], ["bench", "serve", "--model", "m"],
                                  [], ["serve", "--help"]], ids=lambda a: " ".join(a) or "-")
def test_model_less_commands_choose_nothing(scene: Scene, tmp_path: Path,
                                            args: list[str]) -> None:
    record = tmp_path / "record"
    record.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", AS_VLLM, json.dumps([VLLM_ARGV0, *args])], capture_output=True,
        text=True, timeout=120,
        env=clean_env(PYTHONPATH=str(scene.site), TT_SIM_RECORD_DIR=str(record),
                      VLLM_PLUGINS="tt_meta",
                      TT_META_POLICY=str(scene.policy_with(top=WITH_DEFAULT))))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "RESULT [null, null]" in proc.stdout
    assert list(record.iterdir()) == [], "a backend's code ran"
    assert "TT_META_DECISION" not in proc.stdout


def test_explain_simulates_command_lines(scene: Scene) -> None:
    def explain(*command: str) -> tuple[int, dict[str, Any]]:
        proc = subprocess.run(
            [sys.executable, "-c", "from tt_meta_plugin.cli import main; raise SystemExit(main())",
             "explain", "--json", "--", *command], capture_output=True, text=True, timeout=120,
            env=clean_env(PYTHONPATH=str(scene.site),
                          TT_META_POLICY=str(scene.policy_with(top=WITH_DEFAULT))))
        report: dict[str, Any] = json.loads(proc.stdout)
        return proc.returncode, report

    code, report = explain("python", "-m", "vllm.entrypoints.openai.api_server",
                           "--model", "metal-org/llama")
    assert code == 0 and report["inputs"]["model"]["value"] == "metal-org/llama", report
    code, report = explain("vllm", "serve", "--port", "1", "metal-org/llama")
    assert code == 0 and report["backend"] == "metal", report
    code, report = explain("vllm", "--version")
    assert code == 0 and report["loads_no_model"] == "vllm"


# -- The real `vllm` console script ------------------------------------------------------

REAL_VLLM = VLLM_ARGV0
MODEL_LESS = [
    ["--version"],
    ["--help"],
    ["serve", "--help"],
    ["bench", "serve", "--help"],
    ["collect-env"],
    ["chat", "--url", "http://127.0.0.1:9/v1"],
]


@pytest.mark.e2e
@pytest.mark.parametrize("args", MODEL_LESS, ids=lambda a: " ".join(a) or "vllm")
def test_real_vllm_model_less_commands(scene: Scene, tmp_path: Path, args: list[str]) -> None:
    record = tmp_path / "record"
    record.mkdir()

    def run(**env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([REAL_VLLM, *args], capture_output=True, text=True, timeout=300,
                              env=clean_env(PYTHONPATH=str(scene.site),
                                            TT_SIM_RECORD_DIR=str(record), **env))

    plain = run(VLLM_PLUGINS="")
    ours = run(VLLM_PLUGINS="tt_meta", TT_META_POLICY=str(scene.policy_with(top=WITH_DEFAULT)))
    assert ours.returncode == plain.returncode, (ours.stderr[-3000:], plain.stderr[-1000:])
    assert "tt_meta refused" not in ours.stderr, ours.stderr[-3000:]
    assert "Traceback" not in ours.stderr or "Traceback" in plain.stderr, ours.stderr[-3000:]
    assert list(record.iterdir()) == [], "a backend's code ran"
