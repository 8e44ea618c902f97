"""One audit line per decision per process: what ran, proven by whom, and how long it took.

Logged at INFO through `vllm.tt_meta`, in vLLM's own log output and format (`_log.py`), as
`tt_meta audit: key=value ...` (the time is the log line's own), and, when the policy names
`trust.audit_log`, appended as one JSON line to that file (a single `write` on an `O_APPEND`
descriptor, so lines from concurrent processes never interleave), opened without following
a symlink and only when the file and its directory pass the permission checks of the state
directory.

A child (engine core, worker) of a server whose front end serves tt_meta's metrics also
appends its activation time to the file the front end named in `TT_META_METRICS_FILE`
(activation/metrics.py reads it when /metrics is scraped): a few bytes written, no metric
code imported in a process that serves no metrics.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from typing import Any

from .._log import log

#: set by a front end that serves tt_meta's metrics: the file its children append to
ENV_METRICS_FILE = "TT_META_METRICS_FILE"
#: The metrics file's name, as its front end makes it (tempfile.mkstemp): a child appends
#: only to such a file, so the variable cannot point it at another private file of its user
#: (a seal, a record, authorized_keys).
METRICS_FILE_PREFIX, METRICS_FILE_SUFFIX = "tt-meta-activations-", ".txt"


def record(audit_log: str | None, **fields: Any) -> None:
    entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "pid": os.getpid(),
             **fields}
    log(logging.INFO, "tt_meta audit: %s",
        " ".join(f"{k}={_shown(v)}" for k, v in entry.items() if k != "time"))
    if fields.get("verdict") == "inherited" and ENV_METRICS_FILE in os.environ:
        _report_child(os.environ[ENV_METRICS_FILE], fields.get("ms"))
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


def _shown(value: Any) -> str:
    """A value as the log line shows it: lists comma-separated, text with spaces quoted."""
    if isinstance(value, (list, tuple)):
        value = ",".join(map(str, value)) or "-"
    elif value is None:
        return "-"
    text = str(value)
    return json.dumps(text) if not text or any(c.isspace() or c in "\"=" for c in text) else text


def _report_child(path: str, ms: Any) -> None:
    """Append this child's activation time (seconds) to its front end's metrics file. The
    front end created it; a child never creates it (a Ray worker on another node has none)."""
    name = os.path.basename(path)
    if not (name.startswith(METRICS_FILE_PREFIX) and name.endswith(METRICS_FILE_SUFFIX)):
        log(logging.WARNING, "tt_meta: not reporting this process's activation time to %s "
            "(%s): it is not a metrics file tt_meta made", path, ENV_METRICS_FILE)
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK)
        try:
            # Only the file its front end made (mode 0600, this user's): the variable must
            # not make a process append to a file of someone else's choice.
            info = os.fstat(fd)
            if (not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid()
                    or info.st_mode & 0o077):
                log(logging.WARNING, "tt_meta: not reporting this process's activation time "
                    "to %s (%s): it is not a private file of this user", path, ENV_METRICS_FILE)
                return
            os.write(fd, f"{float(ms) / 1e3:.6f}\n".encode())
        finally:
            os.close(fd)
    except (OSError, TypeError, ValueError) as exc:
        log(logging.DEBUG, "tt_meta: activation time not reported to %s: %s", path, exc)


def _unsafe(fd: int, audit_log: str) -> str | None:
    from pathlib import Path

    from ..trust import permissions  # only where an audit log is configured

    if not stat.S_ISREG(os.fstat(fd).st_mode):
        return "it is not a regular file"
    return permissions.problem(Path(audit_log))
