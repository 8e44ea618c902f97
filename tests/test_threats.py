"""One test per attack in the threat model (../shared/reference/threat-model.md), and more.

Each runs a fresh interpreter that plays a vLLM process over a real installed, signed backend
(conftest.run_process) and asserts: the refusal, its message, that no backend code ran (the
simulated backends record even their import), and that no verified state was left behind (no
decision for children, no rollback mark advanced).
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import py_compile
import shutil
import struct
import subprocess
import sys
import textwrap
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    TWO_BACKENDS_POLICY,
    ProcessResult,
    ProcessRunner,
    SiteMaker,
    clean_env,
    sign_site,
    trust_table,
)
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tt_meta_plugin._envelope import MANIFEST_TYPE, Envelope, Signature, pae
from tt_meta_plugin._keys import generate, key_id, load_private

MODEL = [sys.executable.replace("python", "vllm"), "serve", "metal-org/llama"]
METAL_INFO = "tt_vllm_plugin-0.1.0.dist-info"
PolicyFile = Callable[[str], Path]


class Scene:
    """A signed site, its policy and trust directories, and the means to attack them."""

    def __init__(self, root: Path, site: Path, keys: Path, keyid: str, run: ProcessRunner,
                 policy_file: PolicyFile) -> None:
        self.root, self.site, self.keys, self.keyid = root, site, keys, keyid
        self.run_process, self.policy_file = run, policy_file
        self.state = root / "state"
        self.manifest = site / METAL_INFO / "tt_meta.manifest.json"
        self.policy = policy_file(TWO_BACKENDS_POLICY)

    def run(self, policy: Path | None = None, **env: str) -> ProcessResult:
        return self.run_process(self.site, MODEL, TT_META_POLICY=str(policy or self.policy),
                                **env)

    def policy_with(self, trust: str = "", top: str = "") -> Path:
        """TWO_BACKENDS_POLICY with extra top-level keys and extra [trust] lines."""
        base = trust_table(self.keys, self.keyid, self.state)
        base = base.replace("\n[trust.signers]", f"{trust}\n[trust.signers]")
        return self.policy_file(top + TWO_BACKENDS_POLICY + base)

    def envelope(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.manifest.read_bytes())
        return data

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(base64.b64decode(self.envelope()["payload"]))
        return data

    def write_envelope(self, data: dict[str, Any] | bytes) -> None:
        raw = data if isinstance(data, bytes) else json.dumps(data).encode()
        self.manifest.write_bytes(raw)

    def resign(self, payload: bytes, key: Path | None = None,
               payload_type: str = MANIFEST_TYPE, extra: list[Signature] | None = None) -> None:
        private = load_private(key or self.keys / "release.key")
        sig = Signature(self.keyid if key is None else _keyid(key),
                        private.sign(pae(payload_type, payload)))
        envelope = Envelope(payload_type, payload, (sig, *(extra or [])))
        self.manifest.write_bytes(envelope.to_bytes())

    def resign_payload(self, change: Callable[[dict[str, Any]], None]) -> None:
        payload = self.payload()
        change(payload)
        self.resign(json.dumps(payload).encode())


def _keyid(key: Path) -> str:
    return key_id(load_private(key).public_key())


@pytest.fixture
def scene(tmp_path: Path, make_site: SiteMaker, run_process: ProcessRunner,
          policy_file: PolicyFile, signing_key: tuple[Path, str]) -> Scene:
    site = make_site("tt-vllm-plugin", "vllm-tt", "pjrt-plugin-tt")
    return Scene(tmp_path, site, signing_key[0], signing_key[1], run_process, policy_file)


def assert_refused(result: ProcessResult, *needles: str, scene: Scene | None = None) -> None:
    assert result.refused, (result.result, result.stderr[-3000:])
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr[-3000:])
    assert "ERROR" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.events == [], f"backend code ran: {result.events}"
    assert result.result.get("decision") is None, "a decision was left for children"
    if scene is not None:
        marks = scene.state / "serials.json"
        if marks.exists():
            assert "tt-vllm-plugin" not in json.loads(marks.read_text())


def test_baseline_signed_backend_is_delegated(scene: Scene) -> None:
    result = scene.run()
    assert result.result["platform"] == ["tt_vllm_plugin.platform.TTPlatform"] * 2, result.stderr
    assert json.loads((scene.state / "serials.json").read_text())["tt-vllm-plugin"]["serial"] == 1


# -- Signatures and keys --------------------------------------------------------------------

def test_01_unsigned_manifest(scene: Scene) -> None:
    data = scene.envelope()
    data["signatures"] = []
    scene.write_envelope(data)
    assert_refused(scene.run(), "0 valid signature(s)", "it carries no signature", scene=scene)


def test_01_signature_by_untrusted_key(scene: Scene, tmp_path: Path) -> None:
    generate(tmp_path / "stranger")
    scene.resign(base64.b64decode(scene.envelope()["payload"]), key=tmp_path / "stranger.key")
    assert_refused(scene.run(), "not a trusted key", scene=scene)


def test_02_trusted_key_not_bound_to_this_backend(scene: Scene) -> None:
    policy = scene.policy_file(TWO_BACKENDS_POLICY + f'\n[trust]\nkey_dirs = ["{scene.keys}"]\n'
                               f'state_dir = "{scene.state}"\n[trust.signers]\n'
                               f'forge = ["{scene.keyid}"]\n')
    assert_refused(scene.run(policy), "the key is trusted but not bound to backend 'metal'",
                   scene=scene)


def test_03_keyid_claims_a_trusted_key_but_another_signed(scene: Scene, tmp_path: Path) -> None:
    generate(tmp_path / "forger")
    payload = base64.b64decode(scene.envelope()["payload"])
    forged = load_private(tmp_path / "forger.key").sign(pae(MANIFEST_TYPE, payload))
    scene.manifest.write_bytes(
        Envelope(MANIFEST_TYPE, payload, (Signature(scene.keyid, forged),)).to_bytes())
    assert_refused(scene.run(), "does not verify with that key", scene=scene)


def test_04_bit_flip_in_payload(scene: Scene) -> None:
    data = scene.envelope()
    payload = bytearray(base64.b64decode(data["payload"]))
    at = payload.index(b'"serial": 1') + len(b'"serial": ')
    payload[at] ^= 0x02  # 1 -> 3: still valid JSON, no longer what was signed
    data["payload"] = base64.b64encode(bytes(payload)).decode()
    scene.write_envelope(data)
    assert_refused(scene.run(), "does not verify with that key", scene=scene)


@pytest.mark.parametrize("kind", ["flip", "truncate", "all-ff", "empty"])
def test_04_damaged_signature(scene: Scene, kind: str) -> None:
    data = scene.envelope()
    sig = bytearray(base64.b64decode(data["signatures"][0]["sig"]))
    if kind == "flip":
        sig[10] ^= 1
    elif kind == "truncate":
        sig = sig[:40]
    elif kind == "all-ff":
        sig = bytearray(b"\xff" * 64)
    else:
        sig = bytearray()
    data["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    scene.write_envelope(data)
    assert_refused(scene.run(), "does not verify with that key", scene=scene)


def test_04_malformed_signature_encoding(scene: Scene) -> None:
    data = scene.envelope()
    data["signatures"][0]["sig"] = "not base64!"
    scene.write_envelope(data)
    assert_refused(scene.run(), "invalid base64", scene=scene)


def test_05_public_key_of_another_scheme(scene: Scene, tmp_path: Path) -> None:
    keys = tmp_path / "ec-keys"
    keys.mkdir()
    shutil.copy(scene.keys / "release.pub", keys)
    pem = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (keys / "ecdsa.pub").write_bytes(pem)
    policy = scene.policy_file(TWO_BACKENDS_POLICY + trust_table(keys, scene.keyid, scene.state))
    assert_refused(scene.run(policy), "not an Ed25519 key (the only scheme accepted)",
                   str(keys / "ecdsa.pub"), scene=scene)


def test_05_malformed_public_key_file(scene: Scene, tmp_path: Path) -> None:
    keys = tmp_path / "bad-keys"
    keys.mkdir()
    shutil.copy(scene.keys / "release.pub", keys)
    (keys / "broken.pub").write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    policy = scene.policy_file(TWO_BACKENDS_POLICY + trust_table(keys, scene.keyid, scene.state))
    assert_refused(scene.run(policy), "not a PEM public key", scene=scene)


def test_06_fewer_signatures_than_threshold(scene: Scene) -> None:
    assert_refused(scene.run(scene.policy_with("threshold = 2\n")),
                   "1 valid signature(s)", "2 needed", scene=scene)


def test_06_same_key_counted_twice(scene: Scene) -> None:
    data = scene.envelope()
    data["signatures"] = data["signatures"] * 2
    scene.write_envelope(data)
    assert_refused(scene.run(scene.policy_with("threshold = 2\n")),
                   "the same key counted once only", scene=scene)


def test_07_revoked_key(scene: Scene) -> None:
    assert_refused(scene.run(scene.policy_with(f'revoked_keys = ["{scene.keyid}"]\n')),
                   "the key is revoked", scene=scene)


# -- Freshness and replay -------------------------------------------------------------------

def test_08_expired_manifest(scene: Scene) -> None:
    scene.resign_payload(lambda p: p.update(expires=p["issued"] - 1))
    assert_refused(scene.run(), "expired at", "tt-meta sign --expires", scene=scene)


def test_09_rollback_to_an_older_validly_signed_manifest(scene: Scene) -> None:
    old = scene.manifest.read_bytes()
    sign_site(scene.site, scene.keys / "release.key", serial=5)
    assert scene.run().result.get("platform"), "the newer manifest must verify first"
    scene.manifest.write_bytes(old)  # serial 1, validly signed, older
    result = scene.run()
    assert_refused(result, "rollback", "serial 5 was already seen")
    assert json.loads((scene.state / "serials.json").read_text())["tt-vllm-plugin"]["serial"] == 5


def test_10_same_serial_different_content(scene: Scene) -> None:
    assert scene.run().result.get("platform")
    scene.resign_payload(lambda p: p.update(expires=p["expires"] + 1))
    result = scene.run()
    assert result.refused and "reuses serial 1 with other content" in result.stderr
    assert result.events == [] and result.result.get("decision") is None


def test_11_manifest_of_another_distribution(scene: Scene) -> None:
    forge = scene.site / "vllm_tt-0.1.0.dist-info" / "tt_meta.manifest.json"
    shutil.copy(forge, scene.manifest)
    assert_refused(scene.run(), "signed for backend 'forge'", scene=scene)
    scene.resign_payload(lambda p: p.update(backend="metal"))
    assert_refused(scene.run(), "signed for distribution 'vllm-tt'", scene=scene)


def test_11_manifest_of_another_version(scene: Scene) -> None:
    scene.resign_payload(lambda p: p.update(version="0.0.9"))
    assert_refused(scene.run(), "signed for version '0.0.9'", scene=scene)


def test_12_another_signed_document_type(scene: Scene) -> None:
    scene.resign(scene.policy.read_bytes(),
                 payload_type="application/vnd.tt-meta.policy+toml")
    assert_refused(scene.run(), "is a 'application/vnd.tt-meta.policy+toml', not a manifest",
                   scene=scene)


# -- Parsing --------------------------------------------------------------------------------

def test_13_duplicate_keys_in_envelope(scene: Scene) -> None:
    raw = scene.manifest.read_bytes().replace(b'{\n "payloadType"',
                                              b'{\n "payloadType": "x",\n "payloadType"', 1)
    scene.write_envelope(raw)
    assert_refused(scene.run(), "has the key 'payloadType' twice", scene=scene)


def test_13_duplicate_keys_in_signed_payload(scene: Scene) -> None:
    payload = base64.b64decode(scene.envelope()["payload"])
    scene.resign(payload.replace(b'"serial": 1', b'"serial": 1, "serial": 99', 1))
    assert_refused(scene.run(), "has the key 'serial' twice", scene=scene)


def test_13_float_in_signed_payload(scene: Scene) -> None:
    payload = base64.b64decode(scene.envelope()["payload"])
    scene.resign(payload.replace(b'"serial": 1', b'"serial": 1.0', 1))
    assert_refused(scene.run(), "non-integer number", scene=scene)


def test_14_oversized_manifest(scene: Scene) -> None:
    scene.write_envelope(b" " * (64 * 1024 * 1024 + 1))
    assert_refused(scene.run(), "larger than 64 MiB", scene=scene)


def test_14_deeply_nested_manifest(scene: Scene) -> None:
    scene.write_envelope(b"[" * 100000 + b"]" * 100000)
    assert_refused(scene.run(), "nested too deeply", scene=scene)


@pytest.mark.parametrize(("raw", "needle"), [(b"\xff\xfe{}", "not UTF-8"),
                                              (b'{"payloadType":', "not valid JSON")])
def test_14_invalid_encoding_or_json(scene: Scene, raw: bytes, needle: str) -> None:
    scene.write_envelope(raw)
    assert_refused(scene.run(), needle, scene=scene)


def test_15_fields_outside_the_signed_bytes_are_not_used(scene: Scene) -> None:
    data = scene.envelope()
    data["files"] = []  # an unsigned field an attacker hopes a lax parser would read
    scene.write_envelope(data)
    assert_refused(scene.run(), "not an envelope with exactly payloadType, payload and "
                   "signatures", scene=scene)


# -- Installed files ------------------------------------------------------------------------

def _platform_py(scene: Scene) -> Path:
    return scene.site / "tt_vllm_plugin" / "platform.py"


def test_16_modified_file(scene: Scene) -> None:
    with _platform_py(scene).open("a") as handle:
        handle.write("\nimport os  # injected\n")
    assert_refused(scene.run(), "a signed file changed size", scene=scene)


def test_16_modification_that_keeps_the_size(scene: Scene) -> None:
    path = scene.site / "tt_vllm_plugin" / "__init__.py"
    text = path.read_text()
    path.write_text(text.replace("unconditionally", "UNCONDITIONALLY"))
    assert len(path.read_bytes()) == len(text.encode())
    assert_refused(scene.run(), "a signed file was modified (its SHA-256 differs)",
                   str(path), scene=scene)


def test_16_missing_file(scene: Scene) -> None:
    _platform_py(scene).unlink()
    assert_refused(scene.run(), "a signed file is missing", scene=scene)


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
    assert_refused(scene.run(), needle, scene=scene)


def test_17_namespace_portion_elsewhere_on_sys_path(scene: Scene, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    (other / "tt_vllm_plugin").mkdir(parents=True)
    (other / "tt_vllm_plugin" / "extra.py").write_text("import os\n")
    result = scene.run_process(scene.site, MODEL, TT_META_POLICY=str(scene.policy),
                               PYTHONPATH=f"{scene.site}{os.pathsep}{other}")
    assert_refused(result, "another copy or namespace portion of 'tt_vllm_plugin'",
                   scene=scene)


def _tamper_bytecode(source: Path, evil: str) -> Path:
    """A __pycache__ file for `source` whose header matches its mtime and size, holding
    code compiled from `evil`: what Python 3.11 would run instead of the source."""
    fake = source.with_name("_evil_src.py")
    fake.write_text(evil)
    compiled = py_compile.compile(str(fake), cfile=str(source.with_name("_evil.pyc")))
    assert compiled is not None
    cached = Path(compiled)
    fake.unlink()
    data = bytearray(cached.read_bytes())
    info = source.stat()
    data[8:16] = struct.pack("<II", int(info.st_mtime) & 0xFFFFFFFF, info.st_size & 0xFFFFFFFF)
    target = Path(importlib.util.cache_from_source(str(source)))
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(bytes(data))
    cached.unlink()
    return target


EVIL = textwrap.dedent(
    """
    from tt_sim_record import record
    record("tt-vllm-plugin", "TAMPERED")
    def register():
        record("tt-vllm-plugin", "TAMPERED")
        return "tt_vllm_plugin.platform.TTPlatform"
    def register_models():
        pass
    """
)


def test_18_tampered_signed_bytecode_is_refused(scene: Scene) -> None:
    source = scene.site / "tt_vllm_plugin" / "__init__.py"
    cached = Path(importlib.util.cache_from_source(str(source)))
    assert cached.exists(), "pip compiled it at install, and the manifest lists it"
    _tamper_bytecode(source, EVIL)
    assert_refused(scene.run(), "a signed file", "__pycache__", scene=scene)


def test_18_tampered_bytecode_with_matching_header_does_not_run(scene: Scene) -> None:
    source = scene.site / "tt_vllm_plugin" / "__init__.py"
    # Signed without bytecode (pip --no-compile); Python may write some later, unsigned.
    for cache in scene.site.glob("tt_vllm_plugin/__pycache__"):
        shutil.rmtree(cache)
    sign_site(scene.site, scene.keys / "release.key")
    _tamper_bytecode(source, EVIL)
    # Proof that the attack is real: a plain import runs the tampered bytecode.
    plain = subprocess.run(
        [sys.executable, "-c", "import tt_vllm_plugin; print(tt_vllm_plugin.register())"],
        env=clean_env(PYTHONPATH=str(scene.site), TT_SIM_RECORD_DIR=str(scene.root)),
        capture_output=True, text=True, check=True)
    assert "tt_vllm_plugin.platform.TTPlatform" in plain.stdout
    ran = [json.loads(x) for p in scene.root.glob("*.jsonl") for x in p.read_text().splitlines()]
    assert any(e["event"] == "TAMPERED" for e in ran)
    # Under tt_meta, the verified source runs and the tampered bytecode does not.
    result = scene.run()
    assert result.result.get("platform") == ["tt_vllm_plugin.platform.TTPlatform"] * 2, (
        result.stderr)
    assert "TAMPERED" not in {e["event"] for e in result.events}
    assert {"imported", "platform_function", "general_plugin"} <= {
        e["event"] for e in result.events}


def test_19_symlink_swapped_in(scene: Scene, tmp_path: Path) -> None:
    path = _platform_py(scene)
    copy = tmp_path / "platform.py"
    shutil.copy(path, copy)
    path.unlink()
    path.symlink_to(copy)
    assert_refused(scene.run(), "symlink", scene=scene)


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
    assert_refused(scene.run(), needle, scene=scene)


def test_20_record_edited_to_match_tampered_files(scene: Scene) -> None:
    import hashlib
    path = _platform_py(scene)
    path.write_text(path.read_text() + "\nEVIL = 1\n")
    digest = base64.urlsafe_b64encode(hashlib.sha256(path.read_bytes()).digest()).rstrip(b"=")
    record = scene.site / METAL_INFO / "RECORD"
    lines = [f"tt_vllm_plugin/platform.py,sha256={digest.decode()},{path.stat().st_size}"
             if line.startswith("tt_vllm_plugin/platform.py,") else line
             for line in record.read_text().splitlines()]
    record.write_text("\n".join(lines) + "\n")
    # RECORD is only one more signed file: editing it is itself a refused change.
    assert_refused(scene.run(), "a signed file changed size", scene=scene)


def test_21_editable_install(scene: Scene) -> None:
    (scene.site / METAL_INFO / "direct_url.json").write_text(
        json.dumps({"url": "file:///src/tt-vllm-plugin", "dir_info": {"editable": True}}))
    assert_refused(scene.run(), "is an editable install", scene=scene)


SWAP_SCRIPT = textwrap.dedent(
    """
    import os, sys
    sys.argv = ["/venv/bin/vllm", "serve", "metal-org/llama"]
    from tt_meta_plugin import _dispatch, _handoff
    policy = _dispatch.load_checked_policy(os.environ)
    catalog = _dispatch.catalog_for(policy)
    plan = _dispatch.plan(os.environ, sys.argv, catalog, policy)
    _dispatch.trust(policy, "metal", plan.target.dist)          # verified here ...
    path = os.path.join(os.environ["SITE"], "tt_vllm_plugin", "platform.py")
    with open(path, "a") as f:                                   # ... swapped here ...
        f.write("\\nEVIL = 1\\n")
    from tt_meta_plugin._delegate import call_platform
    print(call_platform(plan.target))   # register() is in the unchanged __init__.py
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
    ran = [json.loads(x) for p in scene.root.glob("*.jsonl") for x in p.read_text().splitlines()]
    assert "platform_class" not in {e["event"] for e in ran}


# -- Policy ---------------------------------------------------------------------------------

def test_23_backend_not_on_the_allowlist(scene: Scene) -> None:
    policy = scene.policy_file(TWO_BACKENDS_POLICY.replace('["metal", "forge"]', '["forge"]'))
    assert_refused(scene.run(policy), "backend 'metal', chosen by rule 2", "not in "
                   "allowed_backends ['forge']", scene=scene)


def test_23_deny_rule_beats_allow_rule(scene: Scene) -> None:
    policy = scene.policy_file(TWO_BACKENDS_POLICY.replace(
        "[[rule]]", '[[rule]]\nmodel = "metal-org/llama"\ndeny = true\n\n[[rule]]', 1))
    assert_refused(scene.run(policy, TT_META_BACKEND="metal"),
                   "model 'metal-org/llama' is denied by rule 1", scene=scene)


@pytest.mark.parametrize("what", ["policy", "key", "manifest", "state"])
def test_24_writable_by_group_or_others(scene: Scene, what: str) -> None:
    target = {"policy": scene.policy, "key": scene.keys / "release.pub",
              "manifest": scene.manifest, "state": scene.state}[what]
    target.mkdir(exist_ok=True) if what == "state" else None
    mode = target.stat().st_mode
    os.chmod(target, mode | 0o022)
    try:
        assert_refused(scene.run(), "is writable by group or others", "chmod go-w",
                       scene=scene)
    finally:
        os.chmod(target, mode)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_24_owned_by_another_user(scene: Scene) -> None:
    os.chown(scene.policy, 12345, -1)
    assert_refused(scene.run(), "is owned by uid 12345", scene=scene)


def test_24_relaxed_for_development_with_a_warning(scene: Scene) -> None:
    os.chmod(scene.manifest, 0o666)
    result = scene.run(scene.policy_with("strict_permissions = false\n"))
    assert result.result.get("platform"), result.stderr
    assert "WARNING" in result.stderr and "strict_permissions = false" in result.stderr


def test_25_a_failed_process_leaves_nothing_for_another(scene: Scene) -> None:
    path = _platform_py(scene)
    good = path.read_bytes()
    path.write_bytes(good + b"\n# tampered\n")
    failed = scene.run()
    assert_refused(failed, "changed size", scene=scene)
    # A child started from the failed process's environment would find no decision; and
    # a fresh process after the repair decides again and succeeds.
    path.write_bytes(good)
    assert scene.run().result.get("platform")


# -- Beyond the list ------------------------------------------------------------------------

def test_require_signatures_false_delegates_with_a_warning(
    make_site: SiteMaker, run_process: ProcessRunner, policy_file: PolicyFile
) -> None:
    site = make_site("tt-vllm-plugin", sign=False)
    policy = policy_file("require_signatures = false\n" + TWO_BACKENDS_POLICY)
    result = run_process(site, MODEL, TT_META_POLICY=str(policy))
    assert result.result.get("platform"), result.stderr
    assert "WITHOUT verifying it" in result.stderr and "WARNING" in result.stderr


def test_default_policy_requires_signatures(make_site: SiteMaker,
                                             run_process: ProcessRunner) -> None:
    site = make_site("tt-vllm-plugin", sign=False)
    result = run_process(site, [MODEL[0], "serve", "meta-llama/Llama-3.1-8B-Instruct"])
    assert result.refused and "no signed manifest found for tt-vllm-plugin 0.1.0" in result.stderr


def test_child_checks_imports_without_walking_the_tree(scene: Scene) -> None:
    """A child reuses the parent's verified manifest; an extra file added after the parent
    verified is not walked for, but a changed file the child imports is still refused."""
    parent = scene.run()
    decision = str(parent.result["decision"])
    (scene.site / "tt_vllm_plugin" / "extra.py").write_text("x = 1\n")  # not imported
    child = scene.run_process(scene.site, ["/venv/bin/worker.py"], TT_META_DECISION=decision,
                              TT_META_POLICY=str(scene.policy))
    assert child.result.get("inherited") is True, child.stderr
    with _platform_py(scene).open("a") as handle:
        handle.write("\nEVIL = 1\n")
    child = scene.run_process(scene.site, ["/venv/bin/worker.py"], TT_META_DECISION=decision,
                              TT_META_POLICY=str(scene.policy))
    assert child.refused
    assert "tt_vllm_plugin/platform.py does not match the verified manifest" in child.stderr


def test_audit_line_and_audit_log(scene: Scene) -> None:
    log = scene.root / "audit.jsonl"
    result = scene.run(scene.policy_with(f'audit_log = "{log}"\n'))
    assert result.result.get("platform"), result.stderr
    (entry,) = [json.loads(x) for x in log.read_text().splitlines()]
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
    _platform_py(scene).write_text("tampered\n")
    bad = verify("--dist", "tt-vllm-plugin")
    assert bad.returncode == 1 and "FAILED tt-vllm-plugin" in bad.stdout



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
    os.utime(_platform_py(scene))  # metadata changed, content not: rehash that one file
    touched = verify()
    assert touched["ok"] and touched["hashed"] == 1
    path = scene.site / "tt_vllm_plugin" / "__init__.py"
    data = path.read_bytes()
    info = path.stat()
    path.write_bytes(data.replace(b"unconditionally", b"UNCONDITIONALLY"))
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))  # same size, same mtime
    tampered = verify()
    assert not tampered["ok"] and "SHA-256 differs" in tampered["error"]  # ctime moved


def test_child_record_changed_after_parent_wrote_it(scene: Scene) -> None:
    parent = scene.run()
    decision = json.loads(str(parent.result["decision"]))
    record = scene.state / "verified" / f"{decision['manifest_digest']}.idx"
    record.write_bytes(record.read_bytes() + b"x")
    child = scene.run_process(scene.site, ["/venv/bin/worker.py"],
                              TT_META_DECISION=json.dumps(decision),
                              TT_META_POLICY=str(scene.policy))
    assert child.refused
    assert "the parent's verification record changed after the parent wrote it" in child.stderr
    assert child.events == []


def _modules(result: ProcessResult) -> list[str]:
    names = result.result["modules"]
    assert isinstance(names, list)
    return [str(n) for n in names]


def test_warm_and_child_processes_skip_the_costly_work_but_no_check(scene: Scene) -> None:
    """A restart with an unchanged backend checks signatures from the record without
    cryptography; a child parses no policy, loads no catalog, checks no signature. Trust is
    still judged anew (a revocation counts at once) and a change is still found."""
    cold = scene.run()
    assert cold.result.get("platform"), cold.stderr
    assert "cryptography" in _modules(cold)
    warm = scene.run()
    assert warm.result.get("platform"), warm.stderr
    assert not [m for m in _modules(warm) if m.startswith(("cryptography", "pluggy"))]
    child = scene.run_process(scene.site, ["/venv/bin/worker.py"],
                              TT_META_DECISION=str(cold.result["decision"]),
                              TT_META_POLICY=str(scene.policy))
    assert child.result.get("inherited") is True, child.stderr
    assert _modules(child) == [], _modules(child)
    # The rollback mark of the runs above stays; a refusal adds nothing to it.
    revoked = scene.run(scene.policy_with(f'revoked_keys = ["{scene.keyid}"]\n'))
    assert_refused(revoked, "the key is revoked")
    nested = scene.site / "tt_vllm_plugin" / "sub"
    nested.mkdir()
    (nested / "added.py").write_text("x = 1\n")
    assert_refused(scene.run(), "a file that is not in the manifest was added",
                   "tt_vllm_plugin/sub/added.py")
    shutil.rmtree(nested)
    assert scene.run().result.get("platform")
    target = _platform_py(scene)
    moved = target.with_name("platform_real.py")
    target.rename(moved)
    target.symlink_to(moved)
    assert_refused(scene.run(), "a symlink was added among the signed files")


def test_child_policy_changed_after_the_parent_parsed_it(scene: Scene) -> None:
    parent = scene.run()
    scene.policy.write_text(scene.policy.read_text() + "\n# edited\n")
    child = scene.run_process(scene.site, ["/venv/bin/worker.py"],
                              TT_META_DECISION=str(parent.result["decision"]),
                              TT_META_POLICY=str(scene.policy))
    assert child.refused, child.stderr
    for needle in ("but the decision was made under", "as it was then",
                   "do not change the policy file while a server starts"):
        assert needle in child.stderr, child.stderr
    assert child.events == []
