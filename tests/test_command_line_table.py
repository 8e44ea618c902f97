"""The shipped option table is vLLM's: built from the installed vLLM's own parsers and
compared, so a vLLM release that adds, removes or changes an option fails here instead of
misrouting a model. And tt_meta's reading of each command line in tests/test_command_line.py
is what vLLM's parsers read from it."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, SUPPORT, clean_env
from test_command_line import COMMAND_LINES, _argv

from tt_meta_plugin import ConfigError
from tt_meta_plugin.selection import command_line

pytestmark = pytest.mark.e2e  # imports vLLM (about 15 s)

SCRIPT = textwrap.dedent(
    """
    import json, os, sys, argparse
    os.environ["VLLM_PLUGINS"] = ""
    import vllm_options_gen as gen, vllm_reference as ref
    parsers, default_model, version = gen.collect()
    minor = ".".join(version.split("+")[0].split(".")[:2])
    name = "vllm_options.py" if minor == "0.32" else f"vllm_options_{minor.replace('.', '_')}.py"
    out = {"rendered": gen.render(parsers, default_model, version, name), "defaults": {},
           "roles": {}}
    import vllm.entrypoints.cli.main as cli_main
    def walk(parser, key):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, key + " " + name)
            elif action.dest in ("model", "config", "revision", "hf_config_path",
                                 "hf_overrides") and action.option_strings:
                out["roles"].setdefault(key, {})[action.dest] = [
                    action.option_strings, type(action).__name__]
                if action.dest == "model":
                    out["defaults"][key] = action.default
    for words in gen.CLI_ARGVS:
        walk(gen._parser_for("vllm", words, cli_main.main), "vllm")
    lines = json.load(open(sys.argv[1]))
    out["reads"] = [ref.vllm_reads(program, args) for program, args in lines]
    print("OUT " + json.dumps(out, default=repr))
    """
)


# Each table and the vLLM it was made from: this environment's, and the pinned ones `make
# test` installs beside it (tests/test_pinned_vllm.py).
VERSIONS = {"0.32": Path(sys.executable), "0.26": REPO / ".venv-vllm-0.26.0" / "bin" / "python",
            "0.25": REPO / ".venv-vllm-0.25.1" / "bin" / "python"}


@pytest.fixture(scope="module", params=sorted(VERSIONS), ids=sorted(VERSIONS))
def vllm_says(request: pytest.FixtureRequest,
              tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    python = VERSIONS[request.param]
    if not python.exists():
        pytest.skip(f"vLLM {request.param} is not installed in {python.parent.parent}")
    lines = tmp_path_factory.mktemp("lines") / "lines.json"
    lines.write_text(json.dumps([[p, a] for p, a, _ in COMMAND_LINES]))
    proc = subprocess.run(
        [python, "-c", SCRIPT, str(lines)], capture_output=True, text=True,
        timeout=600, cwd=SUPPORT, env=clean_env(PYTHONPATH=f"{SUPPORT}:{REPO}"))
    found = [x for x in proc.stdout.splitlines() if x.startswith("OUT ")]
    assert proc.returncode == 0 and found, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(found[0][4:])
    result["table"] = importlib.import_module(
        f"tt_meta_plugin.selection.{command_line.TABLES[request.param]}")
    return result


def test_shipped_table_is_vllms(vllm_says: dict[str, Any]) -> None:
    table = vllm_says["table"]
    shipped = Path(table.__file__).read_text(encoding="utf-8")
    assert vllm_says["rendered"] == shipped, (
        f"vLLM's options changed: regenerate {Path(table.__file__).name} (see its docstring) "
        "and check command_line.py's lists against vLLM's source")


def test_default_model_and_options_read(vllm_says: dict[str, Any]) -> None:
    defaults, roles = vllm_says["defaults"], vllm_says["roles"]
    loading = {k for k in defaults if k not in command_line.MODEL_LESS}
    assert {defaults[k] for k in loading} == {vllm_says["table"].DEFAULT_MODEL}
    for key in loading:
        for dest, (strings, kind) in roles[key].items():
            # one spelling each, a plain store: the last value given wins
            assert kind == "_StoreAction", (key, dest, kind)
            assert strings == ["--" + dest.replace("_", "-")], (key, strings)


def test_command_lists_cover_vllms_commands(vllm_says: dict[str, Any]) -> None:
    parsers = vllm_says["table"].PARSERS
    modules = {k for k in parsers if " " not in k and k != "vllm"}
    assert modules <= command_line.ENTRY_MODULES
    leaves = {k for k, (_, _, commands) in parsers.items() if not commands}
    for leaf in leaves:
        if any(leaf == m or leaf.startswith(m + " ") for m in command_line.MODEL_LESS):
            continue
        assert "--model" in parsers[leaf][0], f"{leaf}: loads a model? add it to MODEL_LESS"
    with_positional = {k for k in parsers if ("model_tag", "?") in parsers[k][1]}
    assert command_line.POSITIONAL_MODEL & set(parsers) <= with_positional


def test_tt_meta_reads_what_vllm_reads(vllm_says: dict[str, Any],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Each command line, read by tt_meta with this version's table and by vLLM itself."""
    monkeypatch.setattr(command_line, "_loaded", vllm_says["table"])
    for (program, args, _), read in zip(COMMAND_LINES, vllm_says["reads"], strict=True):
        try:
            mine = command_line.read_command_line(_argv(program, args))
        except ConfigError:
            assert read.get("exit") not in (None, 0), (program, args, read)
            continue
        if mine.loads is None:  # a command this vLLM does not have: it refuses it too
            assert read.get("exit") not in (None, 0), (program, args, read)
        elif mine.loads is False:
            assert read.get("exit") == 0 or read.get("command") in command_line.MODEL_LESS \
                or (program, args) == ("vllm", []), (program, args, read)
        else:
            assert read.get("model") == mine.model, (program, args, read)
