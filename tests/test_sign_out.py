"""`tt-meta sign --out` writes only where verification reads (issue #15), and a server that
finds no manifest names every file it looked for.

A manifest written under another name, or into a directory the policy does not name, used to
be signed without a word; every server then refused with "no signed manifest found", naming
only directories. Everything here runs the real `tt-meta` command and a real process playing
vLLM (conftest's `run_process`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import METAL, METAL_INFO, Scene, assert_delegated, clean_env, refused

LABEL = "tt-vllm-plugin 0.1.0"
NAMES = ("tt-vllm-plugin-0.1.0.manifest.json", "tt-vllm-plugin.manifest.json")


def sign(scene: Scene, *out: str, policy: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tt_meta_plugin.cli", "sign", "--dist", METAL, "--backend",
         "metal", "--key", str(scene.keys / "release.key"), *out],
        env=clean_env(PYTHONPATH=str(scene.site), TT_META_POLICY=str(policy or scene.policy)),
        capture_output=True, text=True, timeout=60)


def with_manifest_dir(scene: Scene) -> Path:
    """A manifest directory in the scene's policy, and no manifest in the .dist-info: the
    one `sign --out` writes is then the only one verification can find."""
    manifests = scene.root / "manifests"
    manifests.mkdir()
    scene.policy = scene.policy_with(trust=f'manifest_dirs = ["{manifests}"]')
    scene.manifest.unlink()
    return manifests


def read_paths(scene: Scene, manifests: Path) -> list[str]:
    """The files verification reads a manifest of the metal plugin at, in its order."""
    return [*(str(manifests / n) for n in NAMES),
            str((scene.site / METAL_INFO).resolve() / "tt_meta.manifest.json")]


def test_a_name_verification_never_reads_is_refused_with_the_names_it_reads(
        scene: Scene) -> None:
    manifests = with_manifest_dir(scene)
    for extra in ((), ("--staging",)):  # a staged copy keeps its name: refused all the same
        proc = sign(scene, "--out", str(manifests / "m.json"), *extra)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert (f"tt-meta sign: --out names 'm.json', a file name verification never reads "
                f"for {LABEL}: it reads {NAMES[0]} or {NAMES[1]} in a manifest directory, "
                "and tt_meta.manifest.json in the distribution's .dist-info") in proc.stderr
        assert f"where: --out {manifests / 'm.json'}" in proc.stderr, proc.stderr
        assert ", ".join(read_paths(scene, manifests)) in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
        assert list(manifests.iterdir()) == [], "a refused --out wrote something"


def test_a_directory_verification_does_not_read_is_refused_unless_staged(
        scene: Scene) -> None:
    manifests = with_manifest_dir(scene)
    staging = scene.root / "staging"
    out = staging / NAMES[1]
    proc = sign(scene, "--out", str(out))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert (f"tt-meta sign: verification would never read {out}: under the policy "
            f"{scene.policy} it reads a manifest of {LABEL} only at "
            + ", ".join(read_paths(scene, manifests))) in proc.stderr, proc.stderr
    assert "add --staging" in proc.stderr and "Traceback" not in proc.stderr
    assert not staging.exists()
    # Staged: written, and said to be unread until copied.
    proc = sign(scene, "--out", str(out), "--staging")
    assert proc.returncode == 0, proc.stderr
    assert f"-> {out}\nstaged: verification reads it only once copied to one of: " \
        + ", ".join(read_paths(scene, manifests)) in proc.stdout, proc.stdout
    refused(scene, scene.run(), f"no signed manifest found for {LABEL}", code="no-manifest")
    # The copy an image build makes is what verifies.
    (manifests / NAMES[1]).write_bytes(out.read_bytes())
    assert_delegated(scene.run(), METAL)


def test_a_manifest_directory_file_verifies(scene: Scene) -> None:
    manifests = with_manifest_dir(scene)
    proc = sign(scene, "--out", str(manifests / NAMES[1]))
    assert proc.returncode == 0, proc.stderr
    assert f"-> {manifests / NAMES[1]}\n" in proc.stdout and "staged" not in proc.stdout
    assert_delegated(scene.run(), METAL)


def test_a_manifest_directory_as_out_gets_the_versioned_name(scene: Scene) -> None:
    manifests = with_manifest_dir(scene)
    manifests.rmdir()  # the policy's manifest directory, created when sign writes into it
    proc = sign(scene, "--out", str(manifests))
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in manifests.iterdir()] == [NAMES[0]]
    assert_delegated(scene.run(), METAL)


def test_the_dist_info_as_out_gets_its_name(scene: Scene) -> None:
    scene.manifest.unlink()
    proc = sign(scene, "--out", str(scene.site / METAL_INFO))
    assert proc.returncode == 0, proc.stderr
    assert scene.manifest.is_file()
    assert_delegated(scene.run(), METAL)


def test_the_policy_serving_reads_decides(scene: Scene) -> None:
    """A manifest directory of another policy than the one serving reads is refused: the
    policy sign checks against is TT_META_POLICY's, as serving's is."""
    manifests = with_manifest_dir(scene)
    other = scene.policy_with()  # the built-in manifest_dirs, /etc/tt-meta/manifests
    proc = sign(scene, "--out", str(manifests / NAMES[1]), policy=other)
    assert proc.returncode == 1 and "verification would never read" in proc.stderr, proc.stderr
    assert f"under the policy {other}" in proc.stderr
    assert "/etc/tt-meta/manifests/tt-vllm-plugin.manifest.json" in proc.stderr


def test_an_unwritable_out_is_a_diagnostic(scene: Scene) -> None:
    blocked = scene.root / "blocked"
    blocked.write_text("a file, not a directory")
    proc = sign(scene, "--out", str(blocked / NAMES[1]), "--staging")
    assert proc.returncode == 1, proc.stdout
    assert "tt-meta sign: cannot write the manifest: File exists" in proc.stderr
    assert f"where: {blocked}\n" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_no_manifest_refusal_lists_every_file_looked_for(scene: Scene) -> None:
    manifests = with_manifest_dir(scene)
    refused(scene, scene.run(),
            f"no signed manifest found for {LABEL} (backend 'metal'): looked for "
            + ", ".join(read_paths(scene, manifests)),
            "writes the last of these", code="no-manifest")
