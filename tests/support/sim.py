"""Build the simulated backends as wheels and install them, as pip does, into a folder.

The wheels are written here, byte for byte, from each project's pyproject.toml: no build
backend runs. A setuptools build would make the result depend on the setuptools that vLLM
happens to pin (setuptools 65 writes `Name: vllm-tt`, 78 keeps `vllm_tt`), so a test would
pass or fail with it. The wheel format is small (PEP 427: a zip with a `.dist-info` holding
METADATA, WHEEL, entry_points.txt and RECORD) and written with fixed timestamps, so the same
project always gives the same wheel.
"""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
import sys
import zipfile
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SIM = Path(__file__).resolve().parent / "sim_backends"
SIM_PROJECTS = ("sim-record", "pjrt-plugin-tt", "ttnn", "tt-vllm-plugin", "vllm-tt")
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can hold


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def build_wheel(project: Path, out: Path) -> Path:
    """Write `project` (a pyproject.toml with [project] and [tool.setuptools] packages) as a
    pure-Python wheel in `out`; the distribution name is exactly the one the project gives."""
    meta = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    spec = meta["project"]
    name, version = spec["name"], spec["version"]
    stem = f"{re.sub(r'[-_.]+', '_', name)}-{version}"
    files: list[tuple[str, bytes]] = []
    for package in meta["tool"]["setuptools"]["packages"]:
        folder = project / package.replace(".", "/")
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                files.append((path.relative_to(project).as_posix(), path.read_bytes()))
    info = f"{stem}.dist-info"
    metadata = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    if "requires-python" in spec:
        metadata.append(f"Requires-Python: {spec['requires-python']}")
    metadata += [f"Requires-Dist: {req}" for req in spec.get("dependencies", [])]
    entry_points = "".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n"
        for group, eps in spec.get("entry-points", {}).items())
    tops = sorted({path.split("/")[0] for path, _ in files})
    files += [
        (f"{info}/METADATA", ("\n".join(metadata) + "\n\n").encode()),
        (f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: tt-meta-tests\n"
                          b"Root-Is-Purelib: true\nTag: py3-none-any\n\n"),
        (f"{info}/top_level.txt", ("\n".join(tops) + "\n").encode()),
    ]
    if entry_points:
        files.append((f"{info}/entry_points.txt", entry_points.encode()))
    record = "\n".join([*(_record_line(p, d) for p, d in files), f"{info}/RECORD,,"]) + "\n"
    files.append((f"{info}/RECORD", record.encode()))
    out.mkdir(parents=True, exist_ok=True)
    wheel = out / f"{stem}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in files:
            entry = zipfile.ZipInfo(path, _EPOCH)
            entry.external_attr = 0o644 << 16
            archive.writestr(entry, data, zipfile.ZIP_DEFLATED)
    return wheel


def install(wheels: list[Path], target: Path) -> Path:
    """Install wheels into `target` as pip does (dist-info, RECORD, INSTALLER, bytecode)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
         "--disable-pip-version-check", "--no-cache-dir", "--target", str(target),
         *map(str, wheels)],
        check=True, capture_output=True,
    )
    return target


def build_all(out: Path) -> dict[str, Path]:
    return {name: build_wheel(SIM / name, out) for name in SIM_PROJECTS}


def install_editable(project: Path, target: Path, mode: str | None = None,
                     wheels: list[Path] | None = None) -> Path:
    """Install `project` editable into `target` (with `wheels`, normally), for real: pip's
    PEP 660 route through the interpreter's own setuptools (no build isolation, no index).

    What it leaves is what `pip install -e` / `uv pip install -e` leave (uv runs the same
    build backend): with setuptools 78 (vLLM's pin), in `target` a `direct_url.json` with
    `"dir_info": {"editable": true}` in the .dist-info and `__editable__.NAME-VER.pth`; the
    code stays in `project`. `mode=None` is setuptools' default ("lenient"): for a flat
    layout the .pth holds `import F; F.install()` and `__editable___NAME_VER_finder.py` a
    MAPPING of each top-level package to its directory in the project; for a src layout (a
    `package-dir` of `src`) the .pth holds that directory. `mode="compat"` always writes the
    directory form (the project root for a flat layout); `"strict"` a tree of links under
    `project/build`.
    """
    settings = [f"--config-settings=editable_mode={mode}"] if mode else []
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
         "--no-build-isolation", "--disable-pip-version-check", "--no-cache-dir",
         "--target", str(target), *settings, *map(str, wheels or []), "-e", str(project)],
        check=True, capture_output=True,
    )
    return target


def start_up_python(venv: Path, *sites: Path) -> Path:
    """An interpreter whose start-up processes this interpreter's site-packages and then
    `sites` as site directories (their .pth files run, the directories those add are on
    sys.path) before site.py imports sitecustomize, as in an image whose packages are
    installed in its environment. A venv of the base interpreter, without pip, and one .pth.
    """
    import sysconfig

    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv",
                    "--without-pip", str(venv)], check=True, capture_output=True)
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(venv),
                                                        "platbase": str(venv)}))
    dirs = [sysconfig.get_path("purelib"), *map(str, sites)]
    (purelib / "zz_tt_meta_test_sites.pth").write_text(
        "import site; " + "; ".join(f"site.addsitedir({d!r})" for d in dirs) + "\n")
    return venv / "bin" / "python"
