"""The signature threshold: which signatures on a manifest count, and whether enough do.

A signature counts when its key is trusted (in the key store), it verifies over the manifest's
signed bytes, the key is bound to this backend in `[trust.signers]`, is not revoked, and was
not counted already. Key ids in a manifest are hints: a key id names the SHA-256 of a key's
bytes, and the signature must verify with that very key. The result is a small object, as
python-tuf's `VerificationResult`: who signed, why the others did not count, and whether the
threshold is met.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from .keys import PublicKey

#: A signature as a manifest lists it: (key id, signature bytes).
Listed = tuple[str, bytes]


class SignatureResult:
    """What checking a manifest's signatures found."""

    __slots__ = ("fresh", "notes", "signers", "threshold", "verified")

    def __init__(self, threshold: int, signers: tuple[str, ...], notes: tuple[str, ...],
                 verified: frozenset[Listed], fresh: bool) -> None:
        #: how many distinct bound keys must have signed
        self.threshold: Final = threshold
        #: key ids of the signatures that count, in the manifest's order
        self.signers: Final = signers
        #: why each other signature does not count
        self.notes: Final = notes
        #: the (key id, signature) pairs that verified cryptographically, counted or not
        self.verified: Final = verified
        #: whether any signature needed cryptography now (not known from the record)
        self.fresh: Final = fresh

    @property
    def ok(self) -> bool:
        return len(self.signers) >= self.threshold


def check_signatures(listed: list[Listed], backend: str, keys: Mapping[str, PublicKey],
                     bound: frozenset[str], revoked: frozenset[str], threshold: int,
                     known: frozenset[Listed], message: Callable[[], bytes]
                     ) -> SignatureResult:
    """Judge every listed signature. `known` holds pairs this machine already verified over
    these exact manifest bytes (the record is named by their digest): a key id is the SHA-256
    of the key's bytes, so such a pair needs no cryptography again. `message()` gives the
    signed bytes when a signature must be checked now. Trust, revocation, binding and the
    threshold are judged anew every time."""
    verified: set[Listed] = set()
    fresh = False
    signers: list[str] = []
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
        if hint in revoked:
            notes.append(f"{short}: the key is revoked")
        elif hint not in bound:
            notes.append(f"{short}: the key is trusted but not bound to backend "
                         f"'{backend}' in [trust.signers]")
        elif hint in signers:
            notes.append(f"{short}: the same key counted once only")
        else:
            signers.append(hint)
    return SignatureResult(threshold, tuple(signers), tuple(notes), frozenset(verified), fresh)
