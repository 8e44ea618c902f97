"""What the last full verification of a manifest found, kept so it is not redone needlessly.

One file per verified manifest, `<state_dir>/verified/<SHA-256 of the manifest file>.idx`,
named by the exact bytes of the signed manifest. It serves two readers, and is laid out so
that each reads only what it needs:

- a child process of the same server needs the verified (size, SHA-256) of the few files it
  imports, and the signed entry points it calls. The file starts with a small header (the
  distribution, root, top-level names, signed vLLM entry points) and a table of every
  signed path sorted by its bytes, fixed-width entries, searched in place (`FileIndex`): the
  child maps the file and never builds a per-file structure, so its cost does not grow with
  the backend. For an editable install the header also says where its sources are
  (top-level name -> directory, as signed): the child's import guard takes them from there.
  The parent binds the file by its identity and metadata (device, inode, size, mtime_ns,
  ctime_ns), carried in the decision; the file is only ever replaced atomically, so any
  other change moves its ctime and the child refuses it. The child also checks who owns it
  and who may write it, as for every file that decides what is trusted.
- a later first process (a server restart) reads the rest: the payload's digest and signed
  facts (so the manifest need not be decoded and parsed again), its signatures and which of
  them verified, and the identity and metadata at verification time of every directory walked and
  every signed file, packed per directory. When every directory is unchanged (no entry added,
  removed or renamed: their mtime and ctime say so) and every file's identity and metadata
  are equal, nothing is hashed again. Any difference means the full walk and hashing of what
  changed. Every other check still runs.

The file lives under the state directory's permission rules and is written atomically.
"""

from __future__ import annotations

import marshal
import mmap
import os
import struct
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final

from .._errors import InheritanceError
from . import permissions

if TYPE_CHECKING:  # a child reads only the head, and needs no manifest module
    from .manifest import ManifestFacts

SUBDIR = "verified"
_MAGIC = b"tt-meta verified 6\n"  # 6: the facts carry the manifest's role
_U32 = struct.Struct("<I")
_ENTRY = struct.Struct("<IIQ32s")  # path offset in the blob, path length, size, SHA-256
STAT = struct.Struct("<QQQqq")  # device, inode, size, mtime_ns, ctime_ns

Identity = tuple[int, ...]  # device, inode, size, mtime_ns, ctime_ns
#: A record of the largest manifest accepted (64 MiB, some 400k files) is well below this.
MAX_RECORD_BYTES = 256 << 20


def identity(info: os.stat_result) -> Identity:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def index_path(state_dir: str, key: str) -> Path:
    return Path(state_dir) / SUBDIR / f"{key}.idx"


def locate(root: Path, sources: Mapping[str, Path], rel: str) -> Path:
    """Where the signed path `rel` is: under the install root, or, when its first component
    is an editable install's source, there."""
    first, sep, rest = rel.partition("/")
    source = sources.get(first)
    if source is None:
        return root / rel
    return source / rest if sep else source


def relative(root: Path, sources: Mapping[str, Path], path: Path) -> str | None:
    """The signed path a resolved file path stands for, or None when it is in no verified
    location (a file at the install root under a name whose source lives elsewhere is not
    the signed one)."""
    for name, source in sources.items():
        if path == source:
            return name
        if path.is_relative_to(source):
            return f"{name}/{path.relative_to(source).as_posix()}"
    if not path.is_relative_to(root):
        return None
    rel = path.relative_to(root).as_posix()
    return None if rel.partition("/")[0] in sources else rel


class FileIndex:
    """Signed path -> (size, SHA-256 hex), looked up in a record's sorted table in place;
    and where the signed paths of an editable install's sources are (`sources`)."""

    __slots__ = ("_blob", "_buf", "_count", "_table", "sources")

    def __init__(self, buf: bytes | mmap.mmap, table: int, count: int, blob: int,
                 sources: Mapping[str, Path] | None = None) -> None:
        self._buf, self._table, self._count, self._blob = buf, table, count, blob
        #: top-level name (or module file) -> its absolute path; empty for a normal install
        self.sources: Final[Mapping[str, Path]] = sources or {}

    def __len__(self) -> int:
        return self._count

    def _entry(self, i: int) -> tuple[bytes, int, bytes]:
        offset, length, size, digest = _ENTRY.unpack_from(self._buf, self._table + i * 48)
        start = self._blob + offset
        return self._buf[start:start + length], size, digest

    def get(self, path: str) -> tuple[int, str] | None:
        key = path.encode("utf-8", "surrogateescape")
        low, high = 0, self._count
        while low < high:
            mid = (low + high) // 2
            name, size, digest = self._entry(mid)
            if name < key:
                low = mid + 1
            elif name > key:
                high = mid
            else:
                return size, digest.hex()
        return None

    def items(self) -> Iterator[tuple[str, tuple[int, str]]]:
        for i in range(self._count):
            name, size, digest = self._entry(i)
            yield name.decode("utf-8", "surrogateescape"), (size, digest.hex())


class VerifiedBackend:
    """A distribution proven equal to its signed manifest. Nothing unverified is in here.

    Made only by the verifier (first process) or from the verification record it wrote
    (child), and held by the process's `TrustedSet`. A plain class with __slots__: every vLLM
    process creates one, and a class statement costs far less than a dataclass's.
    """

    __slots__ = (
        "distribution",
        "entry_points",
        "expires",
        "files",
        "files_checked",
        "hashed_files",
        "index_identity",
        "manifest_digest",
        "manifest_path",
        "role",
        "root",
        "serial",
        "signers",
        "top_levels",
        "version",
    )

    def __init__(self, *, distribution: str, version: str, serial: int,
                 signers: tuple[str, ...], manifest_path: Path | None, manifest_digest: str,
                 index_identity: Identity, root: Path, files: FileIndex,
                 top_levels: frozenset[str], entry_points: dict[str, dict[str, str]],
                 files_checked: bool, role: str, hashed_files: int = 0,
                 expires: int | None = None) -> None:
        #: the distribution's name as signed, and its version
        self.distribution: Final = distribution
        self.version: Final = version
        #: what it is to its backend, as signed: "plugin" (what vLLM loads) or "runtime"
        self.role: Final = role
        #: the manifest's serial, and the key ids whose signatures counted
        self.serial: Final = serial
        self.signers: Final = signers
        #: where the manifest was found (None in a child, which did not read it)
        self.manifest_path: Final = manifest_path
        #: SHA-256 of the signed manifest file: it names the verification record
        self.manifest_digest: Final = manifest_digest
        #: identity and metadata of that record, which a child binds it by
        self.index_identity: Final = index_identity
        #: the install root, and every signed path's (size, SHA-256) under it (or under the
        #: editable install's sources, `files.sources`)
        self.root: Final = root
        self.files: Final = files
        #: the importable top-level names the manifest covers: the import guard's domain
        self.top_levels: Final = top_levels
        #: the signed vLLM entry points, group -> {name: "module:attr"}: the only ones called
        self.entry_points: Final = entry_points
        #: False in a child: it loaded its parent's verification instead of checking files
        self.files_checked: Final = files_checked
        #: how many files this verification hashed (the rest were proven unchanged)
        self.hashed_files: Final = hashed_files
        #: when the manifest expires (Unix time); None in a child, which does not read it
        self.expires: Final = expires

    @property
    def sources(self) -> Mapping[str, Path]:
        """An editable install's sources (top-level name -> path); empty otherwise."""
        return self.files.sources

    def locate(self, rel: str) -> Path:
        return locate(self.root, self.files.sources, rel)

    def relative(self, path: Path) -> str | None:
        return relative(self.root, self.files.sources, path)


class Walked:
    """Identity and metadata of what a verification walked: directories and signed files."""

    __slots__ = ("dirs", "files")

    def __init__(self, dirs: dict[str, Identity], files: dict[str, Identity]) -> None:
        self.dirs, self.files = dirs, files


# (directory, its identity, signed names in it, their packed identities); the directory ""
# holds the signed files at the install root, which is not walked (identity None), as is the
# root's own __pycache__ (shared with other distributions).
Group = tuple[str, Identity | None, tuple[str, ...], bytes]


class Cached:
    """A previous verification of one manifest at one install root."""

    __slots__ = ("facts", "file_identity", "files", "groups", "listed", "payload_digest",
                 "tops", "verified")

    def __init__(self, payload_digest: str, facts: ManifestFacts,
                 listed: list[tuple[str, bytes]], verified: frozenset[tuple[str, bytes]],
                 tops: frozenset[str], files: FileIndex, groups: list[Group],
                 file_identity: Identity) -> None:
        self.payload_digest, self.facts, self.tops = payload_digest, facts, tops
        self.files, self.groups, self.file_identity = files, groups, file_identity
        # The manifest's signatures as (key id, signature), and those that verified.
        self.listed, self.verified = listed, verified

    def walked(self) -> Walked:
        """The directory and file identities as plain mappings (for the full walk)."""
        dirs: dict[str, Identity] = {}
        files: dict[str, Identity] = {}
        for folder, ident, names, packed in self.groups:
            if ident is not None:
                dirs[folder] = ident
            prefix = f"{folder}/" if folder else ""
            for name, values in zip(names, STAT.iter_unpack(packed), strict=True):
                files[prefix + name] = values
        return Walked(dirs, files)


def _encode(key: str, payload_digest: str, root: Path, tops: frozenset[str],
            facts: ManifestFacts, listed: list[tuple[str, bytes]],
            verified: frozenset[tuple[str, bytes]], files: Mapping[str, tuple[int, str]],
            walked: Walked) -> bytes:
    editable = facts.editable
    sources = dict(editable.sources) if editable is not None else {}
    head = marshal.dumps((key, str(root), sorted(tops), facts.distribution, facts.version,
                          facts.serial, facts.entry_points, sources, facts.role))
    names = sorted(p.encode("utf-8", "surrogateescape") for p in files)
    table, blob, offset = bytearray(), bytearray(), 0
    for name in names:
        size, digest = files[name.decode("utf-8", "surrogateescape")]
        table += _ENTRY.pack(offset, len(name), size, bytes.fromhex(digest))
        blob += name
        offset += len(name)
    grouped: dict[str, list[str]] = {folder: [] for folder in walked.dirs}
    grouped.setdefault("", [])
    for path in files:
        folder, _, base = path.rpartition("/")
        grouped.setdefault(folder, []).append(base)  # a folder not walked: the root's __pycache__
    groups = [
        (folder, walked.dirs.get(folder) if folder else None, tuple(sorted(members)),
         b"".join(STAT.pack(*walked.files[f"{folder}/{m}" if folder else m])
                  for m in sorted(members)))
        for folder, members in grouped.items()
    ]
    # marshal writes plain tuples only: the Editable inside the facts becomes one.
    plain = (*facts[:-1], tuple(editable) if editable is not None else None)
    body = marshal.dumps((payload_digest, plain, listed, sorted(verified), groups))
    return b"".join((_MAGIC, _U32.pack(len(head)), head, _U32.pack(len(names)), bytes(table),
                     _U32.pack(len(blob)), bytes(blob), body))


class Head:
    """The start of a record: what a child needs, read without the rest."""

    __slots__ = ("distribution", "entry_points", "index", "key", "role", "root", "serial",
                 "tops", "version")

    def __init__(self, key: str, root: str, tops: list[str], distribution: str, version: str,
                 serial: int, entry_points: dict[str, dict[str, str]], index: FileIndex,
                 role: str) -> None:
        self.key, self.root, self.tops, self.index = key, Path(root), frozenset(tops), index
        self.distribution, self.version, self.serial = distribution, version, serial
        self.entry_points, self.role = entry_points, role


def _decode_head(buf: bytes | mmap.mmap) -> tuple[Head, int]:
    """(the head, offset of the body); ValueError when malformed."""
    if buf[:len(_MAGIC)] != _MAGIC:
        raise ValueError("not a verification record of this format")
    at = len(_MAGIC)
    (length,) = _U32.unpack_from(buf, at)
    fields = marshal.loads(buf[at + 4:at + 4 + length])
    at += 4 + length
    (count,) = _U32.unpack_from(buf, at)
    table = at + 4
    at = table + count * _ENTRY.size
    (blob_length,) = _U32.unpack_from(buf, at)
    blob = at + 4
    if blob + blob_length > len(buf):
        raise ValueError("truncated")
    key, root, tops, distribution, version, serial, eps, sources, role = fields
    located = {name: Path(path) for name, path in sources.items()}
    return (Head(key, root, tops, distribution, version, serial, eps,
                 FileIndex(buf, table, count, blob, located), role), blob + blob_length)


def load(state_dir: str, key: str, root: Path, strict: bool) -> Cached | None:
    """A previous verification of the manifest file whose SHA-256 is `key`, at this root,
    if there is a usable one."""
    path = index_path(state_dir, key)
    try:
        with open(path, "rb") as handle:
            info = os.fstat(handle.fileno())
            if info.st_size > MAX_RECORD_BYTES:
                return None  # not one tt_meta wrote: verify from scratch and rewrite it
            raw = handle.read(MAX_RECORD_BYTES + 1)
    except OSError:
        return None
    permissions.check(path, "verification cache", strict)
    try:
        head, body = _decode_head(raw)
        payload_digest, facts, listed, verified, groups = marshal.loads(raw[body:])
        from .manifest import Editable, ManifestFacts

        *plain, layout = facts
        facts = ManifestFacts._make([*plain, Editable(*layout) if layout is not None else None])
        listed = [(keyid, sig) for keyid, sig in listed]
        verified = frozenset((keyid, sig) for keyid, sig in verified)
    except (EOFError, ValueError, TypeError, struct.error):
        return None  # unreadable: verify from scratch and rewrite it
    if head.key != key or head.root != root:
        return None
    return Cached(payload_digest, facts, listed, verified, head.tops, head.index, groups,
                  identity(info))


def store(state_dir: str, key: str, payload_digest: str, root: Path, tops: frozenset[str],
          facts: ManifestFacts, listed: list[tuple[str, bytes]],
          verified: frozenset[tuple[str, bytes]], files: Mapping[str, tuple[int, str]],
          walked: Walked) -> tuple[FileIndex, Identity]:
    """Write the record atomically; return its index and the identity children bind it by."""
    folder = Path(state_dir) / SUBDIR
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    raw = _encode(key, payload_digest, root, tops, facts, listed, verified, files, walked)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".idx.")
    try:
        view = memoryview(raw)
        while view:
            view = view[os.write(fd, view):]
        os.replace(tmp, index_path(state_dir, key))
        written = os.fstat(fd)  # after the rename, which moves the ctime
    finally:
        os.close(fd)
    return _decode_head(raw)[0].index, identity(written)


def load_for_child(state_dir: str, key: str, expected: Identity, strict: bool) -> Head:
    """The parent's verification, exactly as it recorded it, or a refusal."""
    path = index_path(state_dir, key)
    fix = "do not change tt_meta's state directory while a vLLM server starts"
    permissions.check(path, "verification record", strict)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise InheritanceError(f"cannot read the parent's verification record: {exc.strerror}",
                               where=str(path), fix=fix) from None
    try:
        if identity(os.fstat(fd)) != tuple(expected):
            raise InheritanceError("the parent's verification record changed after the parent "
                             "wrote it", where=str(path), fix=fix)
        # Mapped, not read: a child looks up only the files it imports.
        buf = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    finally:
        os.close(fd)
    try:
        head, _body = _decode_head(buf)
    except (EOFError, ValueError, TypeError, struct.error):
        raise InheritanceError("the parent's verification record is unreadable", where=str(path),
                               fix=fix) from None
    if head.key != key:
        raise InheritanceError("the verification record is not the one the decision names",
                               where=str(path), fix=fix)
    return head
