"""Reading an operator's input file whole, bounded, as text: one way, one set of messages.

For the command line's inputs (`tt-meta policy --update`'s policy, `--models`, a model spec):
a file too large, unreadable or not UTF-8 is a ConfigError naming it, never a traceback or
an unbounded read.
"""

from __future__ import annotations

from pathlib import Path

from ._errors import ConfigError, where


def read_bounded(path: Path | str, limit: int, what: str, fix: str, large_fix: str) -> bytes:
    """The bytes of `path` (the `what`, e.g. "models file"), at most `limit` of them."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(limit + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read the {what}: {exc.strerror}", where=where(path),
                          fix=fix) from None
    if len(raw) > limit:
        raise ConfigError(f"the {what} is larger than {limit >> 20} MiB", where=where(path),
                          fix=large_fix)
    return raw


def read_text(path: Path | str, limit: int, what: str, fix: str, large_fix: str,
              utf8_fix: str) -> str:
    """`read_bounded`, decoded as UTF-8."""
    raw = read_bounded(path, limit, what, fix, large_fix)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"the {what} is not UTF-8 text", where=where(path),
                          fix=utf8_fix) from None
