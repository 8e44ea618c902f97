"""Threats 13-15: parsing (docs/threat-model.md, numbered as there; how each is
checked: `Scene` and `assert_refused` in conftest.py)."""

from __future__ import annotations

import base64

import pytest
from conftest import (
    Scene,
    refused,
)

# -- Parsing --------------------------------------------------------------------------------

def test_13_duplicate_keys_in_envelope(scene: Scene) -> None:
    raw = scene.manifest.read_bytes().replace(b'{\n "payloadType"',
                                              b'{\n "payloadType": "x",\n "payloadType"', 1)
    scene.write_envelope(raw)
    refused(scene, scene.run(), "has the key 'payloadType' twice",
            where=scene.manifest, code="format")


def test_13_duplicate_keys_in_signed_payload(scene: Scene) -> None:
    payload = base64.b64decode(scene.envelope()["payload"])
    scene.resign(payload.replace(b'"serial": 1', b'"serial": 1, "serial": 99', 1))
    refused(scene, scene.run(), "has the key 'serial' twice",
            where=scene.manifest, code="format")


def test_13_float_in_signed_payload(scene: Scene) -> None:
    payload = base64.b64decode(scene.envelope()["payload"])
    scene.resign(payload.replace(b'"serial": 1', b'"serial": 1.0', 1))
    refused(scene, scene.run(), "non-integer number",
            where=scene.manifest, code="format")


def test_14_oversized_manifest(scene: Scene) -> None:
    scene.write_envelope(b" " * (64 * 1024 * 1024 + 1))
    refused(scene, scene.run(), "larger than 64 MiB",
            where=scene.manifest, code="format")


def test_14_deeply_nested_manifest(scene: Scene) -> None:
    scene.write_envelope(b"[" * 100000 + b"]" * 100000)
    refused(scene, scene.run(), "nested too deeply",
            where=scene.manifest, code="format")


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
            "signatures", where=scene.manifest, code="format")
