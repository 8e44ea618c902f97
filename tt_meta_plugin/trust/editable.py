"""Editable installs: what their .pth (and setuptools' finder) make importable, read without
running any of it.

`pip install -e` / `uv pip install -e` leave the code in the project directory and put in
site-packages one `.pth` file, in one of two shapes (setuptools >= 64, both seen with 78):

- a finder: `__editable__.NAME-VER.pth` holds `import F; F.install()`, and `F.py` (next to
  it) a literal `MAPPING = {top-level name: its directory}` (the default, "lenient" mode for a
  flat layout);
- a path: the `.pth` holds one directory, which site.py appends to sys.path (a src layout,
  `editable_mode=compat`, hatchling): everything importable from that directory is.

The finder is parsed with `ast` and its MAPPING read as a literal: never imported or run by
tt_meta. A shape tt_meta cannot cover completely (other code in the .pth, a finder it cannot
read, namespace packages, `__path__` tricks, symlinks, a source another user can write, other
modules importable from a path entry) is refused, at signing and at verification, with what
to do instead. The manifest lists each source's files as if installed normally (`pkg/mod.py`)
and records where they are (`manifest.Editable`).

The two shapes differ in what runs before tt_meta. The finder makes only the names of its
MAPPING importable, and tt_meta's import guard answers for them once it runs. A path entry is
on sys.path from interpreter start-up, before `import sitecustomize` and long before tt_meta:
whoever can put a file in it (sitecustomize.py, a module vLLM or torch imports if present, a
`.dist-info` with a `vllm.general_plugins` entry point) runs code before tt_meta can look. So
a path entry, and every directory above it, must be writable by root only
(`permissions.check_ancestors` with owners {root}), also when vLLM runs as another user; the
finder's sources may be the serving user's, as site-packages may.
"""

from __future__ import annotations

import ast
import importlib.machinery
import os
import re
from collections.abc import Iterable
from pathlib import Path

from .._errors import EditableInstallError, TamperedError
from .._metadata import Distribution
from . import permissions
from .manifest import Editable, check_absolute_path
from .start_up import is_start_up_name
from .tree import Tampered

FINDER_LINE = re.compile(r"import ([A-Za-z_][A-Za-z0-9_]*); \1\.install\(\)")
# The top-level statements of setuptools' finder module: imports, these definitions, and
# these assignments. Anything else is code tt_meta cannot judge statically.
_FINDER_DEFS = {"_EditableFinder", "_EditableNamespaceFinder", "install"}
_FINDER_NAMES = {"MAPPING", "NAMESPACES", "PATH_PLACEHOLDER"}
_RECORDS = (".dist-info", ".egg-info", ".egg-link")
#: The most read of a .pth or finder module (one line; a MAPPING of a few packages).
MAX_READ_BYTES = 1 << 20
# Installation records in a sys.path entry: their entry points (vllm.general_plugins) are
# what vLLM loads, so in a path entry they act before tt_meta as start-up files do.
_AT_START_UP = ("; site.py puts the path entry on sys.path when Python starts, so whoever can "
                "write it (or replace it) runs code from it before tt_meta")
_PATH_ENTRY_FIX = ("make the project directory, and every directory above it, owned by root "
                   "and not writable by group or others (read-only for the user running "
                   "vLLM), then sign again; or install editable in setuptools' finder shape, "
                   "which makes nothing importable before tt_meta: a flat layout in the "
                   "default mode, or a src layout whose pyproject.toml maps each package "
                   "(package-dir = {PKG = \"src/PKG\"}, not {\"\" = \"src\"})")
_REINSTALL = ("install the backend from its wheel (pip install, without -e), or editable with "
              "setuptools' default mode (pip install -e / uv pip install -e, no "
              "editable_mode=strict), then sign it")


def _cannot(label: str, summary: str, where: object, fix: str = _REINSTALL
            ) -> EditableInstallError:
    return EditableInstallError(f"{label} is an editable install tt_meta cannot cover: "
                                f"{summary}", where=str(where), fix=fix)


def read_pth(root: Path, pth: str, label: str) -> tuple[str | None, str | None]:
    """(finder module file, None) or (None, directory): what the .pth does, as site.py would
    read it."""
    path = root / pth
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_READ_BYTES + 1)
        if len(raw) > MAX_READ_BYTES:
            raise _cannot(label, "its .pth file is larger than 1 MiB", path)
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _cannot(label, f"cannot read its .pth file ({exc})", path) from None
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if len(lines) == 1:
        match = FINDER_LINE.fullmatch(lines[0])
        if match:
            return f"{match[1]}.py", None
        if not lines[0].startswith(("import ", "import\t")) and not check_absolute_path(
                lines[0]):
            return None, lines[0]
    raise _cannot(label, "its .pth file holds something other than one setuptools finder "
                  "import or one absolute directory", path)


def read_mapping(path: Path, label: str) -> dict[str, str]:
    """The MAPPING of setuptools' finder module, as a literal; NAMESPACES must be empty."""
    try:
        with open(path, "rb") as handle:
            source = handle.read(MAX_READ_BYTES + 1)
        if len(source) > MAX_READ_BYTES:
            raise _cannot(label, f"its finder module {path.name} is larger than 1 MiB", path)
        tree = ast.parse(source, str(path))
    except (OSError, SyntaxError, ValueError) as exc:
        raise _cannot(label, f"cannot parse its finder module {path.name} ({exc})",
                      path) from None
    except (RecursionError, MemoryError):  # the parser's own limits on nesting
        raise _cannot(label, f"cannot parse its finder module {path.name} (nested too "
                      "deeply)", path) from None
    values: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.name in _FINDER_DEFS:
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # a docstring
        targets = (node.targets if isinstance(node, ast.Assign)
                   else [node.target] if isinstance(node, ast.AnnAssign) else [])
        names = [t.id for t in targets if isinstance(t, ast.Name)]
        value = getattr(node, "value", None)
        if len(names) != 1 or len(targets) != 1 or names[0] not in _FINDER_NAMES or (
                names[0] in values) or value is None:
            raise _cannot(label, f"its finder module has code on line {node.lineno} that is "
                          "not setuptools' finder", path)
        if names[0] != "PATH_PLACEHOLDER":
            try:
                values[names[0]] = ast.literal_eval(value)
            except ValueError:
                raise _cannot(label, f"its finder's {names[0]} is not a literal", path) from None
    mapping = values.get("MAPPING")
    if not isinstance(mapping, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
        raise _cannot(label, "its finder has no MAPPING of names to directories", path)
    if values.get("NAMESPACES", {}) != {}:
        raise _cannot(label, "its finder declares namespace packages (NAMESPACES), whose "
                      "portions tt_meta cannot enumerate", path,
                      "make every package a regular package (with __init__.py); " + _REINSTALL)
    return mapping


def _real(path: str, label: str) -> Path:
    if check_absolute_path(path) or os.path.realpath(path) != path:
        raise _cannot(label, f"its source {path} is not an absolute path free of symlinks",
                      path, "install it editable from the project's real path (no symlink "
                      "in it), then sign it")
    return Path(path)


def layout(dist: Distribution, root: Path, label: str) -> Editable:
    """Where an editable install's code is: its one .pth, its finder or path entry, and each
    top-level package or module it makes importable (for signing)."""
    pths = sorted({Path(str(dist.locate_file(f))).name for f in dist.files or ()
                   if str(f).endswith(".pth") and "/" not in str(f).replace("\\", "/")})
    if len(pths) != 1:
        raise _cannot(label, f"its RECORD lists {len(pths)} .pth files at the install root, "
                      "not one", root)
    finder, entry = read_pth(root, pths[0], label)
    sources: dict[str, str] = {}
    if finder is not None:
        if not (root / finder).is_file():
            raise _cannot(label, f"its finder module {finder} is missing", root / finder)
        for top, target in sorted(read_mapping(root / finder, label).items()):
            if not top.isidentifier():
                raise _cannot(label, f"its finder maps the dotted or invalid name {top!r}",
                              root / finder, "map only top-level packages (no package_dir "
                              "entries for subpackages); " + _REINSTALL)
            where = _real(target, label)
            if (where / "__init__.py").is_file():
                sources[top] = target
            elif Path(f"{target}.py").is_file() and not where.exists():
                sources[f"{top}.py"] = f"{target}.py"
            else:
                raise _cannot(label, f"its finder maps {top!r} to {target}, which is not a "
                              "regular package nor a .py module", target,
                              "give the package an __init__.py; " + _REINSTALL)
    else:
        assert entry is not None
        folder = _real(entry, label)
        coverable, other, _records = entries_of(folder)
        own = own_names(dist)
        extra = sorted(other + [n for n in coverable if n.removesuffix(".py") not in own])
        early = start_up_entries(folder)
        if early:
            raise _cannot(label, f"its path entry {folder} holds {', '.join(early)}, which "
                          "Python or importlib.metadata would read at interpreter start-up, "
                          "before tt_meta runs", folder / early[0],
                          f"remove them (rm -r {folder / early[0]}), then sign again")
        if extra:
            raise _cannot(label, f"its path entry {folder} makes importable "
                          f"{', '.join(extra)}, which are not the distribution's own "
                          "regular packages or modules", folder / extra[0],
                          "use a src layout (packages under src/) or setuptools' default "
                          f"editable mode (no editable_mode=compat), or move {extra[0]} out "
                          f"of {folder}; then reinstall and sign")
        sources = {name: f"{entry}/{name}" for name in coverable}
        if not sources:
            raise _cannot(label, f"nothing of the distribution is importable from {folder}",
                          folder)
    editable = Editable(pths[0], finder, entry, sources)
    files = source_files(editable, label)
    if entry is not None:
        why = permissions.ancestors_problem(Path(entry), {0})
        if why is not None:
            raise _cannot(label, f"its path entry is not protected: {why}{_AT_START_UP}",
                          entry, _PATH_ENTRY_FIX)
    unprotected = first_unprotected(editable, files.values())
    if unprotected is not None:
        raise _cannot(label, f"its sources are not protected: {unprotected}", entry or root,
                      "chmod -R go-w the project directory and every directory above it, and "
                      "chown them to root or the user running vLLM: the sources must be as "
                      "protected as site-packages")
    return editable


def own_names(dist: Distribution) -> set[str]:
    """The top-level names a distribution declares: top_level.txt and its entry points."""
    names = set((dist.read_text("top_level.txt") or "").split())
    names.update(ep.value.partition(":")[0].strip().partition(".")[0]
                 for ep in dist.entry_points)
    return names


def _importable(name: str, is_dir: bool) -> bool:
    if is_dir:
        return name.isidentifier()
    return any(name.endswith(s) and name[:-len(s)].isidentifier()
               for s in importlib.machinery.all_suffixes())


def entries_of(folder: Path) -> tuple[list[str], list[str], list[str]]:
    """What a directory on sys.path makes importable: (regular packages and .py modules,
    anything else importable: namespace portions, bytecode, extensions, and installation
    records, which importlib.metadata would read)."""
    coverable: list[str] = []
    other: list[str] = []
    records: list[str] = []
    for item in sorted(os.scandir(folder), key=lambda e: e.name):
        name, is_dir = item.name, item.is_dir()
        if name.endswith(_RECORDS):
            records.append(name)
        elif name == "__pycache__" and is_dir:
            # Tagged bytecode (mod.cpython-311.pyc) is not importable from here; anything
            # else in it would be, as a portion of a namespace package "__pycache__".
            other += [f"{name}/{e.name}" for e in os.scandir(item.path)
                      if _importable(e.name, e.is_dir())]
        elif _importable(name, is_dir):
            plain = not item.is_symlink() and (
                (is_dir and os.path.isfile(os.path.join(item.path, "__init__.py")))
                or (not is_dir and name.endswith(".py")))
            (coverable if plain else other).append(name)
    return coverable, other, records


def start_up_entries(folder: Path) -> list[str]:
    """What in a sys.path entry Python or importlib.metadata acts on before tt_meta runs:
    sitecustomize/usercustomize in any importable form, .pth files, installation records."""
    return sorted(e.name for e in os.scandir(folder)
                  if is_start_up_name(e.name) or e.name.endswith(_RECORDS))


def source_files(editable: Editable, label: str) -> dict[str, str]:
    """Every file of the sources: manifest path -> absolute path. Refuses symlinks and
    packages that extend their own `__path__`."""
    found: dict[str, str] = {}
    for name, where in sorted(editable.sources.items()):
        if name.endswith(".py"):
            found[name] = where
            continue
        for folder, dirs, files in os.walk(where):
            for entry in dirs + files:
                full = os.path.join(folder, entry)
                if os.path.islink(full):
                    raise _cannot(label, "a symlink is among its sources", full,
                                  "replace the symlink by the file (editable_mode=strict "
                                  "links files: " + _REINSTALL + ")")
            for entry in files:
                full = os.path.join(folder, entry)
                found[f"{name}/{os.path.relpath(full, where)}"] = full
                if entry == "__init__.py" and _extends_path(Path(full)):
                    raise _cannot(label, "a package of it changes its __path__ (a namespace "
                                  "trick: its portions could be anywhere)", full,
                                  "make it a regular package that does not touch __path__; "
                                  "then reinstall and sign")
    return found


def _extends_path(init: Path) -> bool:
    try:
        tree = ast.parse(init.read_bytes())
    except (SyntaxError, ValueError):
        return False  # not importable either; its hash is signed all the same
    return any((isinstance(n, ast.Name) and n.id == "__path__")
               or (isinstance(n, ast.Attribute) and n.attr == "__path__")
               for n in ast.walk(tree))


def first_unprotected(editable: Editable, files: Iterable[str]) -> str | None:
    """Why the first unsafe source path (a source or a directory above it, up to /; a file in
    it, or its directory) could be changed by another user than root or this one, or None."""
    owners = {0, os.geteuid()}
    for source in editable.sources.values():
        why = permissions.ancestors_problem(Path(source), owners)
        if why is not None:
            return why
    for path in files:
        why = permissions.problem(Path(path))
        if why is not None:
            return why
    return None


def check_installed(editable: Editable, root: Path, label: str, strict: bool) -> None:
    """Verification: the installed .pth and finder still point where they were signed to,
    the path entry holds nothing Python reads at start-up and makes nothing else importable,
    only root can write it or a directory above it, and the sources and every directory above
    them are protected (`permissions.check_ancestors`)."""
    fail = Tampered(label, root)  # every path named here is absolute, or at the root
    try:
        finder, entry = read_pth(root, editable.pth, label)
        mapping = read_mapping(root / finder, label) if finder else None
    except EditableInstallError as error:
        raise fail(f"its editable install changed: {error.summary}", editable.pth) from None
    signed = read_signed_mapping(editable)
    if (finder, entry) != (editable.finder, editable.path_entry) or (
            mapping is not None and mapping != signed):
        now = mapping if mapping is not None else entry
        was = signed if editable.finder else editable.path_entry
        raise fail(f"the editable install now points to {now}, but it was signed pointing "
                   f"to {was}", editable.finder or editable.pth)
    if entry is not None:
        early = start_up_entries(Path(entry))
        if early:
            raise TamperedError(
                f"{label}: the editable install's path entry holds {', '.join(early)}, which "
                "Python or importlib.metadata reads at interpreter start-up, before tt_meta "
                "runs: it may already have run in this and other processes",
                where=f"{entry}/{early[0]}",
                fix="remove it and find out who put it there: it ran before tt_meta; keep the "
                "path entry and every directory above it owned by root and read-only for the "
                "user running vLLM (security.md, \"Editable installs\")")
        coverable, other, records = entries_of(Path(entry))
        for name in (*records, *other, *coverable):
            if name not in editable.sources:
                raise fail("importable from the editable install's path entry but not signed",
                           f"{entry}/{name}")
        permissions.check_ancestors(Path(entry), "editable install's path entry", strict, {0},
                                    _AT_START_UP, _PATH_ENTRY_FIX)
    owners = {0, os.geteuid()}
    for source in editable.sources.values():
        permissions.check_ancestors(Path(source), "editable source", strict, owners)
    for path in _walk_dirs(editable):
        if permissions.problem(Path(path)) is not None:
            permissions.check(Path(path), "editable source", strict)
            break


def read_signed_mapping(editable: Editable) -> dict[str, str]:
    """The finder MAPPING the signed sources stand for (module sources lose their .py)."""
    return {name.removesuffix(".py"): path.removesuffix(".py")
            for name, path in editable.sources.items()}


def _walk_dirs(editable: Editable) -> Iterable[str]:
    for name, where in editable.sources.items():
        if not name.endswith(".py"):
            for folder, dirs, _files in os.walk(where):
                yield from (os.path.join(folder, d) for d in dirs)
