"""A backend's runtime (Metal's ttnn, Forge's pjrt-plugin-tt) is signed and verified with it.

The site holds the Metal plugin and a simulated `ttnn` (a package and a stand-in shared
library, `ttnn/lib/libtt_metal.so`), each signed as `tt-meta sign` signs them: the plugin as
backend metal's plugin, ttnn as backend metal's runtime (a version 3 manifest, role
"runtime"). Each refusal below happens before any backend code runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import (
    METAL,
    PolicyFile,
    ProcessRunner,
    Scene,
    SiteMaker,
    assert_delegated,
    assert_refused,
    clean_env,
    write_project,
)
from sim import build_wheel

from tt_meta_plugin.trust.keys import generate

TTNN_INFO = "ttnn-0.1.0.dist-info"


@pytest.fixture
def scene(tmp_path: Path, make_site: SiteMaker, run_process: ProcessRunner,
          policy_file: PolicyFile, signing_key: tuple[Path, str]) -> Scene:
    site = make_site(METAL, "ttnn")
    return Scene(tmp_path, site, signing_key[0], signing_key[1], run_process, policy_file)


def runtime_manifest(scene: Scene) -> Path:
    return scene.site / TTNN_INFO / "tt_meta.manifest.json"


def audit(scene: Scene) -> list[dict[str, object]]:
    return [json.loads(x) for x in scene.audit.read_text().splitlines()]


def test_tt_meta_sign_signs_a_runtime_as_its_backends(scene: Scene) -> None:
    """The manifest says what the distribution is to its backend."""
    scene.manifest = runtime_manifest(scene)
    payload = scene.payload()
    assert payload["spec_version"] == 3 and payload["role"] == "runtime"
    assert payload["backend"] == "metal" and payload["distribution"] == "ttnn"
    assert "ttnn/lib/libtt_metal.so" in {f["path"] for f in payload["files"]}


def test_a_signed_runtime_verifies_and_delegates(scene: Scene) -> None:
    first = scene.run()
    assert_delegated(first, METAL)
    # The platform module imported ttnn (as the real one does), through the import guard.
    (event,) = [e for e in first.events if e["event"] == "platform_class"]
    assert event["runtime"] == ["libtt_metal.so"], first.events
    refs = json.loads(first.decision)["trusted"]
    assert sorted(r[0] for r in refs) == ["tt-vllm-plugin", "ttnn"], refs
    child = scene.child(first.decision)
    assert_delegated(child, METAL, inherited=True)
    lines = audit(scene)
    assert [a["verdict"] for a in lines] == ["delegated", "inherited"], lines
    assert all(a["runtimes"] == ["ttnn 0.1.0"] for a in lines), lines


GUARDED_IMPORT = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    sys.argv = ["/venv/bin/vllm", "serve", "metal-org/llama"]
    from tt_meta_plugin import vllm_entry
    vllm_entry.platform_plugin()
    init = Path(os.environ["TTNN_INIT"])
    init.write_text(init.read_text() + "\\nINJECTED = True\\n")  # after verification
    try:
        import ttnn
        print("IMPORTED", getattr(ttnn, "INJECTED", False))
    except ImportError as exc:
        print("REFUSED", exc)
    """
)


def test_the_import_guard_covers_the_runtime(scene: Scene) -> None:
    """A runtime module changed after verification is refused when imported."""
    init = scene.site / "ttnn" / "__init__.py"
    proc = subprocess.run(
        [sys.executable, "-c", GUARDED_IMPORT], capture_output=True, text=True, timeout=120,
        env=clean_env(PYTHONPATH=str(scene.site), VLLM_PLUGINS="tt_meta",
                      TT_META_POLICY=str(scene.policy), TTNN_INIT=str(init)))
    assert "REFUSED ttnn/__init__.py does not match the verified manifest of ttnn" \
        in proc.stdout, proc.stdout + proc.stderr[-2000:]


SIGNED_BYTECODE = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    sys.argv = ["/venv/bin/vllm", "serve", "metal-org/llama"]
    from tt_meta_plugin import vllm_entry
    vllm_entry.platform_plugin()
    pyc = Path(os.environ["TTNN_PYC"])
    if os.environ.get("TAMPER"):
        data = bytearray(pyc.read_bytes())
        data[-3] ^= 0x01  # after verification: same size, same header
        pyc.write_bytes(bytes(data))
    sys.addaudithook(lambda event, args: event == "compile" and print("COMPILED", args[1]))
    try:
        import ttnn
        print("IMPORTED", type(ttnn.__loader__).__name__)
    except ImportError as exc:
        print("REFUSED", exc)
    """
)


@pytest.mark.parametrize("tamper", [False, True])
def test_the_guard_runs_signed_bytecode_and_nothing_else(scene: Scene, tamper: bool) -> None:
    """pip compiled ttnn at install and the manifest signed that bytecode: the guard loads it
    (no compile, as a plain import), and refuses it once changed."""
    pyc = next((scene.site / "ttnn" / "__pycache__").glob("__init__.*.pyc"))
    proc = subprocess.run(
        [sys.executable, "-c", SIGNED_BYTECODE], capture_output=True, text=True, timeout=120,
        env=clean_env(PYTHONPATH=str(scene.site), VLLM_PLUGINS="tt_meta",
                      TT_META_POLICY=str(scene.policy), TTNN_PYC=str(pyc),
                      **({"TAMPER": "1"} if tamper else {})))
    out = proc.stdout + proc.stderr[-2000:]
    if tamper:
        assert (f"REFUSED ttnn/__pycache__/{pyc.name} does not match the verified manifest "
                "of ttnn") in proc.stdout, out
    else:
        assert "IMPORTED _VerifiedSourceLoader" in proc.stdout, out
    assert "COMPILED" not in proc.stdout, out


def _tamper_library(scene: Scene) -> None:
    lib = scene.site / "ttnn" / "lib" / "libtt_metal.so"
    data = bytearray(lib.read_bytes())
    data[10] ^= 0x01  # one byte, same size
    lib.write_bytes(bytes(data))


def _add_module(scene: Scene) -> None:
    (scene.site / "ttnn" / "extra.py").write_text("print('not signed')\n")


def _remove_manifest(scene: Scene) -> None:
    runtime_manifest(scene).unlink()


@pytest.mark.parametrize(("attack", "needle", "code"), [
    (_tamper_library, "ttnn 0.1.0: a signed file", "tampered"),
    (_add_module, "ttnn 0.1.0: a file that is not in the manifest was added", "tampered"),
    (_remove_manifest, "no signed manifest found for ttnn 0.1.0 (backend 'metal')",
     "no-manifest"),
], ids=["library-byte", "added-module", "no-manifest"])
def test_a_bad_runtime_is_refused_before_the_backend_runs(scene: Scene, attack: object,
                                                          needle: str, code: str) -> None:
    assert callable(attack)
    attack(scene)
    assert_refused(scene.run(), needle, code=code, state=scene.watch)


def test_a_runtime_signed_by_another_backends_key_is_refused(scene: Scene,
                                                            tmp_path: Path) -> None:
    """Keys are bound to backends: forge's signer cannot vouch for metal's runtime."""
    keys = tmp_path / "forge-keys"
    keys.mkdir()
    for pub in scene.keys.glob("*.pub"):
        (keys / pub.name).write_bytes(pub.read_bytes())
    forge_id = generate(keys / "forge")
    scene.manifest = runtime_manifest(scene)
    scene.resign(json.dumps(scene.payload()).encode(), key=keys / "forge.key")
    policy = scene.policy_with(keys=keys, signers=f'metal = ["{scene.keyid}"]\n'
                               f'forge = ["{forge_id}"]')
    assert_refused(scene.run(policy), "valid signature(s) from distinct keys bound to "
                   "backend 'metal'", code="signature", where=runtime_manifest(scene),
                   state=scene.watch)


def test_a_runtime_manifest_cannot_pass_as_a_plugins(scene: Scene) -> None:
    """The plugin's manifest, re-signed by a trusted key with the runtime's role (as if a
    runtime manifest were presented for it), is refused; and the reverse."""
    scene.resign_payload(lambda p: p.update(spec_version=3, role="runtime"))
    assert_refused(scene.run(), "the manifest was signed for tt-vllm-plugin 0.1.0 as backend "
                   "'metal''s runtime, but it is being verified as the backend's plugin",
                   code="mismatch", state=scene.watch)


def test_a_plugin_manifest_cannot_pass_as_a_runtimes(scene: Scene) -> None:
    scene.manifest = runtime_manifest(scene)

    def as_plugin(payload: dict[str, object]) -> None:
        del payload["role"]
        payload["spec_version"] = 1

    scene.resign_payload(as_plugin)
    assert_refused(scene.run(), "the manifest was signed for ttnn 0.1.0 as backend 'metal''s "
                   "plugin, but it is being verified as the backend's runtime",
                   code="mismatch", state=scene.watch)


def test_a_waived_runtime_runs_with_a_warning_in_every_process(scene: Scene) -> None:
    runtime_manifest(scene).unlink()
    policy = scene.policy_with(trust="require_runtime_signatures = false")
    first = scene.run(policy)
    assert_delegated(first, METAL)
    warning = "require_runtime_signatures = false in"
    assert "WARNING" in first.stderr and warning in first.stderr, first.stderr[-2000:]
    assert "'metal' runs its runtime (ttnn 0.1.0) WITHOUT verifying it" in first.stderr
    child = scene.child(first.decision, policy)
    assert_delegated(child, METAL, inherited=True)
    assert warning in child.stderr, child.stderr[-2000:]
    assert [a["runtimes"] for a in audit(scene)] == [[], []]


def test_a_runtime_runs_when_the_policy_waives_all_signatures(scene: Scene) -> None:
    """require_signatures = false verifies nothing, so it forbids no runtime either: the
    installed ttnn imports (with the waiver's WARNING), in the first process and a child."""
    policy = scene.policy_with(top="require_signatures = false\n")
    parent = scene.run(policy)
    assert_delegated(parent, METAL)
    assert_delegated(scene.child(parent.decision, policy), METAL, inherited=True)
    for result in (parent, scene.child(parent.decision, policy)):
        assert "WITHOUT verifying it" in result.stderr
        assert "refused to import" not in result.stderr, result.stderr[-2000:]


def test_tt_meta_verify_reports_runtimes(scene: Scene) -> None:
    def verify(policy: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tt_meta_plugin.cli", "verify"],
                              env=clean_env(PYTHONPATH=str(scene.site),
                                            TT_META_POLICY=str(policy)),
                              capture_output=True, text=True, timeout=60)

    ok = verify(scene.policy)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK     tt-vllm-plugin 0.1.0 (metal): " in ok.stdout
    assert "OK     ttnn 0.1.0 (metal runtime): 10 files" in ok.stdout, ok.stdout
    _tamper_library(scene)
    bad = verify(scene.policy)
    assert bad.returncode == 1 and "FAILED ttnn 0.1.0 (metal runtime)" in bad.stdout
    waived = verify(scene.policy_with(trust="require_runtime_signatures = false"))
    assert waived.returncode == 0, waived.stdout
    assert "WAIVED ttnn 0.1.0 (metal runtime): not verified" in waived.stdout
    waived_policy = scene.policy_with(trust="require_runtime_signatures = false")
    report = subprocess.run(
        [sys.executable, "-m", "tt_meta_plugin.cli", "verify", "--json", "--dist", "ttnn"],
        env=clean_env(PYTHONPATH=str(scene.site), TT_META_POLICY=str(waived_policy)),
        capture_output=True, text=True, timeout=60)
    assert json.loads(report.stdout)[0]["verified"] is False, report.stdout
    doctor = subprocess.run(
        [sys.executable, "-m", "tt_meta_plugin.cli", "doctor"],
        env=clean_env(PYTHONPATH=str(scene.site), TT_META_POLICY=str(waived_policy),
                      VLLM_PLUGINS="tt_meta"), capture_output=True, text=True, timeout=60)
    assert ("[warn] backend metal: runtime ttnn 0.1.0: NOT verified (require_runtime_signatures "
            "= false in the policy)") in doctor.stdout, doctor.stdout


def test_a_runtime_manifest_signed_with_the_cli(scene: Scene, tmp_path: Path) -> None:
    """`tt-meta sign --dist ttnn --backend metal` says what it signed."""
    out = tmp_path / "ttnn.manifest.json"
    proc = subprocess.run(
        [sys.executable, "-m", "tt_meta_plugin.cli", "sign", "--dist", "ttnn", "--backend",
         "metal", "--key", str(scene.keys / "release.key"), "--out", str(out), "--staging"],
        env=clean_env(PYTHONPATH=str(scene.site)), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "signed ttnn 0.1.0 as backend 'metal''s runtime: 10 files" in proc.stdout, proc.stdout


@pytest.mark.parametrize("kind", ["timestamp", "unchecked-hash"])
def test_bytecode_that_is_not_its_sources_compile_is_not_signed(
        scene: Scene, tmp_path: Path, kind: str) -> None:
    """The guard runs signed bytecode when its header matches the source, as Python does:
    so signing refuses bytecode compiled from other code, even with a header that matches
    (here: the real header kept, or an unchecked-hash .pyc Python never compares)."""
    import importlib.util
    import marshal

    init = scene.site / "ttnn" / "__init__.py"
    pyc = Path(importlib.util.cache_from_source(str(init)))
    other = compile("LIBRARIES = ['planted']\n", str(init), "exec", dont_inherit=True)
    header = (pyc.read_bytes()[:16] if kind == "timestamp" else
              importlib.util.MAGIC_NUMBER + (1).to_bytes(4, "little")
              + importlib.util.source_hash(init.read_bytes()))
    pyc.write_bytes(header + marshal.dumps(other))

    def sign() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tt_meta_plugin.cli", "sign", "--dist", "ttnn", "--backend",
             "metal", "--key", str(scene.keys / "release.key"), "--out",
             str(tmp_path / "ttnn.manifest.json"), "--staging"],
            env=clean_env(PYTHONPATH=str(scene.site)), capture_output=True, text=True,
            timeout=60)

    refused = sign()
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert (f"ttnn/__pycache__/{pyc.name} of ttnn 0.1.0 is not a compile of its source "
            "__init__.py") in refused.stderr, refused.stderr
    assert f"where: {pyc}" in refused.stderr and "Traceback" not in refused.stderr
    import py_compile

    py_compile.compile(str(init), cfile=str(pyc), doraise=True)
    assert sign().returncode == 0


def test_a_runtime_module_no_installed_distribution_provides_is_refused(
        scene: Scene, make_site: SiteMaker, tmp_path: Path) -> None:
    """ttnn importable from a directory on sys.path (a source tree, an image without
    .dist-info, a directory someone could write), with no ttnn distribution installed: it
    has no manifest, and would run unverified."""
    scene.site = make_site(METAL)  # the plugin only
    loose = tmp_path / "loose"
    (loose / "ttnn").mkdir(parents=True)
    (loose / "ttnn" / "__init__.py").write_text("LIBRARIES = ['unverified']\n")
    path = f"{scene.site}:{loose}"
    assert_refused(scene.run(PYTHONPATH=path), "runtime module 'ttnn' of backend 'metal' is "
                   "importable, but no verified runtime distribution (ttnn) provides it",
                   code="no-manifest", where=loose / "ttnn" / "__init__.py", state=scene.watch)
    waived = scene.run(scene.policy_with(trust="require_runtime_signatures = false"),
                       PYTHONPATH=path)
    assert_delegated(waived, METAL)


def loose_ttnn(tmp_path: Path) -> Path:
    """A ttnn package on a directory of its own: no distribution, no manifest."""
    loose = tmp_path / "loose"
    (loose / "ttnn").mkdir(parents=True)
    (loose / "ttnn" / "__init__.py").write_text("LIBRARIES = ['unverified']\n")
    return loose


def test_a_child_refuses_a_runtime_its_parent_did_not_verify(
        scene: Scene, make_site: SiteMaker, tmp_path: Path) -> None:
    """A child that inherits (a worker, or a Ray actor with its own runtime_env) may see a
    runtime its first process did not: it was never verified, and is refused."""
    scene.site = make_site(METAL)  # the plugin only: the parent verifies no runtime
    parent = scene.run()
    assert_delegated(parent, METAL)
    loose = loose_ttnn(tmp_path)
    child = scene.run(argv=["/venv/bin/worker.py"], TT_META_DECISION=parent.decision,
                      PYTHONPATH=f"{scene.site}:{loose}")
    assert_refused(child, "runtime module 'ttnn' of backend 'metal' is importable, but no "
                   "verified runtime distribution (ttnn) provides it", code="no-manifest",
                   where=loose / "ttnn" / "__init__.py", state=scene.watch)
    # The same child without it inherits as before.
    assert_delegated(scene.child(parent.decision), METAL, inherited=True)


LATE_RUNTIME = textwrap.dedent(
    """
    import os, sys
    sys.argv = ["/venv/bin/vllm", "serve", "metal-org/llama"]
    from tt_meta_plugin import vllm_entry
    vllm_entry.platform_plugin()
    sys.path.insert(0, os.environ["LOOSE"])  # after verification
    try:
        import ttnn
        print("IMPORTED", ttnn.LIBRARIES)
    except ImportError as exc:
        print("REFUSED", exc)
    """
)


FINDER_RUNTIME = textwrap.dedent(
    """
    import importlib.util, os, sys
    sys.argv = ["/venv/bin/vllm", "serve", "metal-org/llama"]
    from tt_meta_plugin import vllm_entry
    vllm_entry.platform_plugin()

    class Finder:  # an editable install's finder, or any a program adds: not the path one
        def find_spec(self, name, path=None, target=None):
            if name == "ttnn":
                return importlib.util.spec_from_file_location(
                    name, os.path.join(os.environ["LOOSE"], "ttnn", "__init__.py"))
            return None

    sys.meta_path.append(Finder())
    try:
        import ttnn
        print("IMPORTED", ttnn.LIBRARIES)
    except ImportError as exc:
        print("REFUSED", exc)
    """
)


def test_a_runtime_from_another_finder_is_refused(
        scene: Scene, make_site: SiteMaker, tmp_path: Path) -> None:
    scene.site = make_site(METAL)
    proc = subprocess.run(
        [sys.executable, "-c", FINDER_RUNTIME], capture_output=True, text=True, timeout=120,
        env=clean_env(PYTHONPATH=str(scene.site), VLLM_PLUGINS="tt_meta",
                      TT_META_POLICY=str(scene.policy), LOOSE=str(loose_ttnn(tmp_path))))
    assert ("REFUSED ttnn: runtime module 'ttnn' of backend 'metal' was not verified in this "
            "process") in proc.stdout, proc.stdout + proc.stderr[-2000:]


def test_a_runtime_put_on_sys_path_after_verification_is_refused(
        scene: Scene, make_site: SiteMaker, tmp_path: Path) -> None:
    scene.site = make_site(METAL)
    proc = subprocess.run(
        [sys.executable, "-c", LATE_RUNTIME], capture_output=True, text=True, timeout=120,
        env=clean_env(PYTHONPATH=str(scene.site), VLLM_PLUGINS="tt_meta",
                      TT_META_POLICY=str(scene.policy), LOOSE=str(loose_ttnn(tmp_path))))
    assert ("REFUSED ttnn: runtime module 'ttnn' of backend 'metal' was not verified in this "
            "process") in proc.stdout, proc.stdout + proc.stderr[-2000:]


QUASAR_RUNTIME_HOOK = """
from tt_meta_plugin import Backend, hookimpl

class Plugin:
    @hookimpl
    def tt_meta_backends(self):
        return [Backend("quasar", ("quasar-vllm",), runtime_distributions=("quasar-rt",))]
"""


def test_a_third_party_backends_runtime_is_signed_as_its_runtime(
        scene: Scene, make_site: SiteMaker, tmp_path: Path) -> None:
    src, wheels = tmp_path / "src", tmp_path / "wheels"
    hook = write_project(src, "quasar-plugin", "quasar_plugin",
                         {"__init__.py": QUASAR_RUNTIME_HOOK},
                         {"tt_meta.backends": {"quasar": "quasar_plugin:Plugin"}})
    runtime = write_project(src, "quasar-rt", "quasar_rt", {"__init__.py": ""}, {})
    site = make_site(extra=[build_wheel(hook, wheels), build_wheel(runtime, wheels)],
                     sign=False)
    proc = subprocess.run(
        [sys.executable, "-m", "tt_meta_plugin.cli", "sign", "--dist", "quasar-rt",
         "--backend", "quasar", "--key", str(scene.keys / "release.key"), "--out",
         str(tmp_path / "quasar-rt.manifest.json"), "--staging"],
        env=clean_env(PYTHONPATH=str(site)), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "signed quasar-rt 1.0.0 as backend 'quasar''s runtime" in proc.stdout, proc.stdout

