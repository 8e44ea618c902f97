"""A backend's runtime: the real ttnn wheel, verified with its backend; a guarded import.

1. The real `ttnn` 0.81.1 (Metal's runtime: a Python 3.10 wheel of about 8,800 files and
   341 MB), installed as files with pip (`--target`, no dependencies; it cannot be imported
   here: Python 3.11, no device) once into `.bench/ttnn-site` and kept, then signed as backend
   metal's runtime. Measured on it: tt_meta's cold verification against one-core `hashlib`
   over the same files (best of 3, page cache warm), a warm verification (record valid), and
   the activation of a vLLM process with the runtime installed (first process cold and warm,
   child; medians, with the backend alone as the baseline).
2. Importing a guarded runtime: a package shaped like ttnn's Python part (655 modules, all
   imported by its `__init__`), its bytecode compiled and signed as pip leaves it, imported
   plainly and then under the import guard (fresh processes, medians).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench_activation import kinds_of_run
from bench_verify import baseline
from synthetic import WORK, key, make_backend, policy

from tt_meta_plugin._metadata import Distribution
from tt_meta_plugin.selection.policy import TrustSettings
from tt_meta_plugin.trust.keys import load_private
from tt_meta_plugin.trust.roles import RUNTIME
from tt_meta_plugin.trust.signing import build_manifest, sign_manifest, write_manifest
from tt_meta_plugin.trust.verifier import Verifier

TTNN = "ttnn==0.81.1"
MB = 1 << 20


def install_ttnn() -> Path:
    """The real ttnn, installed as files (downloaded once), and signed as metal's runtime."""
    site = WORK / "ttnn-site"
    if not list(site.glob("ttnn-*.dist-info")):
        shutil.rmtree(site, ignore_errors=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
             "--python-version", "3.10", "--implementation", "cp", "--only-binary=:all:",
             "--disable-pip-version-check", TTNN], check=True)
    sign_runtime(site, "ttnn")
    return site


def sign_runtime(site: Path, name: str) -> None:
    (info,) = site.glob(f"{name}-*.dist-info")
    if (info / "tt_meta.manifest.json").exists():
        return
    manifest = build_manifest(Distribution.at(info), "metal", serial=1, expires_days=365)
    assert manifest.role == RUNTIME, manifest.role
    write_manifest(sign_manifest(manifest, [load_private(key()[0] / "bench.key")]),
                   info / "tt_meta.manifest.json")


def verify_seconds(site: Path, state: Path, cold: bool) -> tuple[float, int]:
    if cold:
        shutil.rmtree(state, ignore_errors=True)
    keys, keyid = key()
    trust = TrustSettings(key_dirs=(str(keys),), state_dir=str(state), manifest_dirs=(),
                          signers=(("metal", (keyid,)),))
    (info,) = site.glob("ttnn-*.dist-info")
    started = time.perf_counter()
    verified = Verifier(trust).verify("metal", Distribution.at(info), role=RUNTIME)
    return time.perf_counter() - started, verified.hashed_files


def verification(site: Path, repeat: int) -> dict[str, Any]:
    paths = [os.path.join(d, n) for d, _, names in os.walk(site) for n in names]
    size = sum(os.path.getsize(p) for p in paths)
    baseline(site)  # warm the page cache
    base = min(baseline(site) for _ in range(repeat))
    state = WORK / "state-ttnn"
    cold = min(verify_seconds(site, state, True)[0] for _ in range(repeat))
    warm_runs = [verify_seconds(site, state, False) for _ in range(repeat)]
    assert all(h == 0 for _, h in warm_runs)
    warm = min(t for t, _ in warm_runs)
    return {"files": len(paths), "bytes": size, "baseline_s": base, "cold_s": cold,
            "warm_s": warm, "ratio_cold_vs_hashlib": base / cold}


def activation(plugin: Path, runtime: Path, repeat: int) -> dict[str, float]:
    """vLLM processes with the plugin and the runtime installed (interleaved, medians)."""
    state = WORK / "state-act-ttnn"

    def verified_both(first: dict[str, Any]) -> None:  # the plugin and ttnn
        assert len(json.loads(first["decision"])["trusted"]) == 2, first

    return kinds_of_run(Path(f"{plugin}{os.pathsep}{runtime}"), str(policy(plugin, state)),
                        state, repeat, verified_both)


# -- importing a guarded runtime ----------------------------------------------------------

MODULES = 655
IMPORT_PROBE = """
import json, os, sys, time
sys.argv = ["/usr/bin/vllm", "serve", "bench/model"]
if os.environ.get("VLLM_PLUGINS") == "tt_meta":
    from tt_meta_plugin import vllm_entry
    vllm_entry.platform_plugin()  # verifies (or inherits) and installs the guard
t0 = time.perf_counter()
import ttnn
ms = (time.perf_counter() - t0) * 1e3
assert len(ttnn.MODULES) == int(os.environ["BENCH_MODULES"])
print(json.dumps({"ms": ms, "loader": type(ttnn.__loader__).__name__}))
"""


def make_guarded_package() -> Path:
    """A site with the synthetic Metal plugin and a ttnn-shaped runtime of MODULES modules,
    its bytecode compiled (as pip does) and everything signed."""
    site = WORK / f"import-site-{MODULES}"
    if (site / "ttnn-1.0.dist-info" / "tt_meta.manifest.json").exists():
        return site
    shutil.rmtree(site, ignore_errors=True)
    plugin = make_backend(100, 1 << 20)
    shutil.copytree(plugin, site, ignore=shutil.ignore_patterns("tt_meta.manifest.json"))
    package = site / "ttnn"
    body = "".join(f"def op_{j}(x, y=1):\n    return x * {j} + y\n\n" for j in range(120))
    names = []
    for i in range(MODULES - 1):
        folder = package / f"group{i // 40:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "__init__.py").touch()
        (folder / f"m{i:04d}.py").write_text(f'"""Module {i}."""\n\n{body}')
        names.append(f"ttnn.group{i // 40:02d}.m{i:04d}")
    (package / "__init__.py").write_text(
        "import importlib\n\nMODULES = [\n" + "".join(f'    "{n}",\n' for n in names)
        + "]\nfor _name in MODULES:\n    importlib.import_module(_name)\n")
    info = site / "ttnn-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ttnn\nVersion: 1.0\n")
    rels = sorted(p.relative_to(site).as_posix() for p in package.rglob("*.py"))
    (info / "RECORD").write_text("".join(f"{r},,\n" for r in rels) + f"{info.name}/RECORD,,\n")
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)
    resign_plugin(site)
    sign_runtime(site, "ttnn")
    return site


def resign_plugin(site: Path) -> None:
    (info,) = site.glob("tt_vllm_plugin-*.dist-info")
    manifest = build_manifest(Distribution.at(info), "metal", serial=1, expires_days=365)
    write_manifest(sign_manifest(manifest, [load_private(key()[0] / "bench.key")]),
                   info / "tt_meta.manifest.json")


def import_probe(site: Path, **env: str) -> dict[str, Any]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("TT_META_", "VLLM_"))}
    full.update(PYTHONPATH=str(site), BENCH_MODULES=str(MODULES - 1), **env)
    full.pop("PYTHONDONTWRITEBYTECODE", None)
    proc = subprocess.run([sys.executable, "-B", "-c", IMPORT_PROBE], env=full,
                          capture_output=True, text=True, check=False)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(proc.stdout + proc.stderr)
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def guarded_import(repeat: int) -> dict[str, Any]:
    site = make_guarded_package()
    state = WORK / "state-import"
    shutil.rmtree(state, ignore_errors=True)
    pol = str(policy(site, state))
    import_probe(site, VLLM_PLUGINS="tt_meta", TT_META_POLICY=pol)  # the record, once
    plain: list[float] = []
    guarded: list[float] = []
    for _ in range(repeat):
        plain.append(import_probe(site)["ms"])
        run = import_probe(site, VLLM_PLUGINS="tt_meta", TT_META_POLICY=pol)
        assert run["loader"] == "_VerifiedSourceLoader", run
        guarded.append(run["ms"])
    med = statistics.median
    return {"modules": MODULES, "plain_ms": med(plain), "guarded_ms": med(guarded)}


def run(repeat: int = 3, processes: int = 9) -> dict[str, Any]:
    runtime = install_ttnn()
    verify = verification(runtime, repeat)
    act = activation(make_backend(100, 1 << 20), runtime, processes)
    imp = guarded_import(processes)
    print("\nThe real ttnn 0.81.1 as metal's runtime "
          f"({verify['files']} files, {verify['bytes'] / MB:.0f} MB; best of {repeat})")
    print(f"  verification: hashlib 1 core {verify['bytes'] / MB / verify['baseline_s']:.0f} "
          f"MB/s, tt_meta cold {verify['bytes'] / MB / verify['cold_s']:.0f} MB/s "
          f"({verify['ratio_cold_vs_hashlib']:.2f}x), warm {verify['warm_s'] * 1e3:.1f} ms")
    print(f"  activation with ttnn installed (median of {processes}; ms): alone "
          f"{act['backend_alone_ms']:.1f}, cold {act['cold_ms']:.1f} "
          f"({act['cold_ms'] - act['backend_alone_ms']:+.1f}), warm {act['warm_ms']:.1f} "
          f"({act['warm_ms'] - act['backend_alone_ms']:+.1f}), child {act['child_ms']:.1f} "
          f"({act['child_ms'] - act['backend_alone_ms']:+.1f})")
    print(f"importing a guarded runtime of {MODULES} modules (median of {processes}): plain "
          f"{imp['plain_ms']:.1f} ms, under the guard {imp['guarded_ms']:.1f} ms "
          f"({imp['guarded_ms'] / imp['plain_ms']:.2f}x)")
    return {"ttnn_verification": verify, "ttnn_activation": act, "guarded_import": imp}


if __name__ == "__main__":
    run()
