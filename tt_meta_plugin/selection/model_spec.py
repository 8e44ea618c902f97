"""Tenstorrent's model catalog (tt-inference-server's `release_model_spec.json`) as policy.

The file is what tt-inference-server's `export_model_specs_json` writes
(workflows/model_spec.py): `schema_version`, `release_version` and
`model_specs[hf_model_repo][DEVICE][engine][impl_id]`, one model spec per leaf. For each
(model, device) Tenstorrent's own selection, `get_runtime_model_spec` run without --engine or
--impl, takes the candidate whose `device_model_spec.default_impl` is true, and refuses when
none is. This module reads the file (bounded, strictly validated: every error names the file,
the JSON path of the field and the fix), makes that same choice, and maps it to a tt_meta
backend:

- engine `vLLM` -> `metal` (the tt-metal vLLM fork);
- engine `forge` with impl `forge_vllm_plugin` -> `forge`;
- anything else (the `media` engine, forge's other implementations) runs outside vLLM and
  gets no rule.

`generate_rules` writes the choices as `[[rule]]` tables the policy parser accepts. Pure:
no vLLM, only the standard library, fast to import (`tt-meta explain --matrix` uses
`load_model_spec` too).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, NamedTuple

from .._errors import ConfigError, where

# The schema versions of release_model_spec.json read here (tt-inference-server's
# MODEL_SPECS_SCHEMA_VERSION).
SUPPORTED_SCHEMAS = ("0.1.0",)
# The real file is about 1 MB (release 0.20.0, 69 models); anything past this is not one.
MAX_SPEC_BYTES = 32 << 20
# tt-inference-server's ModelStatusTypes, best last.
STATUSES = ("EXPERIMENTAL", "FUNCTIONAL", "COMPLETE", "TOP_PERF")

ENGINE_VLLM = "vLLM"
ENGINE_FORGE = "forge"
IMPL_FORGE_VLLM_PLUGIN = "forge_vllm_plugin"

# A DeviceTypes name (N150, GALAXY_T3K, P150X4...): rules use it lower-cased, as
# TT_META_DEVICE is read.
_DEVICE_NAME = re.compile(r"[A-Z][A-Z0-9_]*\Z")

_FIX_EXPORT = ("use a release_model_spec.json as tt-inference-server exports it "
               "(workflows/model_spec.py, export_model_specs_json)")


class Candidate(NamedTuple):
    """One model spec: a way to serve `model` on `device`."""

    model: str  # the hf_model_repo it is filed under
    device: str  # lower-case DeviceTypes name: n150, t3k, galaxy_t3k...
    engine: str  # inference_engine: vLLM, forge, media
    impl: str  # impl.impl_id: tt_transformers, forge_vllm_plugin...
    status: str  # one of STATUSES
    default_impl: bool  # device_model_spec.default_impl

    @property
    def backend(self) -> str | None:
        """The tt_meta backend that serves it in vLLM; None: it runs outside vLLM."""
        return backend_for(self.engine, self.impl)


class ModelSpec(NamedTuple):
    """A release_model_spec.json, read and validated."""

    source: str  # the file, as given
    release: str  # release_version, e.g. "0.20.0"
    schema: str  # schema_version, e.g. "0.1.0"
    models: tuple[str, ...]  # hf_model_repo keys, sorted
    devices: tuple[str, ...]  # lower-case device names present, sorted
    candidates: tuple[Candidate, ...]  # every model spec, in file order


class Choice(NamedTuple):
    """What Tenstorrent's selection takes for one (model, device), and the backend for it."""

    model: str
    device: str
    candidates: tuple[Candidate, ...]  # in file order
    winner: Candidate | None  # None: no default (ambiguous), or conflicting defaults
    backend: str | None  # None: no rule (winner runs outside vLLM, or no winner)
    reason: str  # one line: why this backend, or why no rule


def backend_for(engine: str, impl: str) -> str | None:
    """The tt_meta backend for an engine and implementation; None: it runs outside vLLM."""
    if engine == ENGINE_VLLM:
        return "metal"
    if engine == ENGINE_FORGE and impl == IMPL_FORGE_VLLM_PLUGIN:
        return "forge"
    return None


def load_model_spec(path: Path) -> ModelSpec:
    """Read and validate a release_model_spec.json; every problem is a ConfigError naming the
    file, the JSON path of the field and the fix."""
    source = str(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read the model spec file: {exc.strerror}",
                          where=where(source),
                          fix="name a readable release_model_spec.json") from None
    return parse_model_spec(raw, source)


def parse_model_spec(raw: bytes, source: str) -> ModelSpec:
    """Validate the bytes of a release_model_spec.json (see load_model_spec)."""
    if len(raw) > MAX_SPEC_BYTES:
        raise ConfigError(f"the model spec file is larger than {MAX_SPEC_BYTES >> 20} MiB",
                          where=where(source), fix=_FIX_EXPORT)
    try:
        data = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise ConfigError("the model spec file is nested too deeply", where=where(source),
                          fix=_FIX_EXPORT) from None
    except _DuplicateKey as exc:
        raise ConfigError(f"the model spec file names the key {exc.key!r} twice in one object",
                          where=where(source), fix=_FIX_EXPORT) from None
    except ValueError as exc:  # not UTF-8, not JSON, an integer past int()'s digit limit
        raise ConfigError(f"the model spec file is not valid JSON: {exc}", where=where(source),
                          fix=f"{_FIX_EXPORT}; was it truncated or is it another file?") from None
    top = _Object(data, source, "")
    schema = top.string("schema_version")
    if schema not in SUPPORTED_SCHEMAS:
        raise ConfigError(
            f"unsupported model spec schema_version {schema!r} (this tt-meta reads "
            f"{', '.join(SUPPORTED_SCHEMAS)})",
            where=where(source, "schema_version"),
            fix="use a release_model_spec.json of a release with that schema, or a tt-meta "
                "that reads this one")
    release = top.string("release_version")
    candidates: list[Candidate] = []
    for model, by_device in top.objects("model_specs"):
        if not model.strip() or not _printable(model):
            raise by_device.error("a model name (hf_model_repo) without control characters",
                                  f"model key {model!r}")
        for device_key, by_engine in by_device.objects():
            if not _DEVICE_NAME.match(device_key):
                raise by_engine.error("a DeviceTypes name such as N150, T3K or GALAXY_T3K",
                                      f"device key {device_key!r}")
            for engine, by_impl in by_engine.objects():
                for impl, spec in by_impl.objects():
                    candidates.append(_candidate(spec, model, device_key, engine, impl))
    return ModelSpec(
        source=source,
        release=release,
        schema=schema,
        models=tuple(sorted({c.model for c in candidates})),
        devices=tuple(sorted({c.device for c in candidates})),
        candidates=tuple(candidates),
    )


def _candidate(spec: _Object, model: str, device: str, engine: str, impl: str) -> Candidate:
    # The keys are written from these fields (export_model_specs_json): a file where they
    # disagree was edited by hand or is another format, and either reading could be wrong.
    for field, expected in (("hf_model_repo", model), ("device_type", device),
                            ("inference_engine", engine)):
        spec.same(field, expected)
    spec.child("impl").same("impl_id", impl)
    status = spec.string("status")
    if status not in STATUSES:
        raise spec.error(f"one of {', '.join(STATUSES)}", f"status {status!r}", "status")
    default = spec.child("device_model_spec").boolean("default_impl")
    return Candidate(model, device.lower(), engine, impl, status, default)


def choose(spec: ModelSpec) -> tuple[Choice, ...]:
    """Tenstorrent's selection for every (model, device) of the file, sorted."""
    pairs: dict[tuple[str, str], list[Candidate]] = {}
    for candidate in spec.candidates:
        pairs.setdefault((candidate.model, candidate.device), []).append(candidate)
    return tuple(_choose(model, device, tuple(found))
                 for (model, device), found in sorted(pairs.items()))


def _choose(model: str, device: str, candidates: tuple[Candidate, ...]) -> Choice:
    # get_runtime_model_spec: the first candidate with default_impl; none is a refusal
    # ("you must pass --impl or --engine"), whatever the number of candidates.
    defaults = [c for c in candidates if c.default_impl]
    listed = ", ".join(describe(c) for c in candidates)
    if not defaults:
        return Choice(model, device, candidates, None, None,
                      f"no default_impl among {len(candidates)} candidate(s) ({listed}): "
                      "tt-inference-server needs --engine or --impl")
    if len({c.backend for c in defaults}) > 1:
        # Which one get_runtime_model_spec takes depends on its catalog's order, which the
        # exported file does not keep.
        return Choice(model, device, candidates, None, None,
                      f"several candidates are default_impl ({', '.join(map(describe, defaults))})"
                      " and they need different backends")
    winner = defaults[0]
    if winner.backend is None:
        return Choice(model, device, candidates, winner, None,
                      f"its default, {describe(winner)}, runs outside vLLM")
    return Choice(model, device, candidates, winner, winner.backend,
                  f"its default, {describe(winner)}, runs in vLLM on {winner.backend}")


def describe(candidate: Candidate) -> str:
    return f"{candidate.engine}/{candidate.impl} {candidate.status}"


# -- reading JSON strictly -------------------------------------------------------------------


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _printable(text: str) -> bool:
    return text.isprintable()


def _member(key: str) -> str:
    """How a member of an object of objects is named in a path: ["Qwen/Qwen3-8B"]."""
    return "[" + json.dumps(key, ensure_ascii=False) + "]"


class _Object:
    """A JSON object at a path in the file, with typed access whose errors name the path."""

    def __init__(self, data: Any, source: str, path: str) -> None:
        self.data, self.source, self.path = data, source, path
        if not isinstance(data, dict):
            raise self.error("a JSON object", _kind(data))

    def _at(self, field: str | None = None) -> str:
        if field is None:
            return self.path or "the top level"
        return f"{self.path}.{field}" if self.path else field

    def error(self, expected: str, found: str, field: str | None = None) -> ConfigError:
        return ConfigError(
            f"{self._at(field)} must be {expected}, not {found}",
            where=where(self.source, self._at(field)),
            fix=_FIX_EXPORT,
        )

    def _get(self, field: str) -> Any:
        if field not in self.data:
            raise ConfigError(f"required field {self._at(field)} is missing",
                              where=where(self.source, self._at(field)), fix=_FIX_EXPORT)
        return self.data[field]

    def string(self, field: str) -> str:
        value = self._get(field)
        if not isinstance(value, str) or not value:
            raise self.error("a non-empty string", _kind(value), field)
        return value

    def boolean(self, field: str) -> bool:
        value = self._get(field)
        if not isinstance(value, bool):
            raise self.error("true or false", _kind(value), field)
        return value

    def same(self, field: str, expected: str) -> None:
        value = self.string(field)
        if value != expected:
            raise ConfigError(
                f"{self._at(field)} is {value!r}, but the spec is filed under {expected!r}",
                where=where(self.source, self._at(field)), fix=_FIX_EXPORT)

    def child(self, field: str) -> _Object:
        return _Object(self._get(field), self.source, self._at(field))

    def objects(self, field: str | None = None) -> list[tuple[str, _Object]]:
        """The members of an object of objects (this one, or the field's), each with its path."""
        parent = self if field is None else self.child(field)
        if field is not None and not parent.data:
            raise parent.error("a non-empty object", "an empty one")
        return [(key, _Object(value, self.source, parent.path + _member(key)))
                for key, value in parent.data.items()]


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    text = json.dumps(value, ensure_ascii=False)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"the {'string' if isinstance(value, str) else 'number'} {text}"
