"""Threats 1-7: signatures and keys (docs/threat-model.md, numbered as there; how each is
checked: `Scene` and `assert_refused` in conftest.py)."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from pathlib import Path

import pytest
from conftest import (
    METAL,
    Scene,
    assert_delegated,
    refused,
)
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tt_meta_plugin.trust.envelope import MANIFEST_TYPE, Envelope, Signature, pae
from tt_meta_plugin.trust.keys import generate, load_private


def test_baseline_signed_backend_is_delegated(scene: Scene) -> None:
    assert scene.watch.files() == {}
    result = scene.run()
    assert_delegated(result, METAL)
    assert json.loads((scene.state / "serials.json").read_text())["tt-vllm-plugin"]["serial"] == 1
    # What a first process leaves for others: the policy settings sealed for its children,
    # the rollback mark, one verification record, and one audit line saying what it did.
    sealed, marks, record = sorted(scene.watch.files())
    digest = hashlib.sha256(scene.policy.read_bytes()).hexdigest()
    assert sealed == f"policies/{digest}.json", sealed
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
            where=scene.manifest, code="signature")


def test_01_signature_by_untrusted_key(scene: Scene, tmp_path: Path) -> None:
    generate(tmp_path / "stranger")
    scene.resign(base64.b64decode(scene.envelope()["payload"]), key=tmp_path / "stranger.key")
    refused(scene, scene.run(), "not a trusted key",
            where=scene.manifest, code="signature")


def test_02_trusted_key_not_bound_to_this_backend(scene: Scene) -> None:
    policy = scene.policy_with(signers=f'forge = ["{scene.keyid}"]')
    refused(scene, scene.run(policy), "the key is trusted but not bound to backend 'metal'",
            where=scene.manifest, code="signature")


def test_03_keyid_claims_a_trusted_key_but_another_signed(scene: Scene, tmp_path: Path) -> None:
    generate(tmp_path / "forger")
    payload = base64.b64decode(scene.envelope()["payload"])
    forged = load_private(tmp_path / "forger.key").sign(pae(MANIFEST_TYPE, payload))
    scene.manifest.write_bytes(
        Envelope(MANIFEST_TYPE, payload, (Signature(scene.keyid, forged),)).to_bytes())
    refused(scene, scene.run(), "does not verify with that key",
            where=scene.manifest, code="signature")


def test_04_bit_flip_in_payload(scene: Scene) -> None:
    data = scene.envelope()
    payload = bytearray(base64.b64decode(data["payload"]))
    at = payload.index(b'"serial": 1') + len(b'"serial": ')
    payload[at] ^= 0x02  # 1 -> 3: still valid JSON, no longer what was signed
    data["payload"] = base64.b64encode(bytes(payload)).decode()
    scene.write_envelope(data)
    refused(scene, scene.run(), "does not verify with that key",
            where=scene.manifest, code="signature")


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
            where=scene.manifest, code="signature")


def test_04_malformed_signature_encoding(scene: Scene) -> None:
    data = scene.envelope()
    data["signatures"][0]["sig"] = "not base64!"
    scene.write_envelope(data)
    refused(scene, scene.run(), "invalid base64",
            where=scene.manifest, code="format")


def test_05_public_key_of_another_scheme(scene: Scene, tmp_path: Path) -> None:
    keys = tmp_path / "ec-keys"
    keys.mkdir()
    shutil.copy(scene.keys / "release.pub", keys)
    pem = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (keys / "ecdsa.pub").write_bytes(pem)
    policy = scene.policy_with(keys=keys)
    refused(scene, scene.run(policy), "not an Ed25519 key (the only scheme accepted)",
                   str(keys / "ecdsa.pub"), code="key")


def test_05_malformed_public_key_file(scene: Scene, tmp_path: Path) -> None:
    keys = tmp_path / "bad-keys"
    keys.mkdir()
    shutil.copy(scene.keys / "release.pub", keys)
    (keys / "broken.pub").write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    policy = scene.policy_with(keys=keys)
    refused(scene, scene.run(policy), "not a PEM public key", code="key")


def test_06_fewer_signatures_than_threshold(scene: Scene) -> None:
    refused(scene, scene.run(scene.policy_with("threshold = 2\n")),
                   "1 valid signature(s)", "2 needed", code="signature")


def test_06_same_key_counted_twice(scene: Scene) -> None:
    data = scene.envelope()
    data["signatures"] = data["signatures"] * 2
    scene.write_envelope(data)
    refused(scene, scene.run(scene.policy_with("threshold = 2\n")),
                   "the same key counted once only", code="signature")


def test_07_revoked_key(scene: Scene) -> None:
    refused(scene, scene.run(scene.policy_with(f'revoked_keys = ["{scene.keyid}"]\n')),
                   "the key is revoked", code="signature")
