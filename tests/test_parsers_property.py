"""Property tests for the three parsers of bytes tt_meta did not write itself.

`parse_envelope` reads a signed-manifest file before any signature is checked,
`parse_manifest` reads the signed payload and `parse_policy` the operator's TOML. Random
bytes, or random values under the right keys, almost never get past the first check of such
a parser. So each example here starts from a document that is valid by construction (a
manifest as `tt-meta sign` writes it, the envelope around it with a real Ed25519 signature, a
policy as docs/policy.md describes it) and derives from it one case per mutation kind, each
changing exactly one thing: one field's value (wrong type, out of range, malformed string,
or another valid value), one key (missing, unknown, written twice), or the encoding of the
whole text. Every case names the check it must reach, and the property asserts:

- a valid case (the document itself, or a valid change) parses, and the result equals a model
  of the document computed here independently of the parser;
- an invalid case is refused with the package's own error class, by the check it targets
  (recognised from the error's summary), and the summary names the changed field, key or file
  path (where the parser's message can: see `NEEDLE_LIMITS`);
- any other exception escapes and fails the test.

Coverage is measured, not assumed. Each case records the check it reached, with hypothesis
`event()` and in the `REACHED` counters, and each property runs inside a plain test that
then asserts every check and every mutation kind was reached in every example, and that
enough cases parsed. A generator that regresses into stopping at an early check (as the
previous version of this file did: its manifests never parsed) fails the suite. One case per
kind per example, rather than one kind drawn per example, because hypothesis draws kinds very
unevenly (after a large document, mostly the first of the list), which would make any minimum
per kind either flaky or meaningless.

Regression tests for the parser bugs these properties found come near the end; the
arbitrary-bytes fuzz tests at the very end are a cheap extra.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tt_meta_plugin import ConfigError, TrustError, TTMetaError
from tt_meta_plugin.selection.inputs import MAX_POLICY_BYTES
from tt_meta_plugin.selection.policy import (
    DEFAULT_MANIFEST_DIR,
    DEFAULT_STATE_DIR,
    MATCH_KEYS,
    Policy,
    Rule,
    TrustSettings,
    parse_policy,
)
from tt_meta_plugin.trust.envelope import (
    MANIFEST_TYPE,
    MAX_ENVELOPE_BYTES,
    Envelope,
    Signature,
    parse_envelope,
)
from tt_meta_plugin.trust.manifest import Editable, FileEntry, Manifest, parse_manifest
from tt_meta_plugin.trust.roles import PLUGIN, RUNTIME
from tt_meta_plugin.trust.signing import sign_manifest

MANIFEST_WHERE = "/site-packages/backend.dist-info/tt_meta.manifest.json"
POLICY_SOURCE = "/etc/tt-meta/policy.toml"
OK = "ok"

# One signing key for the whole module: the envelopes carry a real signature, so the test
# can check that parsing keeps exactly the bytes that were signed.
SIGNING_KEY = Ed25519PrivateKey.generate()

# Each property runs this many examples; each example holds one case per mutation kind
# (17 to 28 parses), which keeps the file well under 30 s on two cores.
EXAMPLES = 200
PROPERTY_SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow])

# -- Shared machinery --------------------------------------------------------------------------


class Mutant(NamedTuple):
    """A document after one mutation: the value to serialise (or the final bytes), the check
    that must refuse it (OK: none), text the refusal's summary must contain, and the key the
    refusal's `where` must name ("": the file only)."""

    document: Any
    check: str
    needle: str = ""
    key: str = ""


class Case(NamedTuple):
    """One input for a parser and what the parser must make of it."""

    kind: str  # the mutation, counted for coverage
    raw: bytes
    check: str  # the check that must refuse it, or OK
    needle: str
    key: str
    expected: Any  # for OK: the object the parser must return

    def __repr__(self) -> str:
        # Hypothesis prints a failing example: keep a 40 kB document from flooding the log.
        raw = self.raw if len(self.raw) <= 300 else self.raw[:300] + b"... (%d bytes)" % len(
            self.raw)
        return f"Case({self.kind!r}, raw={raw!r}, check={self.check!r}, needle={self.needle!r})"


# What each property reached: parser -> "examples" / "check:<name>" / "kind:<name>" -> count.
REACHED: dict[str, Counter[str]] = {"manifest": Counter(), "envelope": Counter(),
                                    "policy": Counter()}

# The share of cases that must parse. (Every check must be reached in every example.)
MIN_PARSED_SHARE = 0.20


def classify(checks: Sequence[tuple[str, str]], summary: str) -> str:
    """Which check raised an error, recognised from its summary (first pattern that matches)."""
    for name, pattern in checks:
        if re.fullmatch(pattern, summary, re.DOTALL):
            return name
    return f"unrecognised: {summary}"


def run_case(parser: str, case: Case, parse: Callable[[bytes, str], object],
             error: type[TTMetaError], checks: Sequence[tuple[str, str]], where: str) -> object:
    """Parse one case and check the outcome; return what the parser returned (None: refused).
    Any exception but `error` propagates and fails the property."""
    try:
        result = parse(case.raw, where)
    except error as exc:
        reached = classify(checks, exc.summary)
        assert case.check != OK, f"a valid document ({case.kind}) was refused: {exc.summary}"
        assert reached == case.check, (
            f"the {case.kind} mutation should stop at the {case.check} check, "
            f"but reached {reached}")
        assert case.needle in exc.summary, (
            f"the refusal does not name {case.needle!r}: {exc.summary}")
        expected_where = f"{where}, key '{case.key}'" if case.key else where
        assert exc.where == expected_where
        outcome: object = None
    else:
        reached = OK
        assert case.check == OK, f"the {case.kind} mutation was accepted: {case.raw[:300]!r}"
        assert result == case.expected, f"{case.kind}: parsed {result!r}"
        outcome = result
    event(f"{parser} check: {reached}")
    REACHED[parser][f"check:{reached}"] += 1
    REACHED[parser][f"kind:{case.kind}"] += 1
    return outcome


def assert_coverage(parser: str, checks: Sequence[tuple[str, str]], kinds: Sequence[str],
                    not_here: Sequence[str] = ()) -> None:
    """Hypothesis ran the examples; in them, every check (but those in `not_here`, tested by
    plain tests) and every mutation kind was reached at least once per example; and at least
    MIN_PARSED_SHARE of all cases parsed."""
    hits = REACHED[parser]
    examples = hits["examples"]
    assert examples >= EXAMPLES * 0.9, f"{parser}: only {examples} of {EXAMPLES} examples ran"
    wanted = [f"check:{name}" for name, _ in checks if name not in not_here]
    wanted += [f"check:{OK}", *(f"kind:{kind}" for kind in kinds)]
    rare = {key: hits[key] for key in wanted if hits[key] < examples}
    assert not rare, f"{parser}: reached in fewer than {examples} cases: {rare}; all: {hits}"
    cases = sum(n for key, n in hits.items() if key.startswith("check:"))
    assert hits[f"check:{OK}"] >= MIN_PARSED_SHARE * cases, f"{parser}: too few parsed: {hits}"


# -- JSON values, written exactly as the mutation needs ------------------------------------------


class Raw(NamedTuple):
    """JSON text written verbatim: a float, NaN, or nesting deeper than any parser allows."""

    text: str


class Pairs(NamedTuple):
    """A JSON object written from a list of pairs, so that a key can appear twice."""

    items: tuple[tuple[str, Any], ...]


def to_json(value: Any) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Pairs):
        return "{" + ", ".join(f"{json.dumps(k)}: {to_json(v)}" for k, v in value.items) + "}"
    if isinstance(value, dict):
        return to_json(Pairs(tuple(value.items())))
    if isinstance(value, list):
        return "[" + ", ".join(to_json(v) for v in value) + "]"
    return json.dumps(value)


def serialised(document: Any) -> bytes:
    return document if isinstance(document, bytes) else to_json(document).encode()


TEXT = st.text(max_size=8)
NAMES = st.text(min_size=1, max_size=8)
HEX64 = st.binary(min_size=32, max_size=32).map(bytes.hex)
# Counts from the edges too: 0, 2**63 and beyond (JSON integers have no size limit here, up to
# Python's 4300-digit conversion limit: see test_huge_integer_is_refused).
COUNTS = st.integers(0, 2**64) | st.sampled_from([0, 1, 2**63 - 1, 2**63, 10**100])

JSON_BY_TYPE: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "bool": st.booleans(),
    "int": st.integers(-(2**70), 2**70),
    "string": TEXT,
    "list": st.lists(st.integers() | TEXT | st.none(), max_size=3),
    "object": st.dictionaries(TEXT, st.integers() | TEXT, max_size=3),
}


def json_not(*types: str) -> st.SearchStrategy[Any]:
    """Any JSON value but floats (refused before any field check) and the types named."""
    return st.one_of(*(strategy for name, strategy in JSON_BY_TYPE.items() if name not in types))


FLOAT_TOKENS = st.sampled_from(
    ["1.0", "0.5", "-0.0", "1e3", "1E+2", "2.5e-3", "NaN", "Infinity", "-Infinity"]
) | st.floats(allow_nan=False, allow_infinity=False).map(json.dumps)


@st.composite
def deep_nesting(draw: st.DrawFn) -> Raw:
    # Deeper than the interpreter's recursion limit (1000) whatever the stack already holds.
    depth = draw(st.integers(3000, 6000))
    if draw(st.booleans()):
        return Raw("[" * depth + "]" * depth)
    return Raw('{"a": ' * depth + "1" + "}" * depth)


BAD_UTF8 = st.sampled_from([b"\xff", b"\xfe", b"\x80", b"\xc0\x80", b"\xed\xa0\x80",
                            b"\xe2\x82", b"\xf8\x88\x80\x80\x80"])


def broken_utf8(draw: st.DrawFn, text: str) -> bytes:
    """`text` as bytes that are not UTF-8. (Each sequence inserted is invalid wherever it goes
    in valid UTF-8: an overlong form, a surrogate, or a continuation byte count that no lead
    byte accounts for.)"""
    if draw(st.booleans()):
        return text.encode("utf-16")  # what a Windows editor may save: a BOM and NUL bytes
    raw = text.encode("utf-8")
    at = draw(st.integers(0, len(raw)))
    return raw[:at] + draw(BAD_UTF8) + raw[at:]


def broken_json(draw: st.DrawFn, text: str) -> str:
    """`text` (one JSON object, no trailing space) made into text that is not JSON."""
    how = draw(st.sampled_from(["truncate", "extra", "trailing comma", "single quotes"]))
    if how == "truncate":  # every proper prefix of an object is incomplete
        return text[:draw(st.integers(0, len(text) - 1))]
    if how == "extra":
        return text + draw(st.sampled_from(["x", "}", ",", "{}", "1", '""', " // c"]))
    if how == "trailing comma":
        return text[:-1] + ",}"
    return text.replace('"', "'", 1)


def insert(draw: st.DrawFn, text: str, piece: str, first: int = 1) -> str:
    # From position 1 on by default, so that a path's second character never becomes ':'.
    at = draw(st.integers(min(first, len(text)), len(text)))
    return text[:at] + piece + text[at:]


def json_checks(what: str) -> list[tuple[str, str]]:
    """The checks of `strict_json`, whose messages start with `what`."""
    return [
        ("utf8", rf"{what} is not UTF-8"),
        ("duplicate-key", rf"{what} has the key '.*' twice"),
        ("float", rf"{what} contains a non-integer number .*"),
        ("depth", rf"{what} is nested too deeply"),
        ("syntax", rf"{what} is not valid JSON: .*"),
    ]


# -- The manifest ----------------------------------------------------------------------------

MANIFEST_CHECKS: list[tuple[str, str]] = [
    *json_checks("the manifest"),
    ("keys", r"the manifest must have exactly the keys \[.*\] \(version 1\), or those and "
             r"'editable' \(version 2\), or those and 'role' \(version 3\)"),
    ("kind", r"the manifest is not a tt-meta/manifest version [123] document"),
    ("role", r"the manifest key 'role' must be 'runtime'"),
    ("string", r"the manifest key '(backend|distribution|version)' must be a non-empty string"),
    ("integer", r"the manifest key '(issued|expires|serial)' must be a non-negative integer"),
    ("requirement", r"the manifest key 'vllm_requirement' must be a string or null"),
    ("entry-points", r"the manifest key 'entry_points' must map groups to \{name: value\}"),
    ("files", r"the manifest key 'files' must be a non-empty list"),
    ("file-entry", r"the manifest has a file entry that is not \{path, size, sha256\}"),
    ("path-type", r"the manifest lists the path .*, which is not a string"),
    ("path-absolute", r"the manifest lists the path .*, which is absolute or empty"),
    ("path-chars", r"the manifest lists the path .*, which holds a backslash or control "
                   r"character"),
    ("path-nfc", r"the manifest lists the path .*, which is not in Unicode normal form NFC"),
    ("path-component", r"the manifest lists the path .*, which has an empty, '\.' or '\.\.' "
                       r"component"),
    ("size", r"the manifest gives .* a size that is not a non-negative integer"),
    ("sha256", r"the manifest gives .* a sha256 that is not 64 lower-case hex digits"),
    ("duplicate-path", r"the manifest lists .* twice"),
    ("editable", r"the manifest key 'editable' must be an object with exactly the keys \[.*\]"),
    ("editable-file", r"the manifest key 'editable' names the (pth|finder) .*, which is not a "
                      r"'\.(pth|py)' file at the install root listed in 'files'"),
    ("editable-shape", r"the manifest key 'editable' must name exactly one of 'finder' and "
                       r"'path_entry'"),
    ("editable-path", r"the manifest key 'editable' names the path .*, which is not a "
                      r"normalised absolute path"),
    ("editable-sources", r"the manifest key 'editable' must map 'sources' to a non-empty object"),
    ("editable-source", r"the manifest key 'editable' has the source .*, which is not a "
                        r"top-level package or module name of the listed files"),
    ("editable-entry", r"the manifest key 'editable' puts the source .* at .*, not in its path "
                       r"entry .*"),
]
TOP_KEYS = ["_type", "spec_version", "backend", "distribution", "version", "entry_points",
            "vllm_requirement", "issued", "expires", "serial", "files"]
ENTRY_KEYS = ["path", "size", "sha256"]

# Path components that look suspicious but are allowed: dots that are not '.' or '..', a
# colon not in second position, non-ASCII in NFC, DEL (only C0 controls are refused).
TRICKY_PARTS = ["...", "a..b", ".hidden", "..x", "x..", "é", "日本語", "ab:c", ":x", "-", " ",
                "\x7f", "~", "__pycache__", "x.cpython-311.pyc"]
PART = st.sampled_from(TRICKY_PARTS) | st.text(
    st.characters(exclude_characters="/\\", exclude_categories=("Cc", "Cs")),
    min_size=1, max_size=6,
).map(lambda part: unicodedata.normalize("NFC", part)).filter(lambda p: p not in (".", ".."))
PATHS = st.lists(PART, min_size=1, max_size=3).map("/".join).filter(
    lambda p: p[1:2] != ":" and unicodedata.normalize("NFC", p) == p)
FILE_ENTRIES = st.builds(FileEntry, path=PATHS, size=COUNTS, sha256=HEX64)
ENTRY_POINTS = st.dictionaries(TEXT, st.dictionaries(TEXT, TEXT, max_size=2), max_size=2)

PLAIN_MANIFESTS = st.builds(
    Manifest,
    backend=NAMES, distribution=NAMES, version=NAMES, entry_points=ENTRY_POINTS,
    vllm_requirement=st.none() | TEXT, issued=COUNTS, expires=COUNTS, serial=COUNTS,
    files=st.lists(FILE_ENTRIES, min_size=1, max_size=3, unique_by=lambda f: f.path).map(tuple),
    editable=st.none(),
    role=st.just(PLUGIN),  # runtimes (version 3) come from the valid-runtime and role kinds
)

# An editable install's parts: identifiers for its sources, absolute directories.
IDENTIFIERS = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True).filter(
    lambda n: not n.endswith("_finder"))  # never a finder module's name
DIRS = st.lists(PART, min_size=1, max_size=3).map(lambda parts: "/" + "/".join(parts)).filter(
    lambda p: p[2:3] != ":" and unicodedata.normalize("NFC", p) == p)


@st.composite
def editable_section(draw: st.DrawFn, files: list[dict[str, Any]]) -> dict[str, Any]:
    """A valid 'editable' object for a document with `files`, adding to `files` what it names
    (the .pth, the finder, two files per source, so that a change of one path keeps it valid)."""
    taken = {f["path"] for f in files}
    tops = draw(st.lists(IDENTIFIERS.filter(lambda n: n not in taken), min_size=1, max_size=2,
                         unique=True))
    names = [f"{t}.py" if draw(st.booleans()) else t for t in tops]
    entry = draw(st.none() | DIRS)
    finder = None if entry is not None else draw(IDENTIFIERS.map(lambda n: f"_{n}_finder.py"))
    pth = draw(IDENTIFIERS.map(lambda n: f"__editable__.{n}.pth"))
    for path in (pth, finder, *(n for n in names if n.endswith(".py"))):
        if path is not None and path not in taken:
            files.append({"path": path, "size": draw(COUNTS), "sha256": draw(HEX64)})
            taken.add(path)
    for name in names:
        if not name.endswith(".py"):
            files += [{"path": f"{name}/{leaf}", "size": draw(COUNTS), "sha256": draw(HEX64)}
                      for leaf in ("__init__.py", "mod.py")]
    sources = {n: f"{entry}/{n}" if entry is not None else draw(DIRS) for n in names}
    return {"pth": pth, "finder": finder, "path_entry": entry, "sources": sources}


@st.composite
def editable_manifests(draw: st.DrawFn) -> Manifest:
    plain = draw(PLAIN_MANIFESTS)
    files = [f._asdict() for f in plain.files]
    section = draw(editable_section(files))
    return plain._replace(files=tuple(FileEntry(**f) for f in files),
                          editable=Editable(**section))


MANIFESTS = PLAIN_MANIFESTS | editable_manifests()


def expected_manifest(doc: Mapping[str, Any]) -> Manifest:
    """The manifest a valid payload document means (built, not parsed)."""
    return Manifest(
        backend=doc["backend"], distribution=doc["distribution"], version=doc["version"],
        entry_points=doc["entry_points"], vllm_requirement=doc["vllm_requirement"],
        issued=doc["issued"], expires=doc["expires"], serial=doc["serial"],
        files=tuple(FileEntry(f["path"], f["size"], f["sha256"]) for f in doc["files"]),
        editable=Editable(**doc["editable"]) if "editable" in doc else None,
        role=RUNTIME if "role" in doc else PLUGIN,
    )


Mutation = Callable[[st.DrawFn, dict[str, Any]], Mutant]


def entry_of(draw: st.DrawFn, doc: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = draw(st.sampled_from(doc["files"]))
    return entry


# Valid changes: the result must reflect them.

def m_reformatted(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    # The same document written differently (key order, spacing) means the same manifest.
    order = draw(st.permutations(list(doc)))
    spacing = draw(st.sampled_from([None, 0, 2]))
    return Mutant(json.dumps({k: doc[k] for k in order}, indent=spacing).encode(), OK)


def m_valid_text(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    doc[draw(st.sampled_from(["backend", "distribution", "version"]))] = draw(NAMES)
    return Mutant(doc, OK)


def m_valid_count(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    if draw(st.booleans()):
        doc[draw(st.sampled_from(["issued", "expires", "serial"]))] = draw(COUNTS)
    else:
        entry_of(draw, doc)["size"] = draw(COUNTS)
    return Mutant(doc, OK)


def m_valid_requirement(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    doc["vllm_requirement"] = draw(st.none() | TEXT)  # "" too: only the type is checked
    return Mutant(doc, OK)


def m_valid_entry_points(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    doc["entry_points"] = draw(ENTRY_POINTS | st.just({"group": {}}))
    return Mutant(doc, OK)


def m_valid_path(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    named = set(doc.get("editable", {}).get("sources", {})) | {
        doc.get("editable", {}).get("pth"), doc.get("editable", {}).get("finder")}
    entry = draw(st.sampled_from([e for e in doc["files"] if e["path"] not in named]
                                 or [{"path": ""}]))
    if not entry["path"]:  # every file is named by the editable section
        return Mutant(doc, OK)
    taken = {e["path"] for e in doc["files"] if e is not entry}
    entry["path"] = draw(PATHS.filter(lambda p: p not in taken))
    return Mutant(doc, OK)


def m_valid_files(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    # Any order, and one more file: the parser keeps the order it was given.
    files = draw(st.permutations(doc["files"]))
    taken = {e["path"] for e in files}
    extra = draw(FILE_ENTRIES.filter(lambda f: f.path not in taken))
    doc["files"] = [*files, extra._asdict()]
    return Mutant(doc, OK)


def as_runtime(doc: dict[str, Any]) -> dict[str, Any]:
    """The document as a runtime's manifest (version 3: no 'editable')."""
    doc.pop("editable", None)
    doc.update(spec_version=3, role="runtime")
    return doc


def m_valid_runtime(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    return Mutant(as_runtime(doc), OK)


# Invalid changes: each must be refused by the check it names.

def m_utf8(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    return Mutant(broken_utf8(draw, to_json(doc)), "utf8", "UTF-8")


def m_syntax(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    return Mutant(broken_json(draw, to_json(doc)).encode(), "syntax", "not valid JSON")


def m_duplicate_key(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    # Written twice, with the same value or another: either way the document is ambiguous.
    target = doc if draw(st.booleans()) else entry_of(draw, doc)
    key = draw(st.sampled_from(list(target)))
    pairs = [*target.items()]
    at = draw(st.integers(list(target).index(key) + 1, len(pairs)))
    pairs.insert(at, (key, draw(st.just(target[key]) | json_not())))
    if target is doc:
        return Mutant(Pairs(tuple(pairs)), "duplicate-key", f"'{key}' twice")
    doc["files"] = [Pairs(tuple(pairs)) if e is target else e for e in doc["files"]]
    return Mutant(doc, "duplicate-key", f"'{key}' twice")


def put_somewhere(draw: st.DrawFn, doc: dict[str, Any], value: Any) -> None:
    """Put `value` in place of a top-level value, a file entry's value or an entry point."""
    where = draw(st.sampled_from(["top", "entry", "entry point"]))
    if where == "top":
        doc[draw(st.sampled_from(TOP_KEYS))] = value
    elif where == "entry":
        entry_of(draw, doc)[draw(st.sampled_from(ENTRY_KEYS))] = value
    else:
        doc["entry_points"].setdefault(draw(TEXT), {})[draw(TEXT)] = value


def m_float(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    token = draw(FLOAT_TOKENS)
    put_somewhere(draw, doc, Raw(token))
    return Mutant(doc, "float", f"non-integer number {token}")


def m_depth(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    put_somewhere(draw, doc, draw(deep_nesting()))
    return Mutant(doc, "depth", "nested too deeply")


def m_keys(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    # The message lists the expected keys, not the one at fault (see NEEDLE_LIMITS).
    how = draw(st.sampled_from(["missing", "unknown", "not an object"]))
    if how == "missing":
        del doc[draw(st.sampled_from(TOP_KEYS))]
    elif how == "unknown":
        doc[draw(TEXT.filter(lambda k: k not in TOP_KEYS and k not in ("editable", "role")))] = (
            draw(json_not()))
    else:
        return Mutant(draw(json_not("object") | st.just([doc])), "keys", "exactly the keys")
    return Mutant(doc, "keys", "exactly the keys")


def m_role(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    as_runtime(doc)["role"] = draw(json_not("string") | TEXT.filter(lambda t: t != "runtime")
                                   | st.just("plugin"))
    return Mutant(doc, "role", "'role'")


def m_kind(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    version = doc["spec_version"]  # 1, or 2 with an 'editable' key: either must match
    if draw(st.booleans()):
        doc["_type"] = draw(json_not("string") | TEXT.filter(lambda t: t != "tt-meta/manifest")
                            | st.sampled_from(["tt-meta/Manifest", "tt-meta/manifest "]))
    else:
        # Not `true`, which the parser takes for 1: test_manifest_spec_version_true_is_refused.
        doc["spec_version"] = draw(json_not("int", "bool") | st.just(False)
                                   | st.integers().filter(lambda n: n != version))
    # The message names the expected document kind, not the key (see NEEDLE_LIMITS).
    return Mutant(doc, "kind", f"tt-meta/manifest version {version}")


def m_string(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    key = draw(st.sampled_from(["backend", "distribution", "version"]))
    doc[key] = draw(json_not("string") | st.just(""))
    return Mutant(doc, "string", f"'{key}'")


def m_integer(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    key = draw(st.sampled_from(["issued", "expires", "serial"]))
    doc[key] = draw(json_not("int") | st.integers(max_value=-1))  # bool stays: not an integer
    return Mutant(doc, "integer", f"'{key}'")


def m_requirement(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    doc["vllm_requirement"] = draw(json_not("null", "string"))
    return Mutant(doc, "requirement", "'vllm_requirement'")


def m_entry_points(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    how = draw(st.sampled_from(["not a mapping", "group", "value"]))
    if how == "not a mapping":
        doc["entry_points"] = draw(json_not("object"))
    elif how == "group":
        doc["entry_points"][draw(TEXT)] = draw(json_not("object"))
    else:
        doc["entry_points"].setdefault(draw(TEXT), {})[draw(TEXT)] = draw(json_not("string"))
    return Mutant(doc, "entry-points", "'entry_points'")


def m_files(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    doc["files"] = draw(json_not("list") | st.just([]))
    return Mutant(doc, "files", "'files'")


def m_file_entry(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    index = draw(st.integers(0, len(doc["files"]) - 1))
    entry = doc["files"][index]
    how = draw(st.sampled_from(["not an object", "missing", "unknown"]))
    if how == "not an object":
        doc["files"][index] = draw(json_not("object"))
    elif how == "missing":
        del entry[draw(st.sampled_from(ENTRY_KEYS))]
    else:
        entry[draw(TEXT.filter(lambda k: k not in ENTRY_KEYS))] = draw(json_not())
    return Mutant(doc, "file-entry", "file entry")


def bad_path(draw: st.DrawFn, kind: str) -> str:
    """A path refused by exactly the `kind` check (the checks before it pass)."""
    path = draw(PATHS)
    if kind == "path-absolute":
        return draw(st.sampled_from(["", "/", "//", "/" + path, "C:" + path, "C:/" + path,
                                     path[0] + ":" + path]))
    if kind == "path-chars":
        bad = draw(st.sampled_from(["\\", "\x00", "\t", "\n", "\x1b", "\x1f"]))
        return insert(draw, path, bad)
    if kind == "path-nfc":
        # Each piece composes (or, for U+212B, maps) under NFC whatever surrounds it.
        return insert(draw, path, draw(st.sampled_from(
            ["e\u0301", "A\u030a", "\u212b", "\u1100\u1161", "o\u0308", "n\u0303"])))
    return draw(st.sampled_from([
        ".", "..", "./" + path, "../" + path, path + "/..", path + "/.", path + "/",
        path + "//" + path, path + "/./" + path, path + "/../" + path]))


def m_path(kind: str) -> Mutation:
    def mutate(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
        path = bad_path(draw, kind)
        entry_of(draw, doc)["path"] = path
        return Mutant(doc, kind, repr(path))
    return mutate


def m_path_type(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    path = draw(json_not("string"))
    entry_of(draw, doc)["path"] = path
    return Mutant(doc, "path-type", repr(path))


def m_size(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    entry = entry_of(draw, doc)
    entry["size"] = draw(json_not("int") | st.integers(max_value=-1))
    return Mutant(doc, "size", repr(entry["path"]))


def m_sha256(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    entry = entry_of(draw, doc)
    digest: str = entry["sha256"]
    at = draw(st.integers(0, 63))
    entry["sha256"] = draw(st.sampled_from([
        digest[:at] + "A" + digest[at + 1:], digest[:at] + "g" + digest[at + 1:],
        digest[:63], digest + "0", digest + "\n", " " + digest[1:], "", "0x" + digest[2:],
    ]) | json_not("string"))
    return Mutant(doc, "sha256", repr(entry["path"]))


def m_duplicate_path(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    entry = entry_of(draw, doc)
    again = {"path": entry["path"], "size": draw(COUNTS), "sha256": draw(HEX64)}
    at = draw(st.integers(doc["files"].index(entry) + 1, len(doc["files"])))
    doc["files"].insert(at, draw(st.just(dict(entry)) | st.just(again)))
    return Mutant(doc, "duplicate-path", f"{entry['path']!r} twice")


def editable_of(draw: st.DrawFn, doc: dict[str, Any]) -> dict[str, Any]:
    """The document's 'editable' object, made version 2 with a valid one if it had none."""
    if "editable" not in doc:
        doc["spec_version"] = 2
        doc["editable"] = draw(editable_section(doc["files"]))
    section: dict[str, Any] = doc["editable"]
    return section


def m_valid_editable(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    # A plain manifest made editable, or an editable one moved to other directories.
    if "editable" in doc and draw(st.booleans()):
        section = doc["editable"]
        if section["path_entry"] is not None:
            entry = section["path_entry"] = draw(DIRS)
            section["sources"] = {n: f"{entry}/{n}" for n in section["sources"]}
        else:
            section["sources"] = {n: draw(DIRS) for n in section["sources"]}
    else:
        editable_of(draw, doc)
    return Mutant(doc, OK)


def m_editable(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    section = editable_of(draw, doc)
    how = draw(st.sampled_from(["not an object", "missing", "unknown"]))
    if how == "not an object":
        doc["editable"] = draw(json_not("object"))
    elif how == "missing":
        del section[draw(st.sampled_from(sorted(section)))]
    else:
        section[draw(TEXT.filter(lambda k: k not in section))] = draw(json_not())
    return Mutant(doc, "editable", "'editable'")


def m_editable_file(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    section = editable_of(draw, doc)
    key = "finder" if section["finder"] is not None and draw(st.booleans()) else "pth"
    suffix = ".py" if key == "finder" else ".pth"
    section[key] = draw(json_not("string", "null") | st.sampled_from(
        [f"a/b{suffix}", "x.txt", f"unlisted{suffix}", ""]))
    return Mutant(doc, "editable-file", f"the {key}")


def m_editable_shape(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    section = editable_of(draw, doc)
    if draw(st.booleans()):
        section["finder"] = section["path_entry"] = None
    elif section["finder"] is not None:
        section["path_entry"] = draw(DIRS)
    else:
        finder = section["finder"] = draw(IDENTIFIERS.map(lambda n: f"_{n}_finder.py"))
        if finder not in {f["path"] for f in doc["files"]}:
            doc["files"].append({"path": finder, "size": 0, "sha256": "0" * 64})
    return Mutant(doc, "editable-shape", "exactly one of 'finder' and 'path_entry'")


BAD_DIRS = st.sampled_from(["", "/", "relative/dir", "//host/x", "/a/../b", "/a/./b", "/a//b",
                            "/a/", "/a\\b", "/caf\u0065\u0301"]) | json_not("string", "null")


def m_editable_path(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    section = editable_of(draw, doc)
    bad = draw(BAD_DIRS)
    if section["path_entry"] is not None and draw(st.booleans()):
        section["path_entry"] = bad
    else:
        section["sources"][draw(st.sampled_from(sorted(section["sources"])))] = bad
    return Mutant(doc, "editable-path", "the path")


def m_editable_sources(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    editable_of(draw, doc)["sources"] = draw(st.just({}) | json_not("object", "list"))
    return Mutant(doc, "editable-sources", "'sources'")


def m_editable_source(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    section = editable_of(draw, doc)
    name = draw(st.sampled_from(["a-b", "", "1x", "x/y", "x.pyc", "unlisted", section["pth"]])
                | TEXT.filter(lambda t: not t.isidentifier()))
    section["sources"][name] = "/elsewhere"  # a valid path: the name is checked first
    return Mutant(doc, "editable-source", repr(name))


def m_editable_entry(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    section = editable_of(draw, doc)
    if section["path_entry"] is None:
        section["finder"], section["path_entry"] = None, draw(DIRS)
    name = draw(st.sampled_from(sorted(section["sources"])))
    section["sources"] = {n: f"{section['path_entry']}/{n}" for n in section["sources"]}
    section["sources"][name] = draw(DIRS.filter(lambda d: d != f"{section['path_entry']}/{name}"))
    return Mutant(doc, "editable-entry", repr(name))


MANIFEST_MUTATIONS: dict[str, Mutation] = {
    "reformatted": m_reformatted, "valid-text": m_valid_text, "valid-count": m_valid_count,
    "valid-requirement": m_valid_requirement, "valid-entry-points": m_valid_entry_points,
    "valid-path": m_valid_path, "valid-files": m_valid_files, "valid-runtime": m_valid_runtime,
    "role": m_role,
    "utf8": m_utf8, "syntax": m_syntax, "duplicate-key": m_duplicate_key, "float": m_float,
    "depth": m_depth, "keys": m_keys, "kind": m_kind, "string": m_string,
    "integer": m_integer, "requirement": m_requirement, "entry-points": m_entry_points,
    "files": m_files, "file-entry": m_file_entry,
    "path-type": m_path_type,
    **{kind: m_path(kind) for kind in ("path-absolute", "path-chars", "path-nfc",
                                       "path-component")},
    "size": m_size, "sha256": m_sha256, "duplicate-path": m_duplicate_path,
    "valid-editable": m_valid_editable, "editable": m_editable,
    "editable-file": m_editable_file, "editable-shape": m_editable_shape,
    "editable-path": m_editable_path, "editable-sources": m_editable_sources,
    "editable-source": m_editable_source, "editable-entry": m_editable_entry,
}


@st.composite
def manifest_cases(draw: st.DrawFn) -> list[Case]:
    manifest = draw(MANIFESTS)
    # Exactly the bytes `tt-meta sign` signs, then one case per mutation of their document.
    cases = [Case(OK, sign_manifest(manifest, []).payload, OK, "", "", manifest)]
    document = manifest.to_payload()
    for kind, mutate in MANIFEST_MUTATIONS.items():
        mutant = mutate(draw, copy.deepcopy(document))
        valid = mutant.check == OK
        expected = (manifest if isinstance(mutant.document, bytes)
                    else expected_manifest(mutant.document)) if valid else None
        cases.append(Case(kind, serialised(mutant.document), mutant.check, mutant.needle,
                          mutant.key, expected))
    return cases


@PROPERTY_SETTINGS
@given(manifest_cases())
def manifest_property(cases: list[Case]) -> None:
    REACHED["manifest"]["examples"] += 1
    for case in cases:
        run_case("manifest", case, parse_manifest, TrustError, MANIFEST_CHECKS, MANIFEST_WHERE)


def test_manifest_mutations_reach_every_check() -> None:
    REACHED["manifest"].clear()
    manifest_property()
    assert_coverage("manifest", MANIFEST_CHECKS, list(MANIFEST_MUTATIONS))


# -- The envelope ----------------------------------------------------------------------------

ENVELOPE_CHECKS: list[tuple[str, str]] = [
    ("size", r"the signed manifest is larger than 64 MiB"),
    *json_checks("the signed manifest"),
    ("keys", r"the signed manifest is not an envelope with exactly payloadType, payload and "
             r"signatures"),
    ("strings", r"payloadType and payload must be strings"),
    ("signatures", r"signatures must be a list of at most 16"),
    ("signature", r"each signature must be \{keyid, sig\}"),
    ("base64", r"the signed manifest holds invalid base64"),
]
ENVELOPE_KEYS = ["payloadType", "payload", "signatures"]
SIGNATURES = st.builds(Signature, keyid=HEX64 | TEXT, sig=st.binary(max_size=80))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def signature_list(signatures: Sequence[Signature]) -> list[dict[str, str]]:
    return [{"keyid": s.keyid, "sig": b64(s.sig)} for s in signatures]


def expected_envelope(doc: Mapping[str, Any]) -> Envelope:
    return Envelope(doc["payloadType"], base64.b64decode(doc["payload"]), tuple(
        Signature(s["keyid"], base64.b64decode(s["sig"])) for s in doc["signatures"]))


def a_signature(draw: st.DrawFn, doc: dict[str, Any]) -> dict[str, Any]:
    if not doc["signatures"]:
        doc["signatures"].append({"keyid": draw(HEX64), "sig": b64(draw(st.binary()))})
    item: dict[str, Any] = draw(st.sampled_from(doc["signatures"]))
    return item


# Valid changes: the parser checks shapes only (payload type and signatures are checked later).

def e_reformatted(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    order = draw(st.permutations(ENVELOPE_KEYS))
    return Mutant(json.dumps({k: doc[k] for k in order}).encode(), OK)


def e_valid_payload_type(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    doc["payloadType"] = draw(TEXT)
    return Mutant(doc, OK)


def e_valid_payload(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    doc["payload"] = b64(draw(st.binary(max_size=64)))
    return Mutant(doc, OK)


def e_valid_signature_count(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    count = draw(st.sampled_from([0, 16]))  # the limits
    doc["signatures"] = signature_list(draw(st.lists(SIGNATURES, min_size=count,
                                                     max_size=count)))
    return Mutant(doc, OK)


def e_valid_signature_fields(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    item = a_signature(draw, doc)
    if draw(st.booleans()):
        item["keyid"] = draw(TEXT)
    else:
        item["sig"] = b64(draw(st.binary(max_size=3)))  # "" and short ones too
    return Mutant(doc, OK)


# Invalid changes.

def e_utf8(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    return Mutant(broken_utf8(draw, to_json(doc)), "utf8", "UTF-8")


def e_syntax(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    return Mutant(broken_json(draw, to_json(doc)).encode(), "syntax", "not valid JSON")


def e_duplicate_key(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    in_signature = draw(st.booleans())
    target = a_signature(draw, doc) if in_signature else doc
    key = draw(st.sampled_from(list(target)))
    pairs = Pairs((*target.items(), (key, draw(st.just(target[key]) | json_not()))))
    if not in_signature:
        return Mutant(pairs, "duplicate-key", f"'{key}' twice")
    doc["signatures"] = [pairs if s is target else s for s in doc["signatures"]]
    return Mutant(doc, "duplicate-key", f"'{key}' twice")


def put_in_envelope(draw: st.DrawFn, doc: dict[str, Any], value: Any) -> None:
    if draw(st.booleans()):
        doc[draw(st.sampled_from(ENVELOPE_KEYS))] = value
    else:
        a_signature(draw, doc)[draw(st.sampled_from(["keyid", "sig"]))] = value


def e_float(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    token = draw(FLOAT_TOKENS)
    put_in_envelope(draw, doc, Raw(token))
    return Mutant(doc, "float", f"non-integer number {token}")


def e_depth(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    put_in_envelope(draw, doc, draw(deep_nesting()))
    return Mutant(doc, "depth", "nested too deeply")


def e_keys(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    how = draw(st.sampled_from(["missing", "unknown", "not an object"]))
    needle = "exactly payloadType, payload and signatures"
    if how == "missing":
        del doc[draw(st.sampled_from(ENVELOPE_KEYS))]
    elif how == "unknown":
        doc[draw(TEXT.filter(lambda k: k not in ENVELOPE_KEYS))] = draw(json_not())
    else:
        return Mutant(draw(json_not("object") | st.just([doc])), "keys", needle)
    return Mutant(doc, "keys", needle)


def e_strings(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    doc[draw(st.sampled_from(["payloadType", "payload"]))] = draw(json_not("string"))
    return Mutant(doc, "strings", "payloadType and payload")


def e_signatures(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    if draw(st.booleans()):
        doc["signatures"] = draw(json_not("list"))
    else:
        doc["signatures"] = signature_list(draw(st.lists(SIGNATURES, min_size=17,
                                                         max_size=20)))
    return Mutant(doc, "signatures", "signatures must be a list")


def e_signature(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    item = a_signature(draw, doc)
    how = draw(st.sampled_from(["not an object", "missing", "unknown", "keyid", "sig"]))
    if how == "not an object":
        doc["signatures"] = [draw(json_not("object")) if s is item else s
                             for s in doc["signatures"]]
    elif how == "missing":
        del item[draw(st.sampled_from(["keyid", "sig"]))]
    elif how == "unknown":
        item[draw(TEXT.filter(lambda k: k not in ("keyid", "sig")))] = draw(json_not())
    else:
        item[how] = draw(json_not("string"))
    return Mutant(doc, "signature", "each signature")


def broken_base64(draw: st.DrawFn, text: str) -> str:
    """Canonical base64 `text` made invalid. (Not by appending '=' to a full quantum or by
    changing the unused low bits of the last character: binascii's strict mode accepts both.)"""
    how = draw(st.sampled_from(["character", "non-ASCII", "drop last", "leading =", "add one"]))
    if how == "character":
        return insert(draw, text, draw(st.sampled_from(list("!*-_.~ \n\t%"))), first=0)
    if how == "non-ASCII":
        return insert(draw, text, draw(st.sampled_from(["é", "\u200b", "\uff21"])), first=0)
    if how == "drop last" and text:
        return text[:-1]  # the length is no longer a multiple of 4
    if how == "leading =" and text:
        return "=" + text
    return text + "A"  # likewise


def e_base64_payload(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    doc["payload"] = broken_base64(draw, doc["payload"])
    return Mutant(doc, "base64", "invalid base64")


def e_base64_sig(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    item = a_signature(draw, doc)
    item["sig"] = broken_base64(draw, item["sig"])
    return Mutant(doc, "base64", "invalid base64")


ENVELOPE_MUTATIONS: dict[str, Mutation] = {
    "reformatted": e_reformatted, "valid-payload-type": e_valid_payload_type,
    "valid-payload": e_valid_payload, "valid-signature-count": e_valid_signature_count,
    "valid-signature-fields": e_valid_signature_fields,
    "utf8": e_utf8, "syntax": e_syntax, "duplicate-key": e_duplicate_key, "float": e_float,
    "depth": e_depth, "keys": e_keys, "strings": e_strings, "signatures": e_signatures,
    "signature": e_signature, "base64-payload": e_base64_payload, "base64-sig": e_base64_sig,
}


@st.composite
def envelope_cases(draw: st.DrawFn) -> list[Case]:
    manifest = draw(MANIFESTS)
    signed = sign_manifest(manifest, [SIGNING_KEY])
    envelope = signed._replace(
        signatures=signed.signatures + tuple(draw(st.lists(SIGNATURES, max_size=2))))
    # Exactly the bytes `tt-meta sign` writes, then one case per mutation of their document.
    cases = [Case(OK, envelope.to_bytes(), OK, "", "", envelope)]
    document = json.loads(envelope.to_bytes())
    for kind, mutate in ENVELOPE_MUTATIONS.items():
        mutant = mutate(draw, copy.deepcopy(document))
        raw = serialised(mutant.document)
        expected = expected_envelope(json.loads(raw)) if mutant.check == OK else None
        cases.append(Case(kind, raw, mutant.check, mutant.needle, mutant.key, expected))
    return cases


@PROPERTY_SETTINGS
@given(envelope_cases())
def envelope_property(cases: list[Case]) -> None:
    REACHED["envelope"]["examples"] += 1
    for case in cases:
        parsed = run_case("envelope", case, parse_envelope, TrustError, ENVELOPE_CHECKS,
                          MANIFEST_WHERE)
        if case.kind == OK:
            # What a verifier does next: the signature covers PAE(type, payload) of the
            # parsed envelope, and the payload is exactly the signer's manifest.
            assert isinstance(parsed, Envelope)
            SIGNING_KEY.public_key().verify(parsed.signatures[0].sig, parsed.pae())
            manifest = parse_manifest(parsed.payload, MANIFEST_WHERE)
            assert sign_manifest(manifest, []).payload == parsed.payload


def test_envelope_mutations_reach_every_check() -> None:
    REACHED["envelope"].clear()
    envelope_property()
    assert_coverage("envelope", ENVELOPE_CHECKS, list(ENVELOPE_MUTATIONS), not_here=["size"])


def small_manifest() -> Manifest:
    """A fixed manifest for the plain tests."""
    return Manifest("metal", "tt-vllm-plugin", "1.0", {"vllm.platform_plugins": {"tt": "m:f"}},
                    ">=0.8", 1, 2, 3, (FileEntry("tt/__init__.py", 0, "0" * 64),))


def test_envelope_size_limit() -> None:
    # Too slow to build 64 MiB in every example: the limit is checked once, on both sides.
    raw = sign_manifest(small_manifest(), [SIGNING_KEY]).to_bytes()
    padded = raw + b" " * (MAX_ENVELOPE_BYTES - len(raw))
    assert parse_envelope(padded, MANIFEST_WHERE).payload_type == MANIFEST_TYPE
    with pytest.raises(TrustError) as refused:
        parse_envelope(padded + b" ", MANIFEST_WHERE)
    assert classify(ENVELOPE_CHECKS, refused.value.summary) == "size"


# -- The policy ------------------------------------------------------------------------------

POLICY_CHECKS: list[tuple[str, str]] = [
    ("size", r"the policy file is larger than 1 MiB"),
    ("utf8", r"the policy is not UTF-8"),
    ("syntax", r"the policy file is not valid TOML: .*"),
    ("missing", r"required key '.*' is missing"),
    ("type-integer", r"'.*' must be an integer, not .*"),
    ("type-string", r"'.*' must be a non-empty string, not .*"),
    ("type-boolean", r"'.*' must be true or false, not .*"),
    ("type-strings", r"'.*' must be a string or a list of non-empty strings, not .*"),
    ("type-table", r"'.*' must be a table \(\[.*\]\), not .*"),
    ("type-tables", r"'.*' must be an array of tables \(\[\[.*\]\]\), not .*"),
    ("version", r"unsupported policy version -?\d+"),
    ("empty-allowed", r"allowed_backends is empty, so every model would be refused"),
    ("mismatch", r"vllm_version_mismatch must be \"refuse\" or \"warn\", not .*"),
    ("rule-action", r"rule \d+ must give exactly one of 'backend' and 'deny = true'"),
    ("rule-nothing", r"rule \d+ matches nothing: it names none of .*"),
    ("threshold", r"trust\.threshold must be at least 1"),
    ("nul-path", r"'.*' must be a path without NUL characters, not .*"),
    ("unknown", r"unknown key '.*'"),
]
TOP_LEVEL = ["version", "allowed_backends", "default_backend", "trust_model_metadata",
             "vllm_version_mismatch", "extra_general_plugins", "require_signatures", "rule",
             "trust"]
RULE_KEYS = ["backend", "deny", "name", *MATCH_KEYS]
TRUST_KEYS = ["threshold", "signers", "key_dirs", "manifest_dirs", "state_dir", "audit_log",
              "revoked_keys", "strict_permissions"]
# Which keys hold which type, and where: "top", "rule", "trust" or "signers" (any name).
KEYS_BY_TYPE: dict[str, list[tuple[str, str]]] = {
    "integer": [("top", "version"), ("trust", "threshold")],
    "string": [("top", "default_backend"), ("top", "vllm_version_mismatch"), ("rule", "backend"),
               ("rule", "name"), ("trust", "state_dir"), ("trust", "audit_log")],
    "boolean": [("top", "trust_model_metadata"), ("top", "require_signatures"),
                ("rule", "deny"), ("trust", "strict_permissions")],
    "strings": [("top", "allowed_backends"), ("top", "extra_general_plugins"),
                *(("rule", key) for key in MATCH_KEYS), ("trust", "key_dirs"),
                ("trust", "manifest_dirs"), ("trust", "revoked_keys"), ("signers", "")],
    "table": [("top", "trust"), ("trust", "signers")],
    "tables": [("top", "rule")],
}

# TOML text: any Unicode scalar value (TOML cannot hold a lone surrogate).
TOML_TEXT = st.text(st.characters(codec="utf-8"), max_size=8)
NONEMPTY = st.text(st.characters(codec="utf-8"), min_size=1, max_size=8)
STRING_LISTS = NONEMPTY | st.lists(NONEMPTY, max_size=3)
# The [trust] keys that name files: any text but NUL, which no path may hold.
PATH_KEYS = ("key_dirs", "manifest_dirs", "state_dir", "audit_log")
PATH_TEXT = NONEMPTY.filter(lambda text: "\x00" not in text)
PATH_LISTS = PATH_TEXT | st.lists(PATH_TEXT, max_size=3)
TOML_SCALARS: dict[str, st.SearchStrategy[Any]] = {
    "int": st.integers(-(2**63), 2**63 - 1),
    "float": st.floats(),
    "bool": st.booleans(),
    "string": TOML_TEXT,
    "date": st.dates() | st.datetimes() | st.times(),
}
ANY_SCALAR = st.one_of(*TOML_SCALARS.values())
TOML_BY_TYPE: dict[str, st.SearchStrategy[Any]] = {
    **TOML_SCALARS,
    "list": st.lists(ANY_SCALAR, max_size=3),
    "table": st.dictionaries(TOML_TEXT, ANY_SCALAR, max_size=3),
}


def toml_not(*types: str) -> st.SearchStrategy[Any]:
    return st.one_of(*(strategy for name, strategy in TOML_BY_TYPE.items() if name not in types))


WRONG_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "integer": toml_not("int"),  # bool stays: `true` is not an integer
    "string": toml_not("string") | st.just(""),
    "boolean": toml_not("bool"),
    "strings": toml_not("string", "list") | st.just("") | st.tuples(
        st.lists(NONEMPTY, max_size=2), toml_not("string") | st.just("")
    ).map(lambda t: [*t[0], t[1]]),
    "table": toml_not("table") | st.lists(st.dictionaries(TOML_TEXT, st.booleans(), max_size=2),
                                          min_size=1, max_size=2),
    "tables": toml_not("list") | st.lists(ANY_SCALAR, min_size=1, max_size=2),
}


def toml_string(text: str) -> str:
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char < " " or char == "\x7f":  # control characters must be escaped in TOML
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_string(key)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if value != value else repr(value)  # repr gives inf, -inf, 1e+16: TOML
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    return str(value.isoformat())  # date, datetime, time: TOML local date and time


def toml_document(data: Mapping[str, Any], headers: bool) -> str:
    """`data` as TOML: tables as [table] and [[array]] sections, or all inline."""
    lines: list[str] = []

    def table(path: list[str], values: Mapping[str, Any]) -> None:
        later = []
        for key, value in values.items():
            tables = isinstance(value, list) and bool(value) and all(
                isinstance(v, dict) for v in value)
            if headers and (isinstance(value, dict) or tables):
                later.append((key, value))
            else:
                lines.append(f"{toml_key(key)} = {toml_value(value)}")
        for key, value in later:  # after the plain keys, which would otherwise join them
            name = ".".join(toml_key(k) for k in [*path, key])
            if isinstance(value, dict):
                lines.append(f"[{name}]")
                table([*path, key], value)
            else:
                for item in value:  # inside [[name]], everything is written inline
                    lines.append(f"[[{name}]]")
                    lines.extend(f"{toml_key(k)} = {toml_value(v)}" for k, v in item.items())

    table([], data)
    return "\n".join(lines) + "\n"


@st.composite
def policy_rules(draw: st.DrawFn) -> dict[str, Any]:
    rule: dict[str, Any] = {}
    if draw(st.booleans()):
        rule["name"] = draw(NONEMPTY)
    named = draw(st.lists(st.sampled_from(MATCH_KEYS), min_size=1, unique=True))
    for key in MATCH_KEYS:
        if key in named:
            rule[key] = draw(NONEMPTY | st.lists(NONEMPTY, min_size=1, max_size=3))
        elif draw(st.booleans()):
            rule[key] = []  # allowed: names nothing, as long as another key does
    action = draw(st.sampled_from(["backend", "backend, deny = false", "deny"]))
    if action.startswith("backend"):
        rule["backend"] = draw(NONEMPTY)
    if action != "backend":
        rule["deny"] = action == "deny"
    order = draw(st.permutations(list(rule)))
    return {key: rule[key] for key in order}


@st.composite
def policy_trust(draw: st.DrawFn) -> dict[str, Any]:
    options: dict[str, st.SearchStrategy[Any]] = {
        "threshold": st.integers(1, 2**63 - 1),
        "signers": st.dictionaries(TOML_TEXT, STRING_LISTS, max_size=2),
        "key_dirs": PATH_LISTS, "manifest_dirs": PATH_LISTS, "revoked_keys": STRING_LISTS,
        "state_dir": PATH_TEXT, "audit_log": PATH_TEXT, "strict_permissions": st.booleans(),
    }
    return {key: draw(options[key]) for key in draw(st.permutations(TRUST_KEYS))
            if draw(st.booleans())}


OPTIONAL_TOP: dict[str, st.SearchStrategy[Any]] = {
    "default_backend": NONEMPTY, "trust_model_metadata": st.booleans(),
    "vllm_version_mismatch": st.sampled_from(["refuse", "warn"]),
    "extra_general_plugins": STRING_LISTS, "require_signatures": st.booleans(),
    "rule": st.lists(policy_rules(), max_size=3), "trust": policy_trust(),
}


@st.composite
def policy_documents(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "version": 1,
        "allowed_backends": draw(NONEMPTY | st.lists(NONEMPTY, min_size=1, max_size=3)),
    }
    for key, strategy in OPTIONAL_TOP.items():
        if draw(st.booleans()):
            doc[key] = draw(strategy)
    order = draw(st.permutations(list(doc)))
    return {key: doc[key] for key in order}


def expected_policy(doc: Mapping[str, Any], raw: bytes) -> Policy:
    """What docs/policy.md says `doc` means, written independently of the parser."""

    def strings(value: Any) -> tuple[str, ...]:
        return () if value is None else (value,) if isinstance(value, str) else tuple(value)

    trust = doc.get("trust", {})
    base = Path(POLICY_SOURCE).parent  # relative directories are relative to the policy file

    def path(value: str) -> str:
        return str(base / value)

    return Policy(
        source=POLICY_SOURCE,
        digest=hashlib.sha256(raw).hexdigest(),
        version=1,
        allowed_backends=strings(doc["allowed_backends"]),
        default_backend=doc.get("default_backend"),
        rules=tuple(
            Rule(number=number, backend=rule.get("backend"), deny=rule.get("deny", False),
                 name=rule.get("name"), **{key: strings(rule.get(key)) for key in MATCH_KEYS})
            for number, rule in enumerate(doc.get("rule", []), start=1)
        ),
        trust_model_metadata=doc.get("trust_model_metadata", False),
        vllm_version_mismatch=doc.get("vllm_version_mismatch", "refuse"),
        extra_general_plugins=strings(doc.get("extra_general_plugins")),
        trust=TrustSettings(
            require_signatures=doc.get("require_signatures", True),
            key_dirs=tuple(path(v) for v in strings(trust.get("key_dirs"))),
            manifest_dirs=tuple(path(v) for v in strings(trust.get("manifest_dirs")))
            or (DEFAULT_MANIFEST_DIR,),
            state_dir=path(trust["state_dir"]) if "state_dir" in trust else DEFAULT_STATE_DIR,
            threshold=trust.get("threshold", 1),
            revoked_keys=tuple(k.lower() for k in strings(trust.get("revoked_keys"))),
            signers=tuple((name, strings(keys))
                          for name, keys in sorted(trust.get("signers", {}).items())),
            strict_permissions=trust.get("strict_permissions", True),
            audit_log=path(trust["audit_log"]) if "audit_log" in trust else None,
        ),
    )


def policy_table(draw: st.DrawFn, doc: dict[str, Any], level: str) -> tuple[dict[str, Any], str]:
    """The table at `level` (made if absent) and the prefix the parser gives its keys."""
    if level == "top":
        return doc, ""
    if level == "rule":
        rules = doc.setdefault("rule", [])
        if not rules:
            rules.append(draw(policy_rules()))
        index = draw(st.integers(0, len(rules) - 1))
        rule: dict[str, Any] = rules[index]
        return rule, f"rule[{index + 1}]."
    trust: dict[str, Any] = doc.setdefault("trust", {})
    if level == "trust":
        return trust, "trust."
    signers: dict[str, Any] = trust.setdefault("signers", {})
    return signers, "trust.signers."


# Valid changes.

def p_valid_removed(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    # Any optional key may go: its default applies.
    trust = doc.get("trust", {})
    present = [(doc, key) for key in doc if key in OPTIONAL_TOP]
    present += [(trust, key) for key in trust]
    present += [(rule, "name") for rule in doc.get("rule", []) if "name" in rule]
    if present:
        table, key = draw(st.sampled_from(present))
        del table[key]
    return Mutant(doc, OK)


def p_valid_strings(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    level, key = draw(st.sampled_from(KEYS_BY_TYPE["strings"]))
    table, _ = policy_table(draw, doc, level)
    key = key or draw(TOML_TEXT)
    # A string or a list; an empty list only where "nothing" is allowed.
    required = level == "rule" or key == "allowed_backends"
    text = PATH_TEXT if level == "trust" and key in PATH_KEYS else NONEMPTY
    table[key] = draw(text | st.lists(text, min_size=1 if required else 0, max_size=3))
    return Mutant(doc, OK)


def p_valid_rule(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    doc.setdefault("rule", []).append(draw(policy_rules()))
    return Mutant(doc, OK)


def p_valid_trust(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    doc["trust"] = draw(policy_trust())
    return Mutant(doc, OK)


# Invalid changes.

def p_wrong_type(kind: str) -> Mutation:
    def mutate(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
        level, key = draw(st.sampled_from(KEYS_BY_TYPE[kind]))
        table, prefix = policy_table(draw, doc, level)
        key = key or draw(TOML_TEXT)  # a signer: any backend name
        table[key] = draw(WRONG_VALUES[kind])
        return Mutant(doc, f"type-{kind}", f"'{prefix}{key}' must be", prefix + key)
    return mutate


def p_unknown(level: str) -> Mutation:
    known = {"top": TOP_LEVEL, "rule": RULE_KEYS, "trust": TRUST_KEYS}[level]
    # Likely mistakes first: a key of another table, a misspelling; then anything.
    likely = [k for k in [*TOP_LEVEL, *RULE_KEYS, *TRUST_KEYS, "allowed_backend", "treshold",
                          "signer", "models", "rules", "Version"] if k not in known]

    def mutate(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
        table, prefix = policy_table(draw, doc, level)
        key = draw(st.sampled_from(likely) | TOML_TEXT.filter(lambda k: k not in known))
        table[key] = draw(toml_not())
        return Mutant(doc, "unknown", f"unknown key '{prefix}{key}'", prefix + key)
    return mutate


def p_missing(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    key = draw(st.sampled_from(["version", "allowed_backends"]))
    del doc[key]
    return Mutant(doc, "missing", f"'{key}'", key)


def p_version(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    doc["version"] = draw(st.integers(-(2**63), 2**63 - 1).filter(lambda n: n != 1))
    return Mutant(doc, "version", f"version {doc['version']}", "version")


def p_empty_allowed(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    doc["allowed_backends"] = []
    return Mutant(doc, "empty-allowed", "allowed_backends", "allowed_backends")


def p_mismatch(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    doc["vllm_version_mismatch"] = draw(st.sampled_from(["Refuse", "warn ", "deny", "ignore"])
                                        | NONEMPTY.filter(lambda t: t not in ("refuse", "warn")))
    return Mutant(doc, "mismatch", "vllm_version_mismatch", "vllm_version_mismatch")


def p_rule_action(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    rule, prefix = policy_table(draw, doc, "rule")
    if draw(st.booleans()):  # both
        rule.setdefault("backend", draw(NONEMPTY))
        rule["deny"] = True
    else:  # neither
        rule.pop("backend", None)
        if draw(st.booleans()):
            rule["deny"] = False
        else:
            rule.pop("deny", None)
    number = prefix[len("rule["):-len("].")]
    return Mutant(doc, "rule-action", f"rule {number} must give exactly one", f"rule[{number}]")


def p_rule_nothing(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    rule, prefix = policy_table(draw, doc, "rule")
    for key in MATCH_KEYS:
        if draw(st.booleans()):
            rule[key] = []
        else:
            rule.pop(key, None)
    number = prefix[len("rule["):-len("].")]
    return Mutant(doc, "rule-nothing", f"rule {number} matches nothing", f"rule[{number}]")


def p_threshold(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    doc.setdefault("trust", {})["threshold"] = draw(st.integers(-(2**63), 0))
    return Mutant(doc, "threshold", "trust.threshold", "trust.threshold")


def p_nul_path(draw: st.DrawFn, doc: dict[str, Any]) -> Mutant:
    key = draw(st.sampled_from(PATH_KEYS))
    path = draw(PATH_TEXT)
    at = draw(st.integers(0, len(path)))
    value = path[:at] + "\x00" + path[at:]
    multiple = key in ("key_dirs", "manifest_dirs")
    doc.setdefault("trust", {})[key] = [value] if multiple and draw(st.booleans()) else value
    return Mutant(doc, "nul-path", f"'trust.{key}' must be a path without NUL",
                  f"trust.{key}")


POLICY_MUTATIONS: dict[str, Mutation] = {
    "valid-removed": p_valid_removed, "valid-strings": p_valid_strings,
    "valid-rule": p_valid_rule, "valid-trust": p_valid_trust,
    **{f"type-{kind}": p_wrong_type(kind) for kind in KEYS_BY_TYPE},
    **{f"unknown-{level}": p_unknown(level) for level in ("top", "rule", "trust")},
    "missing": p_missing, "version": p_version, "empty-allowed": p_empty_allowed,
    "mismatch": p_mismatch, "rule-action": p_rule_action, "rule-nothing": p_rule_nothing,
    "threshold": p_threshold, "nul-path": p_nul_path,
}
# Mutations of the text rather than of a value, and the same document in the other style.
POLICY_TEXT_KINDS = ["other-style", "utf8", "syntax"]


def broken_toml(draw: st.DrawFn, text: str) -> str:
    how = draw(st.sampled_from(["key twice", "table twice", "unterminated", "no value",
                                "no key"]))
    if how == "key twice":  # every valid document has version = 1 at the top level
        return "version = 1\n" + text
    if how == "table twice":
        return text + "[twice]\n[twice]\n"
    if how == "unterminated":
        return text + 'x = "abc\n'
    if how == "no value":
        return text + "x =\n"
    return text + "= 1\n"


@st.composite
def policy_cases(draw: st.DrawFn) -> list[Case]:
    doc = draw(policy_documents())
    headers = draw(st.booleans())

    def case(kind: str, mutant: Mutant, style: bool = headers) -> Case:
        if isinstance(mutant.document, bytes):
            raw = mutant.document
        else:
            raw = toml_document(mutant.document, style).encode()
        expected = expected_policy(mutant.document, raw) if mutant.check == OK else None
        return Case(kind, raw, mutant.check, mutant.needle, mutant.key, expected)

    text = toml_document(doc, headers)
    cases = [
        case(OK, Mutant(doc, OK)),
        case("other-style", Mutant(doc, OK), not headers),
        case("utf8", Mutant(broken_utf8(draw, text), "utf8", "UTF-8")),
        case("syntax", Mutant(broken_toml(draw, text).encode(), "syntax", "not valid TOML")),
    ]
    for kind, mutate in POLICY_MUTATIONS.items():
        cases.append(case(kind, mutate(draw, copy.deepcopy(doc))))
    return cases


@PROPERTY_SETTINGS
@given(policy_cases())
def policy_property(cases: list[Case]) -> None:
    REACHED["policy"]["examples"] += 1
    for case in cases:
        run_case("policy", case, parse_policy, ConfigError, POLICY_CHECKS, POLICY_SOURCE)


def test_policy_mutations_reach_every_check() -> None:
    REACHED["policy"].clear()
    policy_property()
    assert_coverage("policy", POLICY_CHECKS, [*POLICY_MUTATIONS, *POLICY_TEXT_KINDS],
                    not_here=["size"])


def test_policy_size_limit() -> None:
    raw = b'version = 1\nallowed_backends = ["metal"]\n'
    padded = raw + b"#" * (MAX_POLICY_BYTES - len(raw))
    assert parse_policy(padded, POLICY_SOURCE).allowed_backends == ("metal",)
    with pytest.raises(ConfigError) as refused:
        parse_policy(padded + b"#", POLICY_SOURCE)
    assert classify(POLICY_CHECKS, refused.value.summary) == "size"


def test_default_policy_parses() -> None:
    # The shipped default is a valid document too.
    source = Path(__file__).parents[1] / "tt_meta_plugin" / "default_policy.toml"
    policy = parse_policy(source.read_bytes(), str(source))
    assert policy.version == 1 and policy.allowed_backends and policy.rules


# -- Bugs these properties found (fixed): each is refused with the package's error class ----

HUGE = "1" * 5000  # Python refuses to convert an integer of more than 4300 digits


@pytest.mark.parametrize("parser", ["manifest", "envelope", "policy"])
def test_huge_integer_is_refused(parser: str) -> None:
    if parser == "manifest":
        payload = small_manifest().to_payload()
        payload["serial"] = Raw(HUGE)
        with pytest.raises(TrustError):
            parse_manifest(to_json(payload).encode(), MANIFEST_WHERE)
    elif parser == "envelope":
        doc = json.loads(sign_manifest(small_manifest(), [SIGNING_KEY]).to_bytes())
        doc["signatures"] = [Raw(HUGE)]
        with pytest.raises(TrustError):
            parse_envelope(to_json(doc).encode(), MANIFEST_WHERE)
    else:
        with pytest.raises(ConfigError):
            parse_policy(f'version = {HUGE}\nallowed_backends = "metal"\n'.encode(),
                         POLICY_SOURCE)


def test_deeply_nested_policy_is_refused() -> None:
    with pytest.raises(ConfigError):
        parse_policy(b"version = " + b"[" * 1000 + b"]" * 1000, POLICY_SOURCE)


@pytest.mark.parametrize("path", [None, 1, True, [], {}, ["a"]])
def test_manifest_path_not_a_string_is_refused(path: object) -> None:
    payload = small_manifest().to_payload()
    payload["files"][0]["path"] = path
    with pytest.raises(TrustError) as refused:
        parse_manifest(to_json(payload).encode(), MANIFEST_WHERE)
    assert classify(MANIFEST_CHECKS, refused.value.summary) == "path-type"


def test_manifest_spec_version_true_is_refused() -> None:
    payload = small_manifest().to_payload()
    payload["spec_version"] = True
    with pytest.raises(TrustError):
        parse_manifest(to_json(payload).encode(), MANIFEST_WHERE)


# Where a refusal cannot name the changed key, because the parser's message does not; the
# needles used above for these checks are words of the message instead.
NEEDLE_LIMITS = {
    "manifest keys": "lists every expected key, not the missing or unknown one",
    "manifest kind": "names the expected document kind, not '_type' or 'spec_version'",
    "manifest file-entry": "does not say which entry, nor which key is missing or unknown",
    "envelope keys, signature, base64": "do not say which key, signature, or payload or sig",
}

# -- Arbitrary bytes: a cheap extra ------------------------------------------------------------

FUZZ = settings(max_examples=300, deadline=None)
JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(TEXT, children, max_size=6),
    max_leaves=30,
)
JSON_BYTES = JSON_VALUES.map(lambda value: json.dumps(value).encode())


@FUZZ
@given(st.binary(max_size=2000) | JSON_BYTES)
def test_envelope_parser_on_any_bytes(raw: bytes) -> None:
    try:
        parse_envelope(raw, "fuzz")
    except TrustError:
        event("envelope fuzz: refused")
    else:
        event("envelope fuzz: parsed")


@FUZZ
@given(st.binary(max_size=2000) | JSON_BYTES)
def test_manifest_parser_on_any_bytes(raw: bytes) -> None:
    try:
        parse_manifest(raw, "fuzz")
    except TrustError:
        event("manifest fuzz: refused")
    else:
        event("manifest fuzz: parsed")


@FUZZ
@given(st.binary(max_size=500) | st.text(max_size=300).map(str.encode))
def test_policy_parser_on_any_bytes(raw: bytes) -> None:
    try:
        parse_policy(raw, "fuzz.toml")
    except ConfigError:
        event("policy fuzz: refused")
    else:
        event("policy fuzz: parsed")
