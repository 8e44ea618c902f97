"""The manifest: what a signer says one installed backend distribution is, file by file.

Parsed only from payload bytes whose signature verified (see `verifier.py`). Built from an
installed distribution by `tt-meta sign` (see `signing.py`). What both sides agree on about
manifests (their file names, which entry points and which top-level names they cover) lives
here, so that signing never imports verifying.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

from .._errors import FormatError
from .._metadata import Distribution, dist_info_dir, normalize
from .envelope import strict_json
from .roles import PLUGIN, RUNTIME

IN_DIST_MANIFEST = "tt_meta.manifest.json"  # a manifest's name inside the .dist-info
VLLM_GROUP_PREFIX = "vllm."  # the entry-point groups a manifest signs
MANIFEST_KIND = "tt-meta/manifest"
# Version 1: a normal install, everything under the install root. Version 2: an editable
# install; the same keys plus 'editable', which says where its sources are. `tt-meta sign`
# writes version 1 for every normal install, so those manifests still verify with a tt_meta
# that knows only version 1 (which refuses a version 2 document, as it must).
SPEC_VERSION = 1
EDITABLE_SPEC_VERSION = 2
# Version 3: a backend's runtime (ttnn, pjrt-plugin-tt), signed as part of the backend: the
# version 1 keys plus 'role' = "runtime". A tt_meta that knows only versions 1 and 2 refuses
# it, and a plugin manifest (versions 1 and 2: role "plugin") can never pass as a runtime's,
# nor the reverse: the verifier compares the signed role with the one it verifies.
RUNTIME_SPEC_VERSION = 3
_HEX64 = re.compile(r"[0-9a-f]{64}")
_TOP = {"_type", "spec_version", "backend", "distribution", "version", "entry_points",
        "vllm_requirement", "issued", "expires", "serial", "files"}
_TOP_EDITABLE = _TOP | {"editable"}
_TOP_RUNTIME = _TOP | {"role"}
_EDITABLE_KEYS = {"pth", "finder", "path_entry", "sources"}


class Editable(NamedTuple):
    """Where an editable install's code is, as signed. The files of each source are listed in
    the manifest as if installed normally (`pkg/mod.py`, or `mod.py` for a module), and live
    at `sources[first component]` instead of under the install root."""

    #: the .pth file in the install root that makes the sources importable (a signed file)
    pth: str
    #: setuptools' finder module next to it, whose MAPPING names the sources; None for a
    #: .pth that adds a directory to sys.path
    finder: str | None
    #: the directory that .pth adds to sys.path; None for a finder
    path_entry: str | None
    #: top-level package name (or module file name) -> its absolute path
    sources: dict[str, str]


class FileEntry(NamedTuple):
    path: str
    size: int
    sha256: str


class ManifestFacts(NamedTuple):
    """What a manifest says about its distribution, besides the file list: kept in the
    verification record, so that a restart need not decode and parse the manifest again."""

    backend: str
    distribution: str
    version: str
    #: group -> {name: "module:attr"}, the vLLM entry points signed with the files
    entry_points: dict[str, dict[str, str]]
    vllm_requirement: str | None
    issued: int
    expires: int
    serial: int
    #: "plugin" (the vLLM plugin distribution) or "runtime" (the backend's device runtime)
    role: str = PLUGIN
    #: where an editable install's sources are; None for a normal install
    editable: Editable | None = None


class Manifest(NamedTuple):
    backend: str
    distribution: str
    version: str
    entry_points: dict[str, dict[str, str]]
    vllm_requirement: str | None
    issued: int
    expires: int
    serial: int
    files: tuple[FileEntry, ...]
    editable: Editable | None = None
    role: str = PLUGIN

    def facts(self) -> ManifestFacts:
        """Everything but the file list."""
        return ManifestFacts(self.backend, self.distribution, self.version, self.entry_points,
                             self.vllm_requirement, self.issued, self.expires, self.serial,
                             self.role, self.editable)

    def to_payload(self) -> dict[str, Any]:
        spec = (RUNTIME_SPEC_VERSION if self.role == RUNTIME else
                SPEC_VERSION if self.editable is None else EDITABLE_SPEC_VERSION)
        payload = {
            "_type": MANIFEST_KIND,
            "spec_version": spec,
            "backend": self.backend,
            "distribution": self.distribution,
            "version": self.version,
            "entry_points": self.entry_points,
            "vllm_requirement": self.vllm_requirement,
            "issued": self.issued,
            "expires": self.expires,
            "serial": self.serial,
            "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in self.files],
        }
        if self.editable is not None:
            payload["editable"] = self.editable._asdict()
        if self.role == RUNTIME:
            payload["role"] = RUNTIME
        return payload


_BAD_CHARS = re.compile(r"[\x00-\x1f\\]")
_BAD_PARTS = re.compile(r"(^|/)(\.{0,2})(/|$)")


def check_relative_path(path: str) -> str | None:
    """Why `path` may not name a file inside the install root, or None when it may."""
    if not path or path[0] == "/" or (len(path) > 1 and path[1] == ":"):
        return "is absolute or empty"
    if _BAD_CHARS.search(path):
        return "holds a backslash or control character"
    if not path.isascii() and unicodedata.normalize("NFC", path) != path:
        return "is not in Unicode normal form NFC"
    if _BAD_PARTS.search(path):
        return "has an empty, '.' or '..' component"
    return None


def check_absolute_path(path: str) -> str | None:
    """Why `path` may not name a directory or file outside the install root, or None."""
    if not path.startswith("/") or path.startswith("//"):
        return "is not an absolute path"
    return check_relative_path(path[1:])


def parse_manifest(payload: bytes, where: str) -> Manifest:
    """Parse verified payload bytes; anything unexpected is a FormatError."""
    fix = "sign the backend again with `tt-meta sign`"
    data = strict_json(payload, "the manifest", where)

    def bad(why: str) -> FormatError:
        return FormatError(f"the manifest {why}", where=where, fix=fix)

    if not isinstance(data, dict) or set(data) not in (_TOP, _TOP_EDITABLE, _TOP_RUNTIME):
        raise bad(f"must have exactly the keys {sorted(_TOP)} (version {SPEC_VERSION}), or "
                  f"those and 'editable' (version {EDITABLE_SPEC_VERSION}), or those and "
                  f"'role' (version {RUNTIME_SPEC_VERSION})")
    spec = data["spec_version"]
    wanted = (EDITABLE_SPEC_VERSION if "editable" in data else
              RUNTIME_SPEC_VERSION if "role" in data else SPEC_VERSION)
    if data["_type"] != MANIFEST_KIND or spec != wanted or isinstance(spec, bool):
        raise bad(f"is not a {MANIFEST_KIND} version {wanted} document")
    if "role" in data and data["role"] != RUNTIME:
        raise bad(f"key 'role' must be {RUNTIME!r}")
    for key in ("backend", "distribution", "version"):
        if not isinstance(data[key], str) or not data[key]:
            raise bad(f"key '{key}' must be a non-empty string")
    for key in ("issued", "expires", "serial"):
        if not isinstance(data[key], int) or isinstance(data[key], bool) or data[key] < 0:
            raise bad(f"key '{key}' must be a non-negative integer")
    requirement = data["vllm_requirement"]
    if requirement is not None and not isinstance(requirement, str):
        raise bad("key 'vllm_requirement' must be a string or null")
    eps = data["entry_points"]
    if not isinstance(eps, dict) or not all(
        isinstance(group, dict) and all(isinstance(v, str) for v in group.values())
        for group in eps.values()
    ):
        raise bad("key 'entry_points' must map groups to {name: value}")
    files = data["files"]
    if not isinstance(files, list) or not files:
        raise bad("key 'files' must be a non-empty list")
    entries: list[FileEntry] = []
    seen: set[str] = set()
    for item in files:
        if not isinstance(item, dict) or set(item) != {"path", "size", "sha256"}:
            raise bad("has a file entry that is not {path, size, sha256}")
        path, size, digest = item["path"], item["size"], item["sha256"]
        why = check_relative_path(path) if isinstance(path, str) else "is not a string"
        if why is not None:
            raise bad(f"lists the path {path!r}, which {why}")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise bad(f"gives {path!r} a size that is not a non-negative integer")
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise bad(f"gives {path!r} a sha256 that is not 64 lower-case hex digits")
        if path in seen:
            raise bad(f"lists {path!r} twice")
        seen.add(path)
        entries.append(FileEntry(path, size, digest))
    editable = _parse_editable(data["editable"], seen, where) if "editable" in data else None
    return Manifest(
        backend=data["backend"], distribution=data["distribution"], version=data["version"],
        entry_points={g: dict(v) for g, v in eps.items()}, vllm_requirement=requirement,
        issued=data["issued"], expires=data["expires"], serial=data["serial"],
        files=tuple(entries), editable=editable, role=RUNTIME if "role" in data else PLUGIN,
    )


_SOURCE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.py)?")


def _bad(why: str, where: str) -> FormatError:
    return FormatError(f"the manifest {why}", where=where,
                       fix="sign the backend again with `tt-meta sign`")


def _parse_editable(value: object, files: set[str], where: str) -> Editable:
    """The 'editable' key of a version 2 manifest: unambiguous, and consistent with 'files'."""
    if not isinstance(value, dict) or set(value) != _EDITABLE_KEYS:
        raise _bad(f"key 'editable' must be an object with exactly the keys "
                   f"{sorted(_EDITABLE_KEYS)}", where)
    pth, finder, entry, sources = (value["pth"], value["finder"], value["path_entry"],
                                   value["sources"])
    for key, name, suffix in (("pth", pth, ".pth"), ("finder", finder, ".py")):
        if key == "finder" and name is None:
            continue
        if (not isinstance(name, str) or "/" in name or not name.endswith(suffix)
                or name not in files):
            raise _bad(f"key 'editable' names the {key} {name!r}, which is not a '{suffix}' "
                       "file at the install root listed in 'files'", where)
    if (finder is None) == (entry is None):
        raise _bad("key 'editable' must name exactly one of 'finder' and 'path_entry'", where)
    for path in (entry, *(sources.values() if isinstance(sources, dict) else ())):
        if path is not None and (not isinstance(path, str) or check_absolute_path(path)):
            raise _bad(f"key 'editable' names the path {path!r}, which is not a normalised "
                       "absolute path", where)
    if not isinstance(sources, dict) or not sources:
        raise _bad("key 'editable' must map 'sources' to a non-empty object", where)
    firsts = {f.partition("/")[0] for f in files}
    for name, path in sources.items():
        if not _SOURCE_NAME.fullmatch(name) or name not in firsts or name in (pth, finder):
            raise _bad(f"key 'editable' has the source {name!r}, which is not a top-level "
                       "package or module name of the listed files", where)
        if entry is not None and path != f"{entry}/{name}":
            raise _bad(f"key 'editable' puts the source {name!r} at {path!r}, not in its "
                       f"path entry {entry!r}", where)
    return Editable(pth, finder, entry, dict(sources))


def manifest_file_names(dist_name: str, version: str) -> tuple[str, str]:
    """The names a manifest may have in a manifest directory, most specific first."""
    norm = normalize(dist_name)
    return f"{norm}-{version}.manifest.json", f"{norm}.manifest.json"


def manifest_paths(manifest_dirs: Iterable[str], dist: Distribution) -> list[Path]:
    """Every path verification reads a manifest of `dist` at, whether one is there or not:
    each manifest directory's names (most specific first), then its .dist-info's. What
    `tt-meta sign --out` is checked against, and what a missing manifest's refusal lists."""
    names = manifest_file_names(dist.name, str(dist.version))
    found = [Path(d) / n for d in manifest_dirs for n in names]
    info = dist_info_dir(dist)
    if info is not None:
        found.append(info / IN_DIST_MANIFEST)
    return found


def installed_entry_points(dist: Distribution) -> dict[str, dict[str, str]]:
    """The vLLM entry points an installed distribution declares (what a manifest signs)."""
    found: dict[str, dict[str, str]] = {}
    for ep in dist.entry_points:
        if ep.group.startswith(VLLM_GROUP_PREFIX):
            found.setdefault(ep.group, {})[ep.name] = ep.value
    return found


def top_level_names(files: Iterable[str]) -> frozenset[str]:
    """Importable top-level names: packages (first directory) and root-level modules (whose
    bytecode in the install root's own __pycache__ names no package)."""
    names = set()
    for path in files:
        first, sep, _ = path.partition("/")
        if sep and not first.endswith((".dist-info", ".data")) and first != "__pycache__":
            names.add(first)
        elif not sep and path.endswith((".py", ".so", ".pyd")):
            names.add(path.split(".", 1)[0])
    return frozenset(names)
