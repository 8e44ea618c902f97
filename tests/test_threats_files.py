"""Threats 16-22: the installed files (docs/threat-model.md, numbered as there; how each is
checked: `Scene` and `assert_refused` in conftest.py)."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    EVIL,
    METAL,
    METAL_INFO,
    MODEL,
    Scene,
    assert_delegated,
    clean_env,
    platform_py,
    read_events,
    refused,
    sign_site,
    tamper_bytecode,
)

from tt_meta_plugin.trust.manifest import manifest_file_names


def test_16_modified_file(scene: Scene) -> None:
    with platform_py(scene).open("a") as handle:
        handle.write("\nimport os  # injected\n")
    refused(scene, scene.run(), "a signed file changed size", where=platform_py(scene),
            code="tampered")


def test_16_modification_that_keeps_the_size(scene: Scene) -> None:
    path = scene.site / "tt_vllm_plugin" / "__init__.py"
    text = path.read_text()
    path.write_text(text.replace("unconditionally", "UNCONDITIONALLY"))
    assert len(path.read_bytes()) == len(text.encode())
    refused(scene, scene.run(), "a signed file was modified (its SHA-256 differs)",
            where=path, code="tampered")


def test_16_missing_file(scene: Scene) -> None:
    platform_py(scene).unlink()
    refused(scene, scene.run(), "a signed file is missing", where=platform_py(scene),
            code="tampered")


@pytest.mark.parametrize(
    ("relative", "needle"),
    [("tt_vllm_plugin/evil.py", "a file that is not in the manifest was added"),
     ("tt_vllm_plugin/evil.pyc", "a file that is not in the manifest was added"),
     ("tt_vllm_plugin/__pycache__/evil.cpython-311.pyc", "not in the manifest was added"),
     ("tt_vllm_plugin.pth", "a .pth file that names this backend is present"),
     ("tt_vllm_plugin-0.0.9.dist-info/METADATA", "a second installation record")],
)
def test_17_extra_file(scene: Scene, relative: str, needle: str) -> None:
    path = scene.site / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("import os\n")
    # The refusal names what was added: the file, or the second installation record.
    named = path.parent if path.parent.name.endswith(".dist-info") else path
    refused(scene, scene.run(), needle, where=named, code="tampered")


def test_17_namespace_portion_elsewhere_on_sys_path(scene: Scene, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    (other / "tt_vllm_plugin").mkdir(parents=True)
    (other / "tt_vllm_plugin" / "extra.py").write_text("import os\n")
    result = scene.run_process(scene.site, MODEL, TT_META_POLICY=str(scene.policy),
                               PYTHONPATH=f"{scene.site}{os.pathsep}{other}")
    refused(scene, result, "another copy or namespace portion of 'tt_vllm_plugin'", code="tampered")


def test_18_tampered_signed_bytecode_is_refused(scene: Scene) -> None:
    source = scene.site / "tt_vllm_plugin" / "__init__.py"
    cached = Path(importlib.util.cache_from_source(str(source)))
    assert cached.exists(), "pip compiled it at install, and the manifest lists it"
    tamper_bytecode(source, EVIL)
    refused(scene, scene.run(), "a signed file", where=cached, code="tampered")


def test_18_tampered_bytecode_with_matching_header_does_not_run(scene: Scene) -> None:
    source = scene.site / "tt_vllm_plugin" / "__init__.py"
    # Signed without bytecode (pip --no-compile); Python may write some later, unsigned.
    for cache in scene.site.glob("tt_vllm_plugin/__pycache__"):
        shutil.rmtree(cache)
    sign_site(scene.site, scene.keys / "release.key")
    tamper_bytecode(source, EVIL)
    # Proof that the attack is real: a plain import runs the tampered bytecode.
    plain = subprocess.run(
        [sys.executable, "-c", "import tt_vllm_plugin; print(tt_vllm_plugin.register())"],
        env=clean_env(PYTHONPATH=str(scene.site), TT_SIM_RECORD_DIR=str(scene.root)),
        capture_output=True, text=True, check=True)
    assert "tt_vllm_plugin.platform.TTPlatform" in plain.stdout
    ran = read_events(scene.root)
    assert any(e["event"] == "TAMPERED" for e in ran)
    # Under tt_meta, the verified source runs and the tampered bytecode does not.
    result = scene.run()
    assert_delegated(result, METAL)
    assert "TAMPERED" not in {e["event"] for e in result.events}
    assert "imported" in {e["event"] for e in result.events}


def test_19_symlink_swapped_in(scene: Scene, tmp_path: Path) -> None:
    path = platform_py(scene)
    copy = tmp_path / "platform.py"
    shutil.copy(path, copy)
    path.unlink()
    path.symlink_to(copy)
    refused(scene, scene.run(), "symlink", where=path, code="tampered")


@pytest.mark.parametrize(
    ("bad_path", "needle"),
    [("../outside.py", "'..' component"), ("/etc/passwd", "is absolute"),
     (unicodedata.normalize("NFD", "tt_vllm_plugin/caf\u00e9.py"), "normal form NFC"),
     ("tt_vllm_plugin\\x.py", "backslash")],
)
def test_19_manifest_paths_that_escape_the_root(scene: Scene, bad_path: str, needle: str
                                                ) -> None:
    def add(payload: dict[str, Any]) -> None:
        payload["files"].append({"path": bad_path, "size": 1, "sha256": "0" * 64})

    scene.resign_payload(add)
    refused(scene, scene.run(), needle, where=scene.manifest, code="format")


def test_20_record_edited_to_match_tampered_files(scene: Scene) -> None:
    path = platform_py(scene)
    text = path.read_text()
    path.write_text(text.replace("TTPlatform", "TTPlatfoRM", 1))  # same size, other bytes
    assert path.stat().st_size == len(text.encode())
    digest = base64.urlsafe_b64encode(hashlib.sha256(path.read_bytes()).digest()).rstrip(b"=")
    record = scene.site / METAL_INFO / "RECORD"
    before = record.read_bytes()
    # pip ends RECORD's lines with CRLF: only the hash changes, so RECORD keeps its size.
    lines = [b"tt_vllm_plugin/platform.py,sha256=" + digest + b",%d\r" % path.stat().st_size
             if line.startswith(b"tt_vllm_plugin/platform.py,") else line
             for line in before.split(b"\n")]
    record.write_bytes(b"\n".join(lines))
    assert record.read_bytes() != before and len(record.read_bytes()) == len(before)
    # RECORD now vouches for the tampered file; tt_meta never reads it, so the tampered file
    # is refused by its own signed hash (RECORD, a signed file too, is named first).
    refused(scene, scene.run(), "a signed file was modified (its SHA-256 differs); also "
            "modified: tt_vllm_plugin/platform.py", where=record, code="tampered")


def test_21_editable_install(scene: Scene) -> None:
    (scene.site / METAL_INFO / "direct_url.json").write_text(
        json.dumps({"url": "file:///src/tt-vllm-plugin", "dir_info": {"editable": True}}))
    refused(scene, scene.run(), "is an editable install", code="editable")


SWAP_SCRIPT = textwrap.dedent(
    """
    import os, sys
    sys.argv = ["/venv/bin/vllm", "serve", "metal-org/llama"]
    from tt_meta_plugin.activation import first_process as fp
    from tt_meta_plugin.activation.backend import call_platform
    policy = fp.load_checked_policy(os.environ)
    trusted = fp.trusted_set_for(policy)
    plan = fp.plan(os.environ, sys.argv, fp.catalog_for(trusted), policy)
    target = fp.trusted_target(trusted, plan)                    # verified here ...
    path = os.path.join(os.environ["SITE"], "tt_vllm_plugin", "platform.py")
    with open(path, "a") as f:                                   # ... swapped here ...
        f.write("\\nEVIL = 1\\n")
    print(call_platform(target))   # register() is in the unchanged __init__.py
    try:
        import tt_vllm_plugin.platform               # ... and platform.py imported here,
    except ImportError as e:                         # as vLLM imports the class path
        print("REFUSED", e)
    """
)


def test_22_file_swapped_between_verification_and_import(scene: Scene) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SWAP_SCRIPT], capture_output=True, text=True, timeout=60,
        env=clean_env(PYTHONPATH=str(scene.site), SITE=str(scene.site),
                      TT_META_POLICY=str(scene.policy), TT_SIM_RECORD_DIR=str(scene.root)))
    assert "REFUSED tt_vllm_plugin/platform.py does not match the verified manifest of " \
           "tt-vllm-plugin (changed after verification)" in proc.stdout, proc.stdout + proc.stderr
    ran = read_events(scene.root)
    assert "platform_class" not in {e["event"] for e in ran}


# -- The installed backend's directories (security.md rows 37-38) --------------------------

def _manifest_elsewhere(scene: Scene) -> Path:
    """The manifest moved from the .dist-info to a manifest directory of its own, so the
    install is judged at its own step (8), not as the manifest's directory at step (2)."""
    folder = scene.root / "manifests"
    folder.mkdir()
    shutil.move(scene.manifest, folder / manifest_file_names(METAL, "0.1.0")[0])
    return scene.policy_with(f'manifest_dirs = ["{folder}"]\n')


@pytest.mark.parametrize("what", ["install root", "package directory", ".dist-info directory"])
def test_37_installed_backend_writable_by_others(scene: Scene, what: str) -> None:
    target = {"install root": scene.site, "package directory": scene.site / "tt_vllm_plugin",
              ".dist-info directory": scene.site / METAL_INFO}[what]
    policy = _manifest_elsewhere(scene)
    assert_delegated(scene.run(policy), METAL)
    mode = target.stat().st_mode
    os.chmod(target, mode | 0o002)
    try:
        # Every file still hashes as signed: only the directory is what another user can use.
        refused(scene, scene.run(policy), f"refusing the backend's {what}: {target} is "
                "writable by group or others", f"chmod go-w {target}", where=target,
                code="permissions")
        relaxed = scene.run(scene.policy_with(
            f'manifest_dirs = ["{scene.root / "manifests"}"]\nstrict_permissions = false\n'))
        assert_delegated(relaxed, METAL)
        assert f"trusting the backend's {what} {target} although" in relaxed.stderr
    finally:
        os.chmod(target, mode)


def test_37_a_directory_above_the_install_writable_by_others(scene: Scene) -> None:
    """The walk goes up to /: a directory above site-packages that others can write lets them
    rename the whole install away and put theirs in its place."""
    policy = _manifest_elsewhere(scene)
    above = scene.root / "lib"
    above.mkdir()
    site = above / "site-packages"
    scene.site.rename(site)
    scene.site = site
    assert_delegated(scene.run(policy), METAL)
    os.chmod(above, 0o777)
    try:
        refused(scene, scene.run(policy), f"refusing the backend's install root: {above} is "
                "writable by group or others (mode 777)", where=site, code="permissions")
        os.chmod(above, 0o1777)  # sticky, like /tmp: others cannot rename what is not theirs
        assert_delegated(scene.run(policy), METAL)
    finally:
        os.chmod(above, 0o755)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_37_installed_backend_owned_by_another_user(scene: Scene) -> None:
    policy = _manifest_elsewhere(scene)
    package = scene.site / "tt_vllm_plugin"
    os.chown(package, 12345, -1)
    refused(scene, scene.run(policy), f"refusing the backend's package directory: {package} is "
            "owned by uid 12345, not by root", where=package, code="permissions")
