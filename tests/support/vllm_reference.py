"""What vLLM itself reads from a command line: its own parsers, run for real.

Run in a fresh interpreter by tests/test_command_line_table.py (importing vLLM costs ~10 s):

    python tests/support/vllm_reference.py COMMAND_LINES.json

prints one JSON line per command line: {"exit": code} when vLLM's parsing stops the process
(help, version, an argparse error, an exception), else {"model", "revision",
"hf_config_path", "hf_overrides"} as the subcommand's code takes them (vllm serve: the
positional model_tag, else --model; see command_line.POSITIONAL_MODEL).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from typing import Any

import vllm_options_gen as gen

from tt_meta_plugin.selection.command_line import POSITIONAL_MODEL


def vllm_reads(program: str, args: list[str]) -> dict[str, Any]:
    """`program` is "vllm" or a module name in the table."""

    if program == "vllm":
        import vllm.entrypoints.cli.main as cli_main

        parser = gen._parser_for("vllm", args, cli_main.main)
    else:
        found = gen.module_parser(gen.SAME_AS.get(program, program))
        if found is None:
            return {"exit": "no such module"}
        parser = found
    saved = sys.argv
    sys.argv = [program, *args]  # parsers read sys.argv too (`bench`, `serve --help`)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            namespace = parser.parse_args(args)
    except SystemExit as exc:
        return {"exit": exc.code}
    except Exception as exc:  # vLLM's own ValueError / AssertionError: the process dies
        return {"exit": type(exc).__name__}
    finally:
        sys.argv = saved
    path = " ".join([program, *_words(namespace)])
    if not hasattr(namespace, "model"):
        return {"command": path, "model": None}
    model = namespace.model
    tag = getattr(namespace, "model_tag", None)
    if path in POSITIONAL_MODEL and tag is not None and (tag or path != "vllm snapshot create"):
        model = tag
    overrides = getattr(namespace, "hf_overrides", None)
    return {"command": path, "model": model, "revision": getattr(namespace, "revision", None),
            "hf_config_path": getattr(namespace, "hf_config_path", None),
            "hf_overrides": overrides if isinstance(overrides, dict) else repr(overrides)}


def _words(namespace: Any) -> list[str]:
    words = []
    for dest in ("subparser", "bench_type", "launch_component", "snapshot_action"):
        value = getattr(namespace, dest, None)
        if isinstance(value, str):
            words.append(value)
    return words


if __name__ == "__main__":
    os.environ["VLLM_PLUGINS"] = ""
    with open(sys.argv[1]) as handle:
        lines = json.load(handle)
    for program, args in lines:
        print("READ " + json.dumps(vllm_reads(program, args), default=repr), flush=True)
