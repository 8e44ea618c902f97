"""The one owner of what a process trusts (python-tuf's `TrustedMetadataSet` is the model).

Every verified fact of a vLLM process flows through its `TrustedSet`, and the set is fed only
by verification: in a first process it *establishes* trust (the verifier checks a
distribution against its signed manifest and writes the verification record), in a child it
*inherits* it (each record its first process wrote, bound by identity, permission-checked).
It is the only producer of what delegation calls: a backend's platform function and general
plugins are the entry points of its signed manifest, and their modules must be inside the
verified distribution, so the import guard sees every byte they run. An entry_points.txt read
outside verification is never called. Every distribution it holds stays guarded for the life
of the process: the backend, and a third-party backend plugin's own distribution.

When the policy waives signatures, the set holds an `UnsafeNoVerification` instead and holds
no verified distribution; the waiver warns each time it is used.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

from .._errors import InheritanceError, MismatchError, NoManifestError, TamperedError
from .._metadata import (
    Distribution,
    find_distribution,
    install_root,
    normalize,
    refuse_editable,
)
from . import import_guard, verification_record
from .roles import PLUGIN, RUNTIME
from .verification_record import VerifiedBackend

if TYPE_CHECKING:
    from ..selection.policy import TrustSettings
    from .waiver import UnsafeNoVerification

#: One verified distribution as the decision names it for children: [name, SHA-256 of its
#: manifest file, then its verification record's identity].
RecordRef = tuple[str | int, ...]


class TrustedSet:
    """What this process trusts, and the entry points it may call."""

    __slots__ = ("_by_dist", "_expected", "_trust", "waiver")

    def __init__(self, trust: TrustSettings | None, waiver: UnsafeNoVerification | None,
                 expected: Sequence[RecordRef] | None = None) -> None:
        #: the policy's [trust] settings (a first process); None in a child that inherits
        self._trust: Final = trust
        #: set when the policy waives signatures; then nothing is verified
        self.waiver: Final = waiver
        #: a child verifying for itself: normalised name -> the manifest SHA-256 its first
        #: process verified; a distribution it does not name may not be verified here
        self._expected: Final = (None if expected is None else
                                 {normalize(str(ref[0])): str(ref[1]) for ref in expected})
        #: normalised distribution name -> what was verified of it
        self._by_dist: dict[str, VerifiedBackend] = {}

    # -- a first process ---------------------------------------------------------------

    def establish(self, backend: str, dist: Distribution) -> VerifiedBackend | None:
        """Verify `dist` as `backend`'s plugin distribution and guard it; None under the
        waiver."""
        return self.establish_together(backend, [(dist, PLUGIN)])[0]

    def establish_together(self, backend: str, items: Sequence[tuple[Distribution, str]]
                           ) -> list[VerifiedBackend | None]:
        """Verify a backend's distributions as one, each `(distribution, role)` ("plugin":
        what vLLM loads; "runtime": the device runtime it imports), and guard them: none is
        recorded unless all pass. None for each under the waiver."""
        if self.waiver is not None:
            return [None] * len(items)
        todo = [(d, r) for d, r in items if normalize(d.name) not in self._by_dist]
        if todo:
            assert self._trust is not None, "a child inherits; it does not verify"
            from .verifier import Verifier  # first processes only

            for verified in Verifier(self._trust).verify_together(
                    backend, [(d, r, self._expected_for(d)) for d, r in todo]):
                self._add(verified)
        return [self._by_dist[normalize(d.name)] for d, _ in items]

    def _expected_for(self, dist: Distribution) -> str | None:
        """In a child verifying for itself, the manifest its first process verified."""
        if self._expected is None:
            return None
        expected = self._expected.get(normalize(dist.name))
        if expected is None:
            raise InheritanceError(
                f"the first process verified no manifest of {dist.name} {dist.version}",
                fix="start every process of one server with the same policy and backends")
        return expected

    def records(self) -> tuple[RecordRef, ...]:
        """What children need to inherit this set (see `RecordRef`)."""
        return tuple((v.distribution, v.manifest_digest, *v.index_identity)
                     for v in self._by_dist.values())

    # -- a child -----------------------------------------------------------------------

    def inherit(self, state_dir: str, strict: bool, records: Sequence[RecordRef],
                where: str) -> None:
        """Take over what the first process verified, from the records it wrote."""
        for ref in records:
            name, key, identity = str(ref[0]), str(ref[1]), tuple(int(x) for x in ref[2:])
            head = verification_record.load_for_child(state_dir, key, identity, strict)
            dist = find_distribution(head.distribution)
            if (normalize(head.distribution) != normalize(name) or dist is None
                    or str(dist.version) != head.version):
                found = f"{dist.name} {dist.version}" if dist else "no such distribution"
                raise InheritanceError(
                    f"the first process verified {head.distribution} {head.version}, but this "
                    f"process finds {found}",
                    where=where, fix="install the same backend version on every node",
                )
            label = f"{dist.name} {dist.version}"
            refuse_editable(dist, label)
            here = install_root(dist)
            if head.root != here:
                raise InheritanceError(
                    f"{label} is installed at {here}, but the first process verified it at "
                    f"{head.root}",
                    where=str(head.root),
                    fix="start every process of one server in one environment",
                )
            self._add(VerifiedBackend(
                distribution=head.distribution, version=head.version, serial=head.serial,
                signers=(), manifest_path=None, manifest_digest=key, index_identity=identity,
                root=head.root, files=head.index, top_levels=head.tops,
                entry_points=head.entry_points, files_checked=False, role=head.role))

    # -- both --------------------------------------------------------------------------

    def _add(self, verified: VerifiedBackend) -> None:
        # The guard checks every import of the distribution from now on; a module of it that
        # is already imported was loaded without that check (by code that ran before tt_meta).
        # Except an editable install's setuptools finder, which its .pth imports at start-up by
        # design: verification compares the finder on disk with what was signed, statically.
        early = sorted(m for m in sys.modules if m.partition(".")[0] in verified.top_levels
                       and not m.startswith("__editable__"))
        if early:
            module = sys.modules[early[0]]
            raise TamperedError(
                f"{early[0]} of {verified.distribution} was imported before tt_meta verified "
                "it, so the bytes that ran were never checked (code that runs before vLLM: a "
                "sitecustomize.py or usercustomize.py, a .pth file, or a script importing the "
                "backend first)",
                where=str(getattr(module, "__file__", None) or verified.root),
                fix="remove what imports the backend before vLLM starts (look for "
                "sitecustomize.py, usercustomize.py and *.pth files on sys.path, e.g. with "
                "`python -X importtime`)",
            )
        import_guard.protect(verified)
        self._by_dist[normalize(verified.distribution)] = verified

    def verified(self, dist: Distribution) -> VerifiedBackend | None:
        return self._by_dist.get(normalize(dist.name))

    def runtime_roots(self) -> list[Path]:
        """Where the verified runtime distributions are installed."""
        return [v.root for v in self._by_dist.values() if v.role == RUNTIME]

    def forbid_unverified_runtime(self, backend: str, modules: Sequence[str]) -> None:
        """From now on, a runtime module of `backend` that no verified runtime covers is
        refused if anything tries to import it (one put on sys.path later, say)."""
        for module in modules:
            if not any(module in v.top_levels for v in self._by_dist.values()):
                import_guard.forbid(module, backend)

    def runtime_labels(self) -> tuple[str, ...]:
        """The verified runtime distributions (ttnn, pjrt-plugin-tt), "name version" each."""
        return tuple(f"{v.distribution} {v.version}" for v in self._by_dist.values()
                     if v.role == RUNTIME)

    def entry_points(self, dist: Distribution) -> dict[str, dict[str, str]]:
        """The vLLM entry points delegation may call for `dist`: the signed ones, each in a
        module of the verified distribution (under the waiver: the installed ones)."""
        if self.waiver is not None:
            return self.waiver.entry_points(dist)
        verified = self._by_dist.get(normalize(dist.name))
        if verified is None:
            raise InheritanceError(
                f"{dist.name} {dist.version} was not verified in this process",
                fix="report this: tt_meta must verify a backend before calling it")
        for group, eps in verified.entry_points.items():
            for name, value in eps.items():
                top = value.partition(":")[0].strip().partition(".")[0]
                if top not in verified.top_levels:
                    raise MismatchError(
                        f"the signed entry point {name} = {value} in '{group}' of "
                        f"{verified.distribution} names a module outside the signed files",
                        where=str(verified.manifest_path or verified.root),
                        fix="sign a backend whose entry points are its own modules",
                    )
        return verified.entry_points


def refuse_unregistered_runtime(backend: str, modules: Sequence[str],
                                distributions: Sequence[str], roots: Sequence[Path]) -> None:
    """A runtime module importable here from outside every runtime root in `roots` (a
    first process: the installed runtime distributions, before verification; a child: the
    ones its parent verified) has no manifest and would run unverified: a refusal. Looked
    up, never imported. One found inside a root is that runtime's (step (9) and the import
    guard refuse a copy elsewhere on sys.path)."""
    for module in modules:
        spec = import_guard.find_elsewhere(module)
        if spec is None:
            continue
        where = spec.origin or next(iter(spec.submodule_search_locations or ()), module)
        found = Path(where).resolve()
        if any(found.is_relative_to(root / module) or found.parent == root for root in roots):
            continue
        first = distributions[0] if distributions else module
        names = ", ".join(distributions) or "none declared"
        raise NoManifestError(
            f"runtime module '{module}' of backend '{backend}' is importable, but no "
            f"verified runtime distribution ({names}) provides it: it has no signed "
            "manifest and would run unverified",
            where=where,
            fix=f"install the runtime from its wheel and sign it (tt-meta sign --dist {first} "
            f"--backend {backend}) in every environment of the server, or take it off "
            "sys.path; on a development machine only, require_runtime_signatures = false in "
            "[trust]")
