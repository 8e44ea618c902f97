"""Only verified bytes execute: the import guard for a verified backend's packages.

Hashing a backend's files is not enough on its own. Python prefers a `__pycache__/*.pyc`
whose header matches the source's mtime and size, so tampered bytecode can run although every
`.py` hashes clean; and a file can be swapped between the check and the import. So, once a
backend is verified, a finder placed first on `sys.meta_path` takes over every import under
the backend's top-level packages: it locates modules only in the verified install root, reads
each source file once, compares those bytes with the manifest, and compiles exactly those
bytes. Cached bytecode is never read or written. A compiled extension module is hashed just
before it is loaded; the window between that hash and the dynamic loader's own open remains
(docs/security.md says how the permission checks narrow it).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import logging
import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from pathlib import Path
from types import CodeType, ModuleType
from typing import TYPE_CHECKING

from .._log import log

if TYPE_CHECKING:
    from .verification_record import VerifiedBackend


class TamperedImport(ImportError):
    """A module of the verified backend does not match its manifest."""


def _refuse(message: str) -> TamperedImport:
    # vLLM may turn an ImportError into its own traceback; the operator still sees why at ERROR.
    log(logging.ERROR, "tt_meta refused to import backend code: %s", message)
    return TamperedImport(message)


class _VerifiedSourceLoader(importlib.machinery.SourceFileLoader):
    def __init__(self, fullname: str, path: str, guard: VerifiedImportGuard) -> None:
        super().__init__(fullname, path)
        self.guard = guard

    def get_data(self, path: str) -> bytes:
        with open(path, "rb") as handle:
            data = handle.read()
        self.guard.check_bytes(path, data)
        return data

    def get_code(self, fullname: str) -> CodeType:
        # Compile the verified bytes; never consult or write __pycache__.
        source = self.get_data(self.path)
        code: CodeType = compile(source, self.path, "exec", dont_inherit=True)
        return code


class _VerifiedExtensionLoader(importlib.machinery.ExtensionFileLoader):
    def __init__(self, fullname: str, path: str, guard: VerifiedImportGuard) -> None:
        super().__init__(fullname, path)
        self.guard = guard

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        with open(self.path, "rb") as handle:
            self.guard.check_bytes(self.path, handle.read())
        module: ModuleType = super().create_module(spec)
        return module


class VerifiedImportGuard(MetaPathFinder):
    def __init__(self, verified: VerifiedBackend) -> None:
        self.verified = verified
        self.root = verified.root
        self.loaded: list[str] = []

    def check_bytes(self, path: str, data: bytes) -> None:
        rel = Path(path).resolve().relative_to(self.root).as_posix()
        entry = self.verified.files.get(rel)
        name = self.verified.distribution
        if entry is None:
            raise _refuse(f"{rel} is not in the verified manifest of {name}")
        size, digest = entry
        if len(data) != size or hashlib.sha256(data).hexdigest() != digest:
            raise _refuse(f"{rel} does not match the verified manifest of {name} (changed "
                          "after verification)")
        self.loaded.append(rel)

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname.partition(".")[0] not in self.verified.top_levels:
            return None
        search = [str(self.root)] if "." not in fullname else list(path or [])
        spec = importlib.machinery.PathFinder.find_spec(fullname, search)
        if spec is None:
            return None
        origin = spec.origin
        if origin is None or not spec.has_location:  # a namespace package: no code of its own
            return spec
        resolved = Path(origin).resolve()
        if not resolved.is_relative_to(self.root):
            raise _refuse(f"{fullname} resolves to {origin}, outside the verified "
                                 f"install root {self.root}")
        if origin.endswith(tuple(importlib.machinery.SOURCE_SUFFIXES)):
            spec.loader = _VerifiedSourceLoader(fullname, origin, self)
            spec.cached = None
        elif origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
            spec.loader = _VerifiedExtensionLoader(fullname, origin, self)
        else:
            raise _refuse(f"{fullname} would load from {origin}, which is neither "
                                 "verified source nor an extension module")
        return spec


_installed: VerifiedImportGuard | None = None


def install(verified: VerifiedBackend) -> VerifiedImportGuard:
    """Put the guard first on sys.meta_path (once per process) and return it."""
    global _installed
    same = (verified.manifest_digest, verified.index_identity)
    if _installed is not None and (_installed.verified.manifest_digest,
                                   _installed.verified.index_identity) == same:
        return _installed
    if _installed is not None:
        sys.meta_path.remove(_installed)
    guard = VerifiedImportGuard(verified)
    sys.meta_path.insert(0, guard)
    _installed = guard
    return guard
