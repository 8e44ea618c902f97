"""Ed25519 keys: generating them, reading them, and the key ids derived from them.

A key id is the SHA-256 of the raw 32-byte public key, in hex. Key ids in an envelope are only
hints: a signature is accepted for a key only when it verifies with that key's bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .._errors import ConfigError, KeyFileError

# cryptography is imported only where a key is generated, a signature made or checked for the
# first time: reading public keys and their ids needs none of it, so a process that finds the
# signatures already verified on this machine (see verification_record.py) never loads it.
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

PUBLIC_SUFFIX = ".pub"
PRIVATE_SUFFIX = ".key"
MAX_KEY_BYTES = 16 << 10
# An Ed25519 public key in DER SubjectPublicKeyInfo is always these 12 bytes and the 32 raw
# key bytes (RFC 8410): SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING { 0, key } }.
_ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")


def key_id(public: Ed25519PublicKey) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


class PublicKey:
    """A trusted Ed25519 public key: its raw bytes, its id (their SHA-256) and its file."""

    __slots__ = ("keyid", "path", "raw")

    def __init__(self, keyid: str, raw: bytes, path: Path) -> None:
        self.keyid, self.raw, self.path = keyid, raw, path

    def verifies(self, signature: bytes, message: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        if len(signature) != 64:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, message)
        except InvalidSignature:
            return False
        return True


def generate(prefix: Path) -> str:
    """Write PREFIX.key (mode 0600) and PREFIX.pub; return the key id."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.generate()
    secret = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key_path = prefix.with_name(prefix.name + PRIVATE_SUFFIX)
    pub_path = prefix.with_name(prefix.name + PUBLIC_SUFFIX)
    for path in (key_path, pub_path):
        if path.exists():
            raise ConfigError(f"{path} already exists", where=str(path),
                              fix="choose another --out prefix; keys are never overwritten")
    # O_EXCL and 0600 from the start: the secret is never readable by others, not even briefly.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(secret)
    pub_path.write_bytes(public)
    return key_id(private.public_key())


def _read_small(path: Path, what: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_KEY_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read the {what}: {exc.strerror}", where=str(path),
                          fix="check the path and its permissions") from None
    if len(data) > MAX_KEY_BYTES:
        raise ConfigError(f"the {what} is too large to be an Ed25519 key", where=str(path),
                          fix="use a file written by `tt-meta keygen`")
    return data


def load_private(path: Path) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    data = _read_small(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ConfigError("the private key is not an unencrypted PEM key", where=str(path),
                          fix="use a PREFIX.key file written by `tt-meta keygen`") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError("the private key is not an Ed25519 key", where=str(path),
                          fix="use a PREFIX.key file written by `tt-meta keygen`")
    return key


def load_public(path: Path) -> PublicKey:
    data = _read_small(path, "public key")
    der = _pem_body(data, "PUBLIC KEY")
    if der is None or not _is_der_sequence(der):
        raise KeyFileError("the public key file is not a PEM public key", where=str(path),
                           fix="use a PREFIX.pub file written by `tt-meta keygen`")
    if len(der) != len(_ED25519_SPKI_PREFIX) + 32 or not der.startswith(_ED25519_SPKI_PREFIX):
        raise KeyFileError("the public key is not an Ed25519 key (the only scheme accepted)",
                           where=str(path), fix="use a PREFIX.pub file written by `tt-meta keygen`")
    raw = der[len(_ED25519_SPKI_PREFIX):]
    return PublicKey(hashlib.sha256(raw).hexdigest(), raw, path)


def _pem_body(data: bytes, label: str) -> bytes | None:
    """The DER bytes of a PEM file holding one block labelled `label`, or None."""
    try:
        lines = [line.strip() for line in data.decode("ascii").splitlines() if line.strip()]
    except UnicodeDecodeError:
        return None
    if len(lines) < 3 or lines[0] != f"-----BEGIN {label}-----" or \
            lines[-1] != f"-----END {label}-----":
        return None
    try:
        return base64.b64decode("".join(lines[1:-1]), validate=True)
    except (binascii.Error, ValueError):
        return None


def _is_der_sequence(der: bytes) -> bool:
    """Is `der` exactly one DER SEQUENCE (tag and length consistent with its size)?"""
    if len(der) < 2 or der[0] != 0x30:
        return False
    length = der[1]
    if length < 0x80:
        return length == len(der) - 2
    count = length & 0x7F
    return 1 <= count <= 4 and int.from_bytes(der[2:2 + count], "big") == len(der) - 2 - count
