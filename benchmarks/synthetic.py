"""Synthetic backends of any size, shaped like the Metal plugin, written straight to disk.

A site directory holding distribution `tt-vllm-plugin` (package `tt_vllm_plugin`, platform
entry point `tt`) with N files totalling about S bytes, its dist-info with METADATA,
entry_points.txt and RECORD, and its signed manifest. Made once per (N, S) under .bench/.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from tt_meta_plugin._metadata import Distribution
from tt_meta_plugin.trust.keys import generate, key_id, load_private
from tt_meta_plugin.trust.signing import build_manifest, sign_manifest, write_manifest

WORK = Path(__file__).resolve().parents[1] / ".bench"
INFO = "tt_vllm_plugin-1.0.dist-info"
INIT = '''def register():
    return "tt_vllm_plugin.platform.TTPlatform"


def register_models():
    pass
'''


def key() -> tuple[Path, str]:
    keys = WORK / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    if not (keys / "bench.key").exists():
        generate(keys / "bench")
    return keys, key_id(load_private(keys / "bench.key").public_key())


def make_backend(files: int, total_bytes: int) -> Path:
    """Site directory with a signed synthetic backend of `files` files, ~`total_bytes`."""
    site = WORK / f"site-{files}-{total_bytes}"
    if (site / INFO / "tt_meta.manifest.json").exists():
        return site
    package = site / "tt_vllm_plugin"
    package.mkdir(parents=True, exist_ok=True)
    records = []

    def put(rel: str, data: bytes) -> None:
        path = site / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        records.append(f"{rel},sha256={digest},{len(data)}")

    put("tt_vllm_plugin/__init__.py", INIT.encode())
    size = max(1, total_bytes // files)
    block = os.urandom(1 << 20)
    for i in range(files - 5):
        # Modules (one in ten) and data files, 100 per directory.
        rel = f"tt_vllm_plugin/d{i // 100:04d}/f{i:06d}" + (".py" if i % 10 == 0 else ".bin")
        data = (block * (size // len(block) + 1))[: size] if size > 64 else os.urandom(size)
        put(rel, data[:8] + i.to_bytes(8, "little") + data[16:])
    put(f"{INFO}/METADATA", b"Metadata-Version: 2.1\nName: tt-vllm-plugin\nVersion: 1.0\n")
    put(f"{INFO}/entry_points.txt",
        b"[vllm.platform_plugins]\ntt = tt_vllm_plugin:register\n\n"
        b"[vllm.general_plugins]\ntt_model_registry = tt_vllm_plugin:register_models\n")
    put(f"{INFO}/INSTALLER", b"pip\n")
    records.append(f"{INFO}/RECORD,,")
    (site / INFO / "RECORD").write_text("\n".join(records) + "\n")
    sign(site)
    return site


def sign(site: Path) -> None:
    dist = Distribution.at(site / INFO)
    manifest = build_manifest(dist, "metal", serial=1, expires_days=365)
    write_manifest(sign_manifest(manifest, [load_private(key()[0] / "bench.key")]),
                   site / INFO / "tt_meta.manifest.json")


def policy(site: Path, state: Path) -> Path:
    keys, keyid = key()
    path = site.parent / f"policy-{site.name}.toml"
    path.write_text(
        'version = 1\nallowed_backends = ["metal"]\ndefault_backend = "metal"\n'
        f'[trust]\nkey_dirs = ["{keys}"]\nstate_dir = "{state}"\n'
        f'[trust.signers]\nmetal = ["{keyid}"]\n'
    )
    return path
