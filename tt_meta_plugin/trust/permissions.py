"""File permission checks, in the spirit of sshd's StrictModes.

A policy, key, manifest or state file that another user can write is a way around every
signature: whoever can write it decides what is trusted. Such a path is refused unless it, and
the directory holding it, are owned by root or by the user running vLLM and are writable by
neither group nor others. `strict_permissions = false` in the policy's `[trust]` table relaxes
this for development, with a WARNING every time it lets one through.
"""

from __future__ import annotations

import logging
import os
import stat
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
