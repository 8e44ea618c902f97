"""Finding the model: every source, their precedence, and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from tt_meta_plugin import ConfigError
from tt_meta_plugin.selection.inputs import model_from_command_line, read_inputs

VLLM = "/opt/venv/bin/vllm"
API_SERVER = "/opt/venv/lib/python3.11/site-packages/vllm/entrypoints/openai/api_server.py"


@pytest.mark.parametrize(
    ("argv", "model", "source"),
    [
        ([VLLM, "serve", "org/m", "--port", "1"], "org/m", "vllm serve MODEL"),
        ([VLLM, "serve", "--model", "org/m"], "org/m", "--model"),
        ([VLLM, "serve", "--model=org/m"], "org/m", "--model"),
        ([VLLM, "bench", "throughput", "--model", "org/m"], "org/m", "--model"),
        ([VLLM, "run-batch", "-i", "in.jsonl", "-o", "o", "--model", "org/m"], "org/m", "--model"),
        ([API_SERVER, "--model", "org/m"], "org/m", "--model"),
        ([VLLM, "serve", "--port", "1", "org/m"], "org/m", "vllm serve MODEL"),
        ([VLLM, "launch", "render", "org/m"], "org/m", "vllm launch render MODEL"),
        ([VLLM, "snapshot", "create", "org/m"], "org/m", "vllm snapshot create MODEL"),
        # vLLM moves the FIRST --model of `vllm serve` to the positional model
        ([VLLM, "serve", "--model", "org/a", "--model", "org/b"], "org/a", "--model"),
    ],
)
def test_model_from_vllm_command_lines(argv: list[str], model: str, source: str) -> None:
    found = model_from_command_line(argv)
    assert found is not None
    assert found.value == model
    assert source in found.source


def test_config_file_model(tmp_path: Path) -> None:
    config = tmp_path / "serve.yaml"
    config.write_text("port: 8000\nmodel: 'org/from-yaml'  # quoted\nmax-model-len: 128\n")
    found = model_from_command_line([VLLM, "serve", "--config", str(config)])
    assert found is not None and found.value == "org/from-yaml"
    assert str(config) in found.source
    # A model on the command line beats the config file, as in vLLM.
    found = model_from_command_line([VLLM, "serve", "--config", str(config), "--model", "x/y"])
    assert found is not None and found.value == "x/y"


def test_config_file_spelled_with_equals_is_not_read(tmp_path: Path) -> None:
    config = tmp_path / "serve.yaml"
    config.write_text("port: 8000\nmodel: org/from-yaml\n")
    # vLLM 0.32 pulls options only from `--config FILE`: with `--config=FILE` it serves its
    # default model.
    found = model_from_command_line([VLLM, "serve", f"--config={config}"])
    assert found is not None and found.source == "vLLM's default model"


def test_config_file_missing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        model_from_command_line([VLLM, "serve", "--config", str(tmp_path / "nope.yaml")])
    assert "nope.yaml" in info.value.render()
    assert "--config" in info.value.render()


def test_config_file_list_model_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "serve.yaml"
    config.write_text("model:\n  - weird\n")
    with pytest.raises(ConfigError) as info:
        model_from_command_line([VLLM, "serve", "--config", str(config)])
    assert "key 'model'" in info.value.render()


def test_user_script_arguments_are_not_read() -> None:
    assert model_from_command_line(["my_script.py", "--model", "org/m"]) is None
    assert model_from_command_line([]) is None


def test_precedence_env_then_command_line_then_hf_model() -> None:
    argv = [VLLM, "serve", "org/cli"]
    env = {"TT_META_MODEL": "org/env", "HF_MODEL": "org/hf"}
    inputs = read_inputs(env, ["script.py"])
    assert inputs.model is not None and inputs.model.value == "org/env"
    with pytest.raises(ConfigError):  # TT_META_MODEL cannot override the command line
        read_inputs(env | {"TT_META_MODEL": "org/other"}, argv)
    env["TT_META_MODEL"] = "org/cli"
    inputs = read_inputs(env, argv)
    assert inputs.model is not None and inputs.model.source == "environment variable TT_META_MODEL"
    assert [i.value for i in inputs.shadowed] == ["org/cli", "org/hf"]
    inputs = read_inputs({"HF_MODEL": "org/hf"}, argv)
    assert inputs.model is not None and inputs.model.value == "org/cli"
    inputs = read_inputs({"HF_MODEL": "org/hf"}, ["script.py"])
    assert inputs.model is not None and inputs.model.source == "environment variable HF_MODEL"


def test_backend_and_device() -> None:
    inputs = read_inputs({"TT_META_BACKEND": "forge", "TT_META_DEVICE": "P150"}, [])
    assert inputs.backend is not None and inputs.backend.value == "forge"
    assert inputs.device is not None and inputs.device.value == "p150"
    assert read_inputs({}, []).model is None
