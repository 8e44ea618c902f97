"""`tt-meta keygen`, `tt-meta sign` and `tt-meta verify`."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from .._errors import ConfigError, TTMetaError
from .._metadata import find_distribution, install_root, normalize
from ..selection.catalog import Catalog
from ..trust.keys import generate, load_private
from ..trust.manifest import manifest_paths
from ..trust.roles import PLUGIN, RUNTIME
from ..trust.signing import (
    build_manifest,
    checked_output,
    default_output,
    sign_manifest,
    write_manifest,
)
from ..trust.start_up import start_up_files
from ..trust.verifier import Verifier


def keygen(args: argparse.Namespace) -> int:
    keyid = generate(args.out)
    print(f"key id:      {keyid}")
    print(f"private key: {args.out}.key (mode 0600; keep it off serving machines)")
    print(f"public key:  {args.out}.pub")
    print(f"trust it:    copy {args.out}.pub into a key directory the policy names, and add "
          f"the key id under [trust.signers]")
    return 0


def sign(args: argparse.Namespace) -> int:
    dist = find_distribution(args.dist)
    if dist is None:
        raise ConfigError(f"distribution {args.dist!r} is not installed in this environment",
                          fix="install the backend first, then sign it")
    keys = [load_private(path) for path in args.key]
    serial = args.serial if args.serial is not None else int(time.time())
    if serial < 0:
        raise ConfigError("--serial must not be negative", fix="give a serial >= 0")
    # Where it goes is checked before anything is hashed: a manifest verification never
    # reads would make every server refuse with "no signed manifest found".
    read: list[Path] = []
    if args.out is None:
        out = default_output(dist)
    else:
        # The manifest directories of the policy serving reads here (TT_META_POLICY,
        # /etc/tt-meta/policy.toml or the built-in one).
        from ..selection.policy import load_policy

        policy = load_policy(os.environ)
        read = manifest_paths(policy.trust.manifest_dirs, dist)
        out = checked_output(args.out, dist, policy.trust.manifest_dirs, policy.source,
                             args.staging)
    manifest = build_manifest(dist, args.backend, serial, args.expires)
    envelope = sign_manifest(manifest, keys)
    write_manifest(envelope, out)
    # An editable install is signed where its code is now: say where, since moving the
    # project (or reinstalling it elsewhere) means signing again.
    where = (f" (editable, sources in {', '.join(sorted(manifest.editable.sources.values()))})"
             if manifest.editable is not None else "")
    role = "'s runtime" if manifest.role == RUNTIME else ""
    print(f"signed {dist.name} {dist.version} as backend '{args.backend}'{role}{where}: "
          f"{len(manifest.files)} files, serial {serial}, expires "
          f"{time.strftime('%Y-%m-%d', time.gmtime(manifest.expires))}, "
          f"{len(keys)} signature(s) -> {out}")
    if read and out.resolve() not in {p.resolve() for p in read}:  # --staging
        print(f"staged: verification reads it only once copied to one of: "
              f"{', '.join(map(str, read))}")
    return 0


def expiry_fields(expires: int | None) -> dict[str, Any]:
    """When a verified manifest expires: ISO 8601 (UTC), Unix time, and days left."""
    if expires is None:
        return {}
    return {"expires": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires)),
            "expires_at": expires, "days_left": round((expires - time.time()) / 86400, 1)}


def verify(args: argparse.Namespace) -> int:
    # The policy as serving reads it, permission check included: verification writes rollback
    # marks and records that servers then trust.
    from ..activation.first_process import load_checked_policy

    policy = load_checked_policy(os.environ)
    catalog = Catalog()
    # Each backend's plugin distributions, then its runtimes.
    wanted = [(name, d, PLUGIN) for name in catalog.names()
              for d in catalog.get(name, "").distributions]
    wanted += [(name, d, RUNTIME) for name in catalog.names()
               for d in catalog.get(name, "").runtime_distributions]
    if args.dist:
        known = [d for _, d, _ in wanted]
        wanted = [(n, d, r) for n, d, r in wanted if normalize(d) == normalize(args.dist)]
        if not wanted:
            raise ConfigError(f"{args.dist!r} is not a distribution of any known backend",
                              fix=f"one of: {', '.join(known)}")
    waived = not policy.trust.require_runtime_signatures
    verifier = Verifier(policy.trust)
    results: list[dict[str, Any]] = []
    for backend, name, role in wanted:
        dist = find_distribution(name)
        if dist is None:
            if args.dist:
                results.append({"distribution": name, "backend": backend, "role": role,
                                "ok": False, "error": "not installed"})
            continue
        started = time.perf_counter()
        # What Python runs from the install root before tt_meta could verify anything.
        early = [{"path": f.path, "installed_by": f.owner}
                 for f in start_up_files(install_root(dist))]
        if role == RUNTIME and waived:  # as serving does: not verified, and said so
            results.append({"distribution": dist.name, "version": str(dist.version),
                            "backend": backend, "role": role, "ok": True, "verified": False,
                            "waived": True,
                            "start_up_files": early})
            continue
        try:
            verified = verifier.verify(backend, dist, role=role)
            results.append({"distribution": dist.name, "version": str(dist.version),
                            "backend": backend, "role": role, "ok": True, "verified": True,
                            "manifest": str(verified.manifest_path),
                            "serial": verified.serial,
                            "signers": list(verified.signers), "files": len(verified.files),
                            "hashed": verified.hashed_files,
                            **expiry_fields(verified.expires),
                            "ms": round((time.perf_counter() - started) * 1e3, 1),
                            "start_up_files": early})
        except TTMetaError as error:
            results.append({"distribution": dist.name, "version": str(dist.version),
                            "backend": backend, "role": role, "ok": False,
                            "error": error.summary,
                            "where": error.where, "fix": error.fix,
                            "start_up_files": early})
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            what = r["backend"] + (" runtime" if r["role"] == RUNTIME else "")
            if r.get("waived"):
                print(f"WAIVED {r['distribution']} {r['version']} ({what}): not verified "
                      f"(require_runtime_signatures = false in {policy.source})")
            elif r["ok"]:
                print(f"OK     {r['distribution']} {r['version']} ({what}): "
                      f"{r['files']} files, serial {r['serial']}, signed by "
                      f"{', '.join(k[:16] for k in r['signers'])}, expires {r['expires']} "
                      f"({r['days_left']} days left), {r['ms']} ms")
            else:
                print(f"FAILED {r['distribution']} {r.get('version', '')} ({what}): "
                      f"{r['error']}")
                for key in ("where", "fix"):
                    if r.get(key):
                        print(f"  {key}: {r[key]}")
            for f in r.get("start_up_files", ()):
                print(f"  runs at Python start-up, before tt_meta: {f['path']} (installed by "
                      f"{f['installed_by'] or 'no installed distribution'})")
        if not results:
            print("no backend distribution is installed")
    return 0 if results and all(r["ok"] for r in results) else 1
