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
    BUILTIN_POLICY,
    TWO_BACKENDS_POLICY,
    VLLM_ARGV0,
    ProcessResult,
    ProcessRunner,
    SiteMaker,
    StateWatch,
    assert_delegated,
    assert_refused,
    clean_env,
    read_events,
    sign_site,
)
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tt_meta_plugin.trust.envelope import MANIFEST_TYPE, Envelope, Signature, pae
from tt_meta_plugin.trust.keys import generate, key_id, load_private

MODEL = [VLLM_ARGV0, "serve", "metal-org/llama"]
METAL = "tt-vllm-plugin"
METAL_INFO = "tt_vllm_plugin-0.1.0.dist-info"
PolicyFile = Callable[[str], Path]


class Scene:
    """A signed site, its policy and trust directories, and the means to attack them."""

    def __init__(self, root: Path, site: Path, keys: Path, keyid: str, run: ProcessRunner,
                 policy_file: PolicyFile) -> None:
        self.root, self.site, self.keys, self.keyid = root, site, keys, keyid
        self.run_process, self.policy_file = run, policy_file
        self.state = root / "state"
        self.audit = root / "audit.jsonl"
        self.watch = StateWatch(self.state, self.audit)
        self.manifest = site / METAL_INFO / "tt_meta.manifest.json"
        self.policy = self.policy_with()

    def run(self, policy: Path | None = None, argv: list[str] | None = None,
            **env: str) -> ProcessResult:
        """One process; what tt_meta had written before it is kept for `assert_refused`."""
        self.watch.before()
        return self.run_process(self.site, argv or MODEL,
                                TT_META_POLICY=str(policy or self.policy), **env)

    def child(self, decision: str, policy: Path | None = None) -> ProcessResult:
        """A process vLLM starts (worker), from its parent's environment."""
        return self.run(policy, ["/venv/bin/worker.py"], TT_META_DECISION=decision)

    def policy_with(self, trust: str = "", top: str = "", body: str = TWO_BACKENDS_POLICY,
                    keys: Path | None = None, signers: str | None = None) -> Path:
        """A policy: `body` (rules) with extra top-level keys and extra [trust] lines,
        trusting `keys` (the session's by default) for `signers` (every backend). Every
        scene's policy keeps an audit log, so each refusal is checked to be logged."""
        if signers is None:
            signers = "\n".join(f'{b} = ["{self.keyid}"]' for b in ("forge", "metal"))
        return self.policy_file(
            f'{top}{body}\n[trust]\nkey_dirs = ["{keys or self.keys}"]\n'
            f'state_dir = "{self.state}"\naudit_log = "{self.audit}"\n{trust}\n'
            f"[trust.signers]\n{signers}\n")

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


def refused(scene: Scene, result: ProcessResult, *needles: str, where: object = None
            ) -> None:
    """A clean refusal of `scene.run()` that wrote nothing another process trusts."""
    assert_refused(result, *needles, where=where, state=scene.watch)


def test_baseline_signed_backend_is_delegated(scene: Scene) -> None:
    assert scene.watch.files() == {}
    result = scene.run()
    assert_delegated(result, METAL)
    assert json.loads((scene.state / "serials.json").read_text())["tt-vllm-plugin"]["serial"] == 1
    # What a first process leaves for others: the rollback mark, one verification record,
    # and one audit line saying what it delegated to.
    marks, record = sorted(scene.watch.files())
    assert marks == "serials.json", marks
    assert record.startswith("verified/") and record.endswith(".idx"), record
    (entry,) = [json.loads(x) for x in scene.audit.read_text().splitlines()]
    assert entry["verdict"] == "delegated" and entry["distribution"] == METAL


# -- Signatures and keys --------------------------------------------------------------------

def test_01_unsigned_manifest(scene: Scene) -> None:
    data = scene.envelope()
    data["signatures"] = []
    scene.write_envelope(data)
    refused(scene, scene.run(), "0 valid signature(s)", "it carries no signature",
            where=scene.manifest)


def test_01_signature_by_untrusted_key(scene: Scene, tmp_path: Path) -> None:
    generate(tmp_path / "stranger")
    scene.resign(base64.b64decode(scene.envelope()["payload"]), key=tmp_path / "stranger.key")
    refused(scene, scene.run(), "not a trusted key",
            where=scene.manifest)


def test_02_trusted_key_not_bound_to_this_backend(scene: Scene) -> None:
    policy = scene.policy_with(signers=f'forge = ["{scene.keyid}"]')
    refused(scene, scene.run(policy), "the key is trusted but not bound to backend 'metal'",
            where=scene.manifest)


def test_03_keyid_claims_a_trusted_key_but_another_signed(scene: Scene, tmp_path: Path) -> None:
    generate(tmp_path / "forger")
    payload = base64.b64decode(scene.envelope()["payload"])
    forged = load_private(tmp_path / "forger.key").sign(pae(MANIFEST_TYPE, payload))
    scene.manifest.write_bytes(
        Envelope(MANIFEST_TYPE, payload, (Signature(scene.keyid, forged),)).to_bytes())
    refused(scene, scene.run(), "does not verify with that key",
            where=scene.manifest)


def test_04_bit_flip_in_payload(scene: Scene) -> None:
    data = scene.envelope()
    payload = bytearray(base64.b64decode(data["payload"]))
    at = payload.index(b'"serial": 1') + len(b'"serial": ')
    payload[at] ^= 0x02  # 1 -> 3: still valid JSON, no longer what was signed
    data["payload"] = base64.b64encode(bytes(payload)).decode()
    scene.write_envelope(data)
    refused(scene, scene.run(), "does not verify with that key",
            where=scene.manifest)


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
    refused(scene, scene.run(), "does not verify with that key",
            where=scene.manifest)


def test_04_malformed_signature_encoding(scene: Scene) -> None:
    data = scene.envelope()
    data["signatures"][0]["sig"] = "not base64!"
    scene.write_envelope(data)
    refused(scene, scene.run(), "invalid base64",
            where=scene.manifest)


def test_05_public_key_of_another_scheme(scene: Scene, tmp_path: Path) -> None:
    keys = tmp_path / "ec-keys"
    keys.mkdir()
    shutil.copy(scene.keys / "release.pub", keys)
    pem = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (keys / "ecdsa.pub").write_bytes(pem)
    policy = scene.policy_with(keys=keys)
    refused(scene, scene.run(policy), "not an Ed25519 key (the only scheme accepted)",
                   str(keys / "ecdsa.pub"))


def test_05_malformed_public_key_file(scene: Scene, tmp_path: Path) -> None:
    keys = tmp_path / "bad-keys"
    keys.mkdir()
    shutil.copy(scene.keys / "release.pub", keys)
    (keys / "broken.pub").write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    policy = scene.policy_with(keys=keys)
    refused(scene, scene.run(policy), "not a PEM public key")


def test_06_fewer_signatures_than_threshold(scene: Scene) -> None:
    refused(scene, scene.run(scene.policy_with("threshold = 2\n")),
                   "1 valid signature(s)", "2 needed")


def test_06_same_key_counted_twice(scene: Scene) -> None:
    data = scene.envelope()
    data["signatures"] = data["signatures"] * 2
    scene.write_envelope(data)
    refused(scene, scene.run(scene.policy_with("threshold = 2\n")),
                   "the same key counted once only")


def test_07_revoked_key(scene: Scene) -> None:
    refused(scene, scene.run(scene.policy_with(f'revoked_keys = ["{scene.keyid}"]\n')),
                   "the key is revoked")


# -- Freshness and replay -------------------------------------------------------------------

def test_08_expired_manifest(scene: Scene) -> None:
    scene.resign_payload(lambda p: p.update(expires=p["issued"] - 1))
    refused(scene, scene.run(), "expired at", "tt-meta sign --expires",
            where=scene.manifest)


def test_09_rollback_to_an_older_validly_signed_manifest(scene: Scene) -> None:
    old = scene.manifest.read_bytes()
    sign_site(scene.site, scene.keys / "release.key", serial=5)
    assert_delegated(scene.run(), METAL)  # the newer manifest verifies first
    scene.manifest.write_bytes(old)  # serial 1, validly signed, older
    result = scene.run()
    refused(scene, result, "rollback", "serial 5 was already seen",
            where=scene.manifest)
    assert json.loads((scene.state / "serials.json").read_text())["tt-vllm-plugin"]["serial"] == 5


def test_10_same_serial_different_content(scene: Scene) -> None:
    assert_delegated(scene.run(), METAL)
    scene.resign_payload(lambda p: p.update(expires=p["expires"] + 1))
    refused(scene, scene.run(), "reuses serial 1 with other content",
            where=scene.state / "serials.json")


def test_11_manifest_of_another_distribution(scene: Scene) -> None:
    forge = scene.site / "vllm_tt-0.1.0.dist-info" / "tt_meta.manifest.json"
    shutil.copy(forge, scene.manifest)
    refused(scene, scene.run(), "signed for backend 'forge'",
            where=scene.manifest)
    scene.resign_payload(lambda p: p.update(backend="metal"))
    refused(scene, scene.run(), "signed for distribution 'vllm-tt'",
            where=scene.manifest)


def test_11_manifest_of_another_version(scene: Scene) -> None:
    scene.resign_payload(lambda p: p.update(version="0.0.9"))
    refused(scene, scene.run(), "signed for version '0.0.9'",
            where=scene.manifest)


def test_12_another_signed_document_type(scene: Scene) -> None:
    scene.resign(scene.policy.read_bytes(),
                 payload_type="application/vnd.tt-meta.policy+toml")
    refused(scene, scene.run(), "is a 'application/vnd.tt-meta.policy+toml', not a manifest",
            where=scene.manifest)


# -- Parsing --------------------------------------------------------------------------------

def test_13_duplicate_keys_in_envelope(scene: Scene) -> None:
    raw = scene.manifest.read_bytes().replace(b'{\n "payloadType"',
                                              b'{\n "payloadType": "x",\n "payloadType"', 1)
    scene.write_envelope(raw)
    refused(scene, scene.run(), "has the key 'payloadType' twice",
            where=scene.manifest)


def test_13_duplicate_keys_in_signed_payload(scene: Scene) -> None:
    payload = base64.b64decode(scene.envelope()["payload"])
    scene.resign(payload.replace(b'"serial": 1', b'"serial": 1, "serial": 99', 1))
    refused(scene, scene.run(), "has the key 'serial' twice",
            where=scene.manifest)


def test_13_float_in_signed_payload(scene: Scene) -> None:
    payload = base64.b64decode(scene.envelope()["payload"])
    scene.resign(payload.replace(b'"serial": 1', b'"serial": 1.0', 1))
    refused(scene, scene.run(), "non-integer number",
            where=scene.manifest)


def test_14_oversized_manifest(scene: Scene) -> None:
    scene.write_envelope(b" " * (64 * 1024 * 1024 + 1))
    refused(scene, scene.run(), "larger than 64 MiB",
            where=scene.manifest)


def test_14_deeply_nested_manifest(scene: Scene) -> None:
    scene.write_envelope(b"[" * 100000 + b"]" * 100000)
    refused(scene, scene.run(), "nested too deeply",
            where=scene.manifest)


@pytest.mark.parametrize(("raw", "needle"), [(b"\xff\xfe{}", "not UTF-8"),
                                              (b'{"payloadType":', "not valid JSON")])
def test_14_invalid_encoding_or_json(scene: Scene, raw: bytes, needle: str) -> None:
    scene.write_envelope(raw)
    refused(scene, scene.run(), needle, where=scene.manifest)


def test_15_fields_outside_the_signed_bytes_are_not_used(scene: Scene) -> None:
    data = scene.envelope()
    data["files"] = []  # an unsigned field an attacker hopes a lax parser would read
    scene.write_envelope(data)
    refused(scene, scene.run(), "not an envelope with exactly payloadType, payload and "
            "signatures", where=scene.manifest)


# -- Installed files ------------------------------------------------------------------------

def _platform_py(scene: Scene) -> Path:
    return scene.site / "tt_vllm_plugin" / "platform.py"


def test_16_modified_file(scene: Scene) -> None:
    with _platform_py(scene).open("a") as handle:
        handle.write("\nimport os  # injected\n")
    refused(scene, scene.run(), "a signed file changed size", where=_platform_py(scene))


def test_16_modification_that_keeps_the_size(scene: Scene) -> None:
    path = scene.site / "tt_vllm_plugin" / "__init__.py"
    text = path.read_text()
    path.write_text(text.replace("unconditionally", "UNCONDITIONALLY"))
    assert len(path.read_bytes()) == len(text.encode())
    refused(scene, scene.run(), "a signed file was modified (its SHA-256 differs)",
            where=path)


def test_16_missing_file(scene: Scene) -> None:
    _platform_py(scene).unlink()
    refused(scene, scene.run(), "a signed file is missing", where=_platform_py(scene))


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
    refused(scene, scene.run(), needle, where=named)


def test_17_namespace_portion_elsewhere_on_sys_path(scene: Scene, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    (other / "tt_vllm_plugin").mkdir(parents=True)
    (other / "tt_vllm_plugin" / "extra.py").write_text("import os\n")
    result = scene.run_process(scene.site, MODEL, TT_META_POLICY=str(scene.policy),
                               PYTHONPATH=f"{scene.site}{os.pathsep}{other}")
    refused(scene, result, "another copy or namespace portion of 'tt_vllm_plugin'")


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
    refused(scene, scene.run(), "a signed file", where=cached)


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
    ran = read_events(scene.root)
    assert any(e["event"] == "TAMPERED" for e in ran)
    # Under tt_meta, the verified source runs and the tampered bytecode does not.
    result = scene.run()
    assert_delegated(result, METAL)
    assert "TAMPERED" not in {e["event"] for e in result.events}
    assert "imported" in {e["event"] for e in result.events}


def test_19_symlink_swapped_in(scene: Scene, tmp_path: Path) -> None:
    path = _platform_py(scene)
    copy = tmp_path / "platform.py"
    shutil.copy(path, copy)
    path.unlink()
    path.symlink_to(copy)
    refused(scene, scene.run(), "symlink", where=path)


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
    refused(scene, scene.run(), needle, where=scene.manifest)


def test_20_record_edited_to_match_tampered_files(scene: Scene) -> None:
    import hashlib
    path = _platform_py(scene)
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
            "modified: tt_vllm_plugin/platform.py", where=record)


def test_21_editable_install(scene: Scene) -> None:
    (scene.site / METAL_INFO / "direct_url.json").write_text(
        json.dumps({"url": "file:///src/tt-vllm-plugin", "dir_info": {"editable": True}}))
    refused(scene, scene.run(), "is an editable install")


SWAP_SCRIPT = textwrap.dedent(
    """
    import os, sys
    sys.argv = ["/venv/bin/vllm", "serve", "metal-org/llama"]
    from tt_meta_plugin.activation import first_process as _dispatch
    policy = _dispatch.load_checked_policy(os.environ)
    catalog = _dispatch.catalog_for(policy)
    plan = _dispatch.plan(os.environ, sys.argv, catalog, policy)
    _dispatch.trust(policy, "metal", plan.target.dist)          # verified here ...
    path = os.path.join(os.environ["SITE"], "tt_vllm_plugin", "platform.py")
    with open(path, "a") as f:                                   # ... swapped here ...
        f.write("\\nEVIL = 1\\n")
    from tt_meta_plugin.activation.backend import call_platform
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
    ran = read_events(scene.root)
    assert "platform_class" not in {e["event"] for e in ran}


# -- Policy ---------------------------------------------------------------------------------

def test_23_backend_not_on_the_allowlist(scene: Scene) -> None:
    policy = scene.policy_with(body=TWO_BACKENDS_POLICY.replace('["metal", "forge"]',
                                                                '["forge"]'))
    refused(scene, scene.run(policy), "backend 'metal', chosen by rule 2", "not in "
            "allowed_backends ['forge']", where=policy)


def test_23_deny_rule_beats_allow_rule(scene: Scene) -> None:
    policy = scene.policy_with(body=TWO_BACKENDS_POLICY.replace(
        "[[rule]]", '[[rule]]\nmodel = "metal-org/llama"\ndeny = true\n\n[[rule]]', 1))
    refused(scene, scene.run(policy, TT_META_BACKEND="metal"),
            "model 'metal-org/llama' is denied by rule 1", where=policy)


@pytest.mark.parametrize("what", ["policy", "key", "manifest", "state"])
def test_24_writable_by_group_or_others(scene: Scene, what: str) -> None:
    target = {"policy": scene.policy, "key": scene.keys / "release.pub",
              "manifest": scene.manifest, "state": scene.state}[what]
    target.mkdir(exist_ok=True) if what == "state" else None
    mode = target.stat().st_mode
    os.chmod(target, mode | 0o022)
    try:
        # The refusal names the file, so a refusal of some other file cannot pass for it.
        refused(scene, scene.run(), "is writable by group or others", f"chmod go-w {target}",
                where=target)
    finally:
        os.chmod(target, mode)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_24_owned_by_another_user(scene: Scene) -> None:
    os.chown(scene.policy, 12345, -1)
    refused(scene, scene.run(), "is owned by uid 12345", where=scene.policy)


def test_24_relaxed_for_development_with_a_warning(scene: Scene) -> None:
    os.chmod(scene.manifest, 0o666)
    result = scene.run(scene.policy_with("strict_permissions = false\n"))
    assert_delegated(result, METAL)
    assert "WARNING" in result.stderr and "strict_permissions = false" in result.stderr
    assert str(scene.manifest) in result.stderr


def _child_of(scene: Scene, failed: ProcessResult) -> ProcessResult:
    """A worker started from the environment the failed process was left with."""
    decision = failed.result.get("decision")
    return scene.run(argv=["/venv/bin/worker.py"],
                     TT_META_DECISION=decision if isinstance(decision, str) else "<unset>")


def test_25_a_failed_process_leaves_nothing_for_another(scene: Scene) -> None:
    path = _platform_py(scene)
    good = path.read_bytes()
    path.write_bytes(good + b"\n# tampered\n")
    failed = scene.run()
    refused(scene, failed, "changed size", where=path)
    # A worker started from the failed process's environment has nothing to inherit: it
    # finds no model on its own command line and refuses too, without backend code.
    path.write_bytes(good)
    refused(scene, _child_of(scene, failed), "no model found")
    # A fresh process after the repair decides again and succeeds.
    assert_delegated(scene.run(), METAL)


@pytest.mark.parametrize("step", ["platform_function", "general_plugin"])
def test_25_a_failure_after_verification_leaves_no_decision(scene: Scene, step: str) -> None:
    """Verification succeeded, then the backend failed: the process still exits 1, and a
    worker started from what it left behind does not inherit its decision."""
    failed = scene.run(TT_SIM_FAIL=step)
    assert failed.refused, (failed.result, failed.stderr[-2000:])
    assert "ERROR" in failed.stderr and f"simulated failure in {step}" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert failed.result.get("decision") is None, "a decision was left for children"
    refused(scene, _child_of(scene, failed), "no model found")


# -- Beyond the list ------------------------------------------------------------------------

def test_require_signatures_false_delegates_with_a_warning(
    make_site: SiteMaker, run_process: ProcessRunner, policy_file: PolicyFile
) -> None:
    site = make_site("tt-vllm-plugin", sign=False)
    policy = policy_file("require_signatures = false\n" + TWO_BACKENDS_POLICY)
    result = run_process(site, MODEL, TT_META_POLICY=str(policy))
    assert_delegated(result, METAL)
    assert "WITHOUT verifying it" in result.stderr and "WARNING" in result.stderr


def test_default_policy_requires_signatures(make_site: SiteMaker,
                                             run_process: ProcessRunner) -> None:
    site = make_site("tt-vllm-plugin", sign=False)
    # Named explicitly: the built-in policy, whatever /etc/tt-meta holds on this machine.
    result = run_process(site, [MODEL[0], "serve", "meta-llama/Llama-3.1-8B-Instruct"],
                         TT_META_POLICY=str(BUILTIN_POLICY))
    assert_refused(result, "no signed manifest found for tt-vllm-plugin 0.1.0")


def test_child_checks_imports_without_walking_the_tree(scene: Scene) -> None:
    """A child reuses the parent's verified manifest; an extra file added after the parent
    verified is not walked for, but a changed file the child imports is still refused."""
    parent = scene.run()
    assert_delegated(parent, METAL)
    (scene.site / "tt_vllm_plugin" / "extra.py").write_text("x = 1\n")  # not imported
    assert_delegated(scene.child(parent.decision), METAL, inherited=True)
    with _platform_py(scene).open("a") as handle:
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
    assert_delegated(parent, METAL)
    decision = json.loads(parent.decision)
    record = scene.state / "verified" / f"{decision['manifest_digest']}.idx"
    record.write_bytes(record.read_bytes() + b"x")
    refused(scene, scene.child(parent.decision),
            "the parent's verification record changed after the parent wrote it")


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
    refused(scene, revoked, "the key is revoked", where=scene.manifest)
    nested = scene.site / "tt_vllm_plugin" / "sub"
    nested.mkdir()
    (nested / "added.py").write_text("x = 1\n")
    refused(scene, scene.run(), "a file that is not in the manifest was added",
            where=nested / "added.py")
    shutil.rmtree(nested)
    assert_delegated(scene.run(), METAL)
    target = _platform_py(scene)
    moved = target.with_name("platform_real.py")
    target.rename(moved)
    target.symlink_to(moved)
    refused(scene, scene.run(), "a symlink was added among the signed files", where=target)


def test_child_policy_changed_after_the_parent_parsed_it(scene: Scene) -> None:
    parent = scene.run()
    assert_delegated(parent, METAL)
    scene.policy.write_text(scene.policy.read_text() + "\n# edited\n")
    refused(scene, scene.child(parent.decision), "but the decision was made under",
            "as it was then", "do not change the policy file while a server starts")
