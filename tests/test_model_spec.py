"""Tenstorrent's catalog as policy: `tt-meta policy from-model-spec` (selection/model_spec.py).

A small release_model_spec.json, shaped like tt-inference-server's export, holds the shapes
that matter: Llama-3.2-3B on N150 (vLLM the default, forge_vllm_plugin not), a forge CNN and
a media-engine model (outside vLLM: no rule), a pair with two candidates and no default (no
rule, said so), a GPU reference spec. The generated rules are checked as text, through the
policy parser, through the real `tt-meta explain`, and through a real `vllm serve` of a tiny
model; the built-in default policy is checked to be what the command makes of release 0.20.0.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import SiteMaker, clean_env, install

from tt_meta_plugin._errors import ConfigError
from tt_meta_plugin.selection.inputs import DEFAULT_POLICY
from tt_meta_plugin.selection.model_spec import (
    END_MARK,
    GENERATED_MARK,
    IN_VLLM,
    MAX_SPEC_BYTES,
    NO_DEFAULT,
    NOT_TENSTORRENT,
    OUTSIDE_VLLM,
    choose,
    generate_rules,
    glob_escape,
    load_model_spec,
)
from tt_meta_plugin.selection.policy import Facts, parse_policy

ROOT = Path(__file__).resolve().parents[1]
TT_META = shutil.which("tt-meta", path=os.path.dirname(sys.executable)) or "tt-meta"
REAL_SPEC_RELATIVE = "release_model_spec.json"  # at a checkout's root, as the header says
DEFAULT_POLICY_RELATIVE = "tt_meta_plugin/default_policy.toml"

HEADER = 'version = 1\nallowed_backends = ["metal", "forge"]\n'
GLOB_MODEL = "odd-org/Model[1]*?"


def spec_entry(model: str, device: str, engine: str, impl: str, status: str,
               default: bool) -> dict[str, Any]:
    """One model spec as export_model_specs_json writes it (the fields tt_meta reads, and a
    few it does not)."""
    return {
        "model_id": f"id_{impl}_{model.split('/')[-1]}_{device.lower()}",
        "impl": {"impl_id": impl, "impl_name": impl.replace("_", "-"),
                 "repo_url": "https://github.com/tenstorrent/tt-metal", "code_path": "models"},
        "hf_model_repo": model,
        "model_name": model.split("/")[-1],
        "inference_engine": engine,
        "device_type": device,
        "device_model_spec": {"device": device, "max_concurrency": 32, "max_context": 131072,
                              "default_impl": default, "vllm_args": {"model": model},
                              "env_vars": {"MESH_DEVICE": device}},
        "env_vars": {"VLLM_TARGET_DEVICE": "tt"},
        "status": status,
        "model_type": "LLM",
        "docker_image": "ghcr.io/tenstorrent/tt-inference-server/vllm:0.99.0",
        "supported_modalities": ["text"],
    }


# (model, DEVICE, engine, impl, status, default_impl)
ENTRIES = [
    ("meta-llama/Llama-3.2-3B", "N150", "vLLM", "tt_transformers", "FUNCTIONAL", True),
    ("meta-llama/Llama-3.2-3B", "N150", "forge", "forge_vllm_plugin", "EXPERIMENTAL", False),
    ("meta-llama/Llama-3.2-3B", "N300", "vLLM", "tt_transformers", "FUNCTIONAL", True),
    ("meta-llama/Llama-3.2-3B", "N300", "forge", "forge_vllm_plugin", "EXPERIMENTAL", False),
    ("meta-llama/Llama-3.2-3B", "P150", "forge", "forge_vllm_plugin", "EXPERIMENTAL", True),
    ("Qwen/Qwen3-8B", "T3K", "vLLM", "tt_transformers", "FUNCTIONAL", True),
    ("Qwen/Qwen3-8B", "N150", "vLLM", "tt_transformers", "COMPLETE", True),
    ("Qwen/Qwen3-8B", "GALAXY_T3K", "vLLM", "tt_transformers", "EXPERIMENTAL", True),
    ("resnet-50", "N150", "forge", "tt_transformers", "COMPLETE", True),
    ("openai/whisper-large-v3", "N150", "media", "whisper", "COMPLETE", True),
    ("ambiguous/Model-7B", "N300", "vLLM", "tt_transformers", "FUNCTIONAL", False),
    ("ambiguous/Model-7B", "N300", "forge", "forge_vllm_plugin", "EXPERIMENTAL", False),
    ("meta-llama/Llama-3.1-8B", "GPU", "vLLM", "tt_transformers", "COMPLETE", True),
    ("meta-llama/Llama-3.1-8B", "P150X4", "vLLM", "tt_transformers", "COMPLETE", True),
    (GLOB_MODEL, "N150", "vLLM", "tt_transformers", "COMPLETE", True),
]


def make_spec(entries: list[tuple[str, str, str, str, str, bool]] = ENTRIES,
              release: str = "0.99.0", schema: str = "0.1.0") -> dict[str, Any]:
    specs: dict[str, Any] = {}
    for model, device, engine, impl, status, default in entries:
        specs.setdefault(model, {}).setdefault(device, {}).setdefault(engine, {})[impl] = (
            spec_entry(model, device, engine, impl, status, default))
    return {"schema_version": schema, "release_version": release, "model_specs": specs}


def write_spec(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    return write_spec(tmp_path / "release_model_spec.json", make_spec())


def tt_meta(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """The installed `tt-meta` console script, as an operator runs it."""
    return subprocess.run([TT_META, *args], env=clean_env(**env), capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def rules_of(text: str) -> list[tuple[str | None, tuple[str, ...], tuple[str, ...], str | None]]:
    policy = parse_policy((HEADER + text).encode(), "generated")
    return [(r.name, r.model, r.device, r.backend) for r in policy.rules]


# -- Reading the file ------------------------------------------------------------------------


def test_load_model_spec_interface(spec_file: Path) -> None:
    spec = load_model_spec(spec_file)
    assert spec.release == "0.99.0" and spec.schema == "0.1.0"
    assert spec.models == tuple(sorted({e[0] for e in ENTRIES}))
    assert spec.devices == ("galaxy_t3k", "gpu", "n150", "n300", "p150", "p150x4", "t3k")
    assert len(spec.candidates) == len(ENTRIES)
    first = spec.candidates[0]
    assert (first.model, first.device, first.engine, first.impl, first.status,
            first.default_impl, first.backend) == (
        "meta-llama/Llama-3.2-3B", "n150", "vLLM", "tt_transformers", "FUNCTIONAL", True,
        "metal")


def test_the_real_release_reads(real_spec: Path) -> None:
    spec = load_model_spec(real_spec)
    assert (spec.release, spec.schema, len(spec.models)) == ("0.20.0", "0.1.0", 69)
    assert {"n150", "n300", "t3k", "galaxy", "galaxy_t3k", "p150", "p150x4", "p150x8",
            "p300", "p300x2"} <= set(spec.devices)
    assert list(spec.models) == sorted(spec.models)
    assert all(d == d.lower() for d in spec.devices)


def test_choice_follows_get_runtime_model_spec(spec_file: Path) -> None:
    choices = {(c.model, c.device): c for c in choose(load_model_spec(spec_file))}
    llama = choices["meta-llama/Llama-3.2-3B", "n150"]
    assert (llama.kind, llama.backend) == (IN_VLLM, "metal")
    assert llama.winner is not None and llama.winner.engine == "vLLM"
    assert len(llama.candidates) == 2
    assert choices["meta-llama/Llama-3.2-3B", "p150"].backend == "forge"
    assert choices["resnet-50", "n150"].kind == OUTSIDE_VLLM
    assert choices["openai/whisper-large-v3", "n150"].kind == OUTSIDE_VLLM
    ambiguous = choices["ambiguous/Model-7B", "n300"]
    assert (ambiguous.kind, ambiguous.winner, ambiguous.backend) == (NO_DEFAULT, None, None)
    assert "no default_impl among 2 candidate(s)" in ambiguous.reason
    assert choices["meta-llama/Llama-3.1-8B", "gpu"].kind == NOT_TENSTORRENT
    assert list(choices) == sorted(choices)


def test_a_single_candidate_without_default_gets_no_rule(tmp_path: Path) -> None:
    """tt-inference-server refuses it too without --engine or --impl."""
    path = write_spec(tmp_path / "s.json", make_spec(
        [("a/b", "N150", "vLLM", "tt_transformers", "COMPLETE", False)]))
    (choice,) = choose(load_model_spec(path))
    assert choice.kind == NO_DEFAULT and "no default_impl among 1 candidate(s)" in choice.reason


def test_defaults_that_need_different_backends_get_no_rule(tmp_path: Path) -> None:
    path = write_spec(tmp_path / "s.json", make_spec([
        ("a/b", "N150", "vLLM", "tt_transformers", "COMPLETE", True),
        ("a/b", "N150", "forge", "forge_vllm_plugin", "COMPLETE", True)]))
    (choice,) = choose(load_model_spec(path))
    assert choice.kind == NO_DEFAULT and "several candidates are default_impl" in choice.reason


# -- The rules -------------------------------------------------------------------------------

EXPECTED_RULES = [
    # One rule per (model, backend); its name groups the devices by engine/impl and status.
    ("release_model_spec 0.99.0: Qwen/Qwen3-8B -> metal: n150 vLLM/tt_transformers COMPLETE; "
     "galaxy_t3k vLLM/tt_transformers EXPERIMENTAL; t3k vLLM/tt_transformers FUNCTIONAL",
     ("Qwen/Qwen3-8B",), ("galaxy_t3k", "n150", "t3k"), "metal"),
    ("release_model_spec 0.99.0: meta-llama/Llama-3.1-8B -> metal: p150x4 "
     "vLLM/tt_transformers COMPLETE",
     ("meta-llama/Llama-3.1-8B",), ("p150x4",), "metal"),
    ("release_model_spec 0.99.0: meta-llama/Llama-3.2-3B -> forge: p150 "
     "forge/forge_vllm_plugin EXPERIMENTAL",
     ("meta-llama/Llama-3.2-3B",), ("p150",), "forge"),
    ("release_model_spec 0.99.0: meta-llama/Llama-3.2-3B -> metal: n150, n300 "
     "vLLM/tt_transformers FUNCTIONAL",
     ("meta-llama/Llama-3.2-3B",), ("n150", "n300"), "metal"),
    (f"release_model_spec 0.99.0: {GLOB_MODEL} -> metal: n150 vLLM/tt_transformers COMPLETE",
     (glob_escape(GLOB_MODEL),), ("n150",), "metal"),
]


def test_generated_rules(spec_file: Path) -> None:
    proc = tt_meta("policy", "from-model-spec", str(spec_file))
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert text.startswith(GENERATED_MARK)
    assert "release 0.99.0 (schema 0.1.0); statuses kept: all." in text
    assert f"#   tt-meta policy from-model-spec {spec_file}\n" in text
    rules = rules_of(text)
    assert rules == EXPECTED_RULES  # sorted by model, then backend
    # No rule, and why, as comments.
    assert ("# No rule, Tenstorrent's choice runs outside vLLM (2 (model, device) pairs):\n"
            "#   openai/whisper-large-v3: media/whisper COMPLETE on n150\n"
            "#   resnet-50: forge/tt_transformers COMPLETE on n150\n") in text
    assert ("# No rule, Tenstorrent chooses no implementation (1 (model, device) pairs):\n"
            "#   ambiguous/Model-7B on n300: no default_impl among 2 candidate(s) "
            "(forge/forge_vllm_plugin EXPERIMENTAL, vLLM/tt_transformers FUNCTIONAL): "
            "tt-inference-server needs --engine or --impl\n") in text
    assert ("# No rule, not Tenstorrent hardware (1 (model, device) pairs):\n"
            "#   meta-llama/Llama-3.1-8B: vLLM/tt_transformers COMPLETE on gpu\n") in text
    # ... and a summary on stderr.
    assert ("release 0.99.0: 5 rules for 8 (model, device) pairs (forge 1, metal 7)"
            in proc.stderr)
    assert "no rule for 2 pairs Tenstorrent runs outside vLLM" in proc.stderr
    assert ("no rule for 1 pairs where Tenstorrent chooses no implementation" in proc.stderr
            and "ambiguous/Model-7B on n300: no default_impl among 2 candidate(s)"
            in proc.stderr)
    # The same input gives the same bytes, whatever the order of the file's objects.
    shuffled = write_spec(spec_file.with_name("shuffled.json"),
                          make_spec(list(reversed(ENTRIES))))
    again = tt_meta("policy", "from-model-spec", str(shuffled))
    sha = re.compile(r"^# The spec file's SHA-256: [0-9a-f]{64}$", re.M)
    assert sha.search(text) and f"SHA-256: {hashlib.sha256(spec_file.read_bytes()).hexdigest()}" \
        in text
    assert sha.sub("", again.stdout) == sha.sub("", text.replace(str(spec_file), str(shuffled)))


def test_glob_characters_in_a_model_name_match_that_name_only(spec_file: Path) -> None:
    policy = parse_policy((HEADER + generate_rules(load_model_spec(spec_file)).text).encode(),
                          "p")
    assert policy.first_match(Facts(model=GLOB_MODEL, device="n150")) is not None
    assert policy.first_match(Facts(model="odd-org/Model1xy", device="n150")) is None
    assert policy.first_match(Facts(model="odd-org/Model[1]ab", device="n150")) is None


@pytest.mark.parametrize(("flags", "kept", "models"), [
    (["--status", "COMPLETE", "--status", "functional"], "FUNCTIONAL, COMPLETE",
     {"Qwen/Qwen3-8B", "meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.2-3B", GLOB_MODEL}),
    (["--status", "EXPERIMENTAL"], "EXPERIMENTAL",
     {"Qwen/Qwen3-8B", "meta-llama/Llama-3.2-3B"}),
    (["--status", "TOP_PERF"], "TOP_PERF", set()),
])
def test_status_filter(spec_file: Path, flags: list[str], kept: str, models: set[str]) -> None:
    proc = tt_meta("policy", "from-model-spec", str(spec_file), *flags)
    assert proc.returncode == 0, proc.stderr
    assert f"statuses kept: {kept}." in proc.stdout
    rules = rules_of(proc.stdout)
    assert {r[1][0] for r in rules} == {glob_escape(m) for m in models}
    wanted = set(kept.split(", "))
    for name, *_ in rules:  # every device a rule lists has a kept status
        assert name is not None
        assert all(group.rsplit(" ", 1)[1] in wanted for group in name.split("; "))
    if "EXPERIMENTAL" not in wanted:
        # Llama-3.2-3B on n150: the default (vLLM, FUNCTIONAL) is kept or dropped; the
        # EXPERIMENTAL forge candidate never takes its place.
        assert "-> forge:" not in proc.stdout
    assert "pairs whose status --status leaves out" in proc.stderr
    assert "# No rule, the status of Tenstorrent's choice is not kept" in proc.stdout
    bad = tt_meta("policy", "from-model-spec", str(spec_file), "--status", "GOOD")
    assert bad.returncode == 2 and "invalid choice: 'GOOD'" in bad.stderr


def test_out_and_update(spec_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "rules.toml"
    proc = tt_meta("policy", "from-model-spec", str(spec_file), "--out", str(out))
    assert proc.returncode == 0 and proc.stdout == "", proc.stderr
    assert f"written to {out}" in proc.stderr
    assert f"#   tt-meta policy from-model-spec {spec_file} --out {out}\n" in out.read_text()
    # --update: the operator's part is kept, the generated part replaced (or appended).
    mine = ('# my policy\nversion = 1\nallowed_backends = ["metal", "forge"]\n\n'
            '[[rule]]\nname = "mine"\nmodel = "Qwen/Qwen3-8B"\ndevice = "n150"\n'
            'backend = "forge"\n')
    policy = tmp_path / "policy.toml"
    policy.write_text(mine)
    policy.chmod(0o640)
    assert tt_meta("policy", "from-model-spec", str(spec_file), "--update",
                   str(policy)).returncode == 0
    first = policy.read_text()
    assert first.startswith(mine + "\n" + GENERATED_MARK)
    assert policy.stat().st_mode & 0o777 == 0o640
    assert tt_meta("policy", "from-model-spec", str(spec_file), "--update",
                   str(policy)).returncode == 0
    assert policy.read_text() == first  # idempotent
    narrower = tt_meta("policy", "from-model-spec", str(spec_file), "--status", "COMPLETE",
                       "--update", str(policy))
    assert narrower.returncode == 0, narrower.stderr
    text = policy.read_text()
    assert text.startswith(mine + "\n" + GENERATED_MARK) and text.count(GENERATED_MARK) == 1
    assert "statuses kept: COMPLETE." in text
    # What the operator put after the generated rules is kept too.
    policy.write_text(text + '\n[[rule]]\nname = "after"\nmodel = "*"\nbackend = "metal"\n')
    assert tt_meta("policy", "from-model-spec", str(spec_file), "--update",
                   str(policy)).returncode == 0
    again = policy.read_text()
    assert again.startswith(mine + "\n" + GENERATED_MARK) and again.count(GENERATED_MARK) == 1
    assert again.endswith(f'{END_MARK}\n\n[[rule]]\nname = "after"\nmodel = "*"\n'
                          'backend = "metal"\n'), again[-300:]
    # Without the end mark, what follows the generated rules cannot be told from them.
    policy.write_text(again.replace(END_MARK + "\n", ""))
    cut = tt_meta("policy", "from-model-spec", str(spec_file), "--update", str(policy))
    assert cut.returncode == 1 and "not the line that ends them" in cut.stderr, cut.stderr
    assert policy.read_text() == again.replace(END_MARK + "\n", "")  # left alone
    # A policy the result would not parse is left alone, and the error names it.
    broken = tmp_path / "broken.toml"
    broken.write_text("version = 1\nallowed_backends = []\n")
    proc = tt_meta("policy", "from-model-spec", str(spec_file), "--update", str(broken))
    assert proc.returncode == 1 and "allowed_backends is empty" in proc.stderr
    assert str(broken) in proc.stderr and broken.read_text().endswith("= []\n")
    missing = tmp_path / "none.toml"
    proc = tt_meta("policy", "from-model-spec", str(spec_file), "--update", str(missing))
    assert proc.returncode == 1 and "cannot read the policy to update" in proc.stderr
    assert not missing.exists()
    both = tt_meta("policy", "from-model-spec", str(spec_file), "--out", str(out),
                   "--update", str(policy))
    assert both.returncode == 2 and "not allowed with argument" in both.stderr


# -- Bad input -------------------------------------------------------------------------------

LLAMA = 'model_specs["meta-llama/Llama-3.2-3B"]["N150"]["vLLM"]["tt_transformers"]'


def _edit(path: list[str], value: Any = None, delete: bool = False) -> Callable[[Any], None]:
    def edit(data: Any) -> None:
        node = data
        for key in path[:-1]:
            node = node[key]
        if delete:
            del node[path[-1]]
        else:
            node[path[-1]] = value
    return edit


LLAMA_KEYS = ["model_specs", "meta-llama/Llama-3.2-3B", "N150", "vLLM", "tt_transformers"]
BAD_FIELDS = [
    # (edit, message, JSON path)
    (_edit(["schema_version"], delete=True), "required field schema_version is missing",
     "schema_version"),
    (_edit(["schema_version"], "0.2.0"),
     "unsupported model spec schema_version '0.2.0' (this tt-meta reads 0.1.0)",
     "schema_version"),
    (_edit(["schema_version"], 1), "schema_version must be a non-empty string, not the number 1",
     "schema_version"),
    (_edit(["release_version"], delete=True), "required field release_version is missing",
     "release_version"),
    (_edit(["release_version"], ""), "release_version must be a non-empty string, not the "
     'string ""', "release_version"),
    # Written into every rule's name and the header: a newline would add TOML of its own.
    (_edit(["release_version"], '0.20.0\n[[rule]]\nmodel = "*"\nbackend = "forge"\n#'),
     'release_version must be a release version such as 0.20.0, not the string '
     '"0.20.0\\n[[rule]]\\nmodel = \\"*\\"\\nbackend = \\"forge\\"\\n#"', "release_version"),
    (_edit(["model_specs"], delete=True), "required field model_specs is missing",
     "model_specs"),
    (_edit(["model_specs"], []), "model_specs must be a JSON object, not an array",
     "model_specs"),
    (_edit(["model_specs"], {}), "model_specs is an empty object", "model_specs"),
    (_edit(LLAMA_KEYS[:3], {}), 'model_specs["meta-llama/Llama-3.2-3B"]["N150"] is an empty '
     "object", 'model_specs["meta-llama/Llama-3.2-3B"]["N150"]'),
    (_edit(["model_specs", "bad\x01name"], {}), "model_specs has the key 'bad\\x01name', which "
     "is not a model name (hf_model_repo) without control characters", "model_specs"),
    (_edit(["model_specs", "meta-llama/Llama-3.2-3B", "n150"], {}),
     'model_specs["meta-llama/Llama-3.2-3B"] has the key \'n150\', which is not a DeviceTypes '
     'name such as N150, T3K or GALAXY_T3K',
     'model_specs["meta-llama/Llama-3.2-3B"]'),
    (_edit(LLAMA_KEYS[:4], "x"), f"{LLAMA[:-19]} must be a JSON object, not the string \"x\"",
     LLAMA[:-19]),
    (_edit(LLAMA_KEYS, None), f"{LLAMA} must be a JSON object, not null", LLAMA),
    *[(_edit([*LLAMA_KEYS, *field.split(".")], delete=True),
       f"required field {LLAMA}.{field} is missing", f"{LLAMA}.{field}")
      for field in ("hf_model_repo", "device_type", "inference_engine", "impl", "impl.impl_id",
                    "status", "device_model_spec", "device_model_spec.default_impl")],
    (_edit([*LLAMA_KEYS, "status"], "GREAT"), f"{LLAMA}.status must be one of EXPERIMENTAL, "
     'FUNCTIONAL, COMPLETE, TOP_PERF, not the string "GREAT"', f"{LLAMA}.status"),
    (_edit([*LLAMA_KEYS, "status"], 3), f"{LLAMA}.status must be a non-empty string, not the "
     "number 3", f"{LLAMA}.status"),
    (_edit([*LLAMA_KEYS, "device_model_spec", "default_impl"], "yes"),
     f'{LLAMA}.device_model_spec.default_impl must be true or false, not the string "yes"',
     f"{LLAMA}.device_model_spec.default_impl"),
    (_edit([*LLAMA_KEYS, "device_model_spec"], [True]),
     f"{LLAMA}.device_model_spec must be a JSON object, not an array",
     f"{LLAMA}.device_model_spec"),
    (_edit([*LLAMA_KEYS, "inference_engine"], "forge"),
     f"{LLAMA}.inference_engine is 'forge', but the spec is filed under 'vLLM'",
     f"{LLAMA}.inference_engine"),
    (_edit([*LLAMA_KEYS, "hf_model_repo"], "meta-llama/Llama-3.2-1B"),
     f"{LLAMA}.hf_model_repo is 'meta-llama/Llama-3.2-1B', but the spec is filed under "
     "'meta-llama/Llama-3.2-3B'", f"{LLAMA}.hf_model_repo"),
    (_edit([*LLAMA_KEYS, "device_type"], "N300"),
     f"{LLAMA}.device_type is 'N300', but the spec is filed under 'N150'",
     f"{LLAMA}.device_type"),
    (_edit([*LLAMA_KEYS, "impl", "impl_id"], "other"),
     f"{LLAMA}.impl.impl_id is 'other', but the spec is filed under 'tt_transformers'",
     f"{LLAMA}.impl.impl_id"),
]


@pytest.mark.parametrize(("edit", "message", "field"), BAD_FIELDS,
                         ids=[f"{i}-{b[2][-40:]}" for i, b in enumerate(BAD_FIELDS)])
def test_bad_field_names_file_and_field(tmp_path: Path, edit: Callable[[Any], None],
                                        message: str, field: str) -> None:
    data = make_spec()
    edit(data)
    path = write_spec(tmp_path / "release_model_spec.json", data)
    with pytest.raises(ConfigError) as refused:
        load_model_spec(path)
    assert refused.value.summary == message
    assert refused.value.where == f"{path}, key '{field}'"
    assert refused.value.fix
    # The command line says the same, and writes nothing.
    proc = tt_meta("policy", "from-model-spec", str(path))
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith(f"tt-meta policy: {message}\n")
    assert f"  where: {path}, key '{field}'\n" in proc.stderr
    assert "  fix: " in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(("raw", "message"), [
    (b"{", "the model spec file is not valid JSON: Expecting property name"),
    (b"\xff\xfe", "the model spec file is not valid JSON"),
    (b"[1, 2]", "the model spec file is not a JSON object"),
    (b'{"a": 1, "a": 2}', "the model spec file names the key 'a' twice in one object"),
    (b"[" * 100_000 + b"]" * 100_000, "the model spec file is nested too deeply"),
])
def test_a_file_that_is_no_spec(tmp_path: Path, raw: bytes, message: str) -> None:
    path = tmp_path / "spec.json"
    path.write_bytes(raw)
    proc = tt_meta("policy", "from-model-spec", str(path))
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith(f"tt-meta policy: {message}"), proc.stderr
    assert f"  where: {path}\n" in proc.stderr and "  fix: " in proc.stderr


def test_read_size_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    with path.open("wb") as handle:  # sparse: nothing is written but the size
        handle.truncate(MAX_SPEC_BYTES + 1)
    proc = tt_meta("policy", "from-model-spec", str(path))
    assert proc.returncode == 1
    assert "the model spec file is larger than 32 MiB" in proc.stderr
    proc = tt_meta("policy", "from-model-spec", str(tmp_path / "absent.json"))
    assert proc.returncode == 1
    assert "cannot read the model spec file: No such file or directory" in proc.stderr


# -- The rules in a policy, decided by the real tt-meta explain -------------------------------


def explain(site: Path, policy: Path, model: str, device: str) -> dict[str, Any]:
    proc = tt_meta("explain", "--model", model, "--device", device, "--json",
                   PYTHONPATH=str(site), TT_META_POLICY=str(policy))
    report: dict[str, Any] = json.loads(proc.stdout)
    assert proc.returncode == (0 if report["delegate"] else 1), proc.stderr
    return report


def test_generated_rules_decide_through_explain(
    spec_file: Path, make_site: SiteMaker, policy_file: Callable[[str], Path]
) -> None:
    rules = tt_meta("policy", "from-model-spec", str(spec_file)).stdout
    # Appended to an operator's policy: its own rules, before, still win.
    policy = policy_file(HEADER + '\n[[rule]]\nname = "ours"\nmodel = "Qwen/Qwen3-8B"\n'
                         'device = "t3k"\nbackend = "forge"\n\n' + rules)
    site = make_site("tt-vllm-plugin", "ttnn", "vllm-tt", "pjrt-plugin-tt")

    def decided(model: str, device: str) -> tuple[str | None, str]:
        report = explain(site, policy, model, device)
        if "backend" not in report:
            return None, report["refusal"]["summary"]
        return report["backend"], report["reason"]

    backend, reason = decided("meta-llama/Llama-3.2-3B", "n150")
    assert backend == "metal", reason
    assert ("(release_model_spec 0.99.0: meta-llama/Llama-3.2-3B -> metal: n150, n300 "
            "vLLM/tt_transformers FUNCTIONAL): model = 'meta-llama/Llama-3.2-3B', "
            "device = ['n150', 'n300']") in reason
    assert decided("meta-llama/Llama-3.2-3B", "N300")[0] == "metal"  # TT_META_DEVICE case
    backend, reason = decided("meta-llama/Llama-3.2-3B", "p150")
    assert backend == "forge" and "-> forge: p150 forge/forge_vllm_plugin" in reason
    assert decided("Qwen/Qwen3-8B", "galaxy_t3k")[0] == "metal"
    assert decided("Qwen/Qwen3-8B", "t3k") == ("forge", "rule 1 (ours): model = "
                                               "'Qwen/Qwen3-8B', device = 't3k'")
    assert decided(GLOB_MODEL, "n150")[0] == "metal"
    for model, device in [("resnet-50", "n150"), ("openai/whisper-large-v3", "n150"),
                          ("ambiguous/Model-7B", "n300"), ("meta-llama/Llama-3.1-8B", "gpu"),
                          ("meta-llama/Llama-3.2-3B", "t3k"), ("odd-org/Model1xy", "n150")]:
        backend, summary = decided(model, device)
        assert backend is None and f"model '{model}' matches no rule" in summary, summary


def test_default_policy_is_the_generated_release(tmp_path: Path, real_spec: Path) -> None:
    """The built-in policy's rules are what the command it names writes from release 0.20.0:
    the command is run as the header says, in a copy of the checkout's layout."""
    text = DEFAULT_POLICY.read_text(encoding="utf-8")
    command = (f"tt-meta policy from-model-spec {REAL_SPEC_RELATIVE} "
               f"--update {DEFAULT_POLICY_RELATIVE}")
    assert f"#   {command}\n" in text
    assert text.count(f"#   {command}\n") == 2  # in the header, and in the generated part
    assert "release_model_spec.json, release 0.20.0" in text
    (tmp_path / "tt_meta_plugin").mkdir()
    shutil.copy(real_spec, tmp_path / REAL_SPEC_RELATIVE)
    shutil.copy(DEFAULT_POLICY, tmp_path / DEFAULT_POLICY_RELATIVE)
    proc = tt_meta(*command.split()[1:], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / DEFAULT_POLICY_RELATIVE).read_text(encoding="utf-8") == text, (
        f"{DEFAULT_POLICY_RELATIVE} is not what `{command}` writes: run it")


@pytest.mark.parametrize(("model", "device", "backend"), [
    ("meta-llama/Llama-3.2-3B", "n150", "metal"),  # was forge everywhere, by hand
    ("meta-llama/Llama-3.2-3B", "n300", "metal"),
    ("meta-llama/Llama-3.1-8B-Instruct", "n150", "metal"),
    ("meta-llama/Llama-3.1-8B-Instruct", "p150", "metal"),
    ("Qwen/Qwen3-4B", "n150", "forge"),
    ("Qwen/Qwen3-Embedding-4B", "galaxy", "forge"),
    ("tiiuae/Falcon3-7B-Instruct", "p150", "forge"),
    ("Qwen/Qwen3-32B", "galaxy", "metal"),
    ("openai/whisper-large-v3", "n150", None),  # media engine
    ("resnet-50", "n150", None),  # forge CNN, outside vLLM
    ("meta-llama/Llama-3.1-8B", "gpu", None),  # GPU reference spec
    ("meta-llama/Llama-3.2-3B", "p150", None),  # not in the release
])
def test_default_policy_decisions(model: str, device: str, backend: str | None) -> None:
    policy = parse_policy(DEFAULT_POLICY.read_bytes(), str(DEFAULT_POLICY))
    rule = policy.first_match(Facts(model=model, device=device))
    assert (rule.backend if rule else None) == backend
    assert policy.first_match(Facts(model=model)) is None  # every rule names a device


# -- A real vllm serve under one generated rule ------------------------------------------------


@pytest.mark.e2e
def test_vllm_serve_under_a_generated_rule(tmp_path: Path,
                                           sim_wheels: dict[str, Path]) -> None:
    """The Llama-3.2-3B shape (vLLM the default, forge_vllm_plugin not) for a tiny local model
    named by its path: the server runs on metal, in every process."""
    from operator_flow import sign_backends
    from server import VLLM, complete, read_events, vllm_server
    from tiny_model import make_tiny_model

    if shutil.which(VLLM) is None:
        pytest.fail("vLLM is not installed in this environment: run `make test`")
    site = install(list(sim_wheels.values()), tmp_path / "site")
    model = make_tiny_model(tmp_path / "models" / "tiny-llama", "TTLlamaForCausalLM").resolve()
    name = str(model)
    spec = write_spec(tmp_path / "release_model_spec.json", make_spec([
        (name, "N150", "vLLM", "tt_transformers", "FUNCTIONAL", True),
        (name, "N150", "forge", "forge_vllm_plugin", "EXPERIMENTAL", False),
        (name, "P150", "forge", "forge_vllm_plugin", "EXPERIMENTAL", True),
    ]))
    template = tmp_path / "template.toml"
    template.write_text(HEADER)
    proc = tt_meta("policy", "from-model-spec", str(spec), "--update", str(template))
    assert proc.returncode == 0, proc.stderr
    assert [r[2:] for r in rules_of(template.read_text()[len(HEADER):])] == [
        (("p150",), "forge"), (("n150",), "metal")]
    policy = sign_backends(site, tmp_path / "operator", template)
    record = tmp_path / "record"
    record.mkdir()
    env = clean_env(PYTHONPATH=str(site), VLLM_PLUGINS="tt_meta", TT_META_POLICY=str(policy),
                    TT_META_DEVICE="n150", TT_SIM_RECORD_DIR=str(record), HF_HUB_OFFLINE="1",
                    VLLM_CPU_KVCACHE_SPACE="1")
    log = tmp_path / "serve.log"
    with vllm_server(model, env, log) as server:
        answer = complete(server.port, model)
    assert answer["usage"]["completion_tokens"] == 5
    events = read_events(record)
    assert events and {e["dist"] for e in events} == {"tt-vllm-plugin"}, events
    assert {e["event"] for e in events} >= {"platform_function", "platform_class",
                                            "general_plugin"}
    audit = [json.loads(line) for line in (tmp_path / "operator" / "audit.jsonl")
             .read_text().splitlines()]
    front = [a for a in audit if a["pid"] == server.pid]
    assert front and front[0]["verdict"] == "delegated", audit
    assert front[0]["distribution"].replace("_", "-") == "tt-vllm-plugin"
