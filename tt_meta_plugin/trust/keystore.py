"""The trusted public keys: this package's keys/ and the directories the policy names.

Keys are read without cryptography (an exact Ed25519 SubjectPublicKeyInfo parse, `keys.py`),
so a restart whose signatures were all verified before imports no cryptography at all.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

from .._errors import KeyFileError
from . import permissions

if TYPE_CHECKING:
    from .keys import PublicKey


def package_keys_dir() -> Path | None:
    """The repository's keys/ as installed with the package (tt_meta_plugin.keys)."""
    spec = importlib.util.find_spec("tt_meta_plugin.keys")
    locations = list(spec.submodule_search_locations or []) if spec else []
    return Path(locations[0]) if locations else None


def load_keys(key_dirs: tuple[str, ...], strict: bool) -> dict[str, PublicKey]:
    """Key id -> key, for every `*.pub` in the shipped keys/ and in `key_dirs`; each
    directory and file permission-checked up to / (whoever can write a key directory, or
    one above it, decides what is trusted)."""
    from .keys import PUBLIC_SUFFIX, load_public

    keys: dict[str, PublicKey] = {}
    shipped = package_keys_dir()
    for folder in ([shipped] if shipped else []) + [Path(d) for d in key_dirs]:
        try:
            found = folder.is_dir()
        except OSError as exc:  # a name too long, a directory above it the user cannot search
            raise KeyFileError(f"cannot look in a key directory: {exc.strerror}",
                               where=str(folder), fix="correct trust.key_dirs in the policy, "
                               "or let the user running vLLM search the directory") from None
        if not found:
            raise KeyFileError("a key directory named by the policy does not exist",
                               where=str(folder), fix="create it, or correct trust.key_dirs")
        # Whoever can write (or rename) a key directory, or one above it, adds keys.
        permissions.check(folder, "key directory", strict)
        for path in sorted(folder.glob("*" + PUBLIC_SUFFIX)):
            permissions.check(path, "public key", strict)
            key = load_public(path)
            keys[key.keyid] = key
    return keys
