"""One audit line per decision per process: what ran, proven by whom, and how long it took.

Logged at INFO through `vllm.tt_meta`, and, when the policy names `trust.audit_log`, appended
as one JSON line to that file (a single `write` on an `O_APPEND` descriptor, so lines from
concurrent processes never interleave).
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from .._log import log


def record(audit_log: str | None, **fields: Any) -> None:
    entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "pid": os.getpid(),
             **fields}
    log(logging.INFO, "tt_meta audit: %s", " ".join(f"{k}={v}" for k, v in entry.items()))
    if not audit_log:
        return
    line = (json.dumps(entry, sort_keys=True) + "\n").encode("utf-8")
    try:
        fd = os.open(audit_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError as exc:
        log(logging.WARNING, "tt_meta: cannot append to the audit log %s: %s", audit_log,
            exc.strerror)
