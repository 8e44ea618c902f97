"""File permission checks, in the spirit of sshd's StrictModes.

A policy, key, manifest or state file that another user can write is a way around every
signature: whoever can write it decides what is trusted. Such a path is refused unless it, and
the directory holding it, are owned by root or by the user running vLLM and are writable by
neither group nor others. `strict_permissions = false` in the policy's `[trust]` table relaxes
this for development, with a WARNING every time it lets one through.

`check_ancestors` is StrictModes' walk itself: a path and every directory above it, up to /,
each owned by root or another allowed user and writable by neither group nor others (whoever
can write a directory can rename what is below it and put their own in its place). The one
exception is a sticky directory (/tmp) above the path: others can add entries to it but not
rename or remove one they do not own, so an allowed owner's directory below it stays theirs.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Collection
from pathlib import Path

from .._errors import PermissionsError
from .._log import log


def problem(path: Path) -> str | None:
    """Why `path` (or its directory) is unsafe to trust, or None."""
    me = os.geteuid()
    for target in (path, path.parent):
        try:
            info = target.stat()
        except OSError:
            continue  # a missing path is reported by whoever reads it
        if info.st_uid not in (0, me):
            return f"{target} is owned by uid {info.st_uid}, not by root or uid {me}"
        sticky_dir = stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_ISVTX
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not (target != path and sticky_dir):
            return f"{target} is writable by group or others (mode {stat.S_IMODE(info.st_mode):o})"
    return None


def _owner_names(owners: Collection[int]) -> str:
    others = sorted(set(owners) - {0})  # root is always allowed
    return "root" if not others else "root or uid " + ", ".join(map(str, others))


def _walk(path: Path) -> list[str]:
    """`path` and every directory above it: those of its absolute path as written, and of
    its real path (a symlink on the way is replaceable by whoever can write where it lies,
    and leads elsewhere)."""
    seen: list[str] = []
    for start in (os.path.abspath(path), os.path.realpath(path)):
        current = start
        while True:
            if current not in seen:
                seen.append(current)
            parent = os.path.dirname(current)
            if parent == current:
                break
            current = parent
    return seen


def ancestors_problem(path: Path, owners: Collection[int]) -> str | None:
    """Why `path`, or a directory above it up to /, could be written or replaced by a user
    other than root and `owners` (sshd's StrictModes: each owned by one of them, writable by
    neither group nor others; a sticky directory above `path`, such as /tmp, may be), or
    None. A path that does not exist is not judged: whoever reads it reports it."""
    tops = {os.path.abspath(path), os.path.realpath(path)}
    for target in _walk(path):
        try:
            info = os.stat(target)
        except OSError:
            continue
        if info.st_uid != 0 and info.st_uid not in owners:
            whose = " (the user running this process)" if info.st_uid == os.geteuid() else ""
            return (f"{target} is owned by uid {info.st_uid}{whose}, not by "
                    f"{_owner_names(owners)}")
        mode = info.st_mode
        sticky = target not in tops and stat.S_ISDIR(mode) and mode & stat.S_ISVTX
        if mode & (stat.S_IWGRP | stat.S_IWOTH) and not sticky:
            return f"{target} is writable by group or others (mode {stat.S_IMODE(mode):o})"
    return None


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
    raise PermissionsError(
        f"refusing the {what}: {why}{because}",
        where=str(path),
        fix=(fix or f"chown it to {_owner_names(owners)}, and chmod go-w it and every "
             "directory above it") + "; or, for development only, set strict_permissions = "
        "false in [trust]",
    )


def check(path: Path, what: str, strict: bool) -> None:
    why = problem(path)
    if why is None:
        return
    if not strict:
        log(logging.WARNING, "tt_meta: trusting the %s %s although %s "
            "(strict_permissions = false in the policy)", what, path, why)
        return
    raise PermissionsError(
        f"refusing the {what}: {why}",
        where=str(path),
        fix=f"chmod go-w {path} (and its directory) and chown it to root or to the user "
        "running vLLM; or, for development only, set strict_permissions = false in [trust]",
    )
