"""Editable installs (`pip install -e` / `uv pip install -e`, as Tenstorrent's Metal image
installs vllm-tt-plugin), made for real by `sim.install_editable` with the venv's setuptools:
signed, verified, delegated to, tampered with and refused; and the shapes `tt-meta sign`
cannot cover, refused with what to do.

Each process here starts as a real one does: site.py reads the site directory's .pth files
(`site.addsitedir`, before anything else), so setuptools' finder or path entry is in place
when tt_meta runs, as it is in a real image. Where what runs at interpreter start-up matters
(sitecustomize.py in a path entry), the process is a real start-up (`sim.start_up_python`).

A path entry must be owned by root (and every directory above it): tests that sign one run
as root only; as another user, that `tt-meta sign` refuses one is what is tested.
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
from sim import SIM, install_editable, start_up_python

from tt_meta_plugin._errors import PermissionsError
from tt_meta_plugin.trust import permissions

# A vLLM process whose site directory is `TEST_SITE`: its .pth files run first, as at start-up.
SITE_SCRIPT = "import os, site; site.addsitedir(os.environ['TEST_SITE'])\n" + PROCESS_SCRIPT
FINDER = "__editable___tt_vllm_plugin_0_1_0_finder.py"
PTH = "__editable__.tt_vllm_plugin-0.1.0.pth"
ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="signs a path entry, which must be owned by "
                                "root: only root can make one")
# What the project's directories are made with, whatever the umask (0002 when unprivileged).
DIR_MODE = 0o755
OTHER_UID = 65534  # nobody: another user, for tests run as root


def project_copy(root: Path, layout: str = "flat") -> Path:
    """The simulated Metal backend's project: flat (package at the root), src layout
    (`package-dir = {"" = "src"}`: setuptools' default mode writes a path .pth), or
    "src-finder" (a src layout mapping the package, `{tt_vllm_plugin = "src/..."}`: the
    default mode writes a finder)."""
    project = root / "project"
    shutil.copytree(SIM / "tt-vllm-plugin", project)
    if layout in ("src", "src-finder"):
        (project / "src").mkdir(mode=DIR_MODE)
        os.chmod(project / "src", DIR_MODE)
        (project / "tt_vllm_plugin").rename(project / "src" / "tt_vllm_plugin")
        toml = project / "pyproject.toml"
        mapped = ('{"" = "src"}' if layout == "src"
                  else '{tt_vllm_plugin = "src/tt_vllm_plugin"}')
        toml.write_text(toml.read_text() + f"package-dir = {mapped}\n")
    return project


def chown_tree(top: Path, uid: int) -> None:
    for folder, dirs, files in os.walk(top):
        os.chown(folder, uid, -1)
        for name in dirs + files:
            os.chown(os.path.join(folder, name), uid, -1, follow_symlinks=False)


class Editable:
    """An editable install of the Metal sim in its own site directory, and a Scene on it."""

    def __init__(self, tmp_path: Path, sim_wheels: dict[str, Path], keys: tuple[Path, str],
                 policy_file: PolicyFile, layout: str = "flat", mode: str | None = None,
                 sign: bool = True, prepare: Callable[[Path], None] | None = None,
                 under: str | None = None) -> None:
        parent = tmp_path
        if under is not None:  # the project one directory further down, in `under`
            parent = tmp_path / under
            parent.mkdir(mode=DIR_MODE)
            os.chmod(parent, DIR_MODE)
        self.project = project_copy(parent, layout)
        if prepare is not None:
            prepare(self.project)
        self.site = install_editable(self.project, tmp_path / "site", mode,
                                     wheels=[sim_wheels["sim-record"]])
        self.package = self.project / ("" if layout == "flat" else "src") / "tt_vllm_plugin"
        self.key = keys[0] / "release.key"
        if sign:
            sign_site(self.site, self.key)
        self.scene = Scene(tmp_path, self.site, keys[0], keys[1], self._runner(tmp_path),
                           policy_file)

    @staticmethod
    def _runner(tmp_path: Path, python: Path | None = None) -> Callable[..., ProcessResult]:
        """Processes on the site: by `site.addsitedir` first thing, or (`python`, from
        `start_up_python`) by a real interpreter start-up that processes the site."""
        def run(site: Path, argv: list[str] | None = None, **env: str) -> ProcessResult:
            record = tmp_path / f"record-{len(list(tmp_path.glob('record-*')))}"
            record.mkdir()
            full = clean_env(TEST_SITE=str(site), TT_SIM_RECORD_DIR=str(record),
                             VLLM_PLUGINS="tt_meta", TEST_ARGV=json.dumps(argv or []))
            full.update(env)
            command = [str(python), "-c", PROCESS_SCRIPT] if python else [
                sys.executable, "-c", SITE_SCRIPT]
            proc = subprocess.run(command, capture_output=True, text=True, timeout=120,
                                  env={k: v for k, v in full.items() if v != "<unset>"})
            return ProcessResult(proc, record)
        return run

    def start_up(self, tmp_path: Path) -> None:
        """From now on, each process is a real interpreter start-up processing the site."""
        python = start_up_python(tmp_path / "venv", self.site)
        self.scene.run_process = self._runner(tmp_path, python)

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


@needs_root
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


@pytest.mark.parametrize("layout", ["flat", pytest.param("src", marks=needs_root)])
def test_file_added_to_the_source_package(editable: Callable[..., Editable], layout: str
                                          ) -> None:
    ed = editable(layout=layout)
    assert_delegated(ed.scene.run(), METAL)
    added = ed.package / "evil.py"
    added.write_text("import os\n")
    refused(ed.scene, ed.scene.run(), "a file that is not in the manifest was added",
            where=added, code="tampered")


@needs_root
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


@needs_root
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
        ({"layout": "src", "prepare": lambda p: (p / "src" / "sitecustomize.py").write_text(
            "")}, None, ["its path entry", "holds sitecustomize.py, which Python or "
                         "importlib.metadata would read at interpreter start-up, before "
                         "tt_meta runs"]),
        ({"layout": "src", "prepare": lambda p: (p / "src" / "extra.pth").write_text("")},
         None, ["holds extra.pth, which Python or importlib.metadata would read"]),
    ],
    ids=["pth-code", "mapping-not-literal", "namespaces", "finder-code", "path-trick",
         "world-writable", "compat-extras", "strict-links", "path-sitecustomize",
         "path-pth"],
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


# -- What runs at interpreter start-up: a path entry is root's alone ---------------------------
#
# site.py appends a path entry to sys.path before it imports sitecustomize, so whoever can put a
# file there (or replace the directory) runs code before tt_meta can look. A finder makes
# nothing of the project importable before tt_meta; a path entry must be root's.


def test_src_layout_mapping_its_package_gets_the_finder(editable: Callable[..., Editable],
                                                        tmp_path: Path) -> None:
    """The way out offered for a path entry: a src layout whose pyproject.toml maps the
    package (`package-dir = {tt_vllm_plugin = "src/tt_vllm_plugin"}`) gets setuptools' finder
    in the default mode (setuptools 78 writes a path .pth only for `{"" = "src"}`). Its
    sources may be the serving user's: a sitecustomize.py in src/ is not importable, in a
    real start-up."""
    ed = editable(layout="src-finder")
    assert (ed.site / PTH).read_text() == f"import {FINDER[:-3]}; {FINDER[:-3]}.install()"
    assert ed.payload()["editable"] == {"pth": PTH, "finder": FINDER, "path_entry": None,
                                        "sources": {"tt_vllm_plugin": str(ed.package)}}
    mark = tmp_path / "mark"
    (ed.package.parent / "sitecustomize.py").write_text(
        "import os, pathlib; pathlib.Path(os.environ['TEST_MARK']).write_text('ran')\n")
    ed.start_up(tmp_path)
    assert_delegated(ed.scene.run(TEST_MARK=str(mark)), METAL)
    assert not mark.exists()


def test_sign_refuses_a_path_entry_not_only_root_can_write(editable: Callable[..., Editable]
                                                           ) -> None:
    """As root, a project another user owns; as another user, the project is that user's own
    (which a finder's sources may be). Code put in the path entry would run at start-up,
    before tt_meta: refused, with the finder shape as the way out."""
    ed = editable(layout="src", sign=False)
    entry = ed.package.parent
    if ROOT:
        chown_tree(ed.project, OTHER_UID)
        owner = f"{entry} is owned by uid {OTHER_UID}, not by root"
    else:
        owner = (f"{entry} is owned by uid {os.geteuid()} (the user running this process), "
                 "not by root")
    proc = ed.sign_cli()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    for needle in ["tt-vllm-plugin 0.1.0 is an editable install tt_meta cannot cover: its "
                   f"path entry is not protected: {owner}; site.py puts the path entry on "
                   "sys.path when Python starts, so whoever can write it (or replace it) runs "
                   "code from it before tt_meta", f"where: {entry}",
                   "owned by root and not writable by group or others",
                   "setuptools' finder shape", 'package-dir = {PKG = "src/PKG"}']:
        assert needle in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (ed.site / METAL_INFO / "tt_meta.manifest.json").exists()


@needs_root
def test_path_entry_another_user_owns(editable: Callable[..., Editable]) -> None:
    """Signed as root's, then given to another user (the serving user, say): refused at
    verification, naming the start-up risk; `strict_permissions = false` trusts it with a
    WARNING that names it too."""
    ed = editable(layout="src")
    assert_delegated(ed.scene.run(), METAL)
    entry = ed.package.parent
    chown_tree(ed.project, OTHER_UID)
    refused(ed.scene, ed.scene.run(), "refusing the editable install's path entry: "
            f"{entry} is owned by uid {OTHER_UID}, not by root; site.py puts the path entry "
            "on sys.path when Python starts", where=entry, code="permissions")
    result = ed.scene.run(ed.scene.policy_with("strict_permissions = false\n"))
    assert_delegated(result, METAL)
    assert ("WARNING" in result.stderr and f"trusting the editable install's path entry "
            f"{entry} although {entry} is owned by uid {OTHER_UID}, not by root; site.py "
            "puts" in result.stderr), result.stderr[-3000:]


def _dist_info(folder: Path) -> object:
    folder.mkdir()
    (folder / "METADATA").write_text("Metadata-Version: 2.1\nName: fake\nVersion: 1.0\n")
    return (folder / "entry_points.txt").write_text(
        "[vllm.general_plugins]\ntt_meta = fake:run\n")


START_UP_FILES: dict[str, Callable[[Path], object]] = {
    "sitecustomize.py": lambda path: path.write_text(
        "import os, pathlib; pathlib.Path(os.environ['TEST_MARK']).write_text('ran')\n"),
    "usercustomize.py": lambda path: path.write_text(""),
    "extra.pth": lambda path: path.write_text("import os\n"),
    "fake-1.0.dist-info": _dist_info,
}


@needs_root
@pytest.mark.parametrize("name", sorted(START_UP_FILES))
def test_start_up_code_in_the_path_entry(editable: Callable[..., Editable], tmp_path: Path,
                                         name: str) -> None:
    """What Python or importlib.metadata reads from a path entry before tt_meta runs
    (sitecustomize.py, usercustomize.py, a .pth, a .dist-info whose vllm.general_plugins entry
    point is named tt_meta). In a real start-up sitecustomize.py runs first: nothing tt_meta
    does can stop code that runs before it, hence the rule that only root can write a path
    entry. Then tt_meta refuses, naming the risk; no backend code runs, nothing is trusted."""
    ed = editable(layout="src")
    ed.start_up(tmp_path)
    assert_delegated(ed.scene.run(), METAL)
    entry = ed.package.parent
    START_UP_FILES[name](entry / name)
    mark = tmp_path / "mark"
    refused(ed.scene, ed.scene.run(TEST_MARK=str(mark)),
            f"tt-vllm-plugin 0.1.0: the editable install's path entry holds {name}, which "
            "Python or importlib.metadata reads at interpreter start-up, before tt_meta runs",
            where=entry / name, code="tampered")
    assert mark.exists() == (name == "sitecustomize.py")


def test_writable_directory_above_the_sources(editable: Callable[..., Editable],
                                              tmp_path: Path) -> None:
    """StrictModes' walk, for a finder's sources: a directory anywhere above them that
    another user can write lets that user rename the project and put another in its place.
    Refused at verification and by `tt-meta sign`. A sticky directory above (as /tmp) is
    accepted: others cannot rename what they do not own in it."""
    ed = editable(under="outer")
    assert_delegated(ed.scene.run(), METAL)
    outer = tmp_path / "outer"
    os.chmod(outer, 0o777)
    refused(ed.scene, ed.scene.run(), f"refusing the editable source: {outer} is writable by "
            "group or others (mode 777)", where=ed.package, code="permissions")
    signed = ed.scene.manifest.read_bytes()
    proc = ed.sign_cli()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert (f"is an editable install tt_meta cannot cover: its sources are not protected: "
            f"{outer} is writable by group or others (mode 777)") in proc.stderr, proc.stderr
    assert ed.scene.manifest.read_bytes() == signed
    os.chmod(outer, 0o1777)
    assert_delegated(ed.scene.run(), METAL)


@needs_root
def test_writable_directory_above_the_path_entry(editable: Callable[..., Editable]) -> None:
    """PROJECT/ writable by others above the path entry PROJECT/src: whoever can write it
    can put another src/ (with a sitecustomize.py) in its place. Refused by `tt-meta sign`,
    and at verification once signed."""
    ed = editable(layout="src", sign=False)
    entry = ed.package.parent
    os.chmod(ed.project, 0o777)
    proc = ed.sign_cli()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert (f"its path entry is not protected: {ed.project} is writable by group or others "
            "(mode 777); site.py puts the path entry") in proc.stderr, proc.stderr
    assert not ed.scene.manifest.exists()
    os.chmod(ed.project, DIR_MODE)
    assert ed.sign_cli().returncode == 0
    assert_delegated(ed.scene.run(), METAL)
    os.chmod(ed.project, 0o775)
    refused(ed.scene, ed.scene.run(), "refusing the editable install's path entry: "
            f"{ed.project} is writable by group or others (mode 775); site.py puts",
            where=entry, code="permissions")


def test_ancestor_walk(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """`permissions.ancestors_problem`, the one walk (sshd's StrictModes): the path and every
    directory above it, up to /, through a symlink's directory and its target's."""
    owners = {0, os.geteuid()}
    top, inner = tmp_path / "a", tmp_path / "a" / "b"
    inner.mkdir(parents=True)
    for folder in (top, inner):
        os.chmod(folder, DIR_MODE)
    assert permissions.ancestors_problem(inner, owners) is None
    os.chmod(top, 0o775)
    assert permissions.ancestors_problem(inner, owners) == (
        f"{top} is writable by group or others (mode 775)")
    os.chmod(top, 0o1777)  # sticky: accepted above the path, not as the path itself
    assert permissions.ancestors_problem(inner, owners) is None
    assert permissions.ancestors_problem(top, owners) == (
        f"{top} is writable by group or others (mode 1777)")
    os.chmod(top, DIR_MODE)
    links = tmp_path / "links"
    links.mkdir()
    os.chmod(links, 0o777)
    (links / "l").symlink_to(inner)
    assert permissions.ancestors_problem(links / "l", owners) == (
        f"{links} is writable by group or others (mode 777)")
    os.chmod(links, DIR_MODE)
    assert permissions.ancestors_problem(links / "l", owners) is None
    if not ROOT:
        assert permissions.ancestors_problem(inner, {0}) == (
            f"{inner} is owned by uid {os.geteuid()} (the user running this process), "
            "not by root")
    os.chmod(top, 0o775)
    with caplog.at_level("WARNING"):
        permissions.check_ancestors(inner, "thing", False, owners, "; because")
    assert f"trusting the thing {inner} although {top} is writable" in caplog.text
    with pytest.raises(PermissionsError) as refusal:
        permissions.check_ancestors(inner, "thing", True, owners, "; because")
    assert refusal.value.summary == (f"refusing the thing: {top} is writable by group or others "
                                     "(mode 775); because")
