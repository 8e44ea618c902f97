"""Activation of two checkouts of tt_meta, interleaved in one run: the before/after of a change.

`make bench` runs minutes apart from the last time it ran, and a process start here varies by
more than the few milliseconds in question; this puts the two versions side by side instead:
each round runs a warm first process and a child of each checkout, alternating, on the same
site and policy (the bench's synthetic 100-file backend, with the real ttnn when
`.bench/ttnn-site` exists), and prints the medians.

    git worktree add /tmp/before <rev>
    .venv/bin/python benchmarks/compare_checkouts.py /tmp/before .
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench_activation import PROBE
from synthetic import WORK, make_backend, policy


def probe(code: Path, site: str, pol: str, **env: str) -> dict[str, Any]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("TT_META_", "VLLM_"))}
    full.update(PYTHONPATH=f"{code}{os.pathsep}{site}", VLLM_LOGGING_LEVEL="WARNING",
                VLLM_PLUGINS="tt_meta", TT_META_POLICY=pol, **env)
    full.pop("PYTHONDONTWRITEBYTECODE", None)
    proc = subprocess.run([sys.executable, "-c", PROBE], env=full, capture_output=True,
                          text=True, check=False)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(proc.stderr[-3000:])
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def main(before: Path, after: Path, rounds: int = 9) -> None:
    plugin = make_backend(100, 1 << 20)
    ttnn = WORK / "ttnn-site"
    site = f"{plugin}{os.pathsep}{ttnn}" if ttnn.exists() else str(plugin)
    with tempfile.TemporaryDirectory() as tmp:
        pol = str(policy(plugin, Path(tmp) / "state"))
        runs: dict[Path, dict[str, list[float]]] = {c: {"warm": [], "child": []}
                                                    for c in (before, after)}
        for code in runs:
            probe(code, site, pol)  # the records, once
        for _ in range(rounds):
            for code, kinds in runs.items():
                first = probe(code, site, pol)
                kinds["warm"].append(first["ms"])
                child = probe(code, site, pol, TT_META_DECISION=first["decision"])
                kinds["child"].append(child["ms"])
    print(f"site: {site} (median of {rounds}, ms)")
    for code, kinds in runs.items():
        print(f"  {code}: " + ", ".join(f"{k} {statistics.median(v):.1f}"
                                        for k, v in kinds.items()))


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve())
