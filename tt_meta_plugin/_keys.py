"""Ed25519 keys: generating them, reading them, and the key ids derived from them.

A key id is the SHA-256 of the raw 32-byte public key, in hex. Key ids in an envelope are only
hints: a signature is accepted for a key only when it verifies with that key's bytes.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ._errors import ConfigError, TrustError

PUBLIC_SUFFIX = ".pub"
PRIVATE_SUFFIX = ".key"
_MAX_KEY_BYTES = 16 << 10


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


class PublicKey(NamedTuple):
    keyid: str
    key: Ed25519PublicKey
    path: Path

    def verifies(self, signature: bytes, message: bytes) -> bool:
        if len(signature) != 64:
            return False
        try:
            self.key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


def generate(prefix: Path) -> str:
    """Write PREFIX.key (mode 0600) and PREFIX.pub; return the key id."""
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
            data = handle.read(_MAX_KEY_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read the {what}: {exc.strerror}", where=str(path),
                          fix="check the path and its permissions") from None
    if len(data) > _MAX_KEY_BYTES:
        raise ConfigError(f"the {what} is too large to be an Ed25519 key", where=str(path),
                          fix="use a file written by `tt-meta keygen`")
    return data


def load_private(path: Path) -> Ed25519PrivateKey:
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
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise TrustError("the public key file is not a PEM public key", where=str(path),
                         fix="use a PREFIX.pub file written by `tt-meta keygen`") from None
    if not isinstance(key, Ed25519PublicKey):
        raise TrustError("the public key is not an Ed25519 key (the only scheme accepted)",
                         where=str(path), fix="use a PREFIX.pub file written by `tt-meta keygen`")
    return PublicKey(key_id(key), key, path)
