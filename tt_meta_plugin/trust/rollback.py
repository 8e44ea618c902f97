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

from .._errors import TrustError
from . import permissions

MARKS_FILE = "serials.json"
LOCK_FILE = ".lock"


class StateDir:
    def __init__(self, path: str, strict: bool) -> None:
        self.path = Path(path)
        self.strict = strict

    def _ensure(self) -> None:
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise TrustError(
                f"cannot create the state directory: {exc.strerror}", where=str(self.path),
                fix="create it (mode 0700, owned by the user running vLLM) or set "
                "state_dir in the policy's [trust] table",
            ) from None
        permissions.check(self.path / MARKS_FILE, "state file", self.strict)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self._ensure()
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read(self) -> dict[str, dict[str, object]]:
        try:
            raw = (self.path / MARKS_FILE).read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise TrustError(f"cannot read the state file: {exc.strerror}",
                             where=str(self.path / MARKS_FILE),
                             fix="check its permissions") from None
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            data = None
        if not isinstance(data, dict):
            raise TrustError(
                "the state file is corrupt", where=str(self.path / MARKS_FILE),
                fix="restore it from backup; deleting it gives up rollback protection until "
                "the next manifest is seen",
            )
        return data

    def mark(self, distribution: str) -> tuple[int, str] | None:
        entry = self._read().get(distribution)
        if not isinstance(entry, dict):
            return None
        serial, digest = entry.get("serial"), entry.get("digest")
        return (serial, digest) if isinstance(serial, int) and isinstance(digest, str) else None

    def check_and_raise(self, distribution: str, serial: int, digest: str) -> None:
        """Refuse a rollback or a reused serial; otherwise record `serial` as the new mark."""
        with self._locked():
            marks = self._read()
            entry = marks.get(distribution)
            if isinstance(entry, dict):
                seen, seen_digest = entry.get("serial"), entry.get("digest")
                if isinstance(seen, int) and serial < seen:
                    raise TrustError(
                        f"rollback: the manifest for {distribution} has serial {serial}, but "
                        f"serial {seen} was already seen on this machine",
                        where=str(self.path / MARKS_FILE),
                        fix="install the backend version of the newest manifest, with that "
                        "manifest",
                    )
                if seen == serial and seen_digest != digest:
                    raise TrustError(
                        f"the manifest for {distribution} reuses serial {serial} with other "
                        "content than the one seen before",
                        where=str(self.path / MARKS_FILE),
                        fix="sign every new manifest with a higher --serial",
                    )
                if seen == serial:
                    return
            marks[distribution] = {"serial": serial, "digest": digest}
            fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".serials.")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(marks, handle, indent=1, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path / MARKS_FILE)
