"""Policy files: what is accepted, and an error naming file, key and fix for everything else."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tt_meta_plugin import ConfigError, SelectionError
from tt_meta_plugin.selection import inputs as _inputs
from tt_meta_plugin.selection.decide import decide, gather_facts
from tt_meta_plugin.selection.inputs import (
    DEFAULT_POLICY,
    MAX_POLICY_BYTES,
    policy_path,
    read_inputs,
)
from tt_meta_plugin.selection.policy import load_policy, parse_policy

GOOD = b"""
version = 1
allowed_backends = ["metal", "forge"]
default_backend = "metal"
trust_model_metadata = true
vllm_version_mismatch = "warn"
extra_general_plugins = ["lora_filesystem_resolver"]

[[rule]]
name = "forge models"
model = ["Qwen/*", "BAAI/bge-m3"]
device = "p150"
backend = "forge"

[[rule]]
architecture = "BadArch"
deny = true
"""


def test_full_policy_parses() -> None:
    policy = parse_policy(GOOD, "p.toml")
    assert policy.allowed_backends == ("metal", "forge")
    assert policy.default_backend == "metal"
    assert policy.trust_model_metadata and policy.vllm_version_mismatch == "warn"
    assert policy.extra_general_plugins == ("lora_filesystem_resolver",)
    first, second = policy.rules
    assert first.model == ("Qwen/*", "BAAI/bge-m3") and first.device == ("p150",)
    assert first.backend == "forge" and first.name == "forge models"
    assert second.deny and second.backend is None and second.number == 2


def test_default_policy_is_valid_and_refuses_unknown_models() -> None:
    policy = parse_policy(DEFAULT_POLICY.read_bytes(), str(DEFAULT_POLICY))
    assert policy.default_backend is None
    assert set(policy.allowed_backends) == {"metal", "forge"}
    env = {"TT_META_MODEL": "nobody/unknown-model"}
    inputs = read_inputs(env, [])
    facts, config = gather_facts(inputs, env)
    with pytest.raises(SelectionError, match="'nobody/unknown-model' matches no rule"):
        decide(policy, inputs, facts, config)
    # ... while a model it lists is decided.
    env = {"TT_META_MODEL": "meta-llama/Llama-3.1-8B-Instruct", "TT_META_DEVICE": "n150"}
    inputs = read_inputs(env, [])
    facts, config = gather_facts(inputs, env)
    assert decide(policy, inputs, facts, config).backend == "metal"


@pytest.mark.parametrize(
    ("text", "needle", "key"),
    [
        (b"allowed_backends = ['metal']", "required key 'version'", "version"),
        (b"version = 2\nallowed_backends = ['metal']", "unsupported policy version", "version"),
        (b"version = '1'\nallowed_backends = ['metal']", "must be an integer", "version"),
        (b"version = 1", "required key 'allowed_backends'", "allowed_backends"),
        (b"version = 1\nallowed_backends = []", "allowed_backends is empty", "allowed_backends"),
        (b"version = 1\nallowed_backends = [1]", "list of non-empty strings", "allowed_backends"),
        (b"version = 1\nallowed_backends = ['metal']\nallowed_backend = 'x'",
         "unknown key 'allowed_backend'", "allowed_backend"),
        (b"version = 1\nallowed_backends = ['metal']\ndefault_backend = 3",
         "non-empty string", "default_backend"),
        (b"version = 1\nallowed_backends = ['metal']\ntrust_model_metadata = 'yes'",
         "true or false", "trust_model_metadata"),
        (b"version = 1\nallowed_backends = ['metal']\nvllm_version_mismatch = 'ignore'",
         "must be \"refuse\" or \"warn\"", "vllm_version_mismatch"),
        (b"version = 1\nallowed_backends = ['metal']\nrule = 3", "array of tables", "rule"),
        (b"version = 1\nallowed_backends = ['metal']\n[[rule]]\nmodel = 'x'",
         "exactly one of 'backend' and 'deny = true'", "rule[1]"),
        (b"version = 1\nallowed_backends = ['metal']\n[[rule]]\nmodel='x'\nbackend='metal'\n"
         b"deny=true", "exactly one of", "rule[1]"),
        (b"version = 1\nallowed_backends = ['metal']\n[[rule]]\nbackend = 'metal'",
         "matches nothing", "rule[1]"),
        (b"version = 1\nallowed_backends = ['metal']\n[[rule]]\nmodle = 'x'\nbackend = 'metal'",
         "unknown key 'rule[1].modle'", "rule[1].modle"),
        (b"version = 1\nallowed_backends = ['metal']\n[[rule]]\nmodel = 5\nbackend = 'metal'",
         "'rule[1].model' must be", "rule[1].model"),
    ],
)
def test_errors_name_file_key_and_fix(text: bytes, needle: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_policy(text, "/etc/tt-meta/policy.toml")
    rendered = info.value.render()
    assert needle in rendered
    assert f"/etc/tt-meta/policy.toml, key '{key}'" in rendered
    assert "fix:" in rendered


@pytest.mark.parametrize(
    ("raw", "needle"),
    [(b"version = = 1", "not valid TOML"), (b"\xff\xfe", "not UTF-8"),
     (b"#" * ((1 << 20) + 1), "larger than 1 MiB")],
)
def test_unparseable_policy(raw: bytes, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_policy(raw, "p.toml")
    assert needle in str(info.value) and "p.toml" in str(info.value)


def test_policy_size_limit_is_exactly_1_mib(tmp_path: Path) -> None:
    body = b"version = 1\nallowed_backends = ['metal']\n#"
    exact = body + b"x" * (MAX_POLICY_BYTES - len(body))
    assert len(exact) == 1 << 20
    assert parse_policy(exact, "p.toml").allowed_backends == ("metal",)
    with pytest.raises(ConfigError, match="larger than 1 MiB"):
        parse_policy(exact + b"x", "p.toml")
    # The same boundary when the file is read from disk.
    path = tmp_path / "p.toml"
    path.write_bytes(exact)
    assert load_policy({"TT_META_POLICY": str(path)}).allowed_backends == ("metal",)
    path.write_bytes(exact + b"x")
    with pytest.raises(ConfigError, match="larger than 1 MiB"):
        load_policy({"TT_META_POLICY": str(path)})


def test_system_policy_else_built_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without TT_META_POLICY: the system file if it exists, else the built-in one (the
    system path is replaced here: the machine running the tests may have its own)."""
    system = tmp_path / "etc-policy.toml"
    monkeypatch.setattr(_inputs, "SYSTEM_POLICY", system)
    assert policy_path({}) == DEFAULT_POLICY
    system.write_text("version = 1\nallowed_backends = ['forge']\n")
    assert policy_path({}) == system
    assert policy_path({"TT_META_POLICY": "  "}) == system  # blank is unset
    assert load_policy({}).allowed_backends == ("forge",)


def test_policy_location(tmp_path: Path, policy_file: Callable[[str], Path]) -> None:
    path = policy_file("version = 1\nallowed_backends = ['forge']\n")
    assert policy_path({"TT_META_POLICY": str(path)}) == path
    assert load_policy({"TT_META_POLICY": str(path)}).allowed_backends == ("forge",)
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError) as info:
        load_policy({"TT_META_POLICY": str(missing)})
    assert "named by TT_META_POLICY" in str(info.value) and str(missing) in str(info.value)
