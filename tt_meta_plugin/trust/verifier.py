"""The verifier: is this installed backend exactly what a trusted signer published?

Checks, in order: the distribution is a normal install (not editable); a manifest exists; it
is a manifest (payload type), signed by enough distinct trusted keys that are bound to this
backend and not revoked; it was made for this backend, distribution and version, with the
entry points installed; it has not expired (one clock reading for the whole check); its serial
is not below the highest seen on this machine; and every file is present and equal, nothing is
added, nothing is a symlink or outside the install root. RECORD is never read.

The result is a `VerifiedBackend`, the one object that holds what was verified; only it is
handed to the import guard and to delegation.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import stat
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .._errors import TrustError
from .._metadata import Distribution, dist_info_dir, install_root, normalize, refuse_editable
from . import permissions, verification_record
from .hashing import NOFOLLOW, sha256_files
from .verification_record import VerifiedBackend

# What only a full verification (a first process) needs is imported where it is used, so a
# child that inherits the verification pays nothing for it.
if TYPE_CHECKING:
    from ..selection.policy import TrustSettings
    from .envelope import Envelope
    from .keys import PublicKey
    from .rollback import StateDir


def package_keys_dir() -> Path | None:
    """The repository's keys/ as installed with the package (tt_meta_plugin.keys)."""
    spec = importlib.util.find_spec("tt_meta_plugin.keys")
    locations = list(spec.submodule_search_locations or []) if spec else []
    return Path(locations[0]) if locations else None

IN_DIST_MANIFEST = "tt_meta.manifest.json"
VLLM_GROUP_PREFIX = "vllm."


class _Candidate(NamedTuple):
    """A manifest whose signatures and facts passed; its files are still to be checked."""

    path: Path
    root: Path
    key: str  # SHA-256 of the manifest file: names its verification record
    digest: str  # SHA-256 of the signed payload: what rollback marks compare
    signers: tuple[str, ...]
    # The manifest's (key id, signature) pairs, those that verified, and whether any
    # needed checking now
    listed: list[tuple[str, bytes]]
    verified: frozenset[tuple[str, bytes]]
    newly_verified: bool
    facts: dict[str, Any]
    files: Mapping[str, tuple[int, str]] | verification_record.FileIndex
    tops: frozenset[str]
    cached: verification_record.Cached | None


def manifest_file_names(dist_name: str, version: str) -> tuple[str, str]:
    norm = normalize(dist_name)
    return f"{norm}-{version}.manifest.json", f"{norm}.manifest.json"


def installed_entry_points(dist: Distribution) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for ep in dist.entry_points:
        if ep.group.startswith(VLLM_GROUP_PREFIX):
            found.setdefault(ep.group, {})[ep.name] = ep.value
    return found


def top_level_names(files: Iterable[str]) -> frozenset[str]:
    """Importable top-level names: packages (first directory) and root-level modules."""
    names = set()
    for path in files:
        first, sep, _ = path.partition("/")
        if sep and not first.endswith((".dist-info", ".data")):
            names.add(first)
        elif not sep and path.endswith((".py", ".so", ".pyd")):
            names.add(path.split(".", 1)[0])
    return frozenset(names)


class Verifier:
    """Verifies backends under one policy's trust settings and one clock reading."""

    def __init__(self, trust: TrustSettings, now: float | None = None) -> None:
        self.trust = trust
        self.now = int(time.time() if now is None else now)
        self._state: StateDir | None = None
        self._keys: dict[str, PublicKey] | None = None

    @property
    def state(self) -> StateDir:
        if self._state is None:
            from .rollback import StateDir

            self._state = StateDir(self.trust.state_dir, self.trust.strict_permissions)
        return self._state

    def keys(self) -> dict[str, PublicKey]:
        """Trusted public keys: this package's keys/ and the policy's key_dirs."""
        if self._keys is None:
            # Imported here: cryptography is needed only where signatures are checked (the
            # first process), not in the children that inherit its verification.
            from .keys import PUBLIC_SUFFIX, load_public

            keys: dict[str, PublicKey] = {}
            shipped = package_keys_dir()
            for folder in ([shipped] if shipped else []) + [Path(d) for d in self.trust.key_dirs]:
                if not folder.is_dir():
                    raise TrustError("a key directory named by the policy does not exist",
                                     where=str(folder), fix="create it, or correct trust.key_dirs")
                for path in sorted(folder.glob("*" + PUBLIC_SUFFIX)):
                    permissions.check(path, "public key", self.trust.strict_permissions)
                    key = load_public(path)
                    keys[key.keyid] = key
            self._keys = keys
        return self._keys

    # -- finding manifests -------------------------------------------------------------------

    def candidates(self, dist: Distribution) -> list[Path]:
        names = manifest_file_names(dist.name, str(dist.version))
        found = [Path(d) / n for d in self.trust.manifest_dirs for n in names]
        info = dist_info_dir(dist)
        if info is not None:
            found.append(info / IN_DIST_MANIFEST)
        return [p for p in found if p.is_file()]

    def verify(self, backend: str, dist: Distribution) -> VerifiedBackend:
        """Verify `dist` for `backend`: manifest, signatures, freshness, every file."""
        label = f"{dist.name} {dist.version}"
        refuse_editable(dist, label)
        candidates = self.candidates(dist)
        if not candidates:
            places = ", ".join(self.trust.manifest_dirs)
            raise TrustError(
                f"no signed manifest found for {label} (backend '{backend}')",
                where=f"{places} and the distribution's .dist-info",
                fix=f"sign it at image build: tt-meta sign --dist {dist.name} --backend "
                f"{backend} --key KEY.key",
            )
        errors: list[TrustError] = []
        accepted: list[_Candidate] = []
        for path in candidates:
            try:
                accepted.append(self._check_manifest(path, backend, dist))
            except TrustError as error:
                errors.append(error)
        if not accepted:
            if len(errors) == 1:
                raise errors[0]
            raise TrustError(
                f"none of the {len(errors)} manifests found for {label} verifies: "
                + "; ".join(f"{e.where}: {e.summary}" for e in errors),
                fix=errors[0].fix,
            )
        best = max(accepted, key=lambda c: c.facts["serial"])
        root, path, digest, tops = best.root, best.path, best.digest, best.tops
        fail = _Tampered(label, root)
        cached = best.cached
        walked: verification_record.Walked | None = None
        if cached is not None and _unchanged(root, cached):
            hashed = 0  # every directory and signed file as the last verification found it
        else:
            own = {path.relative_to(root).as_posix()} if path.is_relative_to(root) else set()
            walked, hashed = _check_files(best.files, root, own,
                                          cached.walked() if cached else None, fail)
        _check_install_root(root, dist, tops, fail)
        serial = best.facts["serial"]
        self.state.check_and_raise(normalize(dist.name), serial, digest)
        if cached is not None and walked is None and not best.newly_verified:
            index, index_identity = cached.files, cached.file_identity  # the record stands
        else:
            if walked is None:
                assert cached is not None  # only a valid record lets the walk be skipped
                walked = cached.walked()
            index, index_identity = verification_record.store(
                self.trust.state_dir, best.key, digest, root, tops, best.facts, best.listed,
                best.verified, dict(best.files.items()), walked)
        return VerifiedBackend(
            distribution=best.facts["distribution"], version=best.facts["version"],
            serial=serial, signers=best.signers, manifest_path=path,
            manifest_digest=best.key, index_identity=index_identity, root=root,
            files=index, top_levels=tops, files_checked=True, hashed_files=hashed,
        )

    def _check_manifest(self, path: Path, backend: str, dist: Distribution) -> _Candidate:
        from .envelope import MANIFEST_TYPE, parse_envelope
        from .manifest import parse_manifest

        where = str(path)
        permissions.check(path, "manifest", self.trust.strict_permissions)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise TrustError(f"cannot read the manifest: {exc.strerror}", where=where,
                             fix="check the file's permissions") from None
        envelope: Envelope | None = None

        def parsed() -> Envelope:
            nonlocal envelope
            if envelope is None:
                envelope = parse_envelope(raw, where)
                if envelope.payload_type != MANIFEST_TYPE:
                    raise TrustError(
                        f"the signed document is a {envelope.payload_type!r}, not a manifest",
                        where=where,
                        fix="put the backend's manifest here, made by `tt-meta sign`",
                    )
            return envelope

        key = hashlib.sha256(raw).hexdigest()
        root = install_root(dist)
        cached = verification_record.load(self.trust.state_dir, key, root,
                                      self.trust.strict_permissions)
        files: Mapping[str, tuple[int, str]] | verification_record.FileIndex
        if cached is not None:
            # These exact manifest bytes were verified before: what they say is in the record,
            # and they are decoded again only if a signature must be checked now.
            digest, listed, known = cached.payload_digest, cached.listed, cached.verified
            facts, files, tops = cached.facts, cached.files, cached.tops
        else:
            document = parsed()
            digest = hashlib.sha256(document.payload).hexdigest()
            listed = [(s.keyid, s.sig) for s in document.signatures]
            known = frozenset()
        signers, verified, fresh = self._check_signatures(
            listed, backend, where, known, lambda: parsed().pae())
        if cached is None:
            # Only verified bytes are parsed.
            manifest = parse_manifest(parsed().payload, where)
            facts = manifest.facts()
            files = {f.path: (f.size, f.sha256) for f in manifest.files}
            tops = top_level_names(files)
        label = f"{dist.name} {dist.version}"
        for what, signed, installed in (
            ("backend", facts["backend"], backend),
            ("distribution", normalize(facts["distribution"]), normalize(dist.name)),
            ("version", facts["version"], str(dist.version)),
        ):
            if signed != installed:
                raise TrustError(
                    f"the manifest was signed for {what} {signed!r}, but {installed!r} is "
                    f"being verified ({label})",
                    where=where, fix="use the manifest made for this distribution and version",
                )
        if facts["expires"] <= self.now:
            raise TrustError(
                f"the manifest for {label} expired at "
                f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(facts['expires']))}",
                where=where, fix="sign the backend again (tt-meta sign --expires DAYS)",
            )
        if facts["entry_points"] != installed_entry_points(dist):
            raise TrustError(
                f"the vLLM entry points installed for {label} differ from the signed ones",
                where=where, fix="reinstall the backend from the wheel that was signed",
            )
        mark = self.state.mark(normalize(dist.name))
        if mark is not None and facts["serial"] < mark[0]:
            raise TrustError(
                f"rollback: the manifest for {label} has serial {facts['serial']}, but serial "
                f"{mark[0]} was already seen on this machine",
                where=where,
                fix="install the backend version of the newest manifest, with that manifest",
            )
        return _Candidate(path, root, key, digest, signers, listed, verified, fresh, facts,
                          files, tops, cached)

    def _check_signatures(self, listed: list[tuple[str, bytes]], backend: str, where: str,
                          known: frozenset[tuple[str, bytes]], message: Callable[[], bytes]
                          ) -> tuple[tuple[str, ...], frozenset[tuple[str, bytes]], bool]:
        """(distinct valid signer key ids, the (key id, signature) pairs that verified,
        whether any needed checking now). `known` holds pairs this machine already verified
        over these exact manifest bytes (the record is named by their digest); a key id is
        the SHA-256 of the key's bytes, so such a pair needs no cryptography again.
        `message()` gives the signed bytes when one does. Trust, revocation, binding and the
        threshold are judged anew every time."""
        keys, trust = self.keys(), self.trust
        bound = {k.lower() for k in trust.signers_for(backend)}
        verified: set[tuple[str, bytes]] = set()
        fresh = False
        valid: list[str] = []
        notes: list[str] = []
        for number, (keyid, sig) in enumerate(listed, 1):
            hint = keyid.lower()
            key = keys.get(hint)
            short = f"signature {number} (key id {hint[:16]})"
            pair = (hint, sig)
            if key is None:
                notes.append(f"{short}: not a trusted key")
                continue
            if pair not in known:
                if not key.verifies(sig, message()):
                    notes.append(f"{short}: does not verify with that key")
                    continue
                fresh = True
            verified.add(pair)
            if hint in trust.revoked_keys:
                notes.append(f"{short}: the key is revoked")
            elif hint not in bound:
                notes.append(f"{short}: the key is trusted but not bound to backend "
                             f"'{backend}' in [trust.signers]")
            elif hint in valid:
                notes.append(f"{short}: the same key counted once only")
            else:
                valid.append(hint)
        if len(valid) < trust.threshold:
            detail = "; ".join(notes) if notes else "it carries no signature"
            raise TrustError(
                f"the manifest has {len(valid)} valid signature(s) from distinct keys bound to "
                f"backend '{backend}', {trust.threshold} needed: {detail}",
                where=where,
                fix=f"sign with a key listed under [trust.signers] {backend} = [...] whose "
                ".pub file is in a trusted key directory",
            )
        return tuple(valid), frozenset(verified), fresh


class _Tampered:
    """Builds the refusal for one file of one distribution."""

    def __init__(self, label: str, root: Path) -> None:
        self.label, self.root = label, root

    def __call__(self, summary: str, path: str) -> TrustError:
        return TrustError(f"{self.label}: {summary}", where=str(self.root / path),
                          fix="reinstall the backend from the wheel that was signed, or sign "
                          "the installed files again if this change is intended")


def _unchanged(root: Path, cached: verification_record.Cached) -> bool:
    """Is every walked directory and signed file as the cached verification found it?

    A directory whose identity, mtime and ctime are unchanged has had no entry added, removed
    or renamed, so it needs no listing; each signed file is stat'ed relative to its
    directory's descriptor (one path component, the cheapest stat there is) and compared with
    its recorded identity and metadata, packed per directory."""
    pack = verification_record.STAT.pack
    flags = os.O_RDONLY | os.O_DIRECTORY
    base = os.open(root, flags)
    try:
        for folder, ident, names, packed in cached.groups:
            try:
                fd = os.open(folder, flags | NOFOLLOW, dir_fd=base) if folder else base
            except OSError:
                return False
            try:
                if ident is not None and verification_record.identity(os.fstat(fd)) != tuple(ident):
                    return False
                infos = [os.stat(name, dir_fd=fd, follow_symlinks=False) for name in names]
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


def _check_files(expected: Mapping[str, tuple[int, str]] | verification_record.FileIndex,
                 root: Path, exempt: set[str], cached: verification_record.Walked | None,
                 fail: _Tampered) -> tuple[verification_record.Walked, int]:
    """Every signed file present and equal, nothing added. Returns what was walked and how
    many files had to be hashed (those not unchanged since a cached verification)."""
    signed = dict(expected.items())
    walked = _scan(root, set(signed) | exempt, fail)
    found = walked.files
    base = str(root)
    previous = cached.files if cached else {}
    stale: list[str] = []
    for rel, (size, _digest) in signed.items():  # paths were checked by parse_manifest
        ident = found.get(rel)
        if ident is None:
            full = f"{base}/{rel}"
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
    hashed = sha256_files([f"{base}/{rel}" for rel in stale], [signed[r][0] for r in stale])
    modified = [rel for rel, (_, digest) in zip(stale, hashed, strict=True)
                if digest != signed[rel][1]]
    if modified:
        # All of them, not the first: what was tampered with is the operator's next question.
        others = modified[1:6] + (["..."] if len(modified) > 6 else [])
        also = f"; also modified: {', '.join(others)}" if others else ""
        raise fail(f"a signed file was modified (its SHA-256 differs){also}", modified[0])
    return walked, len(stale)


def _scan(root: Path, signed: set[str], fail: _Tampered) -> verification_record.Walked:
    """lstat every directory and file under the distribution's directories, refusing
    symlinks and files the manifest does not list, in one pass. A directory is stat'ed
    before it is listed, so a change made while it is listed shows at the next check."""
    dirs: dict[str, verification_record.Identity] = {}
    found: dict[str, verification_record.Identity] = {}
    identity = verification_record.identity
    tops = sorted({p.split("/", 1)[0] for p in signed if "/" in p})
    pending = []
    for top in tops:
        try:
            info = os.lstat(root / top)
        except FileNotFoundError:
            continue  # a missing directory: its files are reported missing
        if stat.S_ISLNK(info.st_mode):
            raise fail("a package directory is a symlink", top)
        dirs[top] = identity(info)
        pending.append((root / top, top))
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


def _check_install_root(root: Path, dist: Distribution, tops_py: frozenset[str],
                        fail: _Tampered) -> None:
    """No second record of the distribution, no .pth naming it, no shadow on sys.path."""
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
        if name.endswith(".pth") and any(t.lower() in lowered for t in (norm, *tops_py)):
            raise fail("a .pth file that names this backend is present", name)
    for entry_path in sys.path:
        other = Path(entry_path or ".").resolve()
        if other == root or not other.is_dir():
            continue
        for top in tops_py:
            if (other / top).exists() or (other / f"{top}.py").exists():
                raise fail(f"another copy or namespace portion of '{top}' is on sys.path",
                           str(other / top))


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
