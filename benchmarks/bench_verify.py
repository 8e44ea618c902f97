"""Verification throughput against plain single-core hashlib, on synthetic backends.

For each size: the same files hashed by `hashlib.sha256` in one loop on one core (the
baseline, measured in the same run), tt_meta's cold verification (no cache: every file hashed,
both cores), and a warm verification (cache valid: nothing hashed, every other check run).
Prints a table and returns the rows; `run_all.py` writes them as JSON and plots them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path
from typing import Any

from synthetic import INFO, make_backend

from tt_meta_plugin._metadata import Distribution
from tt_meta_plugin.selection.policy import TrustSettings
from tt_meta_plugin.trust.verifier import Verifier

MB = 1 << 20
SIZES = [(1_000, 10 * MB), (10_000, 100 * MB), (50_000, 500 * MB), (1_000, 2048 * MB)]


def baseline(site: Path) -> float:
    """Seconds for one loop of hashlib.sha256 over every file of the package, one core."""
    paths = [os.path.join(d, n) for d, _, names in os.walk(site) for n in names]
    started = time.perf_counter()
    for path in paths:
        with open(path, "rb") as handle:
            hashlib.sha256(handle.read()).hexdigest()
    return time.perf_counter() - started


def verify_once(site: Path, state: Path, cold: bool) -> tuple[float, int]:
    if cold and state.exists():
        shutil.rmtree(state)
    keys = site.parent / "keys"
    trust = TrustSettings(key_dirs=(str(keys),), state_dir=str(state),
                          manifest_dirs=(), signers=(("metal", tuple(_keyids(keys))),))
    dist = Distribution.at(site / INFO)
    started = time.perf_counter()
    verified = Verifier(trust).verify("metal", dist)
    return time.perf_counter() - started, verified.hashed_files


def _keyids(keys: Path) -> list[str]:
    from tt_meta_plugin.trust.keys import load_public

    return [load_public(p).keyid for p in keys.glob("*.pub")]


def best(values: list[float]) -> float:
    return min(values)


def run(repeat: int = 3) -> list[dict[str, Any]]:
    rows = []
    for files, total in SIZES:
        site = make_backend(files, total)
        size = sum(p.stat().st_size for p in site.rglob("*") if p.is_file())
        state = site.parent / f"state-{site.name}"
        baseline(site)  # warm the page cache: both sides then read from memory
        base = best([baseline(site) for _ in range(repeat)])
        cold_runs = [verify_once(site, state, cold=True) for _ in range(repeat)]
        cold = best([t for t, _ in cold_runs])
        warm_runs = [verify_once(site, state, cold=False) for _ in range(repeat)]
        warm = best([t for t, _ in warm_runs])
        assert all(h == 0 for _, h in warm_runs)
        rows.append({
            "files": files, "bytes": size,
            "baseline_s": base, "cold_s": cold, "warm_s": warm,
            "baseline_mb_s": size / MB / base, "cold_mb_s": size / MB / cold,
            "ratio_cold_vs_hashlib": base / cold,
        })
    print(f"\nVerification ({os.cpu_count()} cores; best of {repeat}; page cache warm)")
    print(f"{'files':>7} {'size MB':>8} | {'hashlib 1 core':>14} {'tt_meta cold':>13} "
          f"{'ratio':>6} | {'warm (cache)':>12}")
    for r in rows:
        print(f"{r['files']:>7} {r['bytes'] / MB:>8.0f} | {r['baseline_mb_s']:>9.0f} MB/s "
              f"{r['cold_mb_s']:>8.0f} MB/s {r['ratio_cold_vs_hashlib']:>5.2f}x | "
              f"{r['warm_s'] * 1e3:>9.1f} ms")
    return rows


if __name__ == "__main__":
    run()
