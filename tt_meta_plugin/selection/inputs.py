"""Finding what is being served: the model, an explicit backend and the device, with sources.

vLLM calls platform plugins before it has parsed its own arguments, so the model is read here
from the places an operator can put it, in this order: `TT_META_MODEL`, the command line of
the running vLLM entrypoint, read as vLLM reads it (command_line.py), and `HF_MODEL` (set by
Tenstorrent's server images; read for processes that are not vLLM command lines). Every
value remembers where it came from, so `tt-meta explain` and every error can say so.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from .._errors import ConfigError, where
from .command_line import CommandLine, read_command_line

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

    __slots__ = ("backend", "command", "device", "device_unknown", "model", "shadowed")

    def __init__(self, model: Input | None, backend: Input | None, device: Input | None,
                 shadowed: tuple[Input, ...] = (), command: CommandLine | None = None) -> None:
        self.model, self.backend, self.device = model, backend, device
        # Why `device` is None when a first process looked for it with `tt-smi -s`
        # (selection/device.py; a child never looks: it has its parent's decision).
        self.device_unknown: str | None = None
        # Model values found in lower-precedence places and not used (`tt-meta explain`).
        self.shadowed = shadowed
        # The vLLM command line read (its --revision, --hf-config-path, --hf-overrides
        # change which config.json vLLM reads).
        self.command = command


def read_inputs(environ: Mapping[str, str], argv: Sequence[str],
                orig_argv: Sequence[str] | None = None) -> Inputs:
    """Collect the model, backend and device for this process.

    On a vLLM command line the model is what vLLM will load (command_line.py), and
    `TT_META_MODEL`, when set, must name the same model: it cannot send a command line that
    names a denied model past the policy. `HF_MODEL` is read only when the process is not a
    vLLM command (a user's script creating `vllm.LLM`).
    """
    command = read_command_line(argv, orig_argv)
    candidates: list[Input] = []
    if environ.get(ENV_MODEL):
        candidates.append(Input(local_model(environ[ENV_MODEL]),
                                f"environment variable {ENV_MODEL}"))
    if command.loads and command.model is not None:
        from_cli = Input(local_model(command.model), command.source)
        if candidates and candidates[0].value != from_cli.value:
            raise ConfigError(
                f"{ENV_MODEL} names {candidates[0].value!r} but the vLLM command line loads "
                f"{from_cli.value!r} (from {from_cli.source})",
                where=f"environment variable {ENV_MODEL}",
                fix=f"unset {ENV_MODEL}, or serve the model it names",
            )
        candidates.append(from_cli)
    if environ.get(ENV_HF_MODEL) and command.loads is not False:
        candidates.append(Input(local_model(environ[ENV_HF_MODEL]),
                                f"environment variable {ENV_HF_MODEL}"))
    backend = _env_input(environ, ENV_BACKEND)
    device = _env_input(environ, ENV_DEVICE)
    if device is not None:
        device = Input(device.value.lower(), device.source)
    model = candidates[0] if candidates else None
    return Inputs(model, backend, device, tuple(candidates[1:]), command)


def local_model(model: str) -> str:
    """A model that is a local path, as its real path: vLLM loads the files it resolves to,
    so `//models/m`, `./m` and a symlink to it are the one model rules match on."""
    return os.path.realpath(model) if os.path.exists(model) else model


def _env_input(environ: Mapping[str, str], name: str) -> Input | None:
    value = environ.get(name, "").strip()
    return Input(value, f"environment variable {name}") if value else None


def model_from_command_line(argv: Sequence[str],
                            orig_argv: Sequence[str] | None = None) -> Input | None:
    """The model a vLLM command line loads, as vLLM reads it (None: no vLLM command line, or
    one that loads no model)."""
    command = read_command_line(argv, orig_argv)
    if not command.loads or command.model is None:
        return None
    return Input(command.model, command.source)


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
