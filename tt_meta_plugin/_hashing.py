"""SHA-256 of many files, at the machine's hashing speed.

`hashlib` releases the GIL while it hashes, so a small thread pool keeps every core busy on a
large backend; small files are read whole in one call to keep per-file Python work low.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

_CHUNK = 1 << 20
_SMALL = 1 << 20


def sha256_file(path: Path | str) -> tuple[int, str]:
    """(size, hex digest) of one file; opened without following a final symlink."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb", buffering=0) as handle:
        size = os.fstat(handle.fileno()).st_size
        if size <= _SMALL:
            data = handle.read()
            return len(data), hashlib.sha256(data).hexdigest()
        digest = hashlib.sha256()
        total = 0
        buffer = bytearray(_CHUNK)
        view = memoryview(buffer)
        while n := handle.readinto(buffer):
            digest.update(view[:n])
            total += n
        return total, digest.hexdigest()


def sha256_files(paths: Sequence[Path | str], workers: int | None = None) -> list[tuple[int, str]]:
    """Hash `paths` in parallel; results in the same order. OSError propagates."""
    workers = workers or min(8, os.cpu_count() or 1)
    if workers == 1 or len(paths) < 2:
        return [sha256_file(p) for p in paths]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(sha256_file, paths, chunksize=64))
