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
from typing import Any, NamedTuple

from .._errors import FormatError
from .._metadata import Distribution, normalize
from .envelope import strict_json

IN_DIST_MANIFEST = "tt_meta.manifest.json"  # a manifest's name inside the .dist-info
VLLM_GROUP_PREFIX = "vllm."  # the entry-point groups a manifest signs
MANIFEST_KIND = "tt-meta/manifest"
SPEC_VERSION = 1
_HEX64 = re.compile(r"[0-9a-f]{64}")
_TOP = {"_type", "spec_version", "backend", "distribution", "version", "entry_points",
        "vllm_requirement", "issued", "expires", "serial", "files"}


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

    def facts(self) -> ManifestFacts:
        """Everything but the file list."""
        return ManifestFacts(self.backend, self.distribution, self.version, self.entry_points,
                             self.vllm_requirement, self.issued, self.expires, self.serial)

    def to_payload(self) -> dict[str, Any]:
        return {
            "_type": MANIFEST_KIND,
            "spec_version": SPEC_VERSION,
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


def parse_manifest(payload: bytes, where: str) -> Manifest:
    """Parse verified payload bytes; anything unexpected is a FormatError."""
    fix = "sign the backend again with `tt-meta sign`"
    data = strict_json(payload, "the manifest", where)

    def bad(why: str) -> FormatError:
        return FormatError(f"the manifest {why}", where=where, fix=fix)

    if not isinstance(data, dict) or set(data) != _TOP:
        raise bad(f"must have exactly the keys {sorted(_TOP)}")
    spec = data["spec_version"]
    if data["_type"] != MANIFEST_KIND or spec != SPEC_VERSION or isinstance(spec, bool):
        raise bad(f"is not a {MANIFEST_KIND} version {SPEC_VERSION} document")
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
    return Manifest(
        backend=data["backend"], distribution=data["distribution"], version=data["version"],
        entry_points={g: dict(v) for g, v in eps.items()}, vllm_requirement=requirement,
        issued=data["issued"], expires=data["expires"], serial=data["serial"],
        files=tuple(entries),
    )


def manifest_file_names(dist_name: str, version: str) -> tuple[str, str]:
    """The names a manifest may have in a manifest directory, most specific first."""
    norm = normalize(dist_name)
    return f"{norm}-{version}.manifest.json", f"{norm}.manifest.json"


def installed_entry_points(dist: Distribution) -> dict[str, dict[str, str]]:
    """The vLLM entry points an installed distribution declares (what a manifest signs)."""
    found: dict[str, dict[str, str]] = {}
    for ep in dist.entry_points:
        if ep.group.startswith(VLLM_GROUP_PREFIX):
            found.setdefault(ep.group, {})[ep.name] = ep.value
    return found


def top_level_names(files: Iterable[str]) -> frozenset[str]:
    """Importable top-level names: packages (first directory) and root-level modules."""
    names = set()
    for path in files:
        first, sep, _ = path.partition("/")
        if sep and not first.endswith((".dist-info", ".data")):
            names.add(first)
        elif not sep and path.endswith((".py", ".so", ".pyd")):
            names.add(path.split(".", 1)[0])
    return frozenset(names)
