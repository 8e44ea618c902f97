"""Finding what is being served: the model, an explicit backend and the device, with sources.

vLLM calls platform plugins before it has parsed its own arguments, so the model is read here
from the places an operator can put it, in this order: `TT_META_MODEL`, the command line of
the running vLLM entrypoint (`vllm serve M`, `--model M`, `--config FILE` with `model:`), and
`HF_MODEL` (set by Tenstorrent's server images). Every value remembers where it came from, so
`tt-meta explain` and every error can say so.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from .._errors import ConfigError, where

ENV_MODEL = "TT_META_MODEL"
ENV_BACKEND = "TT_META_BACKEND"
ENV_DEVICE = "TT_META_DEVICE"
ENV_HF_MODEL = "HF_MODEL"

# Where the policy comes from is read here too: a child process reads its bytes without
# parsing them (see activation/child_process.py).
ENV_POLICY = "TT_META_POLICY"
SYSTEM_POLICY = Path("/etc/tt-meta/policy.toml")
DEFAULT_POLICY = Path(__file__).parent.parent / "default_policy.toml"
MAX_POLICY_BYTES = 1 << 20

# A `--config` file larger than this is not a vLLM config file; refuse rather than read it.
_MAX_CONFIG_BYTES = 1 << 20


# The value types below are plain classes with __slots__: every vLLM process creates them,
# and a class is ~100x cheaper to define than a NamedTuple or dataclass (no generated code).


class Input:
    """One value and where it was read."""

    __slots__ = ("source", "value")

    def __init__(self, value: str, source: str) -> None:
        self.value, self.source = value, source

    def __str__(self) -> str:
        return f"{self.value!r} (from {self.source})"


class Inputs:
    """Everything read from the environment and command line of this process."""

    __slots__ = ("backend", "device", "model", "shadowed")

    def __init__(self, model: Input | None, backend: Input | None, device: Input | None,
                 shadowed: tuple[Input, ...] = ()) -> None:
        self.model, self.backend, self.device = model, backend, device
        # Model values found in lower-precedence places and not used (`tt-meta explain`).
        self.shadowed = shadowed


def read_inputs(environ: Mapping[str, str], argv: Sequence[str]) -> Inputs:
    """Collect the model, backend and device for this process."""
    candidates: list[Input] = []
    if environ.get(ENV_MODEL):
        candidates.append(Input(environ[ENV_MODEL], f"environment variable {ENV_MODEL}"))
    from_cli = model_from_command_line(argv)
    if from_cli is not None:
        candidates.append(from_cli)
    if environ.get(ENV_HF_MODEL):
        candidates.append(Input(environ[ENV_HF_MODEL], f"environment variable {ENV_HF_MODEL}"))
    backend = _env_input(environ, ENV_BACKEND)
    device = _env_input(environ, ENV_DEVICE)
    if device is not None:
        device = Input(device.value.lower(), device.source)
    model = candidates[0] if candidates else None
    return Inputs(model, backend, device, tuple(candidates[1:]))


def _env_input(environ: Mapping[str, str], name: str) -> Input | None:
    value = environ.get(name, "").strip()
    return Input(value, f"environment variable {name}") if value else None


def is_vllm_command(argv: Sequence[str]) -> bool:
    """True when this process is a vLLM command-line entrypoint, not a user's own script.

    `vllm ...` runs a console script named `vllm`; `python -m vllm.entrypoints.X` puts the path
    of that module in argv[0]. A user's script that builds `vllm.LLM` is neither: its own
    arguments are not vLLM's and are never read as a model.
    """
    if not argv:
        return False
    first = argv[0].replace("\\", "/")
    return os.path.basename(first) == "vllm" or "/vllm/entrypoints/" in first


def model_from_command_line(argv: Sequence[str]) -> Input | None:
    """The model named on a vLLM command line, as vLLM itself would read it.

    A positional model after `serve` beats `--model`, which beats `model:` in `--config`,
    the same precedence vLLM applies.
    """
    if not is_vllm_command(argv):
        return None
    args = list(argv[1:])
    for words in _POSITIONAL_MODEL_COMMANDS:
        n = len(words)
        if len(args) > n and _matches(args[:n], words) and not args[n].startswith("-"):
            shown = " ".join(args[:n])
            return Input(args[n], f"command line (vllm {shown} MODEL)")
    flag = _flag_value(args, "--model")
    if flag is not None:
        return Input(flag, "command line (--model)")
    config = _flag_value(args, "--config")
    if config is not None:
        value = _model_from_config_file(config)
        if value is not None:
            return Input(value, f"command line (--config {config}, key 'model')")
    return None


# vLLM subcommands that take the model as a positional argument ("*" is any one word):
# `vllm serve M`, `vllm launch render M`, `vllm snapshot create M`.
_POSITIONAL_MODEL_COMMANDS = (("serve",), ("launch", "*"), ("snapshot", "create"))


def _matches(args: Sequence[str], words: Sequence[str]) -> bool:
    pairs = zip(args, words, strict=True)
    return all((w == "*" and not a.startswith("-")) or a == w for a, w in pairs)


def _flag_value(args: Sequence[str], flag: str) -> str | None:
    """The last value given to `flag` as `--flag X` or `--flag=X` (argparse keeps the last)."""
    found: str | None = None
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == flag and i + 1 < len(args):
            found = args[i + 1]
        elif arg.startswith(flag + "="):
            found = arg[len(flag) + 1 :]
    return found


def _model_from_config_file(path: str) -> str | None:
    """The top-level `model:` scalar of a vLLM YAML config file.

    vLLM's config files are flat `key: value` mappings. Reading only the top-level `model`
    line keeps a YAML library out of every process's start-up; anything else in the file is
    vLLM's business.
    """
    try:
        with open(path, "rb") as handle:
            raw = handle.read(_MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(
            f"cannot read the vLLM config file given with --config: {exc.strerror}",
            where=where(path),
            fix="pass an existing, readable YAML file to --config",
        ) from None
    if len(raw) > _MAX_CONFIG_BYTES:
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
    for line in text.splitlines():
        if not line.startswith("model") or line[:1].isspace():
            continue
        key, sep, rest = line.partition(":")
        if key.strip() != "model" or not sep:
            continue
        value = _yaml_scalar(rest)
        if not value:
            raise ConfigError(
                "the 'model' key in the vLLM config file has no value on its line",
                where=where(path, "model"),
                fix="write the model on the same line, e.g. 'model: meta-llama/Llama-3.1-8B'",
            )
        return value
    return None


def _yaml_scalar(text: str) -> str:
    text = text.strip()
    if text[:1] in ("'", '"'):
        quote = text[0]
        end = text.find(quote, 1)
        return text[1:end] if end > 0 else text[1:]
    return text.split(" #", 1)[0].strip()


def policy_path(environ: Mapping[str, str]) -> Path:
    """Where the policy comes from: `TT_META_POLICY`, the system file, or the built-in one."""
    explicit = environ.get(ENV_POLICY, "").strip()
    if explicit:
        return Path(explicit)
    return SYSTEM_POLICY if SYSTEM_POLICY.exists() else DEFAULT_POLICY


def read_policy(environ: Mapping[str, str]) -> tuple[Path, bytes]:
    """The policy file's path and bytes (not parsed: a child process only compares them)."""
    path = policy_path(environ)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_POLICY_BYTES + 1)
    except OSError as exc:
        named = f" (named by {ENV_POLICY})" if environ.get(ENV_POLICY, "").strip() else ""
        raise ConfigError(
            f"cannot read the policy file{named}: {exc.strerror}",
            where=where(path),
            fix=f"create the file, or point {ENV_POLICY} at a readable policy file",
        ) from None
    return path, raw


def policy_digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()
