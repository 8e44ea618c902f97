"""Rollback protection: the highest manifest serial seen per distribution, kept on disk.

A validly signed but older manifest (with the older, perhaps vulnerable, files it describes)
must not be accepted once a newer one was seen. The state directory holds one JSON file of
high-water marks: {distribution: {"serial": N, "digest": sha256 of that manifest's payload}}.
Same serial with another digest is refused too: a signer must never reuse a serial. Updates
take an exclusive lock and replace the file atomically, so concurrent vLLM processes on one
machine cannot lose each other's marks or read a half-written file.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .._errors import RollbackError, StateError
from . import permissions

MARKS_FILE = "serials.json"
LOCK_FILE = ".lock"
#: One small entry per distribution: far more than any machine has fits in this.
MAX_MARKS_BYTES = 1 << 20


class StateDir:
    def __init__(self, path: str, strict: bool) -> None:
        self.path = Path(path)
        self.strict = strict

    def _ensure(self) -> None:
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(
                f"cannot create the state directory: {exc.strerror}", where=str(self.path),
                fix="create it (mode 0700, owned by the user running vLLM) or set "
                "state_dir in the policy's [trust] table",
            ) from None
        # The directory itself, not only as the file's: whoever can rename it (write a
        # directory above it) can put an empty one in its place, without rollback marks.
        permissions.check(self.path, "state directory", self.strict)
        permissions.check(self.path / MARKS_FILE, "state file", self.strict)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self._ensure()
        try:
            fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StateError(
                f"cannot lock the state directory: {exc.strerror}",
                where=str(self.path / LOCK_FILE),
                fix="let the user running vLLM write the state directory (it may belong to "
                "another user, e.g. root), or set state_dir in the policy's [trust] table to a "
                "directory that user owns",
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read(self) -> dict[str, dict[str, object]]:
        try:
            with open(self.path / MARKS_FILE, "rb") as handle:
                raw = handle.read(MAX_MARKS_BYTES + 1)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise StateError(f"cannot read the state file: {exc.strerror}",
                             where=str(self.path / MARKS_FILE),
                             fix="check its permissions") from None
        if len(raw) > MAX_MARKS_BYTES:
            raise StateError(
                "the state file is larger than 1 MiB", where=str(self.path / MARKS_FILE),
                fix="restore it from backup; deleting it gives up rollback protection until "
                "the next manifest is seen",
            )
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):  # not UTF-8 or JSON, too deep, a huge number
            data = None
        if not isinstance(data, dict):
            raise StateError(
                "the state file is corrupt", where=str(self.path / MARKS_FILE),
                fix="restore it from backup; deleting it gives up rollback protection until "
                "the next manifest is seen",
            )
        return data

    def mark(self, distribution: str) -> tuple[int, str] | None:
        return _mark_of(self._read().get(distribution))

    def judge(self, label: str, distribution: str, serial: int, digest: str, where: str
              ) -> None:
        """Refuse a rollback or a reused serial against the mark as it is now (unlocked: a
        candidate manifest is judged before its files are; `advance` judges again)."""
        _judge(self.mark(distribution), label, serial, digest, where)

    def advance(self, label: str, distribution: str, serial: int, digest: str, where: str
                ) -> None:
        """Judge under the lock, then record `serial` as the new mark."""
        with self._locked():
            marks = self._read()
            seen = _mark_of(marks.get(distribution))
            _judge(seen, label, serial, digest, where)
            if seen is not None and seen[0] == serial:
                return
            marks[distribution] = {"serial": serial, "digest": digest}
            fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".serials.")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(marks, handle, indent=1, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path / MARKS_FILE)


def _mark_of(entry: object) -> tuple[int, str] | None:
    if not isinstance(entry, dict):
        return None
    serial, digest = entry.get("serial"), entry.get("digest")
    return (serial, digest) if isinstance(serial, int) and isinstance(digest, str) else None


def _judge(mark: tuple[int, str] | None, label: str, serial: int, digest: str, where: str
           ) -> None:
    """The one rollback rule: never below the mark, never the mark's serial with other bytes."""
    if mark is None:
        return
    seen, seen_digest = mark
    if serial < seen:
        raise RollbackError(
            f"rollback: the manifest for {label} has serial {serial}, but serial {seen} was "
            "already seen on this machine",
            where=where,
            fix="install the backend version of the newest manifest, with that manifest",
        )
    if serial == seen and digest != seen_digest:
        raise RollbackError(
            f"the manifest for {label} reuses serial {serial} with other content than the one "
            "seen before",
            where=where,
            fix="sign every new manifest with a higher --serial",
        )
