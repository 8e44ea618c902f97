"""The decision: every rule kind, precedence, deny, allowlist and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tt_meta_plugin import SelectionError
from tt_meta_plugin.selection.decide import Decision, decide, gather_facts
from tt_meta_plugin.selection.inputs import read_inputs
from tt_meta_plugin.selection.policy import parse_policy

POLICY = """
version = 1
allowed_backends = ["metal", "forge"]
{extra}

[[rule]]
model = "blocked/*"
deny = true

[[rule]]
name = "by device"
model = "org/shared"
device = "p150"
backend = "forge"

[[rule]]
model = ["org/forge-*", "other/x"]
backend = "forge"

[[rule]]
architecture = ["Qwen3ForCausalLM", "GemmaForCausalLM"]
backend = "forge"

[[rule]]
model_type = "bert"
backend = "forge"

[[rule]]
model = "*/tt-*"
backend = "metal"

[[rule]]
model = "org/*"
backend = "metal"
"""


def run(env: dict[str, str], extra: str = "") -> Decision:
    policy = parse_policy(POLICY.format(extra=extra).encode(), "policy.toml")
    inputs = read_inputs(env, [])
    facts, config = gather_facts(inputs, env)
    return decide(policy, inputs, facts, config)


def model_dir(tmp_path: Path, **config: object) -> str:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "config.json").write_text(json.dumps(config))
    return str(tmp_path)


def test_model_glob_and_list() -> None:
    decision = run({"TT_META_MODEL": "org/forge-7b"})
    assert decision.backend == "forge" and decision.rule is not None
    assert decision.rule.number == 3 and "rule 3" in decision.reason
    assert run({"TT_META_MODEL": "other/x"}).backend == "forge"
    assert run({"TT_META_MODEL": "org/anything"}).backend == "metal"


def test_first_match_wins() -> None:
    # "org/shared" matches rule 2 only on p150; elsewhere the later "org/*" rule.
    assert run({"TT_META_MODEL": "org/shared", "TT_META_DEVICE": "p150"}).backend == "forge"
    assert run({"TT_META_MODEL": "org/shared", "TT_META_DEVICE": "n150"}).backend == "metal"
    assert run({"TT_META_MODEL": "org/shared"}).backend == "metal"  # device unknown


def test_architecture_and_model_type(tmp_path: Path) -> None:
    path = model_dir(tmp_path / "a", architectures=["Qwen3ForCausalLM"], model_type="qwen3")
    assert run({"TT_META_MODEL": path}).rule.number == 4  # type: ignore[union-attr]
    path = model_dir(tmp_path / "b", architectures=["BertModel"], model_type="bert")
    assert run({"TT_META_MODEL": path}).rule.number == 5  # type: ignore[union-attr]


def test_model_rule_matches_local_path(tmp_path: Path) -> None:
    path = model_dir(tmp_path / "tt-llama", architectures=["LlamaForCausalLM"])
    decision = run({"TT_META_MODEL": path})
    assert decision.backend == "metal" and decision.rule is not None
    assert decision.rule.number == 6


def test_deny_beats_everything() -> None:
    with pytest.raises(SelectionError) as info:
        run({"TT_META_MODEL": "blocked/m", "TT_META_BACKEND": "metal"})
    assert "denied by rule 1" in str(info.value) and "policy.toml" in str(info.value)


def test_explicit_backend_beats_rules() -> None:
    decision = run({"TT_META_MODEL": "org/anything", "TT_META_BACKEND": "forge"})
    assert decision.backend == "forge" and decision.reason == "environment variable TT_META_BACKEND"


def test_explicit_backend_still_needs_the_allowlist() -> None:
    with pytest.raises(SelectionError) as info:
        run({"TT_META_MODEL": "org/x", "TT_META_BACKEND": "other"})
    assert "not in allowed_backends" in str(info.value)


def test_model_metadata_only_when_trusted(tmp_path: Path) -> None:
    path = model_dir(tmp_path / "tt-m", tt_meta_backend="forge")
    assert run({"TT_META_MODEL": path}).backend == "metal"  # untrusted: rule 6 decides
    decision = run({"TT_META_MODEL": path}, "trust_model_metadata = true")
    assert decision.backend == "forge" and "model metadata" in decision.reason


def test_default_backend() -> None:
    decision = run({"TT_META_MODEL": "unknown/m"}, 'default_backend = "forge"')
    assert decision.backend == "forge" and decision.reason == "default_backend"
    assert run({}, 'default_backend = "metal"').backend == "metal"


def test_no_rule_and_no_default_is_refused() -> None:
    with pytest.raises(SelectionError) as info:
        run({"TT_META_MODEL": "unknown/m"})
    text = str(info.value)
    assert "'unknown/m' matches no rule and no default_backend is set" in text
    assert "policy.toml" in text and "TT_META_BACKEND" in text


def test_no_model_at_all_is_refused() -> None:
    with pytest.raises(SelectionError) as info:
        run({})
    assert "no model found" in str(info.value) and "TT_META_MODEL" in str(info.value)


def test_rule_backend_outside_allowlist() -> None:
    policy = parse_policy(
        b'version = 1\nallowed_backends = ["metal"]\n[[rule]]\nmodel = "*"\nbackend = "forge"',
        "p.toml",
    )
    inputs = read_inputs({"TT_META_MODEL": "a/b"}, [])
    facts, config = gather_facts(inputs, {})
    with pytest.raises(SelectionError) as info:
        decide(policy, inputs, facts, config)
    assert "backend 'forge', chosen by rule 1" in str(info.value)
