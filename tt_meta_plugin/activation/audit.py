"""One audit line per decision per process: what ran, proven by whom, and how long it took.

Logged at INFO through `vllm.tt_meta`, and, when the policy names `trust.audit_log`, appended
as one JSON line to that file (a single `write` on an `O_APPEND` descriptor, so lines from
concurrent processes never interleave), opened without following a symlink and only when the
file and its directory pass the permission checks of the state directory.
"""

from __future__ import annotations

import json
import logging
import os
import stat
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
        # Never through a symlink, and never into a file or directory another user controls:
        # a root vLLM process must not be made to create or append to a file of their choice.
        fd = os.open(audit_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
                     | os.O_NONBLOCK, 0o640)
        try:
            unsafe = _unsafe(fd, audit_log)
            if unsafe:
                log(logging.WARNING, "tt_meta: not writing to the audit log %s: %s",
                    audit_log, unsafe)
                return
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError as exc:
        log(logging.WARNING, "tt_meta: cannot append to the audit log %s: %s", audit_log,
            exc.strerror)


def _unsafe(fd: int, audit_log: str) -> str | None:
    from pathlib import Path

    from ..trust import permissions  # only where an audit log is configured

    if not stat.S_ISREG(os.fstat(fd).st_mode):
        return "it is not a regular file"
    return permissions.problem(Path(audit_log))
