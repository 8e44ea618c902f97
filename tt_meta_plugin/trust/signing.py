"""Signing: describe an installed backend distribution, file by file, and sign that description.

What an image build runs right after installing a backend: `tt-meta sign`. The files are
those of the installed distribution: its RECORD entries inside the install root, and every
file under its directories, including the `__pycache__` bytecode present at signing time (so
that tampering with it is detected; tt_meta never executes it either way). The install
root's own `__pycache__` is shared by every distribution with top-level modules: only the
RECORD's entries in it are signed. An editable install adds the files of its sources, where
its .pth or finder says they are (`editable.py`).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .._errors import ConfigError
from .._metadata import Distribution, dist_info_dir, install_root, is_editable, normalize
from ..selection.catalog import Catalog
from .bytecode import check_bytecode
from .envelope import MANIFEST_TYPE, Envelope, Signature, pae
from .hashing import sha256_files
from .keys import key_id
from .manifest import (
    IN_DIST_MANIFEST,
    FileEntry,
    Manifest,
    check_relative_path,
    installed_entry_points,
    manifest_file_names,
    manifest_paths,
    top_level_names,
)
from .roles import PLUGIN, RUNTIME

DAY = 86400


def installed_files(dist: Distribution, root: Path) -> list[str]:
    """Every file of `dist` inside `root`, as sorted POSIX paths relative to it."""
    found: set[str] = set()
    for item in dist.files or ():
        full = Path(str(dist.locate_file(item))).resolve()
        if full.is_relative_to(root) and full.is_file():
            found.add(full.relative_to(root).as_posix())
    tops = {p.split("/", 1)[0] for p in found if "/" in p} - {"__pycache__"}
    for top in sorted(tops):
        for folder, _, names in os.walk(root / top):
            for name in names:
                found.add((Path(folder) / name).relative_to(root).as_posix())
    info = dist_info_dir(dist)
    own = f"{info.name}/{IN_DIST_MANIFEST}" if info else None
    return sorted(p for p in found if p != own and check_relative_path(p) is None)


def build_manifest(dist: Distribution, backend: str, serial: int, expires_days: float,
                   now: float | None = None) -> Manifest:
    issued = int(time.time() if now is None else now)
    catalog = Catalog()
    role = role_of(catalog, backend, dist)
    root = install_root(dist)
    paths = installed_files(dist, root)
    located = {p: str(root / p) for p in paths}
    editable = None
    if is_editable(dist, f"{dist.name} {dist.version}"):
        if role == RUNTIME:
            raise ConfigError(
                f"{dist.name} {dist.version} is an editable install: tt_meta signs a backend's "
                "runtime only as installed from its wheel",
                fix=f"install {dist.name} from its wheel (pip install, without -e), then sign "
                "it; or waive runtime verification in the policy ([trust] "
                "require_runtime_signatures = false) on development machines")
        from .editable import layout, source_files

        editable = layout(dist, root, f"{dist.name} {dist.version}")
        located = {p: f for p, f in located.items()
                   if p.partition("/")[0] not in editable.sources}
        located.update(source_files(editable, f"{dist.name} {dist.version}"))
        paths = sorted(located)
    if not top_level_names(paths):
        raise ConfigError(f"{dist.name} has no importable files under {root}",
                          fix="sign the installed backend, not a metadata-only distribution")
    check_bytecode(located, f"{dist.name} {dist.version}")
    hashes = sha256_files([located[p] for p in paths])
    requirement = None
    if backend in catalog.names():
        requirement = catalog.vllm_requirement(catalog.get(backend, "catalog"), dist)
    return Manifest(
        backend=backend,
        distribution=dist.name,
        version=str(dist.version),
        entry_points=installed_entry_points(dist),
        vllm_requirement=requirement,
        issued=issued,
        expires=issued + int(expires_days * DAY),
        serial=serial,
        files=tuple(FileEntry(p, size, digest) for p, (size, digest) in zip(paths, hashes,
                                                                              strict=True)),
        editable=editable,
        role=role,
    )


def role_of(catalog: Catalog, backend: str, dist: Distribution) -> str:
    """What `dist` is to `backend`: one of its runtime distributions, or its plugin. A
    third-party backend is looked up through its installed plugin (as serving does)."""
    try:
        runtimes = catalog.get(backend, "tt-meta sign --backend").runtime_distributions
    except ConfigError:  # no such backend installed: signed as a plugin, as before
        return PLUGIN
    return RUNTIME if normalize(dist.name) in {normalize(r) for r in runtimes} else PLUGIN


def sign_manifest(manifest: Manifest, keys: list[Ed25519PrivateKey]) -> Envelope:
    payload = json.dumps(manifest.to_payload(), indent=1, sort_keys=True).encode("utf-8")
    message = pae(MANIFEST_TYPE, payload)
    signatures = tuple(Signature(key_id(k.public_key()), k.sign(message)) for k in keys)
    return Envelope(MANIFEST_TYPE, payload, signatures)


def default_output(dist: Distribution) -> Path:
    info = dist_info_dir(dist)
    if info is None:
        raise ConfigError(f"{dist.name} has no .dist-info directory to hold its manifest",
                          fix="give --out FILE")
    return info / IN_DIST_MANIFEST


def checked_output(out: Path, dist: Distribution, manifest_dirs: Sequence[str], policy: str,
                   staging: bool) -> Path:
    """Where `tt-meta sign --out` writes: `out`, or in a directory `out` (one that exists, or
    a manifest directory, created if need be) the most specific name verification reads
    there. A manifest where verification does not look would pass signing and leave every
    server refusing with "no signed manifest found", so a name verification never reads is
    refused, and so is a place it does not read unless `staging` (the file is copied into a
    manifest directory later)."""
    read = manifest_paths(manifest_dirs, dist)
    names = manifest_file_names(dist.name, str(dist.version))
    if _is_dir(out) or out.resolve() in {Path(d).resolve() for d in manifest_dirs}:
        info = dist_info_dir(dist)
        in_info = info is not None and out.resolve() == info
        out = out / (IN_DIST_MANIFEST if in_info else names[0])
    listed = ", ".join(map(str, read))
    label = f"{dist.name} {dist.version}"
    if out.name not in (*names, IN_DIST_MANIFEST):
        raise ConfigError(
            f"--out names {out.name!r}, a file name verification never reads for {label}: it "
            f"reads {names[0]} or {names[1]} in a manifest directory, and "
            f"{IN_DIST_MANIFEST} in the distribution's .dist-info",
            where=f"--out {out}",
            fix=f"write one of the files verification reads ({listed}); without --out, "
            "tt-meta sign writes the .dist-info one")
    if not staging and out.resolve() not in {p.resolve() for p in read}:
        raise ConfigError(
            f"verification would never read {out}: under the policy {policy} it reads a "
            f"manifest of {label} only at {listed}",
            where=f"--out {out}",
            fix="write one of those files (a directory of [trust] manifest_dirs, or without "
            "--out the .dist-info); to write into a staging directory whose files are copied "
            "into a manifest directory later, add --staging; if servers use another policy, "
            "name it in TT_META_POLICY when signing")
    return out


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a name too long, a directory this user cannot search: writing says why
        return False


def write_manifest(envelope: Envelope, out: Path) -> None:
    tmp: str | None = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        # A new file of our own (O_EXCL), never a name someone could have put a symlink at.
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
        with os.fdopen(fd, "wb") as handle:
            handle.write(envelope.to_bytes())
            os.fchmod(handle.fileno(), 0o644)
        os.replace(tmp, out)
    except OSError as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise ConfigError(f"cannot write the manifest: {exc.strerror}",
                          where=str(exc.filename or out),
                          fix="give --out a file in a directory the user signing can write "
                          "(the image build step that installs the backend)") from None
