"""File permission checks, in the spirit of sshd's StrictModes.

A policy, key, manifest or state file that another user can write is a way around every
signature: whoever can write it decides what is trusted. So is a directory above it: whoever
can write a directory can rename what is below it and put their own in its place (the state
directory renamed away and recreated empty forgets every rollback mark). Such a path is
refused unless it, and every directory above it up to /, is owned by root or by the user
running vLLM and is writable by neither group nor others. `strict_permissions = false` in the
policy's `[trust]` table relaxes this for development, with a WARNING every time it lets one
through.

`check_ancestors` is StrictModes' walk itself, for any set of allowed owners (`check` is it
with root and the user running this process): a path and every directory above it, up to /,
those of its absolute path as written and, past a symlink, of what it points to (a symlink on
the way is replaceable by whoever can write where it lies, and leads elsewhere). The one
exception is a sticky directory (/tmp) above the path: others can add entries to it but not
rename or remove one they do not own, so an allowed owner's directory below it stays theirs.

Within `with remembered():` (one verification, one child's checks) a directory judged above
one path is not judged again above another: a handful of stats per path, whatever its depth.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Collection
from pathlib import Path

from .._errors import PermissionsError
from .._log import log

# (a directory, its allowed owners) -> the first problem at or above it, within `remembered`
_Found = tuple[str, os.stat_result, bool] | None  # the path that fails, its stat, if the top
_memo: dict[tuple[str, frozenset[int]], _Found] | None = None


class _Scope:
    """A scope in which each directory above a checked path is judged once."""

    __slots__ = ("_outer",)

    def __enter__(self) -> None:
        global _memo
        self._outer = _memo
        if _memo is None:
            _memo = {}

    def __exit__(self, *exc: object) -> None:
        global _memo
        _memo = self._outer


def remembered() -> _Scope:
    """`with remembered():` judges each directory above the paths checked in it once."""
    return _Scope()


def _owner_names(owners: Collection[int]) -> str:
    others = sorted(set(owners) - {0})  # root is always allowed
    return "root" if not others else "root or uid " + ", ".join(map(str, others))


def _judge(target: str, info: os.stat_result, owners: frozenset[int], top: bool) -> str | None:
    if info.st_uid != 0 and info.st_uid not in owners:
        whose = " (the user running this process)" if info.st_uid == os.geteuid() else ""
        return f"{target} is owned by uid {info.st_uid}{whose}, not by {_owner_names(owners)}"
    mode = info.st_mode
    sticky = not top and stat.S_ISDIR(mode) and mode & stat.S_ISVTX
    if mode & (stat.S_IWGRP | stat.S_IWOTH) and not sticky:
        return f"{target} is writable by group or others (mode {stat.S_IMODE(mode):o})"
    return None


def _one(target: str, owners: frozenset[int], top: bool) -> _Found:
    """`target` itself (a missing one is not judged: whoever reads it reports it), and, if
    it is a symlink, every directory above what it points to."""
    try:
        info = os.lstat(target)
    except (OSError, ValueError):
        return None
    if stat.S_ISLNK(info.st_mode):
        try:
            pointed: os.stat_result | None = os.stat(target)
        except (OSError, ValueError):
            pointed = None
        if pointed is not None and _judge(target, pointed, owners, top) is not None:
            return target, pointed, top
        real = os.path.realpath(target)
        above = os.path.dirname(real)
        return _find(above, owners, False) if above != real else None
    return (target, info, top) if _judge(target, info, owners, top) is not None else None


def _find(start: str, owners: frozenset[int], top: bool) -> _Found:
    """The first problem at `start` (absolute; `top`: the path checked, where a sticky
    directory is no excuse) or above it, walking up to / (iteratively: a path may have
    more components than Python's recursion limit)."""
    memo = _memo
    judged: list[str] = []
    found: _Found = None
    current = start
    while True:
        if not top and memo is not None and (current, owners) in memo:
            found = memo[current, owners]
            break
        found = _one(current, owners, top)
        if found is not None:
            if not top:
                judged.append(current)
            break
        judged.append(current)  # passed: as a directory above another path it passes too
        parent = os.path.dirname(current)
        if parent == current:
            break
        current, top = parent, False
    if memo is not None:
        for folder in judged:
            memo[folder, owners] = found
    return found


def _search(path: Path | str, owners: Collection[int]) -> _Found:
    allowed = frozenset(owners)
    text = os.fspath(path)
    found = _find(os.path.abspath(text), allowed, True)
    if found is None and ".." in text.split(os.sep):
        # The kernel resolves `..` after a symlink where it points, not where it is written.
        found = _find(os.path.realpath(text), allowed, True)
    return found


def ancestors_problem(path: Path, owners: Collection[int]) -> str | None:
    """Why `path`, or a directory above it up to /, could be written or replaced by a user
    other than root and `owners` (sshd's StrictModes: each owned by one of them, writable by
    neither group nor others; a sticky directory above `path`, such as /tmp, may be), or
    None. A path that does not exist is not judged (whoever reads it reports it); the
    directories above it are."""
    found = _search(path, owners)
    return None if found is None else _judge(found[0], found[1], frozenset(owners), found[2])


def problem(path: Path) -> str | None:
    """Why `path` (or a directory above it) is unsafe to trust for root and this user, or
    None: `ancestors_problem` with the owners `check` allows."""
    return ancestors_problem(path, {os.geteuid()})


def _default_fix(path: Path, what: str, owners: Collection[int]) -> str:
    found = _search(path, owners)
    failing = found[0] if found is not None else str(path)
    return (f"chmod go-w {failing} and chown it to {_owner_names(owners)}: the {what} and "
            "every directory above it, up to /, must be (a sticky directory such as /tmp "
            "excepted above it)")


_RELAX = "; or, for development only, set strict_permissions = false in [trust]"


def check_ancestors(path: Path, what: str, strict: bool, owners: Collection[int],
                    because: str = "", fix: str | None = None) -> None:
    """Refuse `path` (the `what`) if `ancestors_problem` finds a reason: under
    `strict_permissions = false` in the policy, a WARNING instead. `because` says why it
    matters; `fix` replaces the default advice."""
    why = ancestors_problem(path, owners)
    if why is None:
        return
    if not strict:
        log(logging.WARNING, "tt_meta: trusting the %s %s although %s%s "
            "(strict_permissions = false in the policy)", what, path, why, because)
        return
    raise PermissionsError(f"refusing the {what}: {why}{because}", where=str(path),
                           fix=(fix or _default_fix(path, what, owners)) + _RELAX)


def check(path: Path, what: str, strict: bool) -> None:
    """Refuse the `what` at `path` if it or a directory above it, up to /, is not root's or
    this user's, or is writable by group or others: `check_ancestors` with those owners."""
    owners = {os.geteuid()}
    why = ancestors_problem(path, owners)
    if why is None:
        return
    if not strict:
        log(logging.WARNING, "tt_meta: trusting the %s %s although %s "
            "(strict_permissions = false in the policy)", what, path, why)
        return
    raise PermissionsError(f"refusing the {what}: {why}", where=str(path),
                           fix=_default_fix(path, what, owners) + _RELAX)
