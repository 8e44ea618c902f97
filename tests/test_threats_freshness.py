"""Threats 8-12: freshness and replay (docs/threat-model.md, numbered as there; how each is
checked: `Scene` and `assert_refused` in conftest.py)."""

from __future__ import annotations

import json
import shutil

from conftest import (
    METAL,
    Scene,
    assert_delegated,
    refused,
    sign_site,
)

# -- Freshness and replay -------------------------------------------------------------------

def test_08_expired_manifest(scene: Scene) -> None:
    scene.resign_payload(lambda p: p.update(expires=p["issued"] - 1))
    refused(scene, scene.run(), "expired at", "tt-meta sign --expires",
            where=scene.manifest, code="expired")


def test_09_rollback_to_an_older_validly_signed_manifest(scene: Scene) -> None:
    old = scene.manifest.read_bytes()
    sign_site(scene.site, scene.keys / "release.key", serial=5)
    assert_delegated(scene.run(), METAL)  # the newer manifest verifies first
    scene.manifest.write_bytes(old)  # serial 1, validly signed, older
    result = scene.run()
    refused(scene, result, "rollback", "serial 5 was already seen",
            where=scene.manifest, code="rollback")
    assert json.loads((scene.state / "serials.json").read_text())["tt-vllm-plugin"]["serial"] == 5


def test_10_same_serial_different_content(scene: Scene) -> None:
    assert_delegated(scene.run(), METAL)
    scene.resign_payload(lambda p: p.update(expires=p["expires"] + 1))
    refused(scene, scene.run(), "reuses serial 1 with other content",
            where=scene.manifest, code="rollback")


def test_11_manifest_of_another_distribution(scene: Scene) -> None:
    forge = scene.site / "vllm_tt-0.1.0.dist-info" / "tt_meta.manifest.json"
    shutil.copy(forge, scene.manifest)
    refused(scene, scene.run(), "signed for backend 'forge'",
            where=scene.manifest, code="mismatch")
    scene.resign_payload(lambda p: p.update(backend="metal"))
    refused(scene, scene.run(), "signed for distribution 'vllm-tt'",
            where=scene.manifest, code="mismatch")


def test_11_manifest_of_another_version(scene: Scene) -> None:
    scene.resign_payload(lambda p: p.update(version="0.0.9"))
    refused(scene, scene.run(), "signed for version '0.0.9'",
            where=scene.manifest, code="mismatch")


def test_12_another_signed_document_type(scene: Scene) -> None:
    scene.resign(scene.policy.read_bytes(),
                 payload_type="application/vnd.tt-meta.policy+toml")
    refused(scene, scene.run(), "is a 'application/vnd.tt-meta.policy+toml', not a manifest",
            where=scene.manifest, code="mismatch")
