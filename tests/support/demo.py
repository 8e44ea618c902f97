"""`make demo`: two models, two backends, one `VLLM_PLUGINS=tt_meta`, in a real vLLM on CPU.

Builds the simulated Metal and Forge backends as wheels and installs them, makes two tiny
models (one whose architecture only the Metal backend registers), writes a policy, then for
each model: `tt-meta explain`, `vllm serve` under `VLLM_PLUGINS=tt_meta`, one completion, and
a line of report. Everything lives in .demo/ and the servers are stopped before it exits.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from operator_flow import sign_backends
from server import complete, read_events, vllm_server
from sim import build_all, install
from tiny_model import make_tiny_model

REPO = Path(__file__).resolve().parents[2]
WORK = REPO / ".demo"
POLICY = Path(__file__).with_name("two_models_policy.toml")


def main() -> int:
    WORK.mkdir(exist_ok=True)
    print("building the simulated backends (tt-vllm-plugin, vllm-tt) and two tiny models ...")
    site = WORK / "site"
    if not site.exists():
        install(list(build_all(WORK / "wheels").values()), site)
    models = {
        "metal": make_tiny_model(WORK / "models" / "metal-model", "TTLlamaForCausalLM"),
        "forge": make_tiny_model(WORK / "models" / "forge-model", "LlamaForCausalLM"),
    }
    print("signing them as an image build would: tt-meta keygen, tt-meta sign ...")
    operator = WORK / "operator"
    if operator.exists():
        shutil.rmtree(operator)
    policy = sign_backends(site, operator, POLICY)
    audit = operator / "audit.jsonl"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TT_META_", "VLLM_PLUGINS"))}
    base.update(PYTHONPATH=str(site), VLLM_PLUGINS="tt_meta", TT_META_POLICY=str(policy),
                HF_HUB_OFFLINE="1")
    rows = []
    for expected, model in models.items():
        explain = subprocess.run(
            [sys.executable, "-m", "tt_meta_plugin.cli", "explain", "--json", "--model",
             str(model)], env=base, capture_output=True, text=True, check=False)
        report = json.loads(explain.stdout)
        if not report["delegate"]:
            print(explain.stdout)
            return 1
        record = WORK / f"record-{expected}"
        record.mkdir(exist_ok=True)
        for old in record.glob("*"):
            old.unlink()
        print(f"serving {model.name} under VLLM_PLUGINS=tt_meta (about a minute on 2 cores) ...")
        started = time.monotonic()
        with vllm_server(model, dict(base, TT_SIM_RECORD_DIR=str(record)),
                         WORK / f"serve-{expected}.log") as server:
            ready = time.monotonic() - started
            answer = complete(server.port, model, "Tenstorrent builds", 8)
        audit_lines = ([json.loads(x) for x in audit.read_text().splitlines()]
                       if audit.exists() else [])
        audit.unlink(missing_ok=True)
        decided = [a for a in audit_lines if a["verdict"] == "delegated"]
        inherited = [a for a in audit_lines if a["verdict"] == "inherited"]
        events = read_events(record)
        pids = sorted({e["pid"] for e in events if e["event"] == "platform_class"})
        dists = sorted({e["dist"] for e in events})
        rows.append((model.name, report["backend"], report["reason"],
                     f"{report['distribution']} {report['version']}", len(pids),
                     ",".join(dists), f"{ready:.0f} s", answer["choices"][0]["text"],
                     report["manifest"]["signers"][0][:16],
                     "/".join(f"{a['ms']:.0f}" for a in decided),
                     "/".join(f"{a['ms']:.0f}" for a in inherited)))
        if report["backend"] != expected or dists != [report["distribution"].replace("_", "-")]:
            print(f"unexpected: {report['backend']} ran {dists}")
            return 1
    for name, backend, reason, dist, count, seen, ready_in, text, signer, first, kids in rows:
        print(f"\n{name}: backend {backend} ({dist}), chosen by {reason}")
        print(f"  manifest signed by key {signer}..., verified before any backend code ran")
        print(f"  tt_meta activation: {first} ms in the first process (decide + verify), "
              f"{kids} ms in the {len(kids.split('/')) if kids else 0} child processes")
        print(f"  processes that activated it: {count}; backend code seen: {seen}; "
              f"ready in {ready_in}; completion: {text!r}")
    print("\nEach model ran on the backend its policy rule chose, in every vLLM process "
          "(front end, engine core, worker), and no other backend's code ran.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
