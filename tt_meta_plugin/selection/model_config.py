"""Reading a model's `config.json` from local disk only: a directory, or the Hugging Face cache.

Never the network: this runs in every vLLM process before anything is loaded, and a decision
must not depend on what a hub answers. A model whose config is not on disk simply has no
architecture or model type, and rules that need them do not match it.

The config read is the one vLLM reads (vllm/config/model.py, ModelConfig.__post_init__):
`--hf-config-path` instead of the model, at `--revision`, with `--hf-overrides` applied
(`architectures` and `model_type` replace the file's). When that config is not on disk (a
revision or a config path not in the cache), `unread` says so, and the decision refuses if a
rule on architecture or model type could change the outcome.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .._errors import ConfigError, where

if TYPE_CHECKING:
    from .command_line import CommandLine

# Key a model directory may use to name its backend; honoured only when the policy says
# `trust_model_metadata = true`.
METADATA_BACKEND_KEY = "tt_meta_backend"

MAX_CONFIG_BYTES = 4 << 20
# A ref (refs/main, refs/TAG) holds a 40-hex commit id: anything longer is not one.
_MAX_REF_BYTES = 256


class ModelConfig(NamedTuple):
    """What a model's config.json says about it; all empty when no config was found."""

    path: Path | None = None
    architectures: tuple[str, ...] = ()
    model_type: str | None = None
    metadata_backend: str | None = None
    # Why the config vLLM reads could not be read here (None: read, or simply not on disk).
    unread: str | None = None


def hub_cache_dir(environ: Mapping[str, str]) -> Path:
    """The Hugging Face hub cache, found the way huggingface_hub finds it."""
    if environ.get("HF_HUB_CACHE"):
        return Path(environ["HF_HUB_CACHE"])
    if environ.get("HF_HOME"):
        return Path(environ["HF_HOME"]) / "hub"
    xdg = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "huggingface" / "hub"


def find_config(model: str, environ: Mapping[str, str],
                revision: str | None = None) -> Path | None:
    """The config.json for `model`: in the directory it names, else in the local hub cache
    (at `revision`, a branch, tag or commit, when given; a local directory has none)."""
    for name in (model, revision):
        if name is not None and not _file_name(name):
            raise ConfigError(
                f"cannot look for the model's config.json: {name!r} holds a NUL byte or a "
                "character no file name can hold",
                where=repr(name),
                fix="name the model, --hf-config-path and --revision with the text vLLM is "
                "to load (a --config file's escapes such as \\0 are read as characters)",
            )
    try:
        return _find_config(model, environ, revision)
    except OSError as exc:  # a name too long, a directory the serving user cannot read...
        raise ConfigError(
            f"cannot look for the model's config.json: {exc.strerror}",
            where=where(exc.filename or model),
            fix="name a model directory that exists and that the user running vLLM can read "
            "(each path component at most 255 bytes), or a hub id",
        ) from None


def _file_name(name: str) -> bool:
    """Can `name` be (part of) a file name? Not with a NUL byte, nor with a character the
    file system encoding cannot encode (a lone surrogate from a YAML or JSON escape)."""
    try:
        os.fsencode(name)
    except UnicodeEncodeError:
        return False
    return "\0" not in name


def _read_ref(path: Path) -> str | None:
    """What a ref holds (a commit id); None for a ref that is missing, unreadable, or too
    long to be a commit id."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(_MAX_REF_BYTES + 1)
        return raw.decode("ascii").strip() if len(raw) <= _MAX_REF_BYTES else None
    except (OSError, UnicodeDecodeError):
        return None


def _find_config(model: str, environ: Mapping[str, str], revision: str | None) -> Path | None:
    local = Path(model).expanduser()
    if local.is_dir():
        candidate = local / "config.json"
        return candidate if candidate.is_file() else None
    if model.count("/") > 1 or model.startswith((".", "/", "~")):
        return None  # a path that does not exist, not a hub id
    repo = hub_cache_dir(environ) / ("models--" + model.replace("/", "--"))
    snapshots = repo / "snapshots"
    if revision is not None:
        return _at_revision(repo, revision)
    revision = _read_ref(repo / "refs" / "main")
    if revision:
        candidate = snapshots / revision / "config.json"
        if candidate.is_file():
            return candidate
    try:
        found = [s / "config.json" for s in snapshots.iterdir() if (s / "config.json").is_file()]
    except OSError:
        return None
    # Without refs/main, the most recently written snapshot is the one a download left last.
    return max(found, key=lambda p: p.stat().st_mtime_ns) if found else None


def _at_revision(repo: Path, revision: str) -> Path | None:
    """huggingface_hub's cache layout: refs/<branch or tag> holds a commit; snapshots/<commit>."""
    commit = revision
    if "/" not in revision and "\\" not in revision and revision not in (".", ".."):
        ref = _read_ref(repo / "refs" / revision)
        commit = revision if ref is None else ref
    if "/" in commit or commit in (".", "..", ""):
        return None
    candidate = repo / "snapshots" / commit / "config.json"
    return candidate if candidate.is_file() else None


def read_model_config(model: str, environ: Mapping[str, str],
                      command: CommandLine | None = None) -> ModelConfig:
    """Read `architectures`, `model_type` and the metadata backend key of the config vLLM
    reads for `model` (with the command line's --hf-config-path, --revision, --hf-overrides)."""
    source = command.hf_config_path if command and command.hf_config_path else model
    revision = command.revision if command else None
    path = find_config(source, environ, revision)
    unread = None
    if path is None and revision is not None:
        unread = f"revision {revision!r} of {source!r} is not in the local Hugging Face cache"
    elif path is None and source != model:
        unread = f"the config of --hf-config-path {source!r} is not on local disk"
    config = ModelConfig(unread=unread) if path is None else _read(path)
    return _overridden(config, command.hf_overrides if command else None)


def _overridden(config: ModelConfig, overrides: dict[str, Any] | None) -> ModelConfig:
    """--hf-overrides as vLLM applies them: top-level values replace the config's
    (`config.update`); a nested object updates a sub-config, which rules do not read."""
    if not overrides:
        return config
    fix = 'write --hf-overrides \'{"architectures": ["NameForCausalLM"]}\''
    if "architectures" in overrides:
        value = overrides["architectures"]
        if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
            raise ConfigError("tt_meta cannot tell which architectures vLLM will use: "
                              "--hf-overrides sets 'architectures' to something other than "
                              "a list of names", where="the vLLM command line, --hf-overrides",
                              fix=fix)
        config = config._replace(architectures=tuple(value))
    if "model_type" in overrides:
        value = overrides["model_type"]
        if not isinstance(value, str):
            raise ConfigError("tt_meta cannot tell which model type vLLM will use: "
                              "--hf-overrides sets 'model_type' to something other than a "
                              "name", where="the vLLM command line, --hf-overrides", fix=fix)
        config = config._replace(model_type=value)
    return config


def _read(path: Path) -> ModelConfig:
    fix = "repair the file or download the model again"
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(
            f"cannot read the model's config: {exc.strerror}", where=where(path), fix=fix
        ) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError("config.json is larger than 4 MiB", where=where(path), fix=fix)
    try:
        data = json.loads(raw.decode("utf-8"))
    except RecursionError:  # a model repository controls this file
        raise ConfigError("the model's config.json is nested too deeply", where=where(path),
                          fix=fix) from None
    except ValueError as exc:  # not UTF-8, not JSON, or an integer past int()'s limit
        raise ConfigError(
            f"the model's config.json is not valid JSON: {exc}", where=where(path), fix=fix
        ) from None
    if not isinstance(data, dict):
        raise ConfigError("config.json is not a JSON object", where=where(path), fix=fix)
    architectures = data.get("architectures") or []
    if not isinstance(architectures, list) or not all(isinstance(a, str) for a in architectures):
        raise ConfigError(
            "'architectures' must be a list of strings",
            where=where(path, "architectures"),
            fix=fix,
        )
    model_type = data.get("model_type")
    if model_type is not None and not isinstance(model_type, str):
        raise ConfigError("'model_type' must be a string", where=where(path, "model_type"), fix=fix)
    backend = data.get(METADATA_BACKEND_KEY)
    if backend is not None and not isinstance(backend, str):
        raise ConfigError(
            f"'{METADATA_BACKEND_KEY}' must be a backend name",
            where=where(path, METADATA_BACKEND_KEY),
            fix="write a backend name such as \"metal\" or \"forge\", or remove the key",
        )
    return ModelConfig(path, tuple(architectures), model_type, backend)
