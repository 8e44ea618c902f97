"""`make bench`: run every benchmark, print the tables, write results.json and results.png."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import bench_activation
import bench_runtime
import bench_verify

OUT = Path(__file__).resolve().parent / "results"


def plot(verify_rows: list[dict[str, float]], path: Path,
         ttnn: dict[str, float] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    labels = [f"{int(r['files'])} files\n{r['bytes'] / 2**20:.0f} MB" for r in verify_rows]
    if ttnn is not None:  # the real runtime, last
        verify_rows = [*verify_rows, {**ttnn, "cold_mb_s": ttnn["bytes"] / 2**20 / ttnn["cold_s"],
                                      "baseline_mb_s": ttnn["bytes"] / 2**20 / ttnn["baseline_s"]}]
        labels.append(f"real ttnn\n{int(ttnn['files'])} files\n{ttnn['bytes'] / 2**20:.0f} MB")
    x = range(len(verify_rows))
    left.bar([i - 0.27 for i in x], [r["baseline_s"] for r in verify_rows], 0.27,
             label="hashlib.sha256, 1 core")
    left.bar(list(x), [r["cold_s"] for r in verify_rows], 0.27, label="tt_meta cold (2 cores)")
    left.bar([i + 0.27 for i in x], [r["warm_s"] for r in verify_rows], 0.27,
             label="tt_meta warm (cache)")
    left.set_xticks(list(x), labels)
    left.set_yscale("log")
    left.set_ylabel("seconds (log)")
    left.set_title("Verification time by backend size")
    left.legend(fontsize=8)
    right.plot([r["bytes"] / 2**20 for r in verify_rows],
               [r["cold_mb_s"] for r in verify_rows], "o-", label="tt_meta cold")
    right.plot([r["bytes"] / 2**20 for r in verify_rows],
               [r["baseline_mb_s"] for r in verify_rows], "s--", label="hashlib, 1 core")
    right.set_xscale("log")
    right.set_xlabel("backend size, MB (log)")
    right.set_ylabel("MB/s")
    right.set_title("Throughput")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    OUT.mkdir(exist_ok=True)
    started = time.time()
    verify_rows = bench_verify.run()
    activation_rows = bench_activation.run()
    runtime = bench_runtime.run()
    results = {
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                    "processor": platform.processor() or platform.machine()},
        "verification": verify_rows,
        "activation": activation_rows,
        "runtime": runtime,
        "seconds": round(time.time() - started, 1),
    }
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    plot(verify_rows, OUT / "results.png", runtime["ttnn_verification"])
    print(f"\nwrote {OUT / 'results.json'} and {OUT / 'results.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
