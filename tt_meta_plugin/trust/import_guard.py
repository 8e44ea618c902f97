"""Only verified bytes execute: the import guard for a verified backend's packages.

Hashing a backend's files is not enough on its own. Python prefers a `__pycache__/*.pyc`
whose header matches the source's mtime and size, so tampered bytecode can run although every
`.py` hashes clean; and a file can be swapped between the check and the import. So, once a
distribution is verified, a finder placed first on `sys.meta_path` takes over every import
under its top-level packages, for the life of the process (one finder for every verified
distribution, keyed by top-level name): it locates modules only in the verified install
root (a signed package that is no longer there is refused, never looked for elsewhere), reads
each source file once, compares those bytes with the manifest, and compiles exactly those
bytes. Cached bytecode is never read or written. An editable install's top-level packages are
located where they were verified, in the project directory its finder or .pth named when it
was signed (the record says where); its own finder never gets to answer for them. A compiled
extension module is hashed just before it is loaded; the window between that hash and the
dynamic loader's own open remains (docs/security.md says how the permission checks narrow it).
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
    def __init__(self, fullname: str, path: str, guard: VerifiedImportGuard,
                 verified: VerifiedBackend) -> None:
        super().__init__(fullname, path)
        self.guard, self.verified = guard, verified

    def get_data(self, path: str) -> bytes:
        with open(path, "rb") as handle:
            data = handle.read()
        self.guard.check_bytes(self.verified, path, data)
        return data

    def get_code(self, fullname: str) -> CodeType:
        # Compile the verified bytes; never consult or write __pycache__.
        source = self.get_data(self.path)
        code: CodeType = compile(source, self.path, "exec", dont_inherit=True)
        return code


class _VerifiedExtensionLoader(importlib.machinery.ExtensionFileLoader):
    def __init__(self, fullname: str, path: str, guard: VerifiedImportGuard,
                 verified: VerifiedBackend) -> None:
        super().__init__(fullname, path)
        self.guard, self.verified = guard, verified

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        with open(self.path, "rb") as handle:
            self.guard.check_bytes(self.verified, self.path, handle.read())
        module: ModuleType = super().create_module(spec)
        return module


class VerifiedImportGuard(MetaPathFinder):
    """The one finder for every verified distribution of this process, keyed by the
    top-level names each one's manifest covers: a distribution verified later (the backend
    after a third-party backend plugin) adds to it and never replaces another."""

    def __init__(self) -> None:
        self.by_top: dict[str, VerifiedBackend] = {}
        self.loaded: list[str] = []

    def protect(self, verified: VerifiedBackend) -> None:
        for top in verified.top_levels:
            other = self.by_top.get(top)
            if other is not None and other.distribution != verified.distribution:
                raise _refuse(f"'{top}' is signed as part of both {other.distribution} and "
                              f"{verified.distribution}")
        for top in verified.top_levels:
            self.by_top[top] = verified

    def check_bytes(self, verified: VerifiedBackend, path: str, data: bytes) -> None:
        rel = verified.relative(Path(path).resolve())
        entry = verified.files.get(rel) if rel is not None else None
        name = verified.distribution
        if rel is None or entry is None:
            raise _refuse(f"{rel} is not in the verified manifest of {name}")
        size, digest = entry
        if len(data) != size or hashlib.sha256(data).hexdigest() != digest:
            raise _refuse(f"{rel} does not match the verified manifest of {name} (changed "
                          "after verification)")
        self.loaded.append(rel)

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        verified = self.by_top.get(fullname.partition(".")[0])
        if verified is None:
            return None
        if "." not in fullname:
            spec = _top_level_spec(fullname, verified)
            if spec is None:
                # Signed, yet not where it was verified: never fall through to another copy
                # of the same name elsewhere on sys.path.
                source = (verified.sources.get(fullname)
                          or verified.sources.get(f"{fullname}.py"))
                if source is not None:
                    raise _refuse(f"{fullname} is signed as part of {verified.distribution} "
                                  f"but is no longer in its verified editable source {source}")
                raise _refuse(f"{fullname} is signed as part of {verified.distribution} but "
                              f"is no longer in its verified install root {verified.root}")
        else:
            inside = [p for p in (path or [])
                      if verified.relative(Path(p).resolve()) is not None]
            spec = importlib.machinery.PathFinder.find_spec(fullname, inside)
            if spec is None:
                # Not in the verified package: no other finder may look for it elsewhere
                # (a portion added to the package's __path__ is not verified).
                raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        origin = spec.origin
        if origin is None or not spec.has_location:  # a namespace package: no code of its own
            return spec
        resolved = Path(origin).resolve()
        if verified.relative(resolved) is None:
            raise _refuse(f"{fullname} resolves to {origin}, outside the verified "
                          f"install root {verified.root}")
        if origin.endswith(tuple(importlib.machinery.SOURCE_SUFFIXES)):
            spec.loader = _VerifiedSourceLoader(fullname, origin, self, verified)
            spec.cached = None
        elif origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
            spec.loader = _VerifiedExtensionLoader(fullname, origin, self, verified)
        else:
            raise _refuse(f"{fullname} would load from {origin}, which is neither "
                          "verified source nor an extension module")
        return spec


def _top_level_spec(fullname: str, verified: VerifiedBackend
                    ) -> importlib.machinery.ModuleSpec | None:
    """A top-level module's spec, from its verified location: the install root, or the
    source an editable install's finder or .pth named when it was signed."""
    sources = verified.sources
    package, module = sources.get(fullname), sources.get(f"{fullname}.py")
    if package is None and module is None:
        return importlib.machinery.PathFinder.find_spec(fullname, [str(verified.root)])
    origin = package / "__init__.py" if package is not None else module
    assert origin is not None
    if not origin.is_file():
        return None
    spec = importlib.machinery.ModuleSpec(fullname, None, origin=str(origin),
                                          is_package=package is not None)
    spec.has_location = True
    if package is not None:
        spec.submodule_search_locations = [str(package)]
    return spec


_guard: VerifiedImportGuard | None = None


def protect(verified: VerifiedBackend) -> VerifiedImportGuard:
    """Guard `verified`'s packages from now on, in this process; the guard goes first on
    sys.meta_path the first time."""
    global _guard
    if _guard is None:
        _guard = VerifiedImportGuard()
        sys.meta_path.insert(0, _guard)
    _guard.protect(verified)
    return _guard
