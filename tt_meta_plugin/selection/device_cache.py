"""The device `tt-smi -s` reported, kept in the state directory for the rest of the boot.

`<state_dir>/device.json` holds the device with what it was found under: the boot
(`/proc/sys/kernel/random/boot_id`) and the tt-smi program (its real path and identity:
device, inode, size, mtime_ns, ctime_ns). Another boot, or another tt-smi (upgraded,
replaced, another one first on PATH), finds it stale and runs tt-smi again. Only a device
found is kept: a failure is asked again by the next first process (a driver loaded later, a
tt-smi that hung once).

A first process believes the file only if it passes the state directory's permission rules
(owned by root or this user, writable by neither group nor others, nor is any directory
above it, up to /), always strictly: whoever could write it would choose the device, and so
the backend a `device` rule gives. One that fails them is ignored with a WARNING, never
refused: it is only a cache, tt-smi can always be asked again, and a refusal would let
whoever can write the file stop every server. It is written 0600 in a 0700 directory,
atomically (a temporary file renamed over it). Clearing it: `rm <state_dir>/device.json`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import tempfile
from collections.abc import Collection
from pathlib import Path

from .._log import log
from ..trust import permissions

NAME = "device.json"
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
MAX_BYTES = 4096
_FORMAT = 1


def boot_id() -> str | None:
    """This boot's id, or None (no /proc, as in some sandboxes: nothing is cached then)."""
    try:
        with open(BOOT_ID, "rb") as handle:
            text = handle.read(128).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None


class _Unusable(Exception):
    """Why a cache file is not believed."""


class DeviceCache:
    """The cache file, and the key (boot, tt-smi program) a device read from it must have."""

    __slots__ = ("key", "path")

    def __init__(self, path: Path, key: dict[str, object]) -> None:
        #: `<state_dir>/device.json`
        self.path = path
        #: boot_id, tt_smi (its real path), identity (device, inode, size, mtime, ctime)
        self.key = key

    def read(self, known: Collection[str]) -> str | None:
        """The device kept for this boot and this tt-smi, or None (none, stale, ignored)."""
        try:
            os.lstat(self.path)
        except (OSError, ValueError):
            return None  # not written yet
        try:
            data = self._load(known)
        except _Unusable as why:
            log(logging.WARNING, "tt_meta: ignoring the device cache %s: %s; running tt-smi "
                "again (remove the file if it is not tt_meta's)", self.path, why)
            return None
        if any(data[name] != value for name, value in self.key.items()):
            log(logging.DEBUG, "tt_meta: %s is of another boot or tt-smi; running tt-smi",
                self.path)
            return None
        return str(data["device"])  # a str: _load checked it

    def _load(self, known: Collection[str]) -> dict[str, object]:
        unsafe = permissions.problem(self.path)
        if unsafe is not None:
            raise _Unusable(unsafe)
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise _Unusable("it is not a regular file")
                raw = os.read(fd, MAX_BYTES + 1)
            finally:
                os.close(fd)
        except OSError as exc:
            raise _Unusable(f"it cannot be read: {exc.strerror}") from None
        try:
            data = json.loads(raw) if len(raw) <= MAX_BYTES else None
        except (ValueError, RecursionError):
            data = None
        if (not isinstance(data, dict) or set(data) != {*self.key, "device", "format"}
                or data["format"] != _FORMAT or not isinstance(data["device"], str)
                or data["device"] not in known):
            raise _Unusable("it is not a device cache tt_meta wrote")
        return data

    def write(self, device: str) -> None:
        """Keep `device` for this boot and tt-smi (a failure costs later processes a run of
        tt-smi, and is said)."""
        data = json.dumps({**self.key, "device": device, "format": _FORMAT}, sort_keys=True)
        folder = self.path.parent
        tmp = None
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".device.")  # 0600
            try:
                os.write(fd, (data + "\n").encode())
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except OSError as exc:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            log(logging.WARNING, "tt_meta: cannot keep the detected device in %s: %s (every "
                "first process runs tt-smi until it can)", self.path, exc.strerror)


def for_program(state_dir: str, program: str, info: os.stat_result) -> DeviceCache | None:
    """The cache for tt-smi at `program` (its real path; `info`: its stat), or None when
    this system has no boot id."""
    boot = boot_id()
    if boot is None:
        log(logging.DEBUG, "tt_meta: no boot id in %s: the detected device is not cached",
            BOOT_ID)
        return None
    identity = [info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns]
    return DeviceCache(Path(state_dir) / NAME,
                       {"boot_id": boot, "tt_smi": program, "identity": identity})
