"""Reading a vLLM command line as vLLM 0.32 reads it (tt_meta_plugin/selection/command_line.py).

Each expectation here was checked against vLLM's own parsers: tests/test_command_line_table.py
runs the same command lines through vLLM (COMMAND_LINES) and compares.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tt_meta_plugin import ConfigError
from tt_meta_plugin.selection.command_line import read_command_line
from tt_meta_plugin.selection.inputs import read_inputs
from tt_meta_plugin.selection.vllm_options import DEFAULT_MODEL

VLLM = "/opt/venv/bin/vllm"
API = "vllm.entrypoints.openai.api_server"

# (program, args, what vLLM loads: a model, None for "loads no model", or "refuse").
COMMAND_LINES: list[tuple[str, list[str], str | None]] = [
    ("vllm", ["serve", "org/m", "--port", "8001"], "org/m"),
    ("vllm", ["serve", "--port", "8001", "org/m"], "org/m"),
    ("vllm", ["serve", "--enforce-eager", "org/m"], "org/m"),
    ("vllm", ["serve", "-tp", "2", "org/m"], "org/m"),
    ("vllm", ["serve", "--tensor_parallel_size=2", "org/m"], "org/m"),
    ("vllm", ["serve", "--no-enforce-eager", "org/m", "--seed", "-1"], "org/m"),
    ("vllm", ["serve", "--enforce", "org/m"], "org/m"),  # an abbreviation argparse accepts
    ("vllm", ["serve", "-O3", "org/m"], "org/m"),
    ("vllm", ["serve", "-O", "3", "org/m"], "org/m"),
    ("vllm", ["serve", "--model", "org/a", "--model", "org/b"], "org/a"),  # the first
    ("vllm", ["serve", "--model=org/a", "--port", "8001"], "org/a"),
    ("vllm", ["serve", "org/a", "--model", "org/b"], "refuse"),  # vLLM rejects it (exit 2)
    ("vllm", ["serve"], DEFAULT_MODEL),
    ("vllm", ["serve", "--hf-token", "org/m"], DEFAULT_MODEL),  # --hf-token takes it
    ("vllm", ["serve", "--port", "8001"], DEFAULT_MODEL),
    ("vllm", ["serve", "--bogus-option", "org/m"], "refuse"),
    ("vllm", ["serve", "--en", "org/m"], "refuse"),  # ambiguous abbreviation
    ("vllm", ["serve", "org/m", "extra"], "refuse"),
    ("vllm", ["serve", "--served-model-name", "x", "--port", "8001"], "refuse"),
    ("vllm", ["serve", "--help"], None),
    ("vllm", ["serve", "org/m", "--help=ModelConfig"], None),
    ("vllm", ["--version"], None),
    ("vllm", ["--help"], None),
    ("vllm", [], None),
    ("vllm", ["chat", "--url", "http://127.0.0.1:9/v1"], None),
    ("vllm", ["complete", "--url", "http://127.0.0.1:9/v1"], None),
    ("vllm", ["bench", "serve", "--model", "org/m"], None),
    ("vllm", ["collect-env"], None),
    ("vllm", ["bench", "latency", "--model", "org/m"], "org/m"),
    ("vllm", ["bench", "throughput", "--input-len", "8", "--model", "org/m"], "org/m"),
    ("vllm", ["bench", "latency", "org/m"], "refuse"),
    ("vllm", ["run-batch", "-i", "in.jsonl", "-o", "out.jsonl", "--model", "org/m"], "org/m"),
    ("vllm", ["launch", "render", "org/m", "--port", "8001"], "org/m"),
    ("vllm", ["snapshot", "create", "org/m", "--snapshot-dir", "d"], "org/m"),
    ("vllm", ["snapshot", "inspect", "d"], None),
    (API, ["--model", "org/m", "--port", "8001"], "org/m"),
    (API, ["--port", "8001", "--model", "org/a", "--model", "org/b"], "org/b"),  # argparse
    (API, ["org/m"], DEFAULT_MODEL),  # its positional model_tag is ignored by vLLM
    (API, ["--help"], None),
]


def _argv(program: str, args: list[str]) -> list[str]:
    if program == "vllm":
        return [VLLM, *args]
    return [f"/opt/venv/lib/python3.11/site-packages/{program.replace('.', '/')}.py", *args]


@pytest.mark.parametrize(("program", "args", "loads"), COMMAND_LINES)
def test_command_lines(program: str, args: list[str], loads: str | None) -> None:
    if loads == "refuse":
        with pytest.raises(ConfigError) as info:
            read_command_line(_argv(program, args))
        assert "cannot tell which model vLLM will load" in info.value.summary
        assert info.value.fix
        return
    command = read_command_line(_argv(program, args))
    if loads is None:
        assert command.loads is False
    else:
        assert command.loads is True and command.model == loads


def test_sources() -> None:
    assert read_command_line([VLLM, "serve", "--port", "1", "m"]).source == \
        "command line (vllm serve MODEL)"
    assert read_command_line([VLLM, "serve", "--model", "m"]).source == "command line (--model)"
    assert read_command_line([VLLM, "serve"]).source == "vLLM's default model"


def test_unknown_option_names_it() -> None:
    with pytest.raises(ConfigError) as info:
        read_command_line([VLLM, "serve", "--port", "1", "--not-an-option", "m"])
    assert "unknown option '--not-an-option'" in info.value.summary


def test_not_vllm_command_lines() -> None:
    assert read_command_line(["my_script.py", "--model", "org/m"]).loads is None
    assert read_command_line(["/venv/bin/worker.py"]).loads is None
    # a helper module of vLLM's (the model registry subprocess) is not a command
    assert read_command_line(["-m"], ["python", "-m", "vllm.model_executor.models.registry"]
                             ).loads is None


def test_python_dash_m_reads_orig_argv() -> None:
    """While Python imports the package of `python -m MODULE`, sys.argv is ['-m']."""
    orig = ["/venv/bin/python", "-X", "dev", "-m", API, "--port", "8001", "--model", "org/m"]
    command = read_command_line(["-m"], orig)
    assert command.loads and command.model == "org/m"
    assert read_command_line(["-m"], ["python", "-m", "vllm.entrypoints.cli.main", "serve",
                                      "-tp", "1", "org/m"]).model == "org/m"
    # as tt-meta explain passes it: the whole interpreter command line
    assert read_command_line(["python3", "-m", API, "--model", "org/m"]).model == "org/m"
    assert read_command_line(["-m"], ["python", "-m", "vllm.collect_env"]).loads is False


def test_config_and_overrides_are_read() -> None:
    command = read_command_line([VLLM, "serve", "m", "--revision", "v2", "--hf-config-path",
                                 "/cfg", "--hf-overrides", '{"architectures": ["A"]}'])
    assert (command.revision, command.hf_config_path) == ("v2", "/cfg")
    assert command.hf_overrides == {"architectures": ["A"]}
    # dotted keys are merged and appended: they win over the JSON given before
    command = read_command_line([VLLM, "serve", "m", "--hf-overrides.architectures", '["B"]',
                                 "--hf-overrides", '{"architectures": ["A"]}'])
    assert command.hf_overrides == {"architectures": ["B"]}
    assert read_command_line([VLLM, "serve", "m", "--revision=abc"]).revision == "abc"


@pytest.mark.parametrize("value", ["not json", "{broken", "[1]"])
def test_bad_hf_overrides_refused(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        read_command_line([VLLM, "serve", "m", "--hf-overrides", value])
    assert "--hf-overrides" in info.value.summary


def _config(tmp_path: Path, text: str | bytes, name: str = "serve.yaml") -> str:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("text", "model"),
    [
        ("port: 8001\nmodel: org/a\nmodel: org/b\n", "org/b"),  # repeated key: the last
        ("model: >-\n  org/folded\nport: 8001\n", "org/folded"),  # folded scalar
        ("{model: org/flow, port: 8001}\n", "org/flow"),  # flow style
        ('"model": org/quoted\n', "org/quoted"),  # quoted key
        ('model: "org/\\u0065sc"\n', "org/esc"),  # escapes
        ("\ufeffmodel: org/bom\n".encode(), "org/bom"),  # a BOM
        ("max_model_len: 128\nenforce-eager: true\nmodel: org/m\n", "org/m"),
        ("compilation-config:\n  level: 0\nmodel: org/m  # comment\n", "org/m"),
    ],
)
def test_config_file(tmp_path: Path, text: str | bytes, model: str) -> None:
    config = _config(tmp_path, text)
    found = read_command_line([VLLM, "serve", "--config", config])
    assert found.model == model
    assert found.source == f"command line (--config {config}, key 'model')"


def test_config_file_precedence(tmp_path: Path) -> None:
    config = _config(tmp_path, "model: org/yaml\nrevision: from-yaml\n")
    # a positional model beats the file's; the command line's options beat the file's
    found = read_command_line([VLLM, "serve", "org/cli", "--config", config])
    assert (found.model, found.revision) == ("org/cli", "from-yaml")
    found = read_command_line([VLLM, "serve", "--config", config, "--revision", "cli"])
    assert (found.model, found.revision) == ("org/yaml", "cli")
    # --model on the command line is moved to the positional first, so it beats the file's
    assert read_command_line([VLLM, "serve", "--config", config, "--model", "x/y"]).model == \
        "x/y"
    # the module entrypoint takes the file's options first, then the command line's
    assert read_command_line([_argv(API, [])[0], "--config", config, "--model", "x/y"]
                             ).model == "x/y"
    # `--config=FILE` is not read by vLLM 0.32 (it looks for the word `--config` only)
    assert read_command_line([VLLM, "serve", f"--config={config}"]).model == DEFAULT_MODEL


def test_config_file_without_model_is_refused_as_vllm_does(tmp_path: Path) -> None:
    config = _config(tmp_path, "port: 8001\n")
    with pytest.raises(ConfigError):
        read_command_line([VLLM, "serve", "--config", config])
    # bench latency: the default model (vLLM inserts the options after `bench`: the file's
    # options go to `vllm bench`, which rejects them)
    with pytest.raises(ConfigError):
        read_command_line([VLLM, "bench", "latency", "--config", config])


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("model:\n  - a\n  - b\n", "key 'model'"),
        ("model:\n", "key 'model'"),
        ("- just\n- a list\n", "not a YAML mapping"),
        ("model: [unclosed\n", "not valid YAML"),
        (b"model: \xff\n", "not UTF-8"),
    ],
)
def test_bad_config_file(tmp_path: Path, text: str | bytes, needle: str) -> None:
    config = _config(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        read_command_line([VLLM, "serve", "--config", config])
    assert needle in info.value.render()
    assert config in info.value.render()


def test_config_file_checks(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        read_command_line([VLLM, "serve", "--config", str(tmp_path / "nope.yaml")])
    assert "nope.yaml" in info.value.render()
    with pytest.raises(ConfigError) as info:
        read_command_line([VLLM, "serve", "--config", _config(tmp_path, "model: m", "c.json")])
    assert ".yaml" in info.value.summary
    big = _config(tmp_path, "model: m\n" + "#" * (1 << 20))
    with pytest.raises(ConfigError) as info:
        read_command_line([VLLM, "serve", "--config", big])
    assert "1 MiB" in info.value.summary


def test_no_yaml_without_config() -> None:
    import sys

    had = "yaml" in sys.modules
    read_command_line([VLLM, "serve", "--port", "1", "org/m"])
    assert had or "yaml" not in sys.modules


def test_local_paths_are_real_paths(tmp_path: Path) -> None:
    real = tmp_path / "models" / "llama"
    real.mkdir(parents=True)
    link = tmp_path / "innocent"
    link.symlink_to(real)
    spellings = (str(link), "/" + str(real), str(real) + "/",
                 str(tmp_path / "models" / ".." / "models" / "llama"))
    for spelling in spellings:
        inputs = read_inputs({}, [VLLM, "serve", "--port", "1", spelling])
        assert inputs.model is not None and inputs.model.value == os.path.realpath(real)


def test_tt_meta_model_must_agree(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        read_inputs({"TT_META_MODEL": "org/allowed"}, [VLLM, "serve", "--port", "1", "org/denied"])
    assert "org/denied" in info.value.summary and info.value.where == \
        "environment variable TT_META_MODEL"
    # the default model counts: vLLM loads it
    with pytest.raises(ConfigError):
        read_inputs({"TT_META_MODEL": "org/allowed"}, [VLLM, "serve"])
    same = read_inputs({"TT_META_MODEL": str(tmp_path)}, [VLLM, "serve", "/" + str(tmp_path)])
    assert same.model is not None and same.model.source == "environment variable TT_META_MODEL"


def test_hf_model_only_outside_vllm_command_lines() -> None:
    inputs = read_inputs({"HF_MODEL": "org/hf"}, [VLLM, "serve"])
    assert inputs.model is not None and inputs.model.value == DEFAULT_MODEL
    inputs = read_inputs({"HF_MODEL": "org/hf"}, ["script.py"])
    assert inputs.model is not None and inputs.model.value == "org/hf"


def test_model_redirect_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_MODEL_REDIRECT_PATH", "/etc/redirects.json")
    with pytest.raises(ConfigError) as info:
        read_command_line([VLLM, "serve", "org/m"])
    assert "VLLM_MODEL_REDIRECT_PATH" in info.value.summary
