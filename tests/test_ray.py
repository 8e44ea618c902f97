"""Multi-host serving through vLLM's Ray executor, on a real Ray cluster of two nodes.

The cluster is started beforehand with `ray start` on each node, as multi-host operators do,
with `VLLM_PLUGINS=tt_meta` and the policy in each node's environment. Both nodes run on this
machine; the second has its own mount namespace with an empty tt_meta state directory, standing
in for a machine with its own disk. Only the second node offers the device (Ray's "GPU"
resource; the simulated Forge platform schedules on it), so vLLM's Ray worker runs there.

The policy's default backend (metal) differs from the model's rule (forge): a worker that
decided on its own, without the model, would pick metal. Every process of the server (API
server, engine core, Ray worker) must run forge and nothing else, and the worker, finding no
verification record on its node, verifies the same signed manifest itself.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import clean_env, install
from operator_flow import sign_backends
from server import Server, complete, free_port, read_events, vllm_server
from tiny_model import make_tiny_model

pytestmark = pytest.mark.e2e

RAY = str(Path(sys.executable).with_name("ray"))
POLICY = Path(__file__).parent / "support" / "two_models_policy.toml"
DIST = "vllm-tt"


class Cluster:
    def __init__(self, root: Path, env: dict[str, str], address: str, node_state: Path) -> None:
        self.root, self.env, self.address, self.node_state = root, env, address, node_state


def _ray(env: dict[str, str], *args: str, prefix: tuple[str, ...] = ()) -> None:
    proc = subprocess.run([*prefix, RAY, *args], env=env, capture_output=True, text=True,
                          timeout=180, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ray {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, sim_wheels: dict[str, Path]
          ) -> tuple[Path, dict[str, str]]:
    """A signed site, the policy (default backend metal; the model's rule: forge), the model."""
    root = tmp_path_factory.mktemp("ray")
    site = install(list(sim_wheels.values()), root / "site")
    template = root / "policy-template.toml"
    template.write_text(POLICY.read_text().replace(
        "version = 1\n", 'version = 1\ndefault_backend = "metal"\n', 1))
    policy = sign_backends(site, root / "operator", template)
    make_tiny_model(root / "models" / "forge-model", "LlamaForCausalLM")
    env = clean_env(PYTHONPATH=str(site), VLLM_PLUGINS="tt_meta", TT_META_POLICY=str(policy),
                    TT_SIM_RAY_DEVICE_KEY="GPU", HF_HUB_OFFLINE="1",
                    VLLM_CPU_KVCACHE_SPACE="1", RAY_AUTH_MODE="disabled",
                    RAY_USAGE_STATS_ENABLED="0")
    return root, env


def serve(root: Path, env: dict[str, str], name: str) -> tuple[Server, list[dict[str, Any]],
                                                             list[dict[str, Any]]]:
    """`vllm serve` through the Ray executor; the server, the backends' events, the audit."""
    model = root / "models" / "forge-model"
    record = root / f"record-{name}"  # (a pre-started cluster's nodes were given it)
    record.mkdir(exist_ok=True)
    audit = root / "operator" / "audit.jsonl"
    seen = len(audit.read_text().splitlines()) if audit.exists() else 0
    with vllm_server(model, {**env, "TT_SIM_RECORD_DIR": str(record)},
                     root / f"serve-{name}.log",
                     ("--distributed-executor-backend", "ray")) as server:
        answer = complete(server.port, model)
    assert answer["usage"]["completion_tokens"] == 5, answer
    entries = [json.loads(x) for x in audit.read_text().splitlines()[seen:]]
    return server, read_events(record), entries


def ray_workers(server: Server, events: list[dict[str, Any]], audit: list[dict[str, Any]]
                ) -> list[int]:
    """Every process ran forge, and only forge; the server's own process decided. Returns the
    processes that are not the server's descendants: Ray's workers."""
    assert {e["dist"] for e in events} == {DIST}, events
    by_pid = {e["pid"]: e for e in audit}
    assert {e["verdict"] for e in audit} == {"delegated", "inherited"}, audit
    assert {e["backend"] for e in audit} == {"forge"}, audit
    assert by_pid[server.pid]["verdict"] == "delegated", audit
    parent = {e["pid"]: e["ppid"] for e in events}

    def descends(pid: int) -> bool:
        while pid in parent and pid != server.pid:
            pid = parent[pid]
        return pid == server.pid

    workers = [pid for pid in by_pid if not descends(pid)]
    assert workers, (audit, events)
    for pid in workers:
        kinds = {e["event"] for e in events if e["pid"] == pid}
        assert {"platform_function", "platform_class", "general_plugin"} <= kinds, kinds
        assert by_pid[pid]["verdict"] == "inherited", audit
    return workers


def test_ray_cluster_started_by_vllm(world: tuple[Path, dict[str, str]]) -> None:
    """No cluster beforehand: vLLM's `ray.init` starts one on this node (given a "GPU")."""
    root, env = world
    # RAY_ADDRESS=local: start a cluster even if /tmp/ray names one left by another run
    # (`ray.init()` with no address would connect to it and wait for its "GPU").
    server, events, audit = serve(root, {**env, "RAY_OVERRIDE_RESOURCES": '{"GPU": 1}',
                                         "RAY_ADDRESS": "local"}, "local")
    for pid in ray_workers(server, events, audit):
        # Same node, same state directory: the record the first process wrote is inherited.
        assert next(a for a in audit if a["pid"] == pid)["verified"] == "signature", audit


@pytest.fixture(scope="module")
def cluster(world: tuple[Path, dict[str, str]]) -> Iterator[Cluster]:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.fail("the Ray test needs root and unshare(1) for the second node's mount "
                    "namespace; run it as CI does (make test as root)")
    root, env = world
    port = free_port()
    address = f"127.0.0.1:{port}"
    state = root / "operator" / "state"
    node_state = root / "node2-state"  # the second node's own, empty, state directory
    state.mkdir(parents=True, exist_ok=True)
    node_state.mkdir()
    # The backends record their events where every node's environment says.
    env = {**env, "TT_SIM_RECORD_DIR": str(root / "record-cluster")}
    _ray(env, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
         "--num-cpus", "2", "--num-gpus", "0", "--disable-usage-stats")
    try:
        # The second node: its own mount namespace, in which the state directory is another
        # (empty) directory. Its raylet and workers stay in that namespace.
        script = (f'mount --bind "{node_state}" "{state}" && exec "{RAY}" start --address '
                  f'{address} --node-ip-address 127.0.0.1 --num-cpus 2 --num-gpus 1')
        _ray(env, prefix=("unshare", "-m", "--propagation", "private", "sh", "-c", script))
        yield Cluster(root, {**env, "RAY_ADDRESS": address}, address, node_state)
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120,
                       check=False)


def test_ray_worker_on_another_node_runs_the_drivers_backend(cluster: Cluster) -> None:
    server, events, audit = serve(cluster.root, cluster.env, "cluster")
    for pid in ray_workers(server, events, audit):
        # No record of the first process on its node: it verified the same manifest itself.
        assert next(a for a in audit if a["pid"] == pid)["verified"] == "files", audit
    assert list((cluster.node_state / "verified").glob("*.idx")), "node 2 wrote no record"
