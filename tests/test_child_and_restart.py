"""Children inherit, restarts reuse: what each skips, and what each still refuses.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Any

from conftest import (
    METAL,
    ProcessResult,
    Scene,
    assert_delegated,
    clean_env,
    platform_py,
    refused,
)


def test_child_checks_imports_without_walking_the_tree(scene: Scene) -> None:
    """A child reuses the parent's verified manifest; an extra file added after the parent
    verified is not walked for, but a changed file the child imports is still refused."""
    parent = scene.run()
    assert_delegated(parent, METAL)
    (scene.site / "tt_vllm_plugin" / "extra.py").write_text("x = 1\n")  # not imported
    assert_delegated(scene.child(parent.decision), METAL, inherited=True)
    with platform_py(scene).open("a") as handle:
        handle.write("\nEVIL = 1\n")
    child = scene.child(parent.decision)
    # The child imported the backend's package (its __init__ is unchanged) before the
    # changed module was refused; what matters is that the changed module never ran.
    assert child.refused, (child.result, child.stderr[-2000:])
    assert "tt_vllm_plugin/platform.py does not match the verified manifest" in child.stderr
    assert "Traceback" not in child.stderr and "general_plugins_ran" not in child.result
    scene.watch.assert_nothing_trusted_added()


def test_audit_line_and_audit_log(scene: Scene) -> None:
    result = scene.run()
    assert_delegated(result, METAL)
    assert "tt_meta audit: " in result.stderr or "verdict=delegated" not in result.stderr
    (entry,) = [json.loads(x) for x in scene.audit.read_text().splitlines()]
    assert entry["verdict"] == "delegated" and entry["backend"] == "metal"
    assert entry["distribution"] == "tt-vllm-plugin" and entry["serial"] == 1
    assert entry["signers"] == [scene.keyid] and entry["verified"] == "files"
    assert entry["ms"] > 0


def test_verify_command(scene: Scene) -> None:
    def verify(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tt_meta_plugin.cli", "verify", *args],
                              env=clean_env(PYTHONPATH=str(scene.site),
                                            TT_META_POLICY=str(scene.policy)),
                              capture_output=True, text=True, timeout=60)

    ok = verify("--dist", "tt-vllm-plugin")
    assert ok.returncode == 0 and "OK     tt-vllm-plugin 0.1.0 (metal)" in ok.stdout
    both = verify("--json")
    assert both.returncode == 0, both.stdout
    report = {r["distribution"]: r for r in json.loads(both.stdout)}
    assert report["tt-vllm-plugin"]["ok"] and report["vllm_tt"]["ok"]
    assert report["vllm_tt"]["backend"] == "forge"
    platform_py(scene).write_text("tampered\n")
    bad = verify("--dist", "tt-vllm-plugin")
    assert bad.returncode == 1 and "FAILED tt-vllm-plugin" in bad.stdout


def test_verify_reports_what_python_runs_at_start_up(scene: Scene) -> None:
    """sitecustomize.py, usercustomize.py and *.pth at the install root run before tt_meta:
    `tt-meta verify` names each, with the distribution whose RECORD installed it."""
    (scene.site / "sitecustomize.py").write_text("# runs in every interpreter\n")
    (scene.site / "stray.pth").write_text("import os\n")
    owned = scene.site / "helper-1.0.dist-info"
    owned.mkdir()
    (owned / "RECORD").write_text("helper.pth,sha256=x,5\nhelper-1.0.dist-info/RECORD,,\n")
    (scene.site / "helper.pth").write_text("\n")

    def verify(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tt_meta_plugin.cli", "verify", *args],
                              env=clean_env(PYTHONPATH=str(scene.site),
                                            TT_META_POLICY=str(scene.policy)),
                              capture_output=True, text=True, timeout=60)

    proc = verify("--json", "--dist", "tt-vllm-plugin")
    assert proc.returncode == 0, proc.stdout + proc.stderr  # reported, not refused
    (report,) = json.loads(proc.stdout)
    assert report["start_up_files"] == [
        {"path": str(scene.site / "helper.pth"), "installed_by": "helper"},
        {"path": str(scene.site / "sitecustomize.py"), "installed_by": None},
        {"path": str(scene.site / "stray.pth"), "installed_by": None},
    ]
    text = verify("--dist", "tt-vllm-plugin").stdout
    assert (f"  runs at Python start-up, before tt_meta: {scene.site / 'stray.pth'} "
            "(installed by no installed distribution)") in text, text


def test_verify_command_checks_the_policy_as_serving_does(scene: Scene) -> None:
    """A policy that a server would refuse (writable by others) is refused by `tt-meta verify`
    too, before it writes rollback marks or records that servers trust."""
    os.chmod(scene.policy, 0o666)
    proc = subprocess.run([sys.executable, "-m", "tt_meta_plugin.cli", "verify"],
                          env=clean_env(PYTHONPATH=str(scene.site),
                                        TT_META_POLICY=str(scene.policy)),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0, proc.stdout
    assert "refusing the policy" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not scene.state.exists() or not any(scene.state.rglob("*")), \
        sorted(scene.state.rglob("*"))



def test_verification_cache_skips_unchanged_files_only(scene: Scene) -> None:
    def verify() -> dict[str, Any]:
        proc = subprocess.run(
            [sys.executable, "-m", "tt_meta_plugin.cli", "verify", "--json", "--dist",
             "tt-vllm-plugin"], env=clean_env(PYTHONPATH=str(scene.site),
                                              TT_META_POLICY=str(scene.policy)),
            capture_output=True, text=True, timeout=60)
        (report,) = json.loads(proc.stdout)
        return dict(report)

    cold = verify()
    assert cold["ok"] and cold["hashed"] == cold["files"]
    warm = verify()
    assert warm["ok"] and warm["hashed"] == 0  # nothing changed: no file hashed again
    os.utime(platform_py(scene))  # metadata changed, content not: rehash that one file
    touched = verify()
    assert touched["ok"] and touched["hashed"] == 1
    path = scene.site / "tt_vllm_plugin" / "__init__.py"
    data = path.read_bytes()
    info = path.stat()
    path.write_bytes(data.replace(b"unconditionally", b"UNCONDITIONALLY"))
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))  # same size, same mtime
    tampered = verify()
    assert not tampered["ok"] and "SHA-256 differs" in tampered["error"]  # ctime moved


def test_child_without_the_parents_record_verifies_itself(scene: Scene) -> None:
    """The record is a cache: a child whose state directory lacks the first process's record
    (a Ray worker on another node; a record another server replaced) verifies the manifest the
    decision names itself, and goes on only with the same signed manifest and intact files."""
    parent = scene.run()
    assert_delegated(parent, METAL)
    ((_dist, digest, *_identity),) = json.loads(parent.decision)["trusted"]
    record = scene.state / "verified" / f"{digest}.idx"
    record.write_bytes(record.read_bytes() + b"x")  # replaced: another identity
    child = scene.child(parent.decision)
    assert_delegated(child, METAL, inherited=True)
    assert "tt_meta_plugin.trust.verifier" in _modules(child)
    last = json.loads(scene.audit.read_text().splitlines()[-1])
    assert (last["verdict"], last["verified"]) == ("inherited", "files"), last
    shutil.rmtree(scene.state)  # a node that never saw this server: no record, no settings
    assert_delegated(scene.child(parent.decision), METAL, inherited=True)
    shutil.rmtree(scene.state)
    platform_py(scene).write_text("tampered = True\n")
    refused(scene, scene.child(parent.decision), "a signed file changed size",
            where=platform_py(scene),
            code="tampered")


def test_child_refuses_another_signed_manifest_on_its_node(scene: Scene) -> None:
    parent = scene.run()
    assert_delegated(parent, METAL)
    shutil.rmtree(scene.state)
    scene.resign_payload(lambda p: p.update(serial=p["serial"] + 1))  # re-signed on this node
    refused(scene, scene.child(parent.decision),
            "another signed manifest of tt-vllm-plugin 0.1.0 than the first process",
            code="inheritance")


def _modules(result: ProcessResult) -> list[str]:
    names = result.result["modules"]
    assert isinstance(names, list)
    return [str(n) for n in names]


def test_warm_and_child_processes_skip_the_costly_work_but_no_check(scene: Scene) -> None:
    """A restart with an unchanged backend checks signatures from the record without
    cryptography; a child parses no policy, loads no catalog, checks no signature. Trust is
    still judged anew (a revocation counts at once) and a change is still found."""
    cold = scene.run()
    assert_delegated(cold, METAL)
    assert "cryptography" in _modules(cold)
    warm = scene.run()
    assert_delegated(warm, METAL)
    assert not [m for m in _modules(warm) if m.startswith(("cryptography", "pluggy"))]
    child = scene.child(cold.decision)
    assert_delegated(child, METAL, inherited=True)
    assert _modules(child) == [], _modules(child)
    # The rollback mark of the runs above stays; a refusal adds nothing to it.
    revoked = scene.run(scene.policy_with(f'revoked_keys = ["{scene.keyid}"]\n'))
    refused(scene, revoked, "the key is revoked", where=scene.manifest, code="signature")
    nested = scene.site / "tt_vllm_plugin" / "sub"
    nested.mkdir()
    (nested / "added.py").write_text("x = 1\n")
    refused(scene, scene.run(), "a file that is not in the manifest was added",
            where=nested / "added.py", code="tampered")
    shutil.rmtree(nested)
    assert_delegated(scene.run(), METAL)
    target = platform_py(scene)
    moved = target.with_name("platform_real.py")
    target.rename(moved)
    target.symlink_to(moved)
    refused(scene, scene.run(), "a symlink was added among the signed files", where=target,
            code="tampered")


def test_child_policy_changed_after_the_parent_parsed_it(scene: Scene) -> None:
    parent = scene.run()
    assert_delegated(parent, METAL)
    scene.policy.write_text(scene.policy.read_text() + "\n# edited\n")
    refused(scene, scene.child(parent.decision), "but the decision was made under",
            "as it was then", "do not change the policy file while a server starts", code="handoff")


def test_audit_log_is_never_written_through_a_symlink_or_an_unsafe_file(scene: Scene) -> None:
    """A user who can write the log's directory must not make a root vLLM process create or
    append to a file of their choice."""
    victim = scene.root / "victim"
    victim.write_text('{"precious": true}\n')  # JSON: the scene reads the log through it
    scene.audit.symlink_to(victim)
    result = scene.run()
    assert_delegated(result, METAL)  # the audit log is a record, not a gate
    assert victim.read_text() == '{"precious": true}\n'
    assert "cannot append to the audit log" in result.stderr, result.stderr[-2000:]
    scene.audit.unlink()
    scene.audit.write_text("")
    os.chmod(scene.audit, 0o666)
    result = scene.run()
    assert_delegated(result, METAL)
    assert scene.audit.read_text() == ""
    assert "not writing to the audit log" in result.stderr
    assert "is writable by group or others" in result.stderr
