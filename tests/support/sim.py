"""Build the simulated backends as wheels and install them, as pip does, into a folder."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SIM = Path(__file__).resolve().parent / "sim_backends"
SIM_PROJECTS = ("sim-record", "pjrt-plugin-tt", "tt-vllm-plugin", "vllm-tt")


def build_wheel(project: Path, out: Path) -> Path:
    """Build a wheel with the venv's own setuptools (no download, no isolation).

    The build runs on a copy: setuptools leaves build/ and *.egg-info behind, and a stale
    build/ would put old code in the next wheel.
    """
    out.mkdir(parents=True, exist_ok=True)
    before = set(out.glob("*.whl"))
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(shutil.copytree(project, Path(scratch) / project.name))
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
             "--disable-pip-version-check", "-w", str(out), str(source)],
            check=True, capture_output=True,
        )
    (wheel,) = set(out.glob("*.whl")) - before
    return wheel


def install(wheels: list[Path], target: Path) -> Path:
    """Install wheels into `target` as pip does (dist-info, RECORD, entry_points.txt)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
         "--disable-pip-version-check", "--target", str(target), *map(str, wheels)],
        check=True, capture_output=True,
    )
    return target


def build_all(out: Path) -> dict[str, Path]:
    return {name: build_wheel(SIM / name, out) for name in SIM_PROJECTS}
