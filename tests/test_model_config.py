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
