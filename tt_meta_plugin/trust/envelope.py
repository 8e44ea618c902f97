"""Signed envelopes: exact payload bytes, a payload type, and Ed25519 signatures over both.

The format follows DSSE (Dead Simple Signing Envelope): a signature covers the
pre-authentication encoding `PAE(type, payload)`, never a re-serialisation, so no JSON
canonicalisation is needed and a document signed as another type (a policy, say) can never
pass as a manifest. Only the payload bytes that a signature covered are ever parsed.
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
from typing import Any, NamedTuple

from .._errors import FormatError

MANIFEST_TYPE = "application/vnd.tt-meta.manifest+json;version=1"
MAX_ENVELOPE_BYTES = 64 << 20  # a manifest of 50k files is ~8 MB; anything far beyond is hostile
_MAX_SIGNATURES = 16


class Signature(NamedTuple):
    keyid: str
    sig: bytes


class Envelope(NamedTuple):
    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...]

    def pae(self) -> bytes:
        return pae(self.payload_type, self.payload)

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "payloadType": self.payload_type,
                "payload": base64.b64encode(self.payload).decode("ascii"),
                "signatures": [
                    {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode("ascii")}
                    for s in self.signatures
                ],
            },
            indent=1,
        ).encode("utf-8")


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def strict_json(raw: bytes, what: str, where: str) -> Any:
    """Parse JSON that must be UTF-8, without duplicate keys, floats, NaN or deep nesting."""
    fix = "use a file written by `tt-meta sign`; do not edit signed files by hand"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(f"{what} is not UTF-8", where=where, fix=fix) from None

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                raise FormatError(f"{what} has the key '{key}' twice", where=where, fix=fix)
            seen[key] = value
        return seen

    def no_float(text: str) -> Any:
        raise FormatError(f"{what} contains a non-integer number {text}", where=where, fix=fix)

    try:
        return json.loads(text, object_pairs_hook=no_duplicates, parse_float=no_float,
                          parse_constant=no_float)
    except RecursionError:
        raise FormatError(f"{what} is nested too deeply", where=where, fix=fix) from None
    except ValueError as exc:  # JSONDecodeError, or an integer past int()'s digit limit
        raise FormatError(f"{what} is not valid JSON: {exc}", where=where, fix=fix) from None


def parse_envelope(raw: bytes, where: str) -> Envelope:
    fix = "use a file written by `tt-meta sign`"
    if len(raw) > MAX_ENVELOPE_BYTES:
        raise FormatError("the signed manifest is larger than 64 MiB", where=where, fix=fix)
    data = strict_json(raw, "the signed manifest", where)
    if not isinstance(data, dict) or set(data) != {"payloadType", "payload", "signatures"}:
        raise FormatError(
            "the signed manifest is not an envelope with exactly payloadType, payload and "
            "signatures",
            where=where,
            fix=fix,
        )
    kind, payload, signatures = data["payloadType"], data["payload"], data["signatures"]
    if not isinstance(kind, str) or not isinstance(payload, str):
        raise FormatError("payloadType and payload must be strings", where=where, fix=fix)
    if not isinstance(signatures, list) or len(signatures) > _MAX_SIGNATURES:
        raise FormatError(
            f"signatures must be a list of at most {_MAX_SIGNATURES}", where=where, fix=fix
        )
    parsed = []
    for item in signatures:
        if (not isinstance(item, dict) or set(item) != {"keyid", "sig"}
                or not isinstance(item["keyid"], str) or not isinstance(item["sig"], str)):
            raise FormatError("each signature must be {keyid, sig}", where=where, fix=fix)
        parsed.append(Signature(item["keyid"], _b64(item["sig"], where)))
    return Envelope(kind, _b64(payload, where), tuple(parsed))


def _b64(text: str, where: str) -> bytes:
    try:
        data = text.encode("ascii")
        if sys.version_info >= (3, 11):
            # Strict in C; b64decode(validate=True) checks with a regex, ~10 ms per MB.
            return binascii.a2b_base64(data, strict_mode=True)
        return base64.b64decode(data, validate=True)  # pragma: no cover - Python 3.10
    except (binascii.Error, UnicodeEncodeError):
        raise FormatError(
            "the signed manifest holds invalid base64", where=where,
            fix="use a file written by `tt-meta sign`",
        ) from None
