"""What an operator does at image build, with the real `tt-meta` commands: make a key, sign
each installed backend, and write a policy that trusts the key for those backends."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

TT_META = shutil.which("tt-meta", path=os.path.dirname(sys.executable)) or "tt-meta"
# Each backend's plugin distribution and its runtime (signed as the backend's runtime).
BACKENDS = {"tt-vllm-plugin": "metal", "ttnn": "metal", "vllm-tt": "forge",
            "pjrt-plugin-tt": "forge"}


def tt_meta(*args: str, site: Path, **extra: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(site), **extra)
    proc = subprocess.run([TT_META, *args], env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"tt-meta {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def sign_backends(site: Path, root: Path, template: Path) -> Path:
    """Keygen, sign, write the policy; returns the policy path."""
    secret, keys, manifests = root / "secret", root / "keys", root / "manifests"
    for folder in (secret, keys, manifests):
        folder.mkdir(parents=True, exist_ok=True)
    if not (secret / "release.key").exists():
        printed = tt_meta("keygen", "--out", str(secret / "release"), site=site)
        # "key id:      <hex>" is the first line keygen prints; the operator copies it.
        (secret / "release.keyid").write_text(printed.splitlines()[0].split()[-1])
    keyid = (secret / "release.keyid").read_text().strip()
    shutil.copy(secret / "release.pub", keys / "release.pub")
    # The policy first: `tt-meta sign --out` writes only where the policy serving reads
    # (TT_META_POLICY) has verification look.
    policy = root / "policy.toml"
    policy.write_text(
        template.read_text()
        + f'\n[trust]\nkey_dirs = ["{keys}"]\nmanifest_dirs = ["{manifests}"]\n'
        f'state_dir = "{root / "state"}"\naudit_log = "{root / "audit.jsonl"}"\n'
        f'\n[trust.signers]\nmetal = ["{keyid}"]\nforge = ["{keyid}"]\n'
    )
    for dist, backend in BACKENDS.items():
        if not list(site.glob(f"{dist.replace('-', '_')}-*.dist-info")):
            continue  # not installed in this site
        tt_meta("sign", "--dist", dist, "--backend", backend, "--key",
                str(secret / "release.key"), "--out", str(manifests / f"{dist}.manifest.json"),
                site=site, TT_META_POLICY=str(policy))
    return policy
