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

import hashlib
import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

from .._errors import ConfigError, where
from .._files import read_bounded

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
_RELEASE = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}")

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
    sha256: str = ""  # of the file's bytes: generated rules name exactly what they came from


# What Tenstorrent's selection means for tt_meta, per (model, device): Choice.kind.
IN_VLLM = "in-vllm"  # the default runs in vLLM: a rule sends the pair to its backend
OUTSIDE_VLLM = "outside-vllm"  # the default runs outside vLLM (media engine, forge CNNs)
NO_DEFAULT = "no-default"  # no default_impl, or defaults needing different backends
NOT_TENSTORRENT = "not-tenstorrent"  # a reference device (GPU, CPU), not Tenstorrent hardware

# DeviceTypes that are not Tenstorrent hardware: tt-inference-server's GPU specs are reference
# runs of a GPU vLLM server, which no tt_meta backend is.
NON_TENSTORRENT_DEVICES = ("cpu", "gpu")


class Choice(NamedTuple):
    """What Tenstorrent's selection takes for one (model, device), and the backend for it."""

    model: str
    device: str
    candidates: tuple[Candidate, ...]  # sorted
    winner: Candidate | None  # None: no default, or defaults that disagree (NO_DEFAULT)
    backend: str | None  # the backend a rule sends the pair to; None: no rule
    kind: str  # IN_VLLM, OUTSIDE_VLLM, NO_DEFAULT or NOT_TENSTORRENT
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
    raw = read_bounded(path, MAX_SPEC_BYTES, "model spec file",
                       fix="name a readable release_model_spec.json", large_fix=_FIX_EXPORT)
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
    if not isinstance(data, dict):
        raise ConfigError("the model spec file is not a JSON object", where=where(source),
                          fix=f"{_FIX_EXPORT}; is it another file?")
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
    if not _RELEASE.fullmatch(release):  # it is written into the rules' names and comments
        raise top.wrong("a release version such as 0.20.0", release, "release_version")
    candidates: list[Candidate] = []
    for model, by_device in top.objects("model_specs", _MODEL_KEY):
        for device_key, by_engine in by_device.objects(None, _DEVICE_KEY):
            for engine, by_impl in by_engine.objects(None, _ENGINE_KEY):
                for impl, spec in by_impl.objects(None, _IMPL_KEY):
                    candidates.append(_candidate(spec, model, device_key, engine, impl))
    return ModelSpec(
        source=source,
        release=release,
        schema=schema,
        models=tuple(sorted({c.model for c in candidates})),
        devices=tuple(sorted({c.device for c in candidates})),
        candidates=tuple(candidates),
        sha256=hashlib.sha256(raw).hexdigest(),
    )


def _candidate(spec: _Object, model: str, device: str, engine: str, impl: str) -> Candidate:
    # The keys are written from these fields (export_model_specs_json): a file where they
    # disagree was edited by hand or is another format, and either reading could be wrong.
    for field, expected in (("hf_model_repo", model), ("device_type", device),
                            ("inference_engine", engine)):
        spec.same(field, expected)
    spec.child("impl").same("impl_id", impl)
    status = spec.one_of("status", STATUSES)
    default = spec.child("device_model_spec").boolean("default_impl")
    return Candidate(model, device.lower(), engine, impl, status, default)


def choose(spec: ModelSpec) -> tuple[Choice, ...]:
    """Tenstorrent's selection for every (model, device) of the file, sorted."""
    pairs: dict[tuple[str, str], list[Candidate]] = {}
    for candidate in spec.candidates:
        pairs.setdefault((candidate.model, candidate.device), []).append(candidate)
    # Sorted inside a pair too: the file keeps no order that matters (the export nests the
    # catalog's order away), and the same content must give the same rules.
    return tuple(_choose(model, device, tuple(sorted(found)))
                 for (model, device), found in sorted(pairs.items()))


def _choose(model: str, device: str, candidates: tuple[Candidate, ...]) -> Choice:
    # get_runtime_model_spec: the first candidate with default_impl; none is a refusal
    # ("you must pass --impl or --engine"), whatever the number of candidates.
    defaults = [c for c in candidates if c.default_impl]
    listed = ", ".join(describe(c) for c in candidates)
    if not defaults:
        return Choice(model, device, candidates, None, None, NO_DEFAULT,
                      f"no default_impl among {len(candidates)} candidate(s) ({listed}): "
                      "tt-inference-server needs --engine or --impl")
    if len({c.backend for c in defaults}) > 1:
        # Which one get_runtime_model_spec takes depends on its catalog's order, which the
        # exported file does not keep.
        return Choice(model, device, candidates, None, None, NO_DEFAULT,
                      f"several candidates are default_impl ({', '.join(map(describe, defaults))})"
                      " and they need different backends")
    winner = defaults[0]
    if device in NON_TENSTORRENT_DEVICES:
        return Choice(model, device, candidates, winner, None, NOT_TENSTORRENT,
                      f"{device} is not a Tenstorrent device (its default is {describe(winner)})")
    if winner.backend is None:
        return Choice(model, device, candidates, winner, None, OUTSIDE_VLLM,
                      f"its default, {describe(winner)}, runs outside vLLM")
    return Choice(model, device, candidates, winner, winner.backend, IN_VLLM,
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


# The keys of model_specs and of the objects under it: (what one must be, the check).
_MODEL_KEY = ("a model name (hf_model_repo) without control characters",
              lambda key: bool(key.strip()) and _printable(key))
_DEVICE_KEY = ("a DeviceTypes name such as N150, T3K or GALAXY_T3K",
               lambda key: bool(_DEVICE_NAME.match(key)))
_ENGINE_KEY = ("an inference engine such as vLLM, forge or media",
               lambda key: bool(key) and _printable(key))
_IMPL_KEY = ("an implementation id such as tt_transformers",
             lambda key: bool(key) and _printable(key))
_KINDS = {dict: "an object", list: "an array", str: "the string", bool: "the boolean",
          int: "the number", float: "the number", type(None): "null"}


def _member(key: str) -> str:
    """How a member of an object of objects is named in a path: ["Qwen/Qwen3-8B"]."""
    return "[" + json.dumps(key, ensure_ascii=not _printable(key)) + "]"


class _Object:
    """A JSON object at a path in the file (never the top level: `path` is not empty once
    anything is wrong), with typed access whose errors name the path of the field."""

    def __init__(self, data: Any, source: str, path: str) -> None:
        self.data, self.source, self.path = data, source, path
        if not isinstance(data, dict):
            raise self.wrong("a JSON object", data)

    def _at(self, field: str | None = None) -> str:
        if field is None:
            return self.path
        return f"{self.path}.{field}" if self.path else field

    def wrong(self, expected: str, value: Any, field: str | None = None) -> ConfigError:
        kind = _KINDS.get(type(value), "a value")
        shown = "" if isinstance(value, (dict, list)) or value is None else " " + json.dumps(
            value, ensure_ascii=not (isinstance(value, str) and _printable(value)))[:60]
        return ConfigError(
            f"{self._at(field)} must be {expected}, not {kind}{shown}",
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
            raise self.wrong("a non-empty string", value, field)
        return value

    def one_of(self, field: str, allowed: tuple[str, ...]) -> str:
        value = self.string(field)
        if value not in allowed:
            raise self.wrong(f"one of {', '.join(allowed)}", value, field)
        return value

    def boolean(self, field: str) -> bool:
        value = self._get(field)
        if not isinstance(value, bool):
            raise self.wrong("true or false", value, field)
        return value

    def same(self, field: str, expected: str) -> None:
        value = self.string(field)
        if value != expected:
            raise ConfigError(
                f"{self._at(field)} is {value!r}, but the spec is filed under {expected!r}",
                where=where(self.source, self._at(field)), fix=_FIX_EXPORT)

    def child(self, field: str) -> _Object:
        return _Object(self._get(field), self.source, self._at(field))

    def objects(self, field: str | None,
                keys: tuple[str, Callable[[str], bool]]) -> list[tuple[str, _Object]]:
        """The members of an object of objects (this one, or the field's), each with its
        path; every key must pass `keys`' check."""
        parent = self if field is None else self.child(field)
        if not parent.data:
            raise ConfigError(f"{parent.path} is an empty object",
                              where=where(self.source, parent.path), fix=_FIX_EXPORT)
        expected, check = keys
        for key in parent.data:
            if not check(key):
                raise ConfigError(f"{parent.path} has the key {key!r}, which is not {expected}",
                                  where=where(self.source, parent.path), fix=_FIX_EXPORT)
        return [(key, _Object(value, self.source, parent.path + _member(key)))
                for key, value in parent.data.items()]
# -- writing rules -----------------------------------------------------------------------------

# The first line of what generate_rules writes: `--update` replaces a policy from this line on.
GENERATED_MARK = "# Generated by `tt-meta policy from-model-spec`"
#: The generated rules' last line: `--update` replaces what lies between the two marks and
#: keeps the operator's policy before and after them.
END_MARK = "# End of the rules generated by `tt-meta policy from-model-spec`."


class Generated(NamedTuple):
    """The rules for a model spec, and what got none."""

    text: str  # the comments and [[rule]] tables, TOML
    rules: int
    ruled: tuple[Choice, ...]  # the pairs a rule sends to a backend
    outside: tuple[Choice, ...]  # default runs outside vLLM
    undecided: tuple[Choice, ...]  # no default, or defaults that disagree
    foreign: tuple[Choice, ...]  # not Tenstorrent hardware (GPU reference specs)
    dropped: tuple[Choice, ...]  # the default's status is not among those kept


def generate_rules(spec: ModelSpec, statuses: Iterable[str] = STATUSES,
                   command: str | None = None) -> Generated:
    """`[[rule]]` tables sending each (model, device) where Tenstorrent's default runs in vLLM
    to its backend, one rule per (model, backend) listing its devices; sorted, so the same
    file and options always give the same text. Each (model, device) is in at most one
    rule, so their order does not change any decision, and rules before them in a policy
    win. `statuses` keeps only pairs whose default has one of them (the choice is made
    first, among all candidates, as Tenstorrent makes it)."""
    kept = frozenset(statuses)
    unknown = sorted(kept - set(STATUSES))
    if unknown:
        raise ConfigError(f"unknown status {unknown[0]!r}", where="--status",
                          fix=f"use one of {', '.join(STATUSES)}")
    ruled, outside, undecided, foreign, dropped = [], [], [], [], []
    for choice in choose(spec):
        if choice.kind == NO_DEFAULT:
            undecided.append(choice)
        elif choice.kind == NOT_TENSTORRENT:
            foreign.append(choice)
        elif choice.kind == OUTSIDE_VLLM:
            outside.append(choice)
        elif choice.winner is not None and choice.winner.status not in kept:
            dropped.append(choice)
        else:
            ruled.append(choice)
    by_rule: dict[tuple[str, str], list[Choice]] = {}
    for choice in ruled:
        by_rule.setdefault((choice.model, str(choice.backend)), []).append(choice)
    origin = f"release_model_spec {spec.release}"
    lines = _header(spec, kept, command, len(by_rule), ruled,
                    (("Tenstorrent's choice runs outside vLLM", outside, _how),
                     ("Tenstorrent chooses no implementation", undecided, _why),
                     ("not Tenstorrent hardware", foreign, _how),
                     ("the status of Tenstorrent's choice is not kept", dropped, _how)))
    for (model, backend), choices in sorted(by_rule.items()):
        devices = [c.device for c in choices]
        name = f"{origin}: {model} -> {backend}: " + "; ".join(
            f"{', '.join(group)} {how}" for how, group in _by_how(choices))
        lines += [
            "",
            "[[rule]]",
            f"name = {toml_string(name)}",
            f"model = {toml_string(glob_escape(model))}",
            f"device = {_toml_value(devices)}",
            f"backend = {toml_string(backend)}",
        ]
    lines += ["", END_MARK]
    return Generated("\n".join(lines) + "\n", len(by_rule), tuple(ruled), tuple(outside),
                     tuple(undecided), tuple(foreign), tuple(dropped))


def _header(spec: ModelSpec, kept: frozenset[str], command: str | None, rules: int,
            ruled: list[Choice],
            sections: Iterable[tuple[str, list[Choice], Callable[[list[Choice]], list[str]]]],
            ) -> list[str]:
    kept_text = "all" if kept >= set(STATUSES) else ", ".join(s for s in STATUSES if s in kept)
    lines = [
        f"{GENERATED_MARK} from Tenstorrent's release_model_spec.json,",
        f"# release {_comment(spec.release)} (schema {_comment(spec.schema)}); statuses "
        f"kept: {kept_text}.",
        f"# The spec file's SHA-256: {spec.sha256}",
    ]
    if command:
        lines.append(f"#   {_comment(command)}")
    lines += [
        "# Do not edit below by hand: regenerate (docs/policy.md). Each rule sends a model, on",
        "# the devices it lists, to the backend of the implementation tt-inference-server's",
        "# get_runtime_model_spec chooses there (default_impl): engine vLLM -> metal, engine",
        "# forge with impl forge_vllm_plugin -> forge.",
        f"# {rules} rules for {len(ruled)} (model, device) pairs.",
    ]
    for title, choices, how in sections:
        if choices:
            lines += ["#", f"# No rule, {title} ({len(choices)} (model, device) pairs):"]
            lines += [f"#   {line}" for line in how(choices)]
    return lines


def _by_how(choices: Iterable[Choice]) -> list[tuple[str, list[str]]]:
    """(engine/impl status, devices), grouped and sorted."""
    groups: dict[str, list[str]] = {}
    for choice in choices:
        assert choice.winner is not None
        groups.setdefault(describe(choice.winner), []).append(choice.device)
    return sorted(groups.items())


def _how(choices: list[Choice]) -> list[str]:
    by_model: dict[str, list[Choice]] = {}
    for choice in choices:
        by_model.setdefault(choice.model, []).append(choice)
    return [f"{_comment(model)}: " + "; ".join(f"{how} on {', '.join(devices)}"
                                               for how, devices in _by_how(found))
            for model, found in sorted(by_model.items())]


def _why(choices: list[Choice]) -> list[str]:
    return [f"{_comment(c.model)} on {c.device}: {_comment(c.reason)}" for c in choices]


def _comment(text: str) -> str:
    """Text safe in a TOML comment (one line, no control characters)."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def glob_escape(name: str) -> str:
    """A model name as a rule's glob that matches that name only."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def toml_string(text: str) -> str:
    """A TOML basic string."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(values: list[str]) -> str:
    if len(values) == 1:
        return toml_string(values[0])
    return "[" + ", ".join(map(toml_string, values)) + "]"
