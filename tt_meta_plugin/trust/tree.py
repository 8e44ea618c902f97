"""The installed files of a distribution against its manifest: every signed file present and
equal, nothing added, no symlink, nothing shadowing it elsewhere on sys.path.

`unchanged()` proves, from a verification record, that nothing changed since (identity and
metadata of every walked directory and signed file); `check_files()` walks and hashes what
may have. RECORD is never read: it is one more signed file. An editable install's sources
are walked where they are (`verification_record.locate`), as if under the install root.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Mapping
from pathlib import Path

from .._errors import TamperedError
from .._metadata import Distribution, dist_info_dir, normalize
from . import verification_record
from .hashing import NOFOLLOW, sha256_files
from .verification_record import locate


class Tampered:
    """Builds the refusal for one file of one distribution."""

    def __init__(self, label: str, root: Path, sources: Mapping[str, Path] | None = None
                 ) -> None:
        self.label, self.root, self.sources = label, root, sources or {}

    def __call__(self, summary: str, path: str) -> TamperedError:
        return TamperedError(
            f"{self.label}: {summary}", where=str(locate(self.root, self.sources, path)),
            fix="reinstall the backend from the wheel that was signed, or sign the installed "
            "files again if this change is intended")


def unchanged(root: Path, cached: verification_record.Cached) -> bool:
    """Is every walked directory and signed file as the cached verification found it?

    A directory whose identity, mtime and ctime are unchanged has had no entry added, removed
    or renamed, so it needs no listing; each signed file is stat'ed relative to its
    directory's descriptor (one path component, the cheapest stat there is) and compared with
    its recorded identity and metadata, packed per directory."""
    pack = verification_record.STAT.pack
    flags = os.O_RDONLY | os.O_DIRECTORY
    sources = cached.files.sources
    base = os.open(root, flags)
    try:
        for folder, ident, names, packed in cached.groups:
            try:
                if folder.partition("/")[0] in sources:  # an editable install's source
                    fd = os.open(locate(root, sources, folder), flags | NOFOLLOW)
                else:
                    fd = os.open(folder, flags | NOFOLLOW, dir_fd=base) if folder else base
            except OSError:
                return False
            try:
                if ident is not None and verification_record.identity(os.fstat(fd)) != tuple(ident):
                    return False
                infos = [os.stat(locate(root, sources, name) if name in sources else name,
                                 dir_fd=None if name in sources else fd, follow_symlinks=False)
                         for name in names]
            except OSError:
                return False
            finally:
                if fd != base:
                    os.close(fd)
            now = b"".join([pack(i.st_dev, i.st_ino, i.st_size, i.st_mtime_ns, i.st_ctime_ns)
                            for i in infos])
            if now != packed:
                return False
    finally:
        os.close(base)
    return True


def check_files(expected: Mapping[str, tuple[int, str]] | verification_record.FileIndex,
                 root: Path, exempt: set[str], cached: verification_record.Walked | None,
                 fail: Tampered, sources: Mapping[str, Path] | None = None
                 ) -> tuple[verification_record.Walked, int]:
    """Every signed file present and equal, nothing added. Returns what was walked and how
    many files had to be hashed (those not unchanged since a cached verification)."""
    signed = dict(expected.items())
    sources = sources or {}
    walked = scan(root, set(signed) | exempt, fail, sources)
    found = walked.files
    previous = cached.files if cached else {}
    stale: list[str] = []
    for rel, (size, _digest) in signed.items():  # paths were checked by parse_manifest
        ident = found.get(rel)
        if ident is None:
            full = str(locate(root, sources, rel))
            try:
                info = os.lstat(full)  # a file outside the scanned directories
            except FileNotFoundError:
                raise fail("a signed file is missing", rel) from None
            if os.path.realpath(full) != full:
                raise fail("a signed file's path goes through a symlink", rel)
            if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
                raise fail("a signed file is a symlink or not a regular file", rel)
            ident = found[rel] = verification_record.identity(info)
        if ident[2] != size:
            raise fail(f"a signed file changed size ({size} -> {ident[2]} bytes)", rel)
        if previous.get(rel) != ident:
            stale.append(rel)
    hashed = sha256_files([str(locate(root, sources, rel)) for rel in stale],
                          [signed[r][0] for r in stale])
    modified = [rel for rel, (_, digest) in zip(stale, hashed, strict=True)
                if digest != signed[rel][1]]
    if modified:
        # All of them, not the first: what was tampered with is the operator's next question.
        others = modified[1:6] + (["..."] if len(modified) > 6 else [])
        also = f"; also modified: {', '.join(others)}" if others else ""
        raise fail(f"a signed file was modified (its SHA-256 differs){also}", modified[0])
    return walked, len(stale)


def scan(root: Path, signed: set[str], fail: Tampered,
         sources: Mapping[str, Path] | None = None) -> verification_record.Walked:
    """lstat every directory and file under the distribution's directories, refusing
    symlinks and files the manifest does not list, in one pass. A directory is stat'ed
    before it is listed, so a change made while it is listed shows at the next check. The
    install root's own __pycache__ is shared with other distributions: not walked (its
    signed files are checked one by one)."""
    dirs: dict[str, verification_record.Identity] = {}
    found: dict[str, verification_record.Identity] = {}
    identity = verification_record.identity
    tops = sorted({p.split("/", 1)[0] for p in signed if "/" in p} - {"__pycache__"})
    pending = []
    for top in tops:
        where = locate(root, sources or {}, top)
        try:
            info = os.lstat(where)
        except FileNotFoundError:
            continue  # a missing directory: its files are reported missing
        if stat.S_ISLNK(info.st_mode):
            raise fail("a package directory is a symlink", top)
        dirs[top] = identity(info)
        pending.append((where, top))
    while pending:
        folder, rel_folder = pending.pop()
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for item in entries:
            rel = f"{rel_folder}/{item.name}"
            if item.is_symlink():
                raise fail("a symlink was added among the signed files", rel)
            if item.is_dir(follow_symlinks=False):
                dirs[rel] = identity(item.stat(follow_symlinks=False))
                pending.append((Path(item.path), rel))
            elif rel in signed:
                info = item.stat(follow_symlinks=False)
                if not stat.S_ISREG(info.st_mode):
                    raise fail("a signed file is a symlink or not a regular file", rel)
                found[rel] = identity(info)
            elif not _is_cached_bytecode(rel, signed):
                raise fail("a file that is not in the manifest was added", rel)
    return verification_record.Walked(dirs, found)


def check_install_root(root: Path, dist: Distribution, tops_py: frozenset[str],
                        fail: Tampered, sources: Mapping[str, Path] | None = None,
                        own_pth: str | None = None) -> None:
    """No second record of the distribution, no .pth naming it (but an editable install's
    own, signed one), no shadow on sys.path (a path that resolves to the verified package
    itself, such as an editable install's path entry, is no shadow)."""
    sources = sources or {}
    norm = normalize(dist.name).replace("-", "_")
    info = dist_info_dir(dist)
    own_info = info.name if info is not None else None
    for entry in os.scandir(root):
        name = entry.name
        record_of = normalize(name.split("-", 1)[0].split(".", 1)[0]).replace("-", "_")
        if (name.endswith((".dist-info", ".egg-info", ".egg-link")) and name != own_info
                and record_of == norm):
            raise fail("a second installation record of this distribution is present", name)
        lowered = normalize(name).replace("-", "_")
        if name.endswith(".pth") and name != own_pth and any(
                t.lower() in lowered for t in (norm, *tops_py)):
            raise fail("a .pth file that names this backend is present", name)
    for entry_path in sys.path:
        other = Path(entry_path or ".").resolve()
        if other == root or not other.is_dir():
            continue
        for top in tops_py:
            verified = {sources.get(top), sources.get(f"{top}.py")} - {None}
            for found in (other / top, other / f"{top}.py"):
                if found.exists() and found.resolve() not in verified:
                    raise fail(f"another copy or namespace portion of '{top}' is on sys.path",
                               str(found))


def _is_cached_bytecode(rel: str, signed: set[str]) -> bool:
    """An unsigned `pkg/__pycache__/mod.*.pyc` next to a signed `pkg/mod.py`, written by Python
    after signing: never executed (the import guard compiles verified source), so not an
    extra file. Bytecode present at signing is in the manifest and checked like any file."""
    folder, _, name = rel.rpartition("/")
    parent, _, cache = folder.rpartition("/")
    if cache != "__pycache__" or not name.endswith(".pyc"):
        return False
    module = name.split(".", 1)[0]
    return f"{parent}/{module}.py" in signed
