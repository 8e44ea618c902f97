"""What the last full verification of a manifest found, kept so it is not redone needlessly.

One file per verified manifest, `<state_dir>/verified/<payload sha256>.idx`, holding for every
signed file its identity and metadata at verification time (device, inode, size, mtime_ns,
ctime_ns) and its SHA-256. It serves two readers:

- a later first process (a server restart): a file whose identity and metadata are unchanged
  is not hashed again; any change (content writes always move ctime) means it is. Every other
  check still runs.
- a child process of the same server: the parent records the digest of this file in the
  decision it hands down; the child loads the file, checks that digest, and has the verified
  hashes its import guard needs, without parsing the manifest or walking the tree.

The file lives under the state directory's permission rules; it is written atomically, and it
is `marshal` data (fast to load, and only ever read after its digest or its directory's
permissions were checked).
"""

from __future__ import annotations

import hashlib
import marshal
import os
import tempfile
from pathlib import Path
from typing import Any

from . import _perms
from ._errors import TrustError

_FORMAT = 2
SUBDIR = "verified"

# path -> (dev, ino, size, mtime_ns, ctime_ns, sha256 hex)
Record = tuple[int, int, int, int, int, str]


def index_path(state_dir: str, payload_digest: str) -> Path:
    return Path(state_dir) / SUBDIR / f"{payload_digest}.idx"


def load(state_dir: str, payload_digest: str, root: Path, strict: bool
         ) -> tuple[dict[str, Any], dict[str, Record], frozenset[str], str] | None:
    """(signed facts, file records) of a previous verification of this manifest at this
    root, if any, with the top-level names and the record's own digest. The facts are the
    manifest's fields other than its file list, so a warm process need not parse it again."""
    path = index_path(state_dir, payload_digest)
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    _perms.check(path, "verification cache", strict)
    try:
        fmt, digest, cached_root, _tops, facts, records = marshal.loads(raw)
    except (EOFError, ValueError, TypeError):
        return None  # unreadable: verify from scratch and rewrite it
    if fmt != _FORMAT or digest != payload_digest or cached_root != str(root):
        return None
    if not isinstance(records, dict) or not isinstance(facts, dict):
        return None
    return facts, records, frozenset(_tops), hashlib.sha256(raw).hexdigest()


def store(state_dir: str, payload_digest: str, root: Path, top_levels: frozenset[str],
          facts: dict[str, Any], records: dict[str, Record]) -> str:
    """Write the records atomically; return the SHA-256 of the written bytes."""
    folder = Path(state_dir) / SUBDIR
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    raw = marshal.dumps((_FORMAT, payload_digest, str(root), sorted(top_levels), facts,
                         records))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".idx.")
    with os.fdopen(fd, "wb") as handle:
        handle.write(raw)
    os.replace(tmp, index_path(state_dir, payload_digest))
    return hashlib.sha256(raw).hexdigest()


def load_for_child(state_dir: str, payload_digest: str, index_digest: str
                   ) -> tuple[Path, frozenset[str], dict[str, Record]]:
    """The parent's verification, exactly as it recorded it, or a refusal."""
    path = index_path(state_dir, payload_digest)
    fix = "do not change tt_meta's state directory while a vLLM server starts"
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise TrustError(f"cannot read the parent's verification record: {exc.strerror}",
                         where=str(path), fix=fix) from None
    if hashlib.sha256(raw).hexdigest() != index_digest:
        raise TrustError("the parent's verification record changed after the parent wrote it",
                         where=str(path), fix=fix)
    _fmt, _digest, root, tops, _facts, records = marshal.loads(raw)
    return Path(root), frozenset(tops), records
