"""The verifier: is this installed distribution exactly what a trusted signer published?

The steps, numbered as in docs/security.md ("How a backend is verified") and marked `# (N)`
in the code:

 (0) how the distribution is installed: normally, or editable (its code elsewhere);
 (1) the manifests that may describe it are found (policy's manifest_dirs, its .dist-info);
 (2) each is permission-checked, read, and is a signed envelope of the manifest type;
 (3) its signatures meet the threshold: distinct trusted keys, bound to this backend, not
     revoked (`signatures.py`);
 (4) only then are its signed bytes parsed; they must name this backend, distribution and
     version, the role it plays (the backend's vLLM plugin, or its runtime), the vLLM entry
     points installed, and the way it is installed (editable or not);
 (5) it has not expired (one clock reading for the whole verification);
 (6) its serial is not below the highest seen on this machine, nor that serial with other
     content (`rollback.py`);
 (7) of the manifests that passed, the highest serial is taken; an editable install's .pth
     and finder still point where they were signed to, and its sources are protected
     (`editable.py`); every file it lists is present and equal, nothing added, no symlink
     (`tree.py`);
 (8) the install root, each signed package directory and the .dist-info, and every directory
     above them up to /, are root's or the serving user's and writable by neither group nor
     others (`permissions.py`);
 (9) nothing at the install root or elsewhere on sys.path shadows it, and nothing unsigned is
     importable from an editable install's path entry;
 (10) the serial becomes the machine's high-water mark, and the verification record is
     written for the children and for the next restart (`verification_record.py`).

Every path is permission-checked up to / (`permissions.check`), within one
`permissions.remembered()` scope: a directory above several of them is judged once.

The result is a `VerifiedBackend`; the `TrustedSet` is its only consumer.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from .._errors import (
    EditableInstallError,
    ExpiredError,
    FormatError,
    InheritanceError,
    MismatchError,
    NoManifestError,
    SignatureError,
    TrustError,
)
from .._metadata import Distribution, dist_info_dir, install_root, is_editable, normalize
from . import permissions, tree, verification_record
from .manifest import (
    ManifestFacts,
    installed_entry_points,
    manifest_paths,
    top_level_names,
)
from .roles import PLUGIN
from .signatures import Listed, SignatureResult, check_signatures
from .verification_record import VerifiedBackend

# What only a full verification (a first process) needs is imported where it is used, so a
# child that inherits the verification pays nothing for it.
if TYPE_CHECKING:
    from ..selection.policy import TrustSettings
    from .envelope import Envelope
    from .keys import PublicKey
    from .rollback import StateDir


class _Candidate(NamedTuple):
    """A manifest whose signatures and facts passed; its files are still to be checked."""

    path: Path
    root: Path
    key: str  # SHA-256 of the manifest file: names its verification record
    digest: str  # SHA-256 of the signed payload: what rollback marks compare
    listed: list[Listed]  # the manifest's signatures
    signatures: SignatureResult
    facts: ManifestFacts
    files: Mapping[str, tuple[int, str]] | verification_record.FileIndex
    tops: frozenset[str]
    cached: verification_record.Cached | None


class _Passed(NamedTuple):
    """A distribution that passed steps (0)-(9): what step (10) records."""

    best: _Candidate
    label: str
    name: str  # normalised distribution name: its rollback mark
    walked: verification_record.Walked | None  # None: the record proved nothing changed
    hashed: int


def _is_file(path: Path) -> bool:
    """Whether a manifest is at `path`; a refusal when that cannot be told (a newer manifest
    there would be missed)."""
    try:
        return path.is_file()
    except OSError as exc:  # a name too long, a manifest directory the user cannot search
        raise FormatError(f"cannot look for a signed manifest: {exc.strerror}", where=str(path),
                          fix="make each directory in trust.manifest_dirs one the user running "
                          "vLLM can search, with names the system accepts") from None


class Verifier:
    """Verifies distributions under one policy's trust settings and one clock reading."""

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
        if self._keys is None:
            from .keystore import load_keys

            self._keys = load_keys(self.trust.key_dirs, self.trust.strict_permissions)
        return self._keys

    def candidates(self, dist: Distribution) -> list[Path]:
        return [p for p in manifest_paths(self.trust.manifest_dirs, dist) if _is_file(p)]

    def verify(self, backend: str, dist: Distribution, expected: str | None = None,
               role: str = PLUGIN) -> VerifiedBackend:
        """Verify `dist` for `backend`, as its `role` ("plugin" or "runtime"): manifest,
        signatures, freshness, every file.

        `expected`: the SHA-256 of the manifest file a first process verified, when a child
        verifies for itself (activation/child_process.py); another manifest is refused.
        """
        return self.verify_together(backend, [(dist, role, expected)])[0]

    def verify_together(self, backend: str,
                        items: Sequence[tuple[Distribution, str, str | None]]
                        ) -> list[VerifiedBackend]:
        """Verify a backend's distributions as one: its plugin and its runtimes, each
        `(distribution, role, expected)`. Steps (0)-(9) for all of them first; only when
        every one passed does (10) write anything, so a refusal leaves no mark or record."""
        with permissions.remembered():
            passed = [self._check(backend, dist, expected, role)
                      for dist, role, expected in items]
        return [self._commit(p) for p in passed]

    def _check(self, backend: str, dist: Distribution, expected: str | None, role: str
               ) -> _Passed:
        """Steps (0)-(9)."""
        label = f"{dist.name} {dist.version}"
        # (0) How it is installed: an editable install's code lives outside the install root,
        # where the .pth or finder its manifest signs says.
        editable = is_editable(dist, label)
        # (1) The manifests that may describe it.
        candidates = self.candidates(dist)
        if not candidates:
            # Every file looked for, not only the directories: a manifest written under
            # another name, or into a directory this policy does not name, shows as absent.
            looked = manifest_paths(self.trust.manifest_dirs, dist)
            raise NoManifestError(
                f"no signed manifest found for {label} (backend '{backend}'): looked for "
                + ", ".join(map(str, looked)),
                where=f"[trust] manifest_dirs ({', '.join(self.trust.manifest_dirs)}) and "
                "the distribution's .dist-info",
                fix=f"sign it at image build: tt-meta sign --dist {dist.name} --backend "
                f"{backend} --key KEY.key writes the last of these; --out may name any other",
            )
        # (2)-(6) for each; a failing candidate is kept to explain, if none passes.
        errors: list[TrustError] = []
        accepted: list[_Candidate] = []
        for path in candidates:
            try:
                accepted.append(self._check_manifest(path, backend, dist, label, editable,
                                                     role))
            except TrustError as error:
                errors.append(error)
        if not accepted:
            if len(errors) == 1:
                raise errors[0]
            raise TrustError(
                f"none of the {len(errors)} manifests found for {label} verifies: "
                + "; ".join(f"{e.where}: {e.summary}" for e in errors),
                fix=errors[0].fix, code=errors[0].code,
            )
        # (7) The newest manifest (in a child verifying for itself: the one its first process
        # verified), and every file it lists.
        if expected is not None:
            found = accepted
            accepted = [c for c in accepted if c.key == expected]
            if not accepted:
                raise InheritanceError(
                    f"this process verified another signed manifest of {label} than the "
                    f"first process: {', '.join(c.key[:12] for c in found)} here, "
                    f"{expected[:12]} there",
                    where=", ".join(str(c.path) for c in found),
                    fix="install the same signed backend (signed once) on every node of "
                    "the server",
                )
        best = max(accepted, key=lambda c: c.facts.serial)
        root, path = best.root, best.path
        layout = best.facts.editable
        sources = {k: Path(v) for k, v in layout.sources.items()} if layout else {}
        fail = tree.Tampered(label, root, sources)
        if layout is not None:
            from .editable import check_installed

            check_installed(layout, root, label, self.trust.strict_permissions)
        cached = best.cached
        walked: verification_record.Walked | None = None
        if cached is not None and tree.unchanged(root, cached):
            hashed = 0  # every directory and signed file as the last verification found it
        else:
            own = {path.relative_to(root).as_posix()} if path.is_relative_to(root) else set()
            walked, hashed = tree.check_files(best.files, root, own,
                                              cached.walked() if cached else None, fail, sources)
        # (8) Who can change the install: hashing catches a file changed in place, not a
        # directory another user can write (a module or a shared library swapped after it
        # was hashed, or the whole install renamed away and replaced).
        self._check_install(root, dist, best.tops)
        # (9) Nothing shadows it (an editable install's path entry: checked in (7)).
        tree.check_install_root(root, dist, best.tops, fail, sources,
                                layout.pth if layout else None)
        return _Passed(best, label, normalize(dist.name), walked, hashed)

    def _commit(self, passed: _Passed) -> VerifiedBackend:
        """(10) The new high-water mark, and the record."""
        best, walked, cached = passed.best, passed.walked, passed.best.cached
        root, path, facts = best.root, best.path, best.facts
        self.state.advance(passed.label, passed.name, facts.serial, best.digest, str(path))
        if cached is not None and walked is None and not best.signatures.fresh:
            index, index_identity = cached.files, cached.file_identity  # the record stands
        else:
            if walked is None:
                assert cached is not None  # only a valid record lets the walk be skipped
                walked = cached.walked()
            index, index_identity = verification_record.store(
                self.trust.state_dir, best.key, best.digest, root, best.tops, facts,
                best.listed, best.signatures.verified, dict(best.files.items()), walked)
        return VerifiedBackend(
            distribution=facts.distribution, version=facts.version, serial=facts.serial,
            signers=best.signatures.signers, manifest_path=path, manifest_digest=best.key,
            index_identity=index_identity, root=root, files=index, top_levels=best.tops,
            entry_points=facts.entry_points, files_checked=True, role=facts.role,
            hashed_files=passed.hashed, expires=facts.expires,
        )

    def _check_install(self, root: Path, dist: Distribution, tops: frozenset[str]) -> None:
        """(8) The install root, each signed top-level package directory and the
        distribution's .dist-info, and every directory above them up to /: not every file
        (a file changed in place is hashed). A top-level module, or an editable install's
        package (its sources are checked in (7)), has no directory here: only the root is
        judged for it."""
        strict = self.trust.strict_permissions
        permissions.check(root, "backend's install root", strict)
        for name in sorted(tops):
            permissions.check(root / name, "backend's package directory", strict)
        info = dist_info_dir(dist)
        if info is not None:
            permissions.check(info, "backend's .dist-info directory", strict)

    def _check_manifest(self, path: Path, backend: str, dist: Distribution, label: str,
                        editable: bool, role: str) -> _Candidate:
        from .envelope import MANIFEST_TYPE, MAX_ENVELOPE_BYTES, parse_envelope
        from .manifest import parse_manifest

        where = str(path)
        # (2) Permissions, bytes, and a signed envelope of the manifest type. A record of
        # these exact bytes spares decoding them again.
        permissions.check(path.parent, "manifest directory", self.trust.strict_permissions)
        permissions.check(path, "manifest", self.trust.strict_permissions)
        try:
            with open(path, "rb") as handle:
                raw = handle.read(MAX_ENVELOPE_BYTES + 1)  # more is refused: never all of it
        except OSError as exc:
            raise FormatError(f"cannot read the manifest: {exc.strerror}", where=where,
                              fix="check the file's permissions") from None
        if len(raw) > MAX_ENVELOPE_BYTES:
            raise FormatError("the signed manifest is larger than 64 MiB", where=where,
                              fix="use a file written by `tt-meta sign`")
        envelope: Envelope | None = None

        def parsed() -> Envelope:
            nonlocal envelope
            if envelope is None:
                envelope = parse_envelope(raw, where)
                if envelope.payload_type != MANIFEST_TYPE:
                    raise MismatchError(
                        f"the signed document is a {envelope.payload_type!r}, not a manifest",
                        where=where,
                        fix="put the backend's manifest here, made by `tt-meta sign`",
                    )
            return envelope

        key = hashlib.sha256(raw).hexdigest()
        root = install_root(dist)
        cached = verification_record.load(self.trust.state_dir, key, root,
                                          self.trust.strict_permissions)
        if cached is not None:
            digest, listed, known = cached.payload_digest, cached.listed, cached.verified
        else:
            document = parsed()
            digest = hashlib.sha256(document.payload).hexdigest()
            listed = [(s.keyid, s.sig) for s in document.signatures]
            known = frozenset()
        # (3) The threshold.
        trust = self.trust
        signatures = check_signatures(
            listed, backend, self.keys(), frozenset(k.lower() for k in trust.signers_for(backend)),
            frozenset(trust.revoked_keys), trust.threshold, known, lambda: parsed().pae())
        if not signatures.ok:
            detail = "; ".join(signatures.notes) or "it carries no signature"
            raise SignatureError(
                f"the manifest has {len(signatures.signers)} valid signature(s) from distinct "
                f"keys bound to backend '{backend}', {trust.threshold} needed: {detail}",
                where=where,
                fix=f"sign with a key listed under [trust.signers] {backend} = [...] whose "
                ".pub file is in a trusted key directory",
            )
        # (4) Only verified bytes are parsed; they must be about this distribution.
        files: Mapping[str, tuple[int, str]] | verification_record.FileIndex
        if cached is not None:
            facts, files, tops = cached.facts, cached.files, cached.tops
        else:
            manifest = parse_manifest(parsed().payload, where)
            facts = manifest.facts()
            files = {f.path: (f.size, f.sha256) for f in manifest.files}
            tops = top_level_names(files)
        for what, signed, installed in (
            ("backend", facts.backend, backend),
            ("distribution", normalize(facts.distribution), normalize(dist.name)),
            ("version", facts.version, str(dist.version)),
        ):
            if signed != installed:
                raise MismatchError(
                    f"the manifest was signed for {what} {signed!r}, but {installed!r} is "
                    f"being verified ({label})",
                    where=where, fix="use the manifest made for this distribution and version",
                )
        if facts.role != role:
            raise MismatchError(
                f"the manifest was signed for {label} as backend '{backend}''s {facts.role}, "
                f"but it is being verified as the backend's {role}",
                where=where,
                fix=f"sign {dist.name} as what it is: tt-meta sign --dist {dist.name} --backend "
                f"{backend} (its role follows from the backend: its plugin distribution or "
                "its runtime)")
        if editable and facts.editable is None:
            raise EditableInstallError(
                f"{label} is an editable install, but its manifest was signed for a normal "
                "install", where=where,
                fix="sign the editable install as it is (tt-meta sign), or install the backend "
                "from the wheel that was signed")
        if facts.editable is not None and not editable:
            raise MismatchError(
                f"the manifest was signed for an editable install of {label}, but it is "
                "installed normally", where=where,
                fix="use the manifest made for this install, or sign the installed backend")
        if facts.entry_points != installed_entry_points(dist):
            raise MismatchError(
                f"the vLLM entry points installed for {label} differ from the signed ones",
                where=where, fix="reinstall the backend from the wheel that was signed",
            )
        # (5) Freshness, against the one clock reading.
        if facts.expires <= self.now:
            raise ExpiredError(
                f"the manifest for {label} expired at "
                f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(facts.expires))}",
                where=where, fix="sign the backend again (tt-meta sign --expires DAYS)",
            )
        # (6) No rollback.
        self.state.judge(label, normalize(dist.name), facts.serial, digest, where)
        return _Candidate(path, root, key, digest, listed, signatures, facts, files, tops,
                          cached)
