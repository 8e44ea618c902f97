"""Installing tt-meta-plugin as an operator does (issue #15): the wheel `make dist` builds,
checked (tests/support/check_dist.py), installed with pip into a fresh venv without vLLM, and
its `tt-meta` run there. `__version__` has one source, pyproject.toml, through the installed
metadata.

The build runs on a copy of the source tree (as `make dist` builds it: the sdist, then the
wheel from the sdist, with this venv's setuptools), so nothing is written into the checkout
others work in. The venv gets its dependencies from the package index (or its local mirror).
"""

from __future__ import annotations

import email.parser
import io
import json
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from check_dist import check, check_wheel, project
from conftest import REPO, clean_env

VERSION = str(project()["version"])
WHEEL = f"tt_meta_plugin-{VERSION}-py3-none-any.whl"
# Not part of the source: virtual environments, build output, caches, VCS data.
IGNORED = shutil.ignore_patterns(".venv*", ".git", "build", "dist", "__pycache__", "*.egg-info",
                                 ".*_cache", ".hypothesis", ".work", ".demo", ".bench")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(source copy, dist directory) after the build `make dist` runs."""
    root = tmp_path_factory.mktemp("dist")
    source, dist = root / "src", root / "dist"
    shutil.copytree(REPO, source, ignore=IGNORED)
    proc = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir",
                           str(dist), str(source)], capture_output=True, text=True,
                          timeout=300, env=clean_env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return source, dist


@pytest.fixture(scope="module")
def venv(built: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed by pip, and nothing else of this checkout."""
    where = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True, timeout=120)
    proc = subprocess.run(
        [str(where / "bin" / "python"), "-m", "pip", "install", "-q",
         "--disable-pip-version-check", str(built[1] / WHEEL)],
        capture_output=True, text=True, timeout=600, env=clean_env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return where


def in_venv(venv: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """A command of the venv, run from a directory without this checkout, with the pinned
    environment (no TT_META_*, VLLM_*, PYTHONPATH)."""
    return subprocess.run([str(venv / "bin" / argv[0]), *argv[1:]], capture_output=True,
                          text=True, timeout=120, cwd=venv, env=clean_env())


def test_the_built_artifacts_pass_the_check(built: tuple[Path, Path]) -> None:
    source, dist = built
    assert check(dist, source) == []
    assert sorted(p.name for p in dist.iterdir()) == [WHEEL, f"tt_meta_plugin-{VERSION}.tar.gz"]


def rewrite(wheel: Path, out: Path, change: Change, added: str | None) -> Path:
    """A copy of `wheel` with each member passed through `change` (None drops it), and an
    empty member `added`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(buffer, "w") as dst:
        for name in src.namelist():
            data = change(name, src.read(name))
            if data is not None:
                dst.writestr(name, data)
        if added:
            dst.writestr(added, b"")
    out.mkdir()
    (out / WHEEL).write_bytes(buffer.getvalue())
    return out / WHEEL


Change = Callable[[str, bytes], "bytes | None"]
INFO = f"tt_meta_plugin-{VERSION}.dist-info"


def same(name: str, data: bytes) -> bytes:
    return data


def edit(member: str, old: bytes, new: bytes) -> Change:
    def change(name: str, data: bytes) -> bytes:
        if name == member:
            assert old in data, (member, old)
            return data.replace(old, new)
        return data

    return change


# case -> (change, member added, a problem the check must report)
BROKEN: dict[str, tuple[Change, str | None, str]] = {
    "module missing": (lambda n, d: None if n == "tt_meta_plugin/trust/verifier.py" else d,
                       None, "tt_meta_plugin/trust/verifier.py is missing from the wheel"),
    "bytecode": (same, "tt_meta_plugin/__pycache__/x.cpython-311.pyc",
                 "tt_meta_plugin/__pycache__/x.cpython-311.pyc does not belong in the wheel"),
    "a test": (same, "tests/test_x.py", "tests/test_x.py does not belong in the wheel"),
    "vllm required": (edit(f"{INFO}/METADATA", b"Requires-Dist: pluggy",
                           b"Requires-Dist: vllm\nRequires-Dist: pluggy"),
                      None, "vLLM is a hard requirement"),
    "version": (edit(f"{INFO}/METADATA", f"Version: {VERSION}".encode(), b"Version: 9.9"),
                None, f"METADATA Version is '9.9', pyproject.toml says '{VERSION}'"),
    "no platform plugin": (edit(f"{INFO}/entry_points.txt", b"[vllm.platform_plugins]",
                                b"[other]"),
                           None, "entry point [vllm.platform_plugins] tt_meta is None"),
    "policy changed": (edit("tt_meta_plugin/default_policy.toml", b"version", b"Version"),
                       None, "tt_meta_plugin/default_policy.toml in the wheel differs"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_the_check_finds_a_broken_wheel(built: tuple[Path, Path], tmp_path: Path,
                                        case: str) -> None:
    source, dist = built
    change, added, expected = BROKEN[case]
    wheel = rewrite(dist / WHEEL, tmp_path / "broken", change, added)
    problems = list(check_wheel(wheel, source))
    assert any(expected in p for p in problems), problems


def test_vllm_is_only_an_extra(built: tuple[Path, Path]) -> None:
    with zipfile.ZipFile(built[1] / WHEEL) as wheel:
        meta = email.parser.BytesParser().parsebytes(wheel.read(f"{INFO}/METADATA"))
    requires = meta.get_all("Requires-Dist") or []
    assert [r for r in requires if r.startswith("vllm")] == ['vllm; extra == "vllm"'], requires
    assert {r.split(";")[0].split(">")[0] for r in requires if "extra" not in r} == {
        "importlib-metadata", "cryptography", "pluggy", "packaging", "tomli"}, requires


def test_the_installed_version_is_the_metadata_version(venv: Path) -> None:
    proc = in_venv(venv, "python", "-c", (
        "import importlib.metadata, json, sys, tt_meta_plugin; "
        "print(json.dumps([tt_meta_plugin.__version__, "
        "importlib.metadata.version('tt-meta-plugin'), tt_meta_plugin.__file__, "
        "'vllm' in sys.modules]))"))
    assert proc.returncode == 0, proc.stderr
    version, metadata, location, vllm = json.loads(proc.stdout)
    assert version == metadata == VERSION
    assert location.startswith(str(venv)), location  # the installed copy, not the checkout
    assert vllm is False


def test_no_vllm_in_the_venv(venv: Path) -> None:
    proc = in_venv(venv, "python", "-c", "import importlib.util as u; "
                   "print(u.find_spec('vllm') is None, u.find_spec('torch') is None)")
    assert proc.stdout.split() == ["True", "True"], proc.stdout + proc.stderr


def test_doctor_says_what_is_missing(venv: Path) -> None:
    proc = in_venv(venv, "tt-meta", "doctor")
    out = proc.stdout
    assert "Traceback" not in proc.stderr + out, proc.stderr
    assert "[warn] vLLM: vLLM not installed" in out, out
    assert "[warn] backend metal: not installed (distribution tt-vllm-plugin" in out, out
    assert "[warn] backend forge: not installed (distribution vllm-tt)" in out, out
    # The policy is the one inside the installed package.
    assert f"[  ok] policy: {venv}/lib/" in out and "tt_meta_plugin/default_policy.toml" in out
    assert proc.returncode == 0, (out, proc.stderr)  # warnings, no failure


def test_explain_says_what_is_missing(venv: Path) -> None:
    proc = in_venv(venv, "tt-meta", "explain", "--model", "meta-llama/Llama-3.1-8B-Instruct",
                   "--device", "n150")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    # Which backend the built-in policy sends the model to is the policy's business; that
    # it is not installed here, and how to install it, is what must be said.
    assert "REFUSED: backend '" in proc.stdout, proc.stdout
    assert "which is not installed in this environment" in proc.stdout, proc.stdout
    assert "fix: install it here (pip install " in proc.stdout, proc.stdout


def test_the_version_is_read_only_when_asked() -> None:
    """Importing the package (every vLLM process does) looks up no metadata; asking for
    `__version__` reads pyproject.toml's version from the installed metadata."""
    proc = subprocess.run([sys.executable, "-c", (
        "import importlib.metadata, json, sys, tt_meta_plugin as t; "
        "before = [m for m in sys.modules if m.startswith('tt_meta_plugin.')]; "
        "print(json.dumps([before, '__version__' in vars(t), t.__version__, "
        "importlib.metadata.version('tt-meta-plugin')]))")],
        capture_output=True, text=True, timeout=60, env=clean_env())
    assert proc.returncode == 0, proc.stderr
    before, eager, version, metadata = json.loads(proc.stdout)
    assert "tt_meta_plugin._metadata" not in before and not eager, before
    assert version == metadata == VERSION


def test_no_version_when_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A source tree on sys.path, not installed: `__version__` is absent (an AttributeError,
    so hasattr and getattr with a default work), not a PackageNotFoundError."""
    import tt_meta_plugin

    monkeypatch.setattr(tt_meta_plugin, "_DISTRIBUTION", "tt-meta-plugin-not-installed")
    assert not hasattr(tt_meta_plugin, "__version__")
    assert getattr(tt_meta_plugin, "__version__", "unknown") == "unknown"
