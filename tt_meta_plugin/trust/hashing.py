"""SHA-256 of many files, at the machine's hashing speed.

`hashlib` releases the GIL while it hashes more than 2 KiB, so one thread per core keeps every
core busy. Work is split into one contiguous share per thread (balanced by size) rather than
one task per file: for many small files the per-task bookkeeping of a pool would cost more
than the hashing.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence

_CHUNK = 1 << 20
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def sha256_file(path: str) -> tuple[int, str]:
    """(size, hex digest) of one file; a final symlink is refused by the open itself."""
    fd = os.open(path, os.O_RDONLY | NOFOLLOW)
    try:
        digest = hashlib.sha256()
        total = 0
        while chunk := os.read(fd, _CHUNK):
            digest.update(chunk)
            total += len(chunk)
        return total, digest.hexdigest()
    finally:
        os.close(fd)


def sha256_files(paths: Sequence[str], sizes: Sequence[int] | None = None,
                 workers: int | None = None) -> list[tuple[int, str]]:
    """Hash `paths` (with their expected `sizes`, for balancing) in parallel; same order."""
    workers = min(workers or os.cpu_count() or 1, len(paths))
    if workers <= 1:
        return [sha256_file(p) for p in paths]
    sizes = sizes or [1] * len(paths)
    shares: list[list[int]] = [[] for _ in range(workers)]
    loads = [0] * workers
    for index in sorted(range(len(paths)), key=lambda i: -sizes[i]):
        lightest = loads.index(min(loads))
        shares[lightest].append(index)
        loads[lightest] += sizes[index] + 4096  # per-file cost beyond the bytes
    results: list[tuple[int, str] | None] = [None] * len(paths)
    errors: list[BaseException] = []

    def work(share: list[int]) -> None:
        try:
            for i in share:
                results[i] = sha256_file(paths[i])
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(share,)) for share in shares[1:]]
    for thread in threads:
        thread.start()
    work(shares[0])
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return [r for r in results if r is not None]
