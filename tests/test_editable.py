"""Editable installs (`pip install -e` / `uv pip install -e`, as Tenstorrent's Metal image
installs vllm-tt-plugin), made for real by `sim.install_editable` with the venv's setuptools:
signed, verified, delegated to, tampered with and refused; and the shapes `tt-meta sign`
cannot cover, refused with what to do.

Each process here starts as a real one does: site.py reads the site directory's .pth files
(`site.addsitedir`, before anything else), so setuptools' finder or path entry is in place
when tt_meta runs, as it is in a real image.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import (
    METAL,
    METAL_INFO,
    PROCESS_SCRIPT,
    PolicyFile,
    ProcessResult,
    Scene,
    assert_delegated,
    clean_env,
    refused,
    sign_site,
)
from sim import SIM, install_editable

# A vLLM process whose site directory is `TEST_SITE`: its .pth files run first, as at start-up.
SITE_SCRIPT = "import os, site; site.addsitedir(os.environ['TEST_SITE'])\n" + PROCESS_SCRIPT
FINDER = "__editable___tt_vllm_plugin_0_1_0_finder.py"
PTH = "__editable__.tt_vllm_plugin-0.1.0.pth"


def project_copy(root: Path, layout: str = "flat") -> Path:
    """The simulated Metal backend's project, flat (package at the root) or src layout."""
    project = root / "project"
    shutil.copytree(SIM / "tt-vllm-plugin", project)
    if layout == "src":
        (project / "src").mkdir()
        (project / "tt_vllm_plugin").rename(project / "src" / "tt_vllm_plugin")
        toml = project / "pyproject.toml"
        toml.write_text(toml.read_text() + 'package-dir = {"" = "src"}\n')
    return project


class Editable:
    """An editable install of the Metal sim in its own site directory, and a Scene on it."""

    def __init__(self, tmp_path: Path, sim_wheels: dict[str, Path], keys: tuple[Path, str],
                 policy_file: PolicyFile, layout: str = "flat", mode: str | None = None,
                 sign: bool = True, prepare: Callable[[Path], None] | None = None) -> None:
        self.project = project_copy(tmp_path, layout)
        if prepare is not None:
            prepare(self.project)
        self.site = install_editable(self.project, tmp_path / "site", mode,
                                     wheels=[sim_wheels["sim-record"]])
        self.package = self.project / ("src" if layout == "src" else "") / "tt_vllm_plugin"
        self.key = keys[0] / "release.key"
        if sign:
            sign_site(self.site, self.key)
        self.scene = Scene(tmp_path, self.site, keys[0], keys[1], self._runner(tmp_path),
                           policy_file)

    @staticmethod
    def _runner(tmp_path: Path) -> Callable[..., ProcessResult]:
        def run(site: Path, argv: list[str] | None = None, **env: str) -> ProcessResult:
            record = tmp_path / f"record-{len(list(tmp_path.glob('record-*')))}"
            record.mkdir()
            full = clean_env(TEST_SITE=str(site), TT_SIM_RECORD_DIR=str(record),
                             VLLM_PLUGINS="tt_meta", TEST_ARGV=json.dumps(argv or []))
            full.update(env)
            proc = subprocess.run([sys.executable, "-c", SITE_SCRIPT], capture_output=True,
                                  text=True, timeout=120,
                                  env={k: v for k, v in full.items() if v != "<unset>"})
            return ProcessResult(proc, record)
        return run

    def payload(self) -> dict[str, object]:
        return self.scene.payload()

    def sign_cli(self) -> subprocess.CompletedProcess[str]:
        """`tt-meta sign`, as an image build runs it."""
        return subprocess.run(
            [sys.executable, "-m", "tt_meta_plugin.cli", "sign", "--dist", METAL,
             "--backend", "metal", "--key", str(self.key)],
            env=clean_env(PYTHONPATH=str(self.site)), capture_output=True, text=True,
            timeout=60)


@pytest.fixture
def editable(tmp_path: Path, sim_wheels: dict[str, Path], signing_key: tuple[Path, str],
             policy_file: PolicyFile) -> Callable[..., Editable]:
    def make(**options: object) -> Editable:
        return Editable(tmp_path, sim_wheels, signing_key, policy_file, **options)  # type: ignore[arg-type]
    return make


# -- Signed and delegated ----------------------------------------------------------------


def test_finder_shape_signed_is_delegated(editable: Callable[..., Editable]) -> None:
    """setuptools' default (lenient) mode, flat layout: a .pth importing a finder whose
    MAPPING names the package directory in the project."""
    ed = editable()
    assert (ed.site / PTH).read_text() == f"import {FINDER[:-3]}; {FINDER[:-3]}.install()"
    assert repr(str(ed.package)) in (ed.site / FINDER).read_text()
    info = json.loads((ed.site / METAL_INFO / "direct_url.json").read_text())
    assert info["dir_info"] == {"editable": True}
    payload = ed.payload()
    assert payload["spec_version"] == 2
    assert payload["editable"] == {"pth": PTH, "finder": FINDER, "path_entry": None,
                                   "sources": {"tt_vllm_plugin": str(ed.package)}}
    listed = {f["path"] for f in payload["files"]}  # type: ignore[attr-defined]
    assert {"tt_vllm_plugin/__init__.py", "tt_vllm_plugin/platform.py", PTH, FINDER} <= listed
    assert_delegated(ed.scene.run(), METAL)
    assert_delegated(ed.scene.run(), METAL)  # a restart: the record proves nothing changed


@pytest.mark.parametrize(("layout", "mode"), [("src", None), ("flat", "compat")])
def test_path_shape_signed_is_delegated(editable: Callable[..., Editable], layout: str,
                                        mode: str | None) -> None:
    """A .pth that adds one directory to sys.path: a src layout in the default mode, or
    editable_mode=compat (the project root of a flat layout)."""
    ed = editable(layout=layout, mode=mode)
    entry = str(ed.package.parent)
    assert (ed.site / PTH).read_text() == f"{entry}\n"
    assert not (ed.site / FINDER).exists()
    assert ed.payload()["editable"] == {
        "pth": PTH, "finder": None, "path_entry": entry,
        "sources": {"tt_vllm_plugin": f"{entry}/tt_vllm_plugin"}}
    assert_delegated(ed.scene.run(), METAL)


CHILD = textwrap.dedent(
    """
    import json, os, site, sys
    site.addsitedir(os.environ["TEST_SITE"])
    sys.argv = ["/venv/bin/worker.py"]
    from tt_meta_plugin import vllm_entry
    vllm_entry.platform_plugin()
    import tt_vllm_plugin.platform as platform
    print("LOADED " + json.dumps([platform.__file__, type(platform.__loader__).__name__]))
    """
)


def test_a_child_imports_verified_bytes_from_the_source(editable: Callable[..., Editable]
                                                        ) -> None:
    ed = editable()
    parent = ed.scene.run()
    assert_delegated(parent, METAL)
    assert_delegated(ed.scene.child(parent.decision), METAL, inherited=True)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120,
        env=clean_env(TEST_SITE=str(ed.site), VLLM_PLUGINS="tt_meta",
                      TT_META_POLICY=str(ed.scene.policy), TT_META_DECISION=parent.decision))
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("LOADED ")]
    assert json.loads(line[7:]) == [str(ed.package / "platform.py"), "_VerifiedSourceLoader"]
    # Changed after the parent verified it: the child refuses the bytes it would compile.
    with (ed.package / "platform.py").open("a") as handle:
        handle.write("\nEVIL = 1\n")
    child = ed.scene.child(parent.decision)
    assert child.refused, (child.result, child.stderr[-2000:])
    assert "tt_vllm_plugin/platform.py does not match the verified manifest" in child.stderr
    assert "general_plugins_ran" not in child.result


# -- Refused at verification ---------------------------------------------------------------


def test_unsigned_editable_install_is_refused(editable: Callable[..., Editable]) -> None:
    ed = editable(sign=False)
    refused(ed.scene, ed.scene.run(), "no signed manifest found for tt-vllm-plugin 0.1.0",
            code="no-manifest")


def test_tampered_source_file(editable: Callable[..., Editable]) -> None:
    ed = editable()
    assert_delegated(ed.scene.run(), METAL)
    path = ed.package / "__init__.py"
    path.write_text(path.read_text().replace("unconditionally", "UNCONDITIONALLY"))
    refused(ed.scene, ed.scene.run(), "a signed file was modified", where=path,
            code="tampered")


@pytest.mark.parametrize("layout", ["flat", "src"])
def test_file_added_to_the_source_package(editable: Callable[..., Editable], layout: str
                                          ) -> None:
    ed = editable(layout=layout)
    assert_delegated(ed.scene.run(), METAL)
    added = ed.package / "evil.py"
    added.write_text("import os\n")
    refused(ed.scene, ed.scene.run(), "a file that is not in the manifest was added",
            where=added, code="tampered")


def test_module_added_to_the_path_entry(editable: Callable[..., Editable]) -> None:
    ed = editable(layout="src")
    added = ed.package.parent / "evil.py"
    added.write_text("import os\n")
    refused(ed.scene, ed.scene.run(), "importable from the editable install's path entry "
            "but not signed", where=added, code="tampered")


def test_finder_repointed_to_another_directory(editable: Callable[..., Editable],
                                               tmp_path: Path) -> None:
    ed = editable()
    other = tmp_path / "other" / "tt_vllm_plugin"
    shutil.copytree(ed.package, other)
    finder = ed.site / FINDER
    finder.write_text(finder.read_text().replace(repr(str(ed.package)), repr(str(other))))
    refused(ed.scene, ed.scene.run(), "the editable install now points to "
            f"{{'tt_vllm_plugin': '{other}'}}, but it was signed pointing to", where=finder,
            code="tampered")


def test_path_pth_repointed_to_another_directory(editable: Callable[..., Editable],
                                                 tmp_path: Path) -> None:
    ed = editable(layout="src")
    other = tmp_path / "other"
    shutil.copytree(ed.package.parent, other)
    (ed.site / PTH).write_text(f"{other}\n")
    refused(ed.scene, ed.scene.run(), f"the editable install now points to {other}, but it "
            f"was signed pointing to {ed.package.parent}", where=ed.site / PTH,
            code="tampered")


def test_project_moved(editable: Callable[..., Editable], tmp_path: Path) -> None:
    ed = editable()
    ed.project.rename(tmp_path / "moved")
    refused(ed.scene, ed.scene.run(), "a signed file is missing", code="tampered")


def test_world_writable_source_directory(editable: Callable[..., Editable]) -> None:
    ed = editable()
    os.chmod(ed.package, 0o777)
    refused(ed.scene, ed.scene.run(), "refusing the editable source", code="permissions")


# -- What `tt-meta sign` refuses, and says what to do ---------------------------------------


def test_sign_command_signs_an_editable_install(editable: Callable[..., Editable]) -> None:
    ed = editable(sign=False)
    proc = ed.sign_cli()
    assert proc.returncode == 0, proc.stderr
    assert f"editable, sources in {ed.package}" in proc.stdout
    assert_delegated(ed.scene.run(), METAL)


def _finder_with(old: str, new: str) -> Callable[[Editable], None]:
    def change(ed: Editable) -> None:
        finder = ed.site / FINDER
        text = finder.read_text()
        assert old in text
        finder.write_text(text.replace(old, new, 1))
    return change


def _touch(name: str, text: str = "") -> Callable[[Editable], None]:
    def change(ed: Editable) -> None:
        (ed.package / name).write_text(text)
    return change


def _chmod(ed: Editable) -> None:
    os.chmod(ed.package, 0o777)


@pytest.mark.parametrize(
    ("options", "change", "needles"),
    [
        ({}, lambda ed: (ed.site / PTH).write_text(
            (ed.site / PTH).read_text() + "\nimport os; os.system('true')\n"),
         ["its .pth file holds something other than one setuptools finder import or one "
          "absolute directory"]),
        ({}, _finder_with("MAPPING: dict[str, str] = {", "MAPPING: dict[str, str] = {**{}, "),
         ["its finder's MAPPING is not a literal"]),
        ({}, _finder_with("NAMESPACES: dict[str, list[str]] = {}",
                          "NAMESPACES: dict[str, list[str]] = {'ns': []}"),
         ["its finder declares namespace packages", "regular package"]),
        ({}, _finder_with("def install():", "sys.path.append('/tmp')\ndef install():"),
         ["its finder module has code on line", "that is not setuptools' finder"]),
        ({}, _touch("__init__.py", "__path__.append('/elsewhere')\n"),
         ["changes its __path__"]),
        ({}, _chmod, ["its sources are not protected", "writable by group or others",
                      "chmod -R go-w"]),
        ({"mode": "compat", "prepare": lambda p: [
            (p / "setup.py").write_text("from setuptools import setup\nsetup()\n"),
            (p / "tests").mkdir(), (p / "tests" / "test_x.py").write_text("")]},
         None, ["makes importable setup.py, tests, which are not the distribution's own",
                "use a src layout"]),
        ({"mode": "strict"}, None, ["a symlink is among its sources", "editable_mode=strict"]),
    ],
    ids=["pth-code", "mapping-not-literal", "namespaces", "finder-code", "path-trick",
         "world-writable", "compat-extras", "strict-links"],
)
def test_sign_refuses_what_it_cannot_cover(editable: Callable[..., Editable],
                                           options: dict[str, object],
                                           change: Callable[[Editable], None] | None,
                                           needles: list[str]) -> None:
    ed = editable(sign=False, **options)
    if change is not None:
        change(ed)
    proc = ed.sign_cli()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "tt-vllm-plugin 0.1.0 is an editable install tt_meta cannot cover" in proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (ed.site / METAL_INFO / "tt_meta.manifest.json").exists()
