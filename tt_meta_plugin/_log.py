"""Logging that an operator sees even before vLLM has configured its own.

tt_meta logs through the standard `logging` module, as the logger `vllm.tt_meta`, so vLLM's
handlers, format and `VLLM_LOGGING_LEVEL` apply. But vLLM 0.32 configures logging only after
it has parsed its arguments, which is after the platform plugins ran (0.25 and 0.26 configure
it when `vllm.logger` is imported, before them). So:

- a WARNING or ERROR emitted before that must still reach the operator with its level: it
  gets a stderr handler for that one record;
- an INFO line emitted before that (the audit line) waits for vLLM's configuration, and is
  logged through vLLM's handler, in vLLM's format (its process name, pid, level and time),
  when the first record is made after it: vLLM installs its log record factory around the
  one in place when it configures logging, so a factory of ours sees that moment. Outside
  vLLM (the `tt-meta` CLI) and with `VLLM_CONFIGURE_LOGGING=0` (the application owns logging)
  it is logged at once, to whatever handlers the application set.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("vllm.tt_meta")

_FALLBACK = logging.Formatter("%(levelname)s %(asctime)s [tt_meta] %(message)s", "%m-%d %H:%M:%S")

# level, message, arguments, and where log() was called (for the line's file and number)
_pending: list[tuple[int, str, tuple[object, ...], str, int, str]] = []
_pending_lock = threading.Lock()
_waiting = False  # our record factory is installed
# The stderr handler a WARNING or ERROR gets before vLLM configured logging: while it is
# attached, a handler is reachable, but it is not vLLM's: the pending lines keep waiting.
_temporary: logging.Handler | None = None


def log(level: int, message: str, *args: object) -> None:
    if level < logging.WARNING and _vllm_configures_later():
        _defer(level, message, args)
        return
    if logger.hasHandlers() or level < logging.WARNING:
        logger.log(level, message, *args, stacklevel=2)  # the line names log()'s caller
        return
    global _temporary
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_FALLBACK)
    _temporary = handler
    logger.addHandler(handler)
    try:
        logger.log(level, message, *args, stacklevel=2)
    finally:
        logger.removeHandler(handler)
        _temporary = None


def _vllm_configures_later() -> bool:
    """Inside vLLM, whose logging is enabled but not configured yet (no handler reachable)."""
    return ("vllm" in sys.modules and not logger.hasHandlers()
            and os.environ.get("VLLM_CONFIGURE_LOGGING", "1").strip() != "0")


def _defer(level: int, message: str, args: tuple[object, ...]) -> None:
    global _waiting
    caller = sys._getframe(2).f_code  # log()'s caller
    where = (caller.co_filename, sys._getframe(2).f_lineno, caller.co_name)
    with _pending_lock:
        _pending.append((level, message, args, *where))
        if _waiting:
            return
        _waiting = True
    logging.setLogRecordFactory(_FlushWhenConfigured(logging.getLogRecordFactory()))
    # A process forked before the flush must not log this process's lines as its own.
    os.register_at_fork(after_in_child=_pending.clear)


class _FlushWhenConfigured:
    """A log record factory that logs the pending lines once a handler is reachable (vLLM
    configured its logging), before the record being made. Stays in the chain afterwards
    (vLLM's factory wraps it), then costing one list test per record."""

    __slots__ = ("previous",)

    def __init__(self, previous: Callable[..., logging.LogRecord]) -> None:
        self.previous = previous

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        if _pending and _temporary is None and logger.hasHandlers():
            flush()
        return self.previous(*args, **kwargs)


def flush() -> None:
    """Log the lines waiting for vLLM's logging configuration (each once)."""
    with _pending_lock:
        waiting = _pending[:]
        _pending.clear()
    for level, message, args, path, line, func in waiting:
        if logger.isEnabledFor(level):  # made now, by vLLM's factory: none pending any more
            logger.handle(logger.makeRecord(logger.name, level, path, line, message, args,
                                            None, func))
