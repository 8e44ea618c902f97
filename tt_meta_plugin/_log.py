"""Logging that an operator sees even before vLLM has configured its own.

tt_meta logs through the standard `logging` module, as the logger `vllm.tt_meta`, so vLLM's
handlers and `VLLM_LOGGING_LEVEL` apply. But vLLM 0.32 configures logging only after it has
parsed its arguments, which is after the platform plugins ran. A WARNING or ERROR emitted
before that must still reach the operator with its level, so it gets a stderr handler for
that one record.
"""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger("vllm.tt_meta")

_FALLBACK = logging.Formatter("%(levelname)s %(asctime)s [tt_meta] %(message)s", "%m-%d %H:%M:%S")


def log(level: int, message: str, *args: object) -> None:
    if logger.hasHandlers() or level < logging.WARNING:
        logger.log(level, message, *args)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_FALLBACK)
    logger.addHandler(handler)
    try:
        logger.log(level, message, *args)
    finally:
        logger.removeHandler(handler)
