"""Only verified bytes execute: the import guard for a verified backend's packages.

Hashing a backend's files is not enough on its own. Python prefers a `__pycache__/*.pyc`
whose header matches the source's mtime and size, so tampered bytecode can run although every
`.py` hashes clean; and a file can be swapped between the check and the import. So, once a
distribution is verified, a finder placed first on `sys.meta_path` takes over every import
under its top-level packages, for the life of the process (one finder for every verified
distribution, keyed by top-level name): it locates modules only in the verified install
root (a signed package that is no longer there is refused, never looked for elsewhere), and
runs only bytes the manifest lists: the module's signed bytecode (`__pycache__/*.pyc`, as pip
compiled it at install and the manifest signed it), read once and compared with the manifest,
when it is the bytecode Python itself would load for that source (same header checks as
Python's own loader); otherwise the source, read once, compared with the manifest and compiled
from exactly those bytes. Bytecode the manifest does not list is never read, and none is
written. A runtime of hundreds of modules thus imports about as fast as without the guard,
instead of compiling every module in every process. An editable install's top-level packages are
located where they were verified, in the project directory its finder or .pth named when it
was signed (the record says where); its own finder never gets to answer for them. A compiled
extension module is hashed just before it is loaded; the window between that hash and the
dynamic loader's own open remains (docs/security.md says how the permission checks narrow it).
"""

from __future__ import annotations

import _imp
import hashlib
import importlib
import importlib.machinery
import importlib.util
import logging
import os
import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from pathlib import Path
from types import CodeType, ModuleType
from typing import TYPE_CHECKING, Any

from .._log import log

# CPython's own checks of a .pyc against its source (private, present from 3.7 to 3.13): the
# guard applies exactly what SourceLoader.get_code applies before it trusts bytecode.
_pyc: Any = importlib.import_module("importlib._bootstrap_external")

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
                 verified: VerifiedBackend, rel: str) -> None:
        super().__init__(fullname, path)
        self.guard, self.verified, self.rel = guard, verified, rel

    def get_data(self, path: str) -> bytes:
        with open(path, "rb") as handle:
            data = handle.read()
        self.guard.check_bytes(self.verified, path, data)
        return data

    def get_code(self, fullname: str) -> CodeType:
        code = self._signed_bytecode(fullname)
        if code is not None:
            return code
        # Compile the verified source bytes; never write __pycache__.
        with open(self.path, "rb") as handle:
            source = handle.read()
        self.guard.check_rel(self.verified, self.rel, source)
        compiled: CodeType = compile(source, self.path, "exec", dont_inherit=True)
        return compiled

    def _signed_bytecode(self, fullname: str) -> CodeType | None:
        """The module's bytecode, if the manifest lists it and Python would load it for this
        source; None to compile the source instead. Changed signed bytecode is refused."""
        if sys.pycache_prefix is not None:
            return None  # Python would look elsewhere: compile the signed source
        try:
            name = os.path.basename(importlib.util.cache_from_source(self.path))
        except NotImplementedError:  # no bytecode cache in this interpreter
            return None
        folder = self.rel.rpartition("/")[0]
        rel = f"{folder}/__pycache__/{name}" if folder else f"__pycache__/{name}"
        entry = self.verified.files.get(rel)
        if entry is None:
            return None
        path = os.path.join(os.path.dirname(self.path), "__pycache__", name)
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError:
            return None
        self.guard.check_rel(self.verified, rel, data, entry)
        # The checks SourceLoader.get_code makes before it trusts a .pyc (CPython's own
        # helpers, present from 3.7 on): magic number, then the header against the source.
        details = {"name": fullname, "path": path}
        try:
            flags = _pyc._classify_pyc(data, fullname, details)
            if not flags & 0b1:  # timestamp-based: the source's mtime and size
                info = os.stat(self.path)
                _pyc._validate_timestamp_pyc(
                    data, int(info.st_mtime), info.st_size, fullname, details)
            elif (flags & 0b10 and _imp.check_hash_based_pycs != "never") or (
                    _imp.check_hash_based_pycs == "always"):  # checked hash: the source's
                source = self.get_data(self.path)
                _pyc._validate_hash_pyc(
                    data, importlib.util.source_hash(source), fullname, details)
        except (ImportError, EOFError, OSError):
            return None  # stale or for another Python: Python would compile the source too
        code: CodeType = _pyc._compile_bytecode(
            memoryview(data)[16:], fullname, path, self.path)
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
        #: top-level names no verified distribution covers that must not be imported: a
        #: backend's runtime module that was not verified -> that backend
        self.forbidden: dict[str, str] = {}
        self.loaded: list[str] = []
        # (distribution, directory as imports name it) -> its signed path ("" for the
        # install root; None: not a verified location). A module's signed path is its
        # directory's and its file name: one resolve per directory, not one per module. A
        # name that leads elsewhere later (a symlink swapped in) leads to bytes that must
        # still hash to the manifest's for that signed path.
        self._folders: dict[tuple[str, str], str | None] = {}

    def _folder(self, verified: VerifiedBackend, folder: str) -> str | None:
        key = (verified.distribution, folder)
        if key not in self._folders:
            self._folders[key] = verified.relative(Path(folder).resolve())
            if self._folders[key] == ".":
                self._folders[key] = ""
        return self._folders[key]

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
        if rel is None:
            raise _refuse(f"{path} is not in the verified manifest of {verified.distribution}")
        self.check_rel(verified, rel, data)

    def check_rel(self, verified: VerifiedBackend, rel: str, data: bytes,
                  entry: tuple[int, str] | None = None) -> None:
        """`data` are the bytes the manifest lists for `rel` (its `entry`, if looked up
        already), or a refusal."""
        entry = entry or verified.files.get(rel)
        name = verified.distribution
        if entry is None:
            raise _refuse(f"{rel} is not in the verified manifest of {name}")
        size, digest = entry
        if len(data) != size or hashlib.sha256(data).hexdigest() != digest:
            raise _refuse(f"{rel} does not match the verified manifest of {name} (changed "
                          "after verification)")
        self.loaded.append(rel)

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        top = fullname.partition(".")[0]
        verified = self.by_top.get(top)
        if verified is None:
            if top in self.forbidden and find_elsewhere(
                    top, None if top == fullname else path) is not None:
                # Present now, where nothing verified it (absent, it is simply not found).
                raise _refuse(f"{fullname}: runtime module '{top}' of backend "
                              f"'{self.forbidden[top]}' was not verified in this process")
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
            inside = [p for p in (path or []) if self._folder(verified, p) is not None]
            spec = importlib.machinery.PathFinder.find_spec(fullname, inside)
            if spec is None:
                # Not in the verified package: no other finder may look for it elsewhere
                # (a portion added to the package's __path__ is not verified).
                raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        origin = spec.origin
        if origin is None or not spec.has_location:  # a namespace package: no code of its own
            return spec
        folder, _, base = origin.rpartition(os.sep)
        signed_folder = self._folder(verified, folder)
        rel = (None if signed_folder is None else
               f"{signed_folder}/{base}" if signed_folder else base)
        if rel is None:
            raise _refuse(f"{fullname} resolves to {origin}, outside the verified "
                          f"install root {verified.root}")
        if origin.endswith(tuple(importlib.machinery.SOURCE_SUFFIXES)):
            spec.loader = _VerifiedSourceLoader(fullname, origin, self, verified, rel)
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


def find_elsewhere(name: str, path: Sequence[str] | None = None
                   ) -> importlib.machinery.ModuleSpec | None:
    """Where the import system would find `name` without the guard: every other finder on
    sys.meta_path (the path-based one, an editable install's, any a program added), asked in
    order, nothing imported."""
    for finder in sys.meta_path:
        if isinstance(finder, VerifiedImportGuard) or not hasattr(finder, "find_spec"):
            continue
        spec: importlib.machinery.ModuleSpec | None = finder.find_spec(name, path)
        if spec is not None:
            return spec
    return None


def _installed() -> VerifiedImportGuard:
    """This process's guard; it goes first on sys.meta_path the first time."""
    global _guard
    if _guard is None:
        _guard = VerifiedImportGuard()
        sys.meta_path.insert(0, _guard)
    return _guard


def protect(verified: VerifiedBackend) -> VerifiedImportGuard:
    """Guard `verified`'s packages from now on, in this process."""
    guard = _installed()
    guard.protect(verified)
    return guard


def forbid(top: str, backend: str) -> None:
    """Refuse every import under the top-level name `top` (a runtime module of `backend`
    that was not verified) from now on, in this process, wherever it is found."""
    _installed().forbidden[top] = backend
