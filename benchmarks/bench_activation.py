"""Activation overhead per vLLM process: tt_meta against the backend alone.

Each run is a fresh interpreter that imports vLLM, then times vLLM's own platform resolution
(`resolve_current_platform_cls_qualname`: entry-point loading, the built-in probes and the
plugin functions) up to the class path. Baseline: `VLLM_PLUGINS=tt`, the backend's own
platform plugin alone. Then `VLLM_PLUGINS=tt_meta` as a first process with no verification
cache (cold), a first process whose cache is valid (warm), and a child that inherits the
decision. Also the cost of importing tt_meta into a process that has vLLM already: the entry
module vLLM loads (what every process pays before any work), and the modules a first process
adds to decide and verify.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from synthetic import make_backend, policy

PROBE = """
import json, os, sys, time
sys.argv = ["/usr/bin/vllm", "serve", "bench/model"]
import vllm.platforms as platforms
if os.environ.get("BENCH_IMPORT"):
    import importlib
    t0 = time.perf_counter()
    for name in os.environ["BENCH_IMPORT"].split(","):
        importlib.import_module(name)
    print(json.dumps({"ms": (time.perf_counter() - t0) * 1e3}))
    raise SystemExit
t0 = time.perf_counter()
name = platforms.resolve_current_platform_cls_qualname()
ms = (time.perf_counter() - t0) * 1e3
print(json.dumps({"ms": ms, "platform": name, "decision": os.environ.get("TT_META_DECISION")}))
"""

SIZES = [(100, 1 << 20), (10_000, 100 << 20)]


def probe(site: Path, **env: str) -> dict[str, Any]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("TT_META_", "VLLM_"))}
    full.update(PYTHONPATH=str(site), VLLM_LOGGING_LEVEL="WARNING", **env)
    proc = subprocess.run([sys.executable, "-c", PROBE], env=full, capture_output=True,
                          text=True, check=False)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(proc.stdout + proc.stderr)
    result: dict[str, Any] = json.loads(lines[-1])
    return result


# What a first process imports to decide and verify (signature checks on a cold start add
# cryptography; third-party backend plugins add pluggy).
FIRST_PROCESS = ",".join(f"tt_meta_plugin.{m}" for m in (
    "vllm_entry", "activation.first_process", "selection.decide"))


def kinds_of_run(site: Path, pol: str, state: Path, repeat: int,
                 check: Callable[[dict[str, Any]], None] = lambda first: None
                 ) -> dict[str, float]:
    """Medians of `repeat` fresh processes of each kind (`site`: the PYTHONPATH). A few
    milliseconds are the answer and one process start varies by more than that here, so the
    kinds of run are interleaved: a disturbance on the machine lands on all of them alike."""
    med = statistics.median
    base: list[float] = []
    cold: list[float] = []
    warm: list[float] = []
    child: list[float] = []
    for _ in range(repeat):
        shutil.rmtree(state, ignore_errors=True)
        first = probe(site, VLLM_PLUGINS="tt_meta", TT_META_POLICY=pol)
        assert first["platform"] == "tt_vllm_plugin.platform.TTPlatform", first
        check(first)
        cold.append(first["ms"])
        base.append(probe(site, VLLM_PLUGINS="tt")["ms"])
        warm.append(probe(site, VLLM_PLUGINS="tt_meta", TT_META_POLICY=pol)["ms"])
        child.append(probe(site, VLLM_PLUGINS="tt_meta", TT_META_POLICY=pol,
                           TT_META_DECISION=first["decision"])["ms"])
    return {"backend_alone_ms": med(base), "cold_ms": med(cold), "warm_ms": med(warm),
            "child_ms": med(child)}


def run(repeat: int = 9) -> list[dict[str, Any]]:
    med = statistics.median
    rows = []
    for files, size in SIZES:
        site = make_backend(files, size)
        state = site.parent / f"state-act-{site.name}"
        r = kinds_of_run(site, str(policy(site, state)), state, repeat)
        rows.append({"files": files, "bytes": size, **r,
                     "cold_added_ms": r["cold_ms"] - r["backend_alone_ms"],
                     "warm_added_ms": r["warm_ms"] - r["backend_alone_ms"],
                     "child_added_ms": r["child_ms"] - r["backend_alone_ms"]})
    site = make_backend(*SIZES[0])
    entry_ms = [probe(site, BENCH_IMPORT="tt_meta_plugin.vllm_entry")["ms"]
                for _ in range(repeat)]
    first_ms = [probe(site, BENCH_IMPORT=FIRST_PROCESS)["ms"] for _ in range(repeat)]
    print(f"\nActivation per process (median of {repeat}; ms from vLLM's platform resolution "
          "start to the class path)")
    print(f"{'backend files':>13} | {'alone (tt)':>10} | {'cold':>14} | {'warm (cache)':>14} | "
          f"{'child':>14}")
    for r in rows:
        print(f"{r['files']:>13} | {r['backend_alone_ms']:>10.1f} | "
              f"{r['cold_ms']:>6.1f} ({r['cold_added_ms']:>+6.1f}) | "
              f"{r['warm_ms']:>6.1f} ({r['warm_added_ms']:>+6.1f}) | "
              f"{r['child_ms']:>6.1f} ({r['child_added_ms']:>+6.1f})")
    print(f"importing after vLLM: the entry module {med(entry_ms):.1f} ms; with the first "
          f"process's modules {med(first_ms):.1f} ms")
    rows.append({"import_ms": med(entry_ms), "import_first_process_ms": med(first_ms)})
    return rows


if __name__ == "__main__":
    run()
