"""Append one JSON line per event to $TT_SIM_RECORD_DIR/<pid>.jsonl (nothing when unset).

`TT_SIM_FAIL=<step>` makes a simulated backend fail at that step (`platform_function` or
`general_plugin`), after tt_meta verified it: what tt_meta then leaves behind is tested.
"""

import json
import os


def record(dist: str, event: str, **extra: object) -> None:
    folder = os.environ.get("TT_SIM_RECORD_DIR")
    if not folder:
        return
    # The parent pid tells the vLLM processes apart: the front end started the engine core,
    # which started the worker.
    line = {"pid": os.getpid(), "ppid": os.getppid(), "dist": dist, "event": event, **extra}
    with open(os.path.join(folder, f"{os.getpid()}.jsonl"), "a", encoding="utf-8") as handle:
        handle.write(json.dumps(line) + "\n")


def fail_if_asked(dist: str, step: str) -> None:
    if os.environ.get("TT_SIM_FAIL") == step:
        raise RuntimeError(f"{dist}: simulated failure in {step}")
