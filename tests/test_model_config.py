"""Reading config.json from a directory or the local Hugging Face cache, never the network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tt_meta_plugin import ConfigError
from tt_meta_plugin.selection.model_config import read_model_config


def _write(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def test_local_directory(tmp_path: Path) -> None:
    _write(tmp_path / "m" / "config.json",
           {"architectures": ["LlamaForCausalLM"], "model_type": "llama"})
    config = read_model_config(str(tmp_path / "m"), {})
    assert config.architectures == ("LlamaForCausalLM",)
    assert config.model_type == "llama"
    assert config.path == tmp_path / "m" / "config.json"


def test_hub_cache_follows_refs_main(tmp_path: Path) -> None:
    repo = tmp_path / "hub" / "models--Qwen--Qwen3-8B"
    _write(repo / "snapshots" / "old" / "config.json", {"model_type": "old"})
    _write(repo / "snapshots" / "abc" / "config.json", {"model_type": "qwen3"})
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc")
    config = read_model_config("Qwen/Qwen3-8B", {"HF_HUB_CACHE": str(tmp_path / "hub")})
    assert config.model_type == "qwen3"
    config = read_model_config("Qwen/Qwen3-8B", {"HF_HOME": str(tmp_path)})
    assert config.model_type == "qwen3"


def test_hub_cache_without_refs_uses_a_snapshot(tmp_path: Path) -> None:
    repo = tmp_path / "models--org--m"
    _write(repo / "snapshots" / "only" / "config.json", {"model_type": "x"})
    assert read_model_config("org/m", {"HF_HUB_CACHE": str(tmp_path)}).model_type == "x"


def test_not_on_disk_means_unknown(tmp_path: Path) -> None:
    config = read_model_config("org/absent", {"HF_HUB_CACHE": str(tmp_path)})
    assert config.path is None and config.architectures == () and config.model_type is None
    assert read_model_config(str(tmp_path / "no" / "such" / "dir"), {}).path is None


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"architectures": "Llama"}', "key 'architectures'"),
        (b'{"model_type": 3}', "key 'model_type'"),
        (b'{"tt_meta_backend": ["x"]}', "key 'tt_meta_backend'"),
    ],
)
def test_bad_config_names_file_and_field(tmp_path: Path, content: bytes, needle: str) -> None:
    (tmp_path / "config.json").write_bytes(content)
    with pytest.raises(ConfigError) as info:
        read_model_config(str(tmp_path), {})
    rendered = info.value.render()
    assert needle in rendered
    assert str(tmp_path / "config.json") in rendered
    assert "fix:" in rendered


# -- The config vLLM reads: --revision, --hf-config-path, --hf-overrides ------------------

from tt_meta_plugin._errors import SelectionError  # noqa: E402
from tt_meta_plugin.selection.command_line import read_command_line  # noqa: E402
from tt_meta_plugin.selection.decide import decide, gather_facts  # noqa: E402
from tt_meta_plugin.selection.inputs import read_inputs  # noqa: E402
from tt_meta_plugin.selection.policy import parse_policy  # noqa: E402

VLLM = "/opt/venv/bin/vllm"


def _hub(tmp_path: Path) -> dict[str, str]:
    repo = tmp_path / "hub" / "models--org--m"
    _write(repo / "snapshots" / "aaa" / "config.json", {"architectures": ["MainArch"]})
    _write(repo / "snapshots" / "bbb" / "config.json", {"architectures": ["V2Arch"]})
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("aaa")
    (repo / "refs" / "v2").write_text("bbb")
    return {"HF_HUB_CACHE": str(tmp_path / "hub")}


def test_revision_reads_that_snapshot(tmp_path: Path) -> None:
    env = _hub(tmp_path)
    for rev, arch in (("v2", "V2Arch"), ("bbb", "V2Arch"), ("main", "MainArch")):
        command = read_command_line([VLLM, "serve", "org/m", "--revision", rev])
        assert read_model_config("org/m", env, command).architectures == (arch,)
    missing = read_command_line([VLLM, "serve", "org/m", "--revision", "v3"])
    config = read_model_config("org/m", env, missing)
    assert config.path is None and config.unread and "'v3'" in config.unread


def test_hf_config_path_is_read_instead(tmp_path: Path) -> None:
    _write(tmp_path / "model" / "config.json", {"architectures": ["ModelArch"]})
    _write(tmp_path / "cfg" / "config.json", {"architectures": ["CfgArch"], "model_type": "t"})
    command = read_command_line([VLLM, "serve", str(tmp_path / "model"), "--hf-config-path",
                                 str(tmp_path / "cfg")])
    config = read_model_config(str(tmp_path / "model"), {}, command)
    assert config.architectures == ("CfgArch",) and config.model_type == "t"
    absent = read_command_line([VLLM, "serve", "m", "--hf-config-path", "org/absent"])
    assert read_model_config("m", {"HF_HUB_CACHE": str(tmp_path)}, absent).unread


def test_hf_overrides_change_what_rules_judge(tmp_path: Path) -> None:
    _write(tmp_path / "m" / "config.json", {"architectures": ["A"], "model_type": "a"})
    command = read_command_line([VLLM, "serve", str(tmp_path / "m"), "--hf-overrides",
                                 '{"architectures": ["B"], "model_type": "b"}'])
    config = read_model_config(str(tmp_path / "m"), {}, command)
    assert (config.architectures, config.model_type) == (("B",), "b")
    bad = read_command_line([VLLM, "serve", "m", "--hf-overrides", '{"architectures": "B"}'])
    with pytest.raises(ConfigError) as info:
        read_model_config(str(tmp_path / "m"), {}, bad)
    assert "--hf-overrides" in info.value.render()


POLICY = b"""
version = 1
allowed_backends = ["metal", "forge"]
default_backend = "metal"

[[rule]]
architecture = "V2Arch"
deny = true
"""


def test_unread_config_refused_when_a_rule_could_match(tmp_path: Path) -> None:
    env = _hub(tmp_path)
    policy = parse_policy(POLICY, "policy.toml")
    inputs = read_inputs(env, [VLLM, "serve", "org/m", "--revision", "v2"])
    facts, config = gather_facts(inputs, env)
    with pytest.raises(SelectionError) as info:  # the deny rule matches v2
        decide(policy, inputs, facts, config)
    assert "V2Arch" in str(info.value)
    inputs = read_inputs(env, [VLLM, "serve", "org/m", "--revision", "v3"])
    facts, config = gather_facts(inputs, env)
    with pytest.raises(SelectionError) as info:  # v3: not on disk, the rule could
        decide(policy, inputs, facts, config)
    assert "cannot read the model config vLLM will use" in str(info.value)
    # no rule on architecture: nothing to refuse
    plain = parse_policy(b'version = 1\nallowed_backends = ["metal"]\ndefault_backend = "metal"',
                         "p.toml")
    assert decide(plain, inputs, facts, config).backend == "metal"
