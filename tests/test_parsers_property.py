"""Property: any bytes give a valid object or our own error class, never another exception."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tt_meta_plugin import ConfigError, TrustError
from tt_meta_plugin._envelope import parse_envelope
from tt_meta_plugin._manifest import parse_manifest
from tt_meta_plugin._policy import parse_policy

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=30,
)

MANIFEST_KEYS = ["_type", "spec_version", "backend", "distribution", "version", "entry_points",
                 "vllm_requirement", "issued", "expires", "serial", "files"]


@st.composite
def manifest_like(draw: st.DrawFn) -> bytes:
    """Mostly-right manifests: the right keys with arbitrary values, so parsing goes deep."""
    data = {key: draw(json_values) for key in MANIFEST_KEYS}
    if draw(st.booleans()):
        data["files"] = draw(st.lists(st.fixed_dictionaries(
            {"path": st.text(max_size=30), "size": json_values, "sha256": st.text(max_size=70)}),
            max_size=4))
    return json.dumps(data).encode()


settings.register_profile("ci", max_examples=300, deadline=None)
settings.load_profile("ci")


@given(st.binary(max_size=2000))
def test_envelope_parser_on_bytes(raw: bytes) -> None:
    with contextlib.suppress(TrustError):
        parse_envelope(raw, "fuzz")


@given(json_values)
def test_envelope_parser_on_json(value: Any) -> None:
    with contextlib.suppress(TrustError):
        parse_envelope(json.dumps(value).encode(), "fuzz")


@given(st.binary(max_size=2000) | manifest_like())
def test_manifest_parser(raw: bytes) -> None:
    try:
        manifest = parse_manifest(raw, "fuzz")
    except TrustError:
        return
    assert manifest.files and all(not f.path.startswith("/") for f in manifest.files)


TOML_LINES = st.sampled_from([
    "version = 1", "version = 2", 'allowed_backends = ["metal"]', "allowed_backends = []",
    'default_backend = "metal"', "trust_model_metadata = true", "[[rule]]", 'model = "a/*"',
    'backend = "forge"', "deny = true", "[trust]", "threshold = 0", "threshold = 2",
    'key_dirs = ["k"]', "[trust.signers]", 'metal = ["abc"]', 'x = 1', "require_signatures = 1",
    'vllm_version_mismatch = "warn"', "extra_general_plugins = [1]", "rule = 5", "[trust]",
])


@given(st.binary(max_size=500) | st.lists(TOML_LINES, max_size=12).map(
    lambda lines: "\n".join(lines).encode()))
def test_policy_parser(raw: bytes) -> None:
    try:
        policy = parse_policy(raw, "fuzz.toml")
    except ConfigError:
        return
    assert policy.version == 1 and policy.allowed_backends
