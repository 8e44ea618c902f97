"""Hostile inputs at every reader of outside input (issue #12, "Done when").

Every file, argument and environment variable tt_meta reads comes from someone it does not
control: the operator, a model repository, whoever can write the state directory or the
site directory. At the vLLM boundary anything but a clean refusal is a silent fallback to
the CPU (vllm_entry.py), so each reader must either accept an input (where it is
legitimately acceptable) or refuse it with the package's own error: a `TTMetaError` whose
code is not "internal", whose message names the file, variable or option it read. Any other
exception (RecursionError, OSError, UnicodeDecodeError, ValueError, MemoryError...), a hang,
or a read of unbounded input into memory fails the test.

`MATRIX` is the whole of it, explicitly: every reader against every hostile input, each
cell either REFUSED, ACCEPTED, or not applicable with the reason why. A test checks that no
cell is missing. Each reader is called in-process the way the package calls it (the callers
are named at each reader), on files under pytest's `tmp_path`.

The parsers of the policy and the signed manifest on bytes are covered by
tests/test_parsers_property.py (JSON nesting, NUL bytes, invalid UTF-8, huge numbers): their
rows here hold the file-level cases (paths, size, what the file is) and only what those
property tests do not reach (the policy's nested tables).

A huge file is sparse (it costs no disk) and far larger than the reader's limit; the memory
the reader allocates is measured (`tracemalloc`) and must stay below its limit plus
`SLACK`: a reader that reads the whole file fails. Every call runs with a deadline and with
its address space capped (`GUARD` more than it had), so a reader gone wrong fails the test
with `Hung` or MemoryError instead of taking the machine's memory. FIFOs are never used (a
reader would block on one). Mode 000 cases need an ordinary user (root reads anything):
they are skipped as root and run in `make pytest-unprivileged`.
"""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import signal
import struct
import textwrap
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import NamedTuple

import pytest
from conftest import (
    METAL,
    METAL_INFO,
    TWO_BACKENDS_POLICY,
    VLLM_ARGV0,
    install,
    sign_site,
)

from tt_meta_plugin import TTMetaError
from tt_meta_plugin._metadata import Distribution, find_distribution, is_editable
from tt_meta_plugin.activation import child_process, recorded_decision
from tt_meta_plugin.activation.backend import check_vllm_plugins
from tt_meta_plugin.activation.first_process import load_checked_policy
from tt_meta_plugin.selection.catalog import Catalog
from tt_meta_plugin.selection.command_line import MAX_CONFIG_BYTES as MAX_YAML_BYTES
from tt_meta_plugin.selection.decide import gather_facts
from tt_meta_plugin.selection.inputs import MAX_POLICY_BYTES, read_inputs, read_policy
from tt_meta_plugin.selection.model_config import MAX_CONFIG_BYTES as MAX_MODEL_CONFIG_BYTES
from tt_meta_plugin.selection.policy import TrustSettings
from tt_meta_plugin.trust import settings_seal
from tt_meta_plugin.trust import verification_record as vr
from tt_meta_plugin.trust.editable import MAX_READ_BYTES as MAX_EDITABLE_BYTES
from tt_meta_plugin.trust.editable import check_installed
from tt_meta_plugin.trust.envelope import MAX_ENVELOPE_BYTES
from tt_meta_plugin.trust.keys import MAX_KEY_BYTES
from tt_meta_plugin.trust.keystore import load_keys
from tt_meta_plugin.trust.manifest import Editable, ManifestFacts, manifest_file_names
from tt_meta_plugin.trust.rollback import MARKS_FILE, MAX_MARKS_BYTES, StateDir
from tt_meta_plugin.trust.verifier import Verifier

ROOT = os.geteuid() == 0

# -- The hostile inputs ----------------------------------------------------------------------

DEEP = "deep"  # nesting far past the interpreter's recursion limit
HUGE = "huge"  # a file far larger than the reader's limit (or a number too long to convert)
NUL = "nul"  # a NUL byte in the content
NUL_PATH = "nul-path"  # a NUL byte in a path, or in a value the reader turns into a path
LONG_NAME = "long-name"  # a path component over 255 bytes
LONG_PATH = "long-path"  # a path over PATH_MAX (4096 bytes), each component short enough
DIRECTORY = "directory"  # a directory where a file is expected
DANGLING = "dangling"  # a symlink to nothing
MODE_000 = "mode-000"  # a file (or directory) the user cannot read: ordinary users only
BAD_UTF8 = "bad-utf8"  # invalid UTF-8 in the content, or in a variable's value
BAD_UTF8_NAME = "bad-utf8-name"  # invalid UTF-8 in a file or directory name, or in a value
#                                  naming one (surrogate-escaped, as os.fsdecode gives it)
INPUTS = (DEEP, HUGE, NUL, NUL_PATH, LONG_NAME, LONG_PATH, DIRECTORY, DANGLING, MODE_000,
          BAD_UTF8, BAD_UTF8_NAME)

DEPTH = 100_000
HUGE_PAST = 64 << 20  # how far past its reader's limit a huge file goes
SLACK = 32 << 20  # what a reader may allocate beyond its limit
GUARD = 4 << 30  # the address space a call may add (a backstop: MemoryError past it)
SECONDS = 60  # a reader that takes longer hangs
ENV_MAX = 128 * 1024 - 64  # the most one environment string holds (MAX_ARG_STRLEN, less NAME=)
HUGE_NUMBER = b"1" * 5000  # past the 4300 digits Python converts
BAD_NAME = os.fsdecode(b"bad-\xff-name")  # a name that is not UTF-8, as Python holds it

# -- The expectations ------------------------------------------------------------------------

REFUSED = "refused"
ACCEPTED = "accepted"

_ENV_NUL = ("n/a: an environment variable cannot hold a NUL byte (execve's strings end at "
            "one; os.environ refuses to set one)")
_ARGV_NUL = ("n/a: a command-line argument cannot hold a NUL byte (execve's strings end at "
             "one); one from a --config file is the config-yaml row's nul-path case")
_NOT_A_FILE = "n/a: a value, not a file"
_NOT_A_PATH = "n/a: not turned into a path"
_NOT_PARSED = "n/a: a name or list of names, nothing in it nests"
_POLICY_NUL = ("n/a: the directory comes from the policy's [trust] table, which refuses NUL "
               "in every path (test_parsers_property.py, mutation 'nul-path'; "
               "test_boundary.py)")
_PROPERTY = "n/a: the parser on bytes is covered by tests/test_parsers_property.py, "

# reader -> input -> REFUSED, ACCEPTED, or "n/a: why".
MATRIX: dict[str, dict[str, str]] = {
    # selection/inputs.py read_policy + selection/policy.py parse_policy, then the permission
    # check: first_process.load_checked_policy (a first process, tt-meta verify)
    "policy": {
        DEEP: REFUSED,  # nested tables; nested arrays: test_parsers_property.py too
        HUGE: REFUSED,
        NUL: _PROPERTY + "any bytes and 'utf8' (UTF-16 text is full of NULs)",
        NUL_PATH: REFUSED,  # the [trust] paths; TT_META_POLICY: see _ENV_NUL
        LONG_NAME: REFUSED,
        LONG_PATH: REFUSED,
        DIRECTORY: REFUSED,
        DANGLING: REFUSED,
        MODE_000: REFUSED,
        BAD_UTF8: _PROPERTY + "mutation 'utf8'",
        BAD_UTF8_NAME: ACCEPTED,
    },
    # selection/inputs.py read_policy in a child (child_process.activate): bytes hashed and
    # compared with the decision's digest, never parsed
    "policy-child": {
        DEEP: ACCEPTED,
        HUGE: ACCEPTED,  # read up to its limit only; the digest then differs
        NUL: ACCEPTED,
        NUL_PATH: _ENV_NUL + " (TT_META_POLICY)",
        LONG_NAME: REFUSED,
        LONG_PATH: REFUSED,
        DIRECTORY: REFUSED,
        DANGLING: REFUSED,
        MODE_000: REFUSED,
        BAD_UTF8: ACCEPTED,
        BAD_UTF8_NAME: ACCEPTED,
    },
    # `vllm serve MODEL` with a model directory: selection/inputs.py read_inputs, then
    # selection/decide.py gather_facts -> model_config.read_model_config (first_process.plan)
    "model-dir": {
        DEEP: REFUSED,
        HUGE: REFUSED,
        NUL: REFUSED,
        NUL_PATH: _ARGV_NUL,
        LONG_NAME: REFUSED,
        LONG_PATH: REFUSED,
        DIRECTORY: ACCEPTED,  # config.json a directory: no config on disk, nothing matched
        DANGLING: ACCEPTED,  # likewise
        MODE_000: REFUSED,
        BAD_UTF8: REFUSED,
        BAD_UTF8_NAME: ACCEPTED,
    },
    # `vllm serve ORG/NAME` from the local Hugging Face cache: refs/main names the snapshot
    # (model_config._find_config); one it cannot use means the newest snapshot, as documented
    "hub-cache": {
        DEEP: "n/a: refs/main holds a commit id, read as one line: nothing nests",
        HUGE: ACCEPTED,
        NUL: ACCEPTED,
        NUL_PATH: _ARGV_NUL,
        LONG_NAME: ACCEPTED,  # a hub id too long for a file name: not in the cache
        LONG_PATH: ACCEPTED,  # HF_HUB_CACHE past PATH_MAX: nothing in the cache
        DIRECTORY: ACCEPTED,
        DANGLING: ACCEPTED,
        MODE_000: ACCEPTED,
        BAD_UTF8: ACCEPTED,
        BAD_UTF8_NAME: ACCEPTED,
    },
    # `--config FILE.yaml`: command_line.load_config_file, through read_inputs and
    # gather_facts (the model and --hf-config-path it names are looked up on disk)
    "config-yaml": {
        DEEP: REFUSED,
        HUGE: REFUSED,  # and a small file whose aliases expand hugely
        NUL: REFUSED,
        NUL_PATH: REFUSED,  # model, hf-config-path and revision values with a NUL
        LONG_NAME: REFUSED,
        LONG_PATH: REFUSED,
        DIRECTORY: REFUSED,
        DANGLING: REFUSED,
        MODE_000: REFUSED,
        BAD_UTF8: REFUSED,
        BAD_UTF8_NAME: ACCEPTED,
    },
    # `--hf-overrides JSON` and `--hf-overrides.KEY VALUE`: command_line._hf_overrides and
    # _Reader._merge_dotted, then model_config._overridden (through gather_facts)
    "hf-overrides": {
        DEEP: REFUSED,
        HUGE: REFUSED,  # an argument is capped at 128 KiB by the kernel: a huge number
        NUL: ACCEPTED,  # "\u0000" in a model type: a name, never a path
        NUL_PATH: "n/a: no value of --hf-overrides is turned into a path",
        LONG_NAME: _NOT_A_PATH,
        LONG_PATH: _NOT_A_PATH,
        DIRECTORY: _NOT_A_FILE,
        DANGLING: _NOT_A_FILE,
        MODE_000: _NOT_A_FILE,
        BAD_UTF8: ACCEPTED,
        BAD_UTF8_NAME: "n/a: no value of --hf-overrides names a file",
    },
    # `--hf-config-path DIR`: model_config.read_model_config reads DIR/config.json
    "hf-config-path": {
        DEEP: REFUSED,
        HUGE: REFUSED,
        NUL: REFUSED,
        NUL_PATH: _ARGV_NUL,
        LONG_NAME: REFUSED,
        LONG_PATH: REFUSED,
        DIRECTORY: ACCEPTED,  # not on disk: `unread`, refused by decide if a rule needs it
        DANGLING: ACCEPTED,  # likewise
        MODE_000: REFUSED,
        BAD_UTF8: REFUSED,
        BAD_UTF8_NAME: ACCEPTED,
    },
    # TT_META_MODEL: selection/inputs.py read_inputs (local_model), then gather_facts
    "env-model": {
        DEEP: _NOT_PARSED,
        HUGE: REFUSED,  # the longest value an environment holds, as a path
        NUL: _ENV_NUL,
        NUL_PATH: _ENV_NUL,
        LONG_NAME: REFUSED,
        LONG_PATH: REFUSED,
        DIRECTORY: "n/a: a model directory is what is expected",
        DANGLING: ACCEPTED,  # a model not on disk: no config, nothing matched
        MODE_000: REFUSED,  # a model directory the user cannot read
        BAD_UTF8: ACCEPTED,
        BAD_UTF8_NAME: ACCEPTED,
    },
    # TT_META_DEVICE: selection/inputs.py read_inputs, compared with rules as text
    "env-device": {
        DEEP: _NOT_PARSED,
        HUGE: ACCEPTED,
        NUL: _ENV_NUL,
        NUL_PATH: _ENV_NUL,
        LONG_NAME: _NOT_A_PATH,
        LONG_PATH: _NOT_A_PATH,
        DIRECTORY: _NOT_A_FILE,
        DANGLING: _NOT_A_FILE,
        MODE_000: _NOT_A_FILE,
        BAD_UTF8: ACCEPTED,
        BAD_UTF8_NAME: _NOT_A_PATH,
    },
    # VLLM_PLUGINS: activation/backend.py check_vllm_plugins (first_process.activate)
    "env-plugins": {
        DEEP: _NOT_PARSED,
        HUGE: ACCEPTED,
        NUL: _ENV_NUL,
        NUL_PATH: _ENV_NUL,
        LONG_NAME: _NOT_A_PATH,
        LONG_PATH: _NOT_A_PATH,
        DIRECTORY: _NOT_A_FILE,
        DANGLING: _NOT_A_FILE,
        MODE_000: _NOT_A_FILE,
        BAD_UTF8: ACCEPTED,
        BAD_UTF8_NAME: _NOT_A_PATH,
    },
    # TT_META_DECISION: recorded_decision.read, then child_process.activate (vllm_entry.current)
    "env-decision": {
        DEEP: REFUSED,
        HUGE: REFUSED,  # the environment caps its size: a huge number
        NUL: _ENV_NUL + " (JSON's \\u0000 escape is the nul-path case)",
        NUL_PATH: REFUSED,
        LONG_NAME: REFUSED,
        LONG_PATH: REFUSED,
        DIRECTORY: "n/a: the files a decision leads to are the seal and record rows",
        DANGLING: "n/a: the files a decision leads to are the seal and record rows",
        MODE_000: "n/a: the files a decision leads to are the seal and record rows",
        BAD_UTF8: REFUSED,
        BAD_UTF8_NAME: REFUSED,  # a state directory no first process wrote
    },
    # trust/verifier.py Verifier.verify: finding (1) and reading (2) the signed manifest in
    # the policy's manifest directory (TrustedSet.establish)
    "manifest": {
        DEEP: _PROPERTY + "mutation 'depth' of the envelope",
        HUGE: REFUSED,
        NUL: _PROPERTY + "any bytes, and control characters in every string",
        NUL_PATH: _POLICY_NUL,
        LONG_NAME: REFUSED,
        LONG_PATH: REFUSED,
        DIRECTORY: REFUSED,
        DANGLING: REFUSED,
        MODE_000: REFUSED,
        BAD_UTF8: _PROPERTY + "mutation 'utf8' of the envelope",
        BAD_UTF8_NAME: ACCEPTED,
    },
    # trust/keystore.py load_keys -> keys.load_public (Verifier.keys)
    "public-key": {
        DEEP: "n/a: PEM is lines of base64, and the DER inside is compared with the one "
              "Ed25519 prefix, never parsed",
        HUGE: REFUSED,
        NUL: REFUSED,
        NUL_PATH: _POLICY_NUL,
        LONG_NAME: REFUSED,
        LONG_PATH: REFUSED,
        DIRECTORY: REFUSED,
        DANGLING: REFUSED,
        MODE_000: REFUSED,
        BAD_UTF8: REFUSED,
        BAD_UTF8_NAME: ACCEPTED,
    },
    # trust/verification_record.py load (Verifier._check_manifest): a cache; one that cannot
    # be used is ignored (the manifest is verified from scratch, the record rewritten)
    "record": {
        DEEP: ACCEPTED,
        HUGE: ACCEPTED,
        NUL: ACCEPTED,
        NUL_PATH: _POLICY_NUL,
        LONG_NAME: ACCEPTED,
        LONG_PATH: ACCEPTED,
        DIRECTORY: ACCEPTED,
        DANGLING: ACCEPTED,
        MODE_000: ACCEPTED,
        BAD_UTF8: ACCEPTED,
        BAD_UTF8_NAME: ACCEPTED,
    },
    # trust/verification_record.py load_for_child (TrustedSet.inherit): a child must have
    # its parent's record, exactly
    "record-child": {
        DEEP: REFUSED,
        HUGE: REFUSED,
        NUL: REFUSED,
        NUL_PATH: "n/a: a decision whose state directory holds a NUL is refused before any "
                  "record is opened (env-decision, nul-path)",
        LONG_NAME: REFUSED,
        LONG_PATH: REFUSED,
        DIRECTORY: REFUSED,
        DANGLING: REFUSED,
        MODE_000: REFUSED,
        BAD_UTF8: REFUSED,
        BAD_UTF8_NAME: ACCEPTED,
    },
    # trust/settings_seal.py unseal (child_process.activate)
    "seal-child": {
        DEEP: REFUSED,
        HUGE: REFUSED,
        NUL: REFUSED,
        NUL_PATH: REFUSED,
        LONG_NAME: REFUSED,
        LONG_PATH: REFUSED,
        DIRECTORY: REFUSED,
        DANGLING: REFUSED,
        MODE_000: REFUSED,
        BAD_UTF8: REFUSED,
        BAD_UTF8_NAME: ACCEPTED,
    },
    # trust/settings_seal.py seal (first_process.activate): reads what is sealed to compare;
    # anything else there is replaced by the settings
    "seal-first": {
        DEEP: ACCEPTED,
        HUGE: ACCEPTED,
        NUL: ACCEPTED,
        NUL_PATH: _POLICY_NUL,
        LONG_NAME: REFUSED,
        LONG_PATH: REFUSED,
        DIRECTORY: REFUSED,
        DANGLING: ACCEPTED,
        MODE_000: ACCEPTED,
        BAD_UTF8: ACCEPTED,
        BAD_UTF8_NAME: ACCEPTED,
    },
    # trust/rollback.py StateDir.judge and advance (Verifier steps 6 and 10)
    "rollback-marks": {
        DEEP: REFUSED,
        HUGE: REFUSED,
        NUL: REFUSED,
        NUL_PATH: _POLICY_NUL,
        LONG_NAME: REFUSED,
        LONG_PATH: REFUSED,
        DIRECTORY: REFUSED,
        # As a missing file: no marks yet. Whoever can put a symlink in the state directory
        # can delete the file as well; that directory's permissions are what protects it.
        DANGLING: ACCEPTED,
        MODE_000: REFUSED,
        BAD_UTF8: REFUSED,
        BAD_UTF8_NAME: ACCEPTED,
    },
    # _metadata.py is_editable (Verifier step 0; refuse_editable in a child)
    "direct-url": {
        DEEP: REFUSED,
        HUGE: REFUSED,
        NUL: REFUSED,
        NUL_PATH: "n/a: its .dist-info is where importlib.metadata found it on sys.path, and "
                  "its name is fixed",
        LONG_NAME: "n/a: its .dist-info is where importlib.metadata found it on sys.path",
        LONG_PATH: "n/a: its .dist-info is where importlib.metadata found it on sys.path",
        DIRECTORY: REFUSED,
        DANGLING: ACCEPTED,  # as a missing file: not an editable install
        MODE_000: REFUSED,
        BAD_UTF8: REFUSED,
        BAD_UTF8_NAME: ACCEPTED,
    },
    # trust/editable.py read_pth, through check_installed (Verifier step 7)
    "editable-pth": {
        DEEP: "n/a: a .pth is read as lines, each matched by a regular expression",
        HUGE: REFUSED,
        NUL: REFUSED,
        NUL_PATH: "n/a: its name comes from the signed manifest (no NUL in a signed path)",
        LONG_NAME: "n/a: its name comes from the signed manifest, its directory is the "
                   "installed distribution's",
        LONG_PATH: "n/a: its name comes from the signed manifest, its directory is the "
                   "installed distribution's",
        DIRECTORY: REFUSED,
        DANGLING: REFUSED,
        MODE_000: REFUSED,
        BAD_UTF8: REFUSED,
        BAD_UTF8_NAME: ACCEPTED,
    },
    # trust/editable.py read_mapping (setuptools' finder, parsed with ast, never run),
    # through check_installed (Verifier step 7)
    "editable-finder": {
        DEEP: REFUSED,
        HUGE: REFUSED,
        NUL: REFUSED,
        NUL_PATH: "n/a: its name comes from the signed manifest and the .pth",
        LONG_NAME: "n/a: its name comes from the signed manifest and the .pth",
        LONG_PATH: "n/a: its name comes from the signed manifest and the .pth",
        DIRECTORY: REFUSED,
        DANGLING: REFUSED,
        MODE_000: REFUSED,
        BAD_UTF8: REFUSED,
        BAD_UTF8_NAME: ACCEPTED,
    },
}


# -- One case: a reader called on one hostile input --------------------------------------------

def _nothing() -> None:
    pass


class Case(NamedTuple):
    """One call of a reader on one variant of a hostile input."""

    label: str
    call: Callable[[], object]  # the reader, as the package calls it
    names: str = ""  # what a refusal must name: the file, variable or option it read
    needle: str = ""  # and what it must say
    prepare: Callable[[], None] = _nothing  # puts the hostile input in place
    check: Callable[[object], None] | None = None  # what an accepted input must give
    memory: int | None = None  # the most it may allocate, as tracemalloc counts (huge files)


class Hung(BaseException):
    """A reader ran past its deadline (a BaseException: no reader's `except` catches it)."""


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    def expire(signum: int, frame: FrameType | None) -> None:
        raise Hung(f"still reading after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def address_space(extra: int) -> Iterator[None]:
    """At most `extra` bytes more of address space than the process has now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as statm:
        size = int(statm.read().split()[0]) * resource.getpagesize()
    cap = size + extra if hard == resource.RLIM_INFINITY else min(size + extra, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def run(case: Case) -> tuple[object, BaseException | None, int]:
    """(result, exception, peak bytes allocated: 0 unless measured) of one call."""
    case.prepare()
    result: object = None
    error: BaseException | None = None
    if case.memory is not None:
        tracemalloc.start()
    try:
        with address_space(GUARD), deadline(SECONDS):
            result = case.call()
    except (Exception, Hung) as exc:
        error = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1] if case.memory is not None else 0
        tracemalloc.stop()
    return result, error, peak


# -- Hostile files -------------------------------------------------------------------------------

def clear(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def put(path: Path, data: bytes) -> Callable[[], None]:
    def write() -> None:
        clear(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return write


def sparse(path: Path, size: int) -> Callable[[], None]:
    def write() -> None:
        clear(path)
        with open(path, "wb") as handle:
            handle.truncate(size)  # a hole: no disk used, `size` bytes of NUL to a reader
    return write


def directory(path: Path) -> Callable[[], None]:
    def make() -> None:
        clear(path)
        path.mkdir()
    return make


def dangling(path: Path) -> Callable[[], None]:
    def make() -> None:
        clear(path)
        path.symlink_to(path.with_name("nothing-here"))
    return make


def unreadable(path: Path, content: bytes | None = None) -> Callable[[], None]:
    def make() -> None:
        if content is not None:
            put(path, content)()
        os.chmod(path, 0)
    return make


def long_name(tmp: Path) -> Path:
    return tmp / ("n" * 300)


def long_path(tmp: Path) -> Path:
    return tmp.joinpath(*["d" * 250] * 17)  # > 4096 bytes, every component < 256


def file_cases(hostile: str, path: Path, call: Callable[[], object], *, names: str,
               needles: dict[str, str], deep: dict[str, bytes] | None = None,
               limit: int = 0, number: bytes | None = None, nul: bytes = b"",
               bad_utf8: bytes = b"", check: Callable[[object], None] | None = None,
               legit: bytes | None = None) -> list[Case]:
    """The content and file-kind inputs on the file at `path` (written with `legit` first,
    for mode 000, when given): `needles[hostile]` is what a refusal says; `check` what an
    accepted input gives."""
    needle = needles.get(hostile, "")

    def case(label: str, prepare: Callable[[], None], memory: int | None = None) -> Case:
        return Case(label, call, names, needle, prepare, check, memory)

    if hostile == DEEP:
        return [case(label, put(path, data)) for label, data in (deep or {}).items()]
    if hostile == HUGE:
        cases = [case(f"{limit + HUGE_PAST} bytes", sparse(path, limit + HUGE_PAST),
                      limit + SLACK)]
        if number is not None:
            cases.append(Case("a number of 5000 digits", call, names,
                              needles.get("number", needle), put(path, number), check))
        return cases
    if hostile == NUL:
        return [case("NUL in the content", put(path, nul))]
    if hostile == BAD_UTF8:
        return [case("invalid UTF-8 in the content", put(path, bad_utf8))]
    if hostile == DIRECTORY:
        return [case("a directory", directory(path))]
    if hostile == DANGLING:
        return [case("a dangling symlink", dangling(path))]
    if hostile == MODE_000:
        return [case("mode 000", unreadable(path, legit))]
    raise AssertionError(f"not a file-level input: {hostile}")


FILE_LEVEL = (DEEP, HUGE, NUL, BAD_UTF8, DIRECTORY, DANGLING, MODE_000)


# -- The readers -----------------------------------------------------------------------------------

class Ctx:
    """Where a reader's world is built, and the session's fixtures it may need."""

    def __init__(self, tmp: Path, request: pytest.FixtureRequest) -> None:
        self.tmp, self.request = tmp, request


Reader = Callable[[Ctx, str], list[Case]]
READERS: dict[str, Reader] = {}


def reader(name: str) -> Callable[[Reader], Reader]:
    def register(function: Reader) -> Reader:
        READERS[name] = function
        return function
    return register


def write_policy(folder: Path, state: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "policy.toml"
    path.write_text(textwrap.dedent(TWO_BACKENDS_POLICY) + f'\n[trust]\nstate_dir = "{state}"\n',
                    encoding="utf-8")
    return path


def _policy_cases(ctx: Ctx, hostile: str, child: bool) -> list[Case]:
    """TT_META_POLICY as a first process reads it (parsed, permission-checked) or a child
    (bytes only)."""
    state = ctx.tmp / "state"

    def reading(path: Path) -> Callable[[], object]:
        environ = {"TT_META_POLICY": str(path)}
        if child:
            return lambda: read_policy(environ)
        return lambda: load_checked_policy(environ)

    def accepted_from(path: Path) -> Callable[[object], None]:
        def check(result: object) -> None:
            source = result[0] if isinstance(result, tuple) else getattr(result, "source", None)
            assert str(source) == str(path)
        return check

    cannot = "cannot read the policy file (named by TT_META_POLICY)"
    if hostile in (LONG_NAME, LONG_PATH):
        path = (long_name if hostile == LONG_NAME else long_path)(ctx.tmp) / "policy.toml"
        return [Case(hostile, reading(path), str(path), f"{cannot}: File name too long")]
    if hostile == BAD_UTF8_NAME:
        path = write_policy(ctx.tmp / BAD_NAME, state)
        return [Case("a policy in a directory named with \\xff", reading(path),
                     check=accepted_from(path))]
    path = write_policy(ctx.tmp / "etc", state)
    if hostile == NUL_PATH:
        return [Case(f"[trust] {key} with a NUL", reading(path), f"{path}, key 'trust.{key}'",
                     f"'trust.{key}' must be a path without NUL characters",
                     put(path, path.read_bytes().replace(b"[trust]\n",
                                                         f'[trust]\n{key} = {value}\n'.encode())))
                for key, value in (("manifest_dirs", '["/a\\u0000b"]'),
                                   ("audit_log", '"/log\\u0000"'),
                                   ("key_dirs", '["/k\\u0000"]'))]
    legit = path.read_bytes()
    accepted = accepted_from(path)
    return file_cases(
        hostile, path, reading(path), names=str(path), check=accepted,
        needles={DEEP: "the policy file is nested too deeply",
                 HUGE: "the policy file is larger than 1 MiB",
                 DIRECTORY: f"{cannot}: Is a directory",
                 DANGLING: f"{cannot}: No such file or directory",
                 MODE_000: f"{cannot}: Permission denied"},
        deep={"inline tables": b"a = " + b"{a = " * DEPTH,
              "a dotted key": b"a" + b".a" * DEPTH + b" = 1\n",
              "a table header": b"[a" + b".a" * DEPTH + b"]\n",
              "an array of tables": b"[[rule" + b".a" * DEPTH + b"]]\n",
              # parses quickly; then shown in the error: a repr nested too deeply
              "tables where a number is expected": b"[version" + b".a" * 3000 + b"]\n"},
        limit=MAX_POLICY_BYTES, nul=legit + b"\0", bad_utf8=legit + b"# \xff\n")


@reader("policy")
def policy_first(ctx: Ctx, hostile: str) -> list[Case]:
    return _policy_cases(ctx, hostile, child=False)


@reader("policy-child")
def policy_child(ctx: Ctx, hostile: str) -> list[Case]:
    return _policy_cases(ctx, hostile, child=True)


CONFIG_JSON = b'{"architectures": ["LlamaForCausalLM"], "model_type": "llama"}'
SERVE = [VLLM_ARGV0, "serve"]


def write_model(folder: Path, config: bytes = CONFIG_JSON) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_bytes(config)
    return folder


def facts_of(environ: dict[str, str], argv: list[str]) -> Callable[[], object]:
    """What a first process reads of its model (first_process.plan)."""
    def call() -> object:
        return gather_facts(read_inputs(environ, argv), environ)
    return call


def architectures(expected: tuple[str, ...]) -> Callable[[object], None]:
    def check(result: object) -> None:
        assert isinstance(result, tuple)
        assert result[0].architectures == expected, result
    return check


def model_type(expected: str | None) -> Callable[[object], None]:
    def check(result: object) -> None:
        assert isinstance(result, tuple)
        assert result[0].model_type == expected, result
    return check


def unread(result: object) -> None:
    assert isinstance(result, tuple)
    assert result[1].unread and "--hf-config-path" in result[1].unread, result


CONFIG_NEEDLES = {DEEP: "the model's config.json is nested too deeply",
                  HUGE: "config.json is larger than 4 MiB",
                  "number": "the model's config.json is not valid JSON",
                  NUL: "the model's config.json is not valid JSON",
                  BAD_UTF8: "the model's config.json is not valid JSON",
                  MODE_000: "cannot read the model's config: Permission denied"}
DEEP_JSON = {"arrays": b"[" * DEPTH, "objects": b'{"a": ' * DEPTH}
LOOK = "cannot look for the model's config.json: File name too long"


def _config_file_cases(hostile: str, config: Path, call: Callable[[], object],
                       check: Callable[[object], None]) -> list[Case]:
    return file_cases(hostile, config, call, names=str(config), needles=CONFIG_NEEDLES,
                      deep=DEEP_JSON, limit=MAX_MODEL_CONFIG_BYTES,
                      number=b'{"max_position_embeddings": ' + HUGE_NUMBER + b"}",
                      nul=b'{"architectures": ["Llama\x00ForCausalLM"]}',
                      bad_utf8=b'{"model_type": "\xff"}', check=check)


@reader("model-dir")
def model_dir(ctx: Ctx, hostile: str) -> list[Case]:
    environ = {"HF_HUB_CACHE": str(ctx.tmp / "hub")}
    if hostile in (LONG_NAME, LONG_PATH):
        model = (long_name if hostile == LONG_NAME else long_path)(ctx.tmp)
        return [Case(hostile, facts_of(environ, [*SERVE, str(model)]), str(model), LOOK)]
    if hostile == BAD_UTF8_NAME:
        model = write_model(ctx.tmp / BAD_NAME)
        return [Case("a model directory named with \\xff", facts_of(environ, [*SERVE, str(model)]),
                     check=architectures(("LlamaForCausalLM",)))]
    model = write_model(ctx.tmp / "model")
    check = architectures(("LlamaForCausalLM",) if hostile not in (DIRECTORY, DANGLING) else ())
    return _config_file_cases(hostile, model / "config.json",
                              facts_of(environ, [*SERVE, str(model)]), check)


@reader("hf-config-path")
def hf_config_path(ctx: Ctx, hostile: str) -> list[Case]:
    environ = {"HF_HUB_CACHE": str(ctx.tmp / "hub")}

    def argv(folder: Path) -> list[str]:
        return [*SERVE, "org/model", "--hf-config-path", str(folder)]

    if hostile in (LONG_NAME, LONG_PATH):
        folder = (long_name if hostile == LONG_NAME else long_path)(ctx.tmp)
        return [Case(hostile, facts_of(environ, argv(folder)), str(folder), LOOK)]
    if hostile == BAD_UTF8_NAME:
        folder = write_model(ctx.tmp / BAD_NAME)
        return [Case("a config directory named with \\xff", facts_of(environ, argv(folder)),
                     check=architectures(("LlamaForCausalLM",)))]
    folder = write_model(ctx.tmp / "hf-config")
    check = unread if hostile in (DIRECTORY, DANGLING) else architectures(("LlamaForCausalLM",))
    return _config_file_cases(hostile, folder / "config.json",
                              facts_of(environ, argv(folder)), check)


def write_hub(hub: Path) -> Path:
    """A cached model `org/model`: refs/main names snapshot 'main'; snapshot 'newest' was
    written last (what is used without refs/main)."""
    repo = hub / "models--org--model"
    write_model(repo / "snapshots" / "main", b'{"model_type": "main"}')
    write_model(repo / "snapshots" / "newest", b'{"model_type": "newest"}')
    old = os.stat(repo / "snapshots" / "newest" / "config.json").st_mtime_ns - 10**9
    os.utime(repo / "snapshots" / "main" / "config.json", ns=(old, old))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("main")
    return repo / "refs" / "main"


@reader("hub-cache")
def hub_cache(ctx: Ctx, hostile: str) -> list[Case]:
    argv = [*SERVE, "org/model"]
    if hostile == LONG_NAME:
        environ = {"HF_HUB_CACHE": str(ctx.tmp / "hub")}
        write_hub(ctx.tmp / "hub")
        return [Case("a hub id too long for a file name",
                     facts_of(environ, [*SERVE, "org/" + "m" * 300]), check=model_type(None))]
    if hostile == LONG_PATH:
        environ = {"HF_HUB_CACHE": str(long_path(ctx.tmp))}
        return [Case("HF_HUB_CACHE past PATH_MAX", facts_of(environ, argv),
                     check=model_type(None))]
    if hostile == BAD_UTF8_NAME:
        hub = ctx.tmp / BAD_NAME
        write_hub(hub)
        return [Case("HF_HUB_CACHE named with \\xff", facts_of({"HF_HUB_CACHE": str(hub)}, argv),
                     check=model_type("main"))]
    environ = {"HF_HUB_CACHE": str(ctx.tmp / "hub")}
    ref = write_hub(ctx.tmp / "hub")
    # refs/main unusable: the newest snapshot, as without refs/main
    return file_cases(hostile, ref, facts_of(environ, argv), names=str(ref), needles={},
                      limit=0, nul=b"main\0", bad_utf8=b"ma\xffin", check=model_type("newest"))


@reader("config-yaml")
def config_yaml(ctx: Ctx, hostile: str) -> list[Case]:
    environ = {"HF_HUB_CACHE": str(ctx.tmp / "hub")}
    model = write_model(ctx.tmp / "model")
    legit = f"model: {model}\nport: 8000\n".encode()

    def reading(path: Path) -> Callable[[], object]:
        return facts_of(environ, [*SERVE, "--config", str(path)])

    cannot = "cannot read the vLLM config file given with --config"
    if hostile in (LONG_NAME, LONG_PATH):
        path = (long_name if hostile == LONG_NAME else long_path)(ctx.tmp) / "serve.yaml"
        return [Case(hostile, reading(path), str(path), f"{cannot}: File name too long")]
    if hostile == BAD_UTF8_NAME:
        path = ctx.tmp / f"{BAD_NAME}.yaml"
        path.write_bytes(legit)
        return [Case("a config file named with \\xff", reading(path),
                     check=architectures(("LlamaForCausalLM",)))]
    path = ctx.tmp / "serve.yaml"
    if hostile == NUL_PATH:
        cannot_look = "cannot look for the model's config.json"
        hub = "org/mo\\0del"
        return [Case(label, reading(path), names, cannot_look, put(path, text.encode()))
                for label, text, names in (
                    ("a model directory with a NUL", f'model: "{model}\\0"\n', f"{model}\\x00"),
                    ("a hub id with a NUL", f'model: "{hub}"\n', "org/mo\\x00del"),
                    ("a revision with a NUL", 'model: org/model\nrevision: "ma\\0in"\n',
                     "ma\\x00in"),
                    ("an --hf-config-path with a NUL",
                     f'model: org/model\nhf-config-path: "{model}\\0"\n', f"{model}\\x00"))]
    path.write_bytes(legit)
    bomb = "".join(f"{a}: &{a} [" + ", ".join([f"*{b}" if b else '"x"'] * 9) + "]\n"
                   for a, b in zip("abcdefgh", ["", *"abcdefg"], strict=True))
    cases = file_cases(
        hostile, path, reading(path), names=str(path),
        needles={DEEP: "the vLLM config file given with --config is not valid YAML",
                 HUGE: "the vLLM config file given with --config is larger than 1 MiB",
                 NUL: "the vLLM config file given with --config is not valid YAML",
                 BAD_UTF8: "the vLLM config file given with --config is not UTF-8 text",
                 DIRECTORY: f"{cannot}: Is a directory",
                 DANGLING: f"{cannot}: No such file or directory",
                 MODE_000: f"{cannot}: Permission denied"},
        deep={"flow sequences": b"x: " + b"[" * DEPTH,
              "flow mappings": b"x: " + b"{a: " * DEPTH,
              "block sequences": b"x:\n" + b"- " * DEPTH + b"1\n"},
        limit=MAX_YAML_BYTES, nul=legit + b"x: \0\n", bad_utf8=legit + b"x: \xff\n")
    if hostile == HUGE:
        cases.append(Case("aliases that expand 9^8-fold", reading(path), str(path),
                          "the vLLM config file given with --config expands to more than",
                          put(path, bomb.encode() + legit)))
    return cases


@reader("hf-overrides")
def hf_overrides(ctx: Ctx, hostile: str) -> list[Case]:
    environ = {"HF_HUB_CACHE": str(ctx.tmp / "hub")}
    model = str(write_model(ctx.tmp / "model"))

    def given(*args: str) -> Callable[[], object]:
        return facts_of(environ, [*SERVE, model, *args])

    plain, dotted = "--hf-overrides", "--hf-overrides.max_position_embeddings"
    if hostile == DEEP:
        return [Case("a JSON object", given(plain, '{"a": ' + "[" * DEPTH + "}"), plain,
                     "--hf-overrides is not valid JSON"),
                Case("a dotted option", given(dotted, "[" * DEPTH), dotted,
                     f"the value of {dotted} is not JSON vLLM can read")]
    if hostile == HUGE:
        number = HUGE_NUMBER.decode()
        return [Case("a JSON object", given(plain, '{"a": ' + number + "}"), plain,
                     "--hf-overrides is not valid JSON"),
                Case("a dotted option", given(dotted, number), dotted,
                     f"the value of {dotted} is not JSON vLLM can read")]
    if hostile == NUL:
        return [Case("a model type with \\u0000", given(plain, '{"model_type": "lla\\u0000ma"}'),
                     check=model_type("lla\0ma")),
                Case("a dotted option", given("--hf-overrides.model_type", '"lla\\u0000ma"'),
                     check=model_type("lla\0ma"))]
    if hostile == BAD_UTF8:
        bad = os.fsdecode(b"lla\xffma")
        return [Case("a model type not UTF-8", given(plain, '{"model_type": "' + bad + '"}'),
                     check=model_type(bad)),
                Case("a dotted option", given("--hf-overrides.model_type", bad),
                     check=model_type(bad))]
    raise AssertionError(hostile)


@reader("env-model")
def env_model(ctx: Ctx, hostile: str) -> list[Case]:
    script = ["/srv/serve.py"]  # not a vLLM command line: TT_META_MODEL alone names the model

    def named(value: str) -> Callable[[], object]:
        return facts_of({"TT_META_MODEL": value, "HF_HUB_CACHE": str(ctx.tmp / "hub")}, script)

    if hostile == HUGE:
        value = "/" + "m" * (ENV_MAX - 1)
        return [Case("the longest value an environment holds", named(value), value, LOOK)]
    if hostile in (LONG_NAME, LONG_PATH):
        model = (long_name if hostile == LONG_NAME else long_path)(ctx.tmp)
        return [Case(hostile, named(str(model)), str(model), LOOK)]
    if hostile == DANGLING:
        link = ctx.tmp / "model"
        dangling(link)()
        return [Case("a dangling symlink", named(str(link)), check=architectures(()))]
    if hostile == MODE_000:
        model = write_model(ctx.tmp / "model")
        return [Case("a model directory of mode 000", named(str(model)),
                     str(model / "config.json"),
                     "cannot look for the model's config.json: Permission denied",
                     unreadable(model))]
    if hostile == BAD_UTF8:
        return [Case("a hub id not UTF-8", named(os.fsdecode(b"org/m\xff")),
                     check=architectures(()))]
    if hostile == BAD_UTF8_NAME:
        model = write_model(ctx.tmp / BAD_NAME)
        return [Case("a model directory named with \\xff", named(str(model)),
                     check=architectures(("LlamaForCausalLM",)))]
    raise AssertionError(hostile)


@reader("env-device")
def env_device(ctx: Ctx, hostile: str) -> list[Case]:
    value = "P" * ENV_MAX if hostile == HUGE else os.fsdecode(b"p150-\xff")

    def check(result: object) -> None:
        device = getattr(result, "device", None)
        assert device is not None and device.value == value.lower()

    return [Case(hostile, lambda: read_inputs({"TT_META_DEVICE": value}, []), check=check)]


@reader("env-plugins")
def env_plugins(ctx: Ctx, hostile: str) -> list[Case]:
    value = ("tt_meta," + ",".join(["p"] * (ENV_MAX // 2 - 8)) if hostile == HUGE
             else "tt_meta," + os.fsdecode(b"\xff"))
    return [Case(hostile, lambda: check_vllm_plugins({"VLLM_PLUGINS": value}, Catalog()))]


@reader("env-decision")
def env_decision(ctx: Ctx, hostile: str) -> list[Case]:
    state = ctx.tmp / "state"
    policy = write_policy(ctx.tmp / "etc", state)
    ours = find_distribution("tt-meta-plugin")
    assert ours is not None
    environ = {"TT_META_POLICY": str(policy)}

    def decided(**change: object) -> str:
        """The decision a first process records for this policy, with `change` made to it."""
        handoff = recorded_decision.Handoff(
            backend="metal", distribution=ours.name, version=str(ours.version),
            platform="tt_vllm_plugin.platform.TTPlatform", model=None, device=None,
            reason="rule 1", policy=str(policy),
            policy_digest=hashlib.sha256(policy.read_bytes()).hexdigest(), state_dir=str(state))
        for field, value in change.items():
            setattr(handoff, field, value)
        return handoff.encode()

    def child(text: str) -> Callable[[], object]:
        def call() -> object:
            full = {**environ, "TT_META_DECISION": text}
            recorded = recorded_decision.read(full)
            assert recorded is not None
            return child_process.activate(full, ["/venv/bin/worker.py"], recorded)
        return call

    variable = "environment variable TT_META_DECISION"
    not_ours = "TT_META_DECISION is not a decision recorded by tt_meta"
    other_state = "the decision names the state directory"
    if hostile == DEEP:
        return [Case(label, child(text), variable, not_ours)
                for label, text in (("arrays", "[" * DEPTH), ("objects", '{"a": ' * DEPTH))]
    if hostile == HUGE:
        text = decided(serial=12345).replace("12345", HUGE_NUMBER.decode())
        return [Case("a serial of 5000 digits", child(text), variable, not_ours)]
    if hostile == NUL_PATH:
        return [Case("a state directory with a NUL", child(decided(state_dir=f"{state}\0")),
                     variable, other_state),
                Case("a policy with a NUL", child(decided(policy=f"{policy}\0")), variable,
                     "but the decision was made under")]
    if hostile in (LONG_NAME, LONG_PATH):
        far = (long_name if hostile == LONG_NAME else long_path)(ctx.tmp)
        return [Case(hostile, child(decided(state_dir=str(far))), variable, other_state)]
    if hostile == BAD_UTF8:
        return [Case("not UTF-8 outside a string", child(os.fsdecode(b'{"backend": \xff}')),
                     variable, not_ours),
                Case("a state directory no file name can hold (\\ud800)",
                     child(decided(state_dir="\ud800")), variable, other_state)]
    if hostile == BAD_UTF8_NAME:
        return [Case("a state directory named with \\xff",
                     child(decided(state_dir=str(ctx.tmp / BAD_NAME))), variable, other_state)]
    raise AssertionError(hostile)


@pytest.fixture(scope="module")
def signed_site(tmp_path_factory: pytest.TempPathFactory, sim_wheels: dict[str, Path],
                signing_key: tuple[Path, str]) -> Path:
    """A site with the Metal backend, signed, its manifest in the .dist-info."""
    site = install([sim_wheels["sim-record"], sim_wheels[METAL]],
                   tmp_path_factory.mktemp("hostile") / "site")
    sign_site(site, signing_key[0] / "release.key")
    return site


@reader("manifest")
def manifest(ctx: Ctx, hostile: str) -> list[Case]:
    site = ctx.tmp / "site"
    shutil.copytree(ctx.request.getfixturevalue("signed_site"), site, symlinks=True)
    keys, keyid = ctx.request.getfixturevalue("signing_key")
    dist = Distribution.at(site / METAL_INFO)
    name = manifest_file_names(METAL, "0.1.0")[0]

    def verifying(folder: Path) -> Callable[[], object]:
        """The manifest moved from the .dist-info to `folder`, the policy's manifest_dirs."""
        folder.mkdir(parents=True, exist_ok=True)
        shutil.move(site / METAL_INFO / "tt_meta.manifest.json", folder / name)
        trust = TrustSettings(key_dirs=(str(keys),), manifest_dirs=(str(folder),),
                              state_dir=str(ctx.tmp / "state"), signers=(("metal", (keyid,)),))
        return lambda: Verifier(trust).verify("metal", dist)

    look = "cannot look for a signed manifest"
    if hostile in (LONG_NAME, LONG_PATH):
        far = (long_name if hostile == LONG_NAME else long_path)(ctx.tmp)
        trust = TrustSettings(key_dirs=(str(keys),), manifest_dirs=(str(far),),
                              state_dir=str(ctx.tmp / "state"), signers=(("metal", (keyid,)),))
        return [Case(hostile, lambda: Verifier(trust).verify("metal", dist), str(far / name),
                     f"{look}: File name too long")]
    if hostile == BAD_UTF8_NAME:
        def serial_1(result: object) -> None:
            assert getattr(result, "serial", None) == 1
        return [Case("a manifest directory named with \\xff", verifying(ctx.tmp / BAD_NAME),
                     check=serial_1)]
    folder = ctx.tmp / "manifests"
    call = verifying(folder)
    cases = file_cases(
        hostile, folder / name, call, names=str(folder),
        needles={HUGE: "the signed manifest is larger than 64 MiB",
                 DIRECTORY: "no signed manifest found for tt-vllm-plugin 0.1.0",
                 DANGLING: "no signed manifest found for tt-vllm-plugin 0.1.0",
                 MODE_000: "cannot read the manifest: Permission denied"},
        limit=MAX_ENVELOPE_BYTES)
    if hostile == MODE_000:
        cases.append(Case("the manifest directory, mode 000", call, str(folder / name),
                          f"{look}: Permission denied", unreadable(folder)))
    return cases


@reader("public-key")
def public_key(ctx: Ctx, hostile: str) -> list[Case]:
    release = ctx.request.getfixturevalue("signing_key")[0] / "release.pub"
    keyid = ctx.request.getfixturevalue("signing_key")[1]

    def trusted_from(folder: Path) -> Callable[[], object]:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(release, folder / "release.pub")
        return lambda: load_keys((str(folder),), True)

    def has_key(result: object) -> None:
        assert isinstance(result, dict) and keyid in result

    if hostile in (LONG_NAME, LONG_PATH):
        far = (long_name if hostile == LONG_NAME else long_path)(ctx.tmp)
        return [Case(hostile, lambda: load_keys((str(far),), True), str(far),
                     "cannot look in a key directory: File name too long")]
    if hostile == BAD_UTF8_NAME:
        return [Case("a key directory named with \\xff", trusted_from(ctx.tmp / BAD_NAME),
                     check=has_key)]
    folder = ctx.tmp / "keys"
    call = trusted_from(folder)
    pem = release.read_bytes()
    cannot = "cannot read the public key"
    return file_cases(
        hostile, folder / "second.pub", call, names=str(folder / "second.pub"),
        needles={HUGE: "the public key is too large to be an Ed25519 key",
                 NUL: "the public key file is not a PEM public key",
                 BAD_UTF8: "the public key file is not a PEM public key",
                 DIRECTORY: f"{cannot}: Is a directory",
                 DANGLING: f"{cannot}: No such file or directory",
                 MODE_000: f"{cannot}: Permission denied"},
        limit=MAX_KEY_BYTES, nul=pem.replace(b"\n", b"\n\0", 2), bad_utf8=pem + b"\xff\n",
        legit=pem)


FACTS = ManifestFacts("metal", "pkg", "1.0", {"vllm.platform_plugins": {"tt": "pkg:register"}},
                      None, 1, 2, 3)
KEY = "ab" * 32


def write_record(state: Path) -> Path:
    """A record as a first process writes it (trust/verification_record.py store)."""
    files = {"pkg/__init__.py": (1, "cd" * 32)}
    walked = vr.Walked({"pkg": (1, 2, 3, 4, 5)}, {"pkg/__init__.py": (1, 2, 3, 4, 5)})
    vr.store(str(state), KEY, "ef" * 32, Path("/site"), frozenset({"pkg"}), FACTS, [],
             frozenset(), files, walked)
    return vr.index_path(str(state), KEY)


DEEP_MARSHAL = b")\x01" * 3000 + b"N"  # past marshal's own limit on nesting (2000)


def record_content(record: Path) -> dict[str, dict[str, bytes]]:
    """Hostile records made from a valid one: its magic line, a header (marshal) nested too
    deeply or holding a string that is not UTF-8, NULs; and, after its valid header and
    table, a body nested too deeply (a child reads no body)."""
    raw = record.read_bytes()
    magic = raw[:raw.index(b"\n") + 1]
    at = len(magic) + 4 + struct.unpack_from("<I", raw, len(magic))[0]  # the head
    at += 4 + struct.unpack_from("<I", raw, at)[0] * struct.calcsize("<IIQ32s")  # the table
    at += 4 + struct.unpack_from("<I", raw, at)[0]  # the paths: the body starts here

    def headed(head: bytes) -> bytes:
        return magic + struct.pack("<I", len(head)) + head

    return {"deep": {"header": headed(DEEP_MARSHAL), "body": raw[:at] + DEEP_MARSHAL},
            "nul": {"": magic + b"\0" * 64},
            "bad_utf8": {"": headed(b"u\x01\x00\x00\x00\xff")}}


@reader("record")
def record(ctx: Ctx, hostile: str) -> list[Case]:
    def loading(state: Path) -> Callable[[], object]:
        return lambda: vr.load(str(state), KEY, Path("/site"), True)

    def ignored(result: object) -> None:
        assert result is None  # verified from scratch, and the record written again

    def used(result: object) -> None:
        assert isinstance(result, vr.Cached)

    if hostile in (LONG_NAME, LONG_PATH):
        far = (long_name if hostile == LONG_NAME else long_path)(ctx.tmp)
        return [Case(hostile, loading(far), check=ignored)]
    if hostile == BAD_UTF8_NAME:
        state = ctx.tmp / BAD_NAME
        write_record(state)
        return [Case("a state directory named with \\xff", loading(state), check=used)]
    state = ctx.tmp / "state"
    path = write_record(state)
    content = record_content(path)
    return file_cases(hostile, path, loading(state), names=str(path), needles={},
                      deep=content["deep"], limit=vr.MAX_RECORD_BYTES, nul=content["nul"][""],
                      bad_utf8=content["bad_utf8"][""], check=ignored)


@reader("record-child")
def record_child(ctx: Ctx, hostile: str) -> list[Case]:
    def loading(state: Path, expected: vr.Identity | None = None) -> Callable[[], object]:
        def call() -> object:
            path = vr.index_path(str(state), KEY)
            # The identity the decision carries: the record as its parent wrote it.
            identity = expected if expected is not None else vr.identity(os.stat(path))
            return vr.load_for_child(str(state), KEY, identity, True)
        return call

    cannot = "cannot read the parent's verification record"
    if hostile in (LONG_NAME, LONG_PATH):
        far = (long_name if hostile == LONG_NAME else long_path)(ctx.tmp)
        path = vr.index_path(str(far), KEY)
        return [Case(hostile, loading(far, (1, 2, 3, 4, 5)), str(path),
                     f"{cannot}: File name too long")]
    if hostile == BAD_UTF8_NAME:
        state = ctx.tmp / BAD_NAME
        write_record(state)

        def head(result: object) -> None:
            assert isinstance(result, vr.Head) and result.distribution == "pkg"
        return [Case("a state directory named with \\xff", loading(state), check=head)]
    state = ctx.tmp / "state"
    path = write_record(state)
    written = vr.identity(os.stat(path))
    content = record_content(path)
    # What the parent wrote is hostile (its identity matches): the child must read it safely.
    cases = file_cases(hostile, path, loading(state), names=str(path),
                       needles=dict.fromkeys((DEEP, HUGE, NUL, BAD_UTF8),
                                             "the parent's verification record is unreadable"),
                       deep={"header": content["deep"]["header"]}, limit=0,
                       nul=content["nul"][""], bad_utf8=content["bad_utf8"][""])
    # What replaced the record the parent wrote: the decision has the record's identity.
    replaced = {DIRECTORY: "the parent's verification record changed after the parent wrote it",
                DANGLING: f"{cannot}: No such file or directory",
                MODE_000: f"{cannot}: Permission denied"}
    if hostile in replaced:
        cases = [c._replace(call=loading(state, written), needle=replaced[hostile])
                 for c in cases]
    return cases


def child_settings(state: Path) -> settings_seal.ChildSettings:
    return settings_seal.ChildSettings(
        policy="/etc/tt-meta/policy.toml", policy_digest=KEY, require_signatures=True,
        strict_permissions=True, state_dir=str(state), audit_log=None,
        extra_general_plugins=(), backend_distributions=("tt-vllm-plugin",))




@reader("seal-child")
def seal_child(ctx: Ctx, hostile: str) -> list[Case]:
    where = "environment variable TT_META_DECISION"

    def unsealing(state: Path) -> Callable[[], object]:
        return lambda: settings_seal.unseal(str(state), KEY, where)

    cannot = "cannot read the policy settings sealed by the first process"
    unreadable_seal = "the policy settings sealed by the first process are unreadable"
    if hostile in (LONG_NAME, LONG_PATH, NUL_PATH):
        far = {LONG_NAME: long_name(ctx.tmp), LONG_PATH: long_path(ctx.tmp),
               NUL_PATH: ctx.tmp / "st\0ate"}[hostile]
        needle = unreadable_seal if hostile == NUL_PATH else f"{cannot}: File name too long"
        return [Case(hostile, unsealing(far), str(settings_seal.seal_path(str(far), KEY)),
                     needle)]
    if hostile == BAD_UTF8_NAME:
        state = ctx.tmp / BAD_NAME
        settings_seal.seal(child_settings(state))

        def same(result: object) -> None:
            assert getattr(result, "state_dir", None) == str(state)
        return [Case("a state directory named with \\xff", unsealing(state), check=same)]
    state = ctx.tmp / "state"
    settings_seal.seal(child_settings(state))
    path = settings_seal.seal_path(str(state), KEY)
    return file_cases(
        hostile, path, unsealing(state), names=str(path),
        needles={DEEP: unreadable_seal, HUGE: unreadable_seal, NUL: unreadable_seal,
                 BAD_UTF8: unreadable_seal, DIRECTORY: f"{cannot}: Is a directory",
                 DANGLING: f"{cannot}: Too many levels of symbolic links",
                 MODE_000: f"{cannot}: Permission denied"},
        deep=DEEP_JSON, limit=1 << 16, nul=b'{"policy": "\0"}', bad_utf8=b'{"policy": "\xff"}')


@reader("seal-first")
def seal_first(ctx: Ctx, hostile: str) -> list[Case]:
    cannot = "cannot write the policy settings for child processes"
    if hostile in (LONG_NAME, LONG_PATH):
        far = (long_name if hostile == LONG_NAME else long_path)(ctx.tmp)
        settings = child_settings(far)
        return [Case(hostile, lambda: settings_seal.seal(settings),
                     str(settings_seal.seal_path(str(far), KEY)),
                     f"{cannot}: File name too long")]
    state = ctx.tmp / (BAD_NAME if hostile == BAD_UTF8_NAME else "state")
    settings = child_settings(state)
    path = settings_seal.seal_path(str(state), KEY)

    def sealed(result: object) -> None:
        assert path.read_bytes() == settings.encode() and not path.is_symlink()

    if hostile == BAD_UTF8_NAME:
        return [Case("a state directory named with \\xff", lambda: settings_seal.seal(settings),
                     check=sealed)]
    settings_seal.seal(settings)
    return file_cases(
        hostile, path, lambda: settings_seal.seal(settings), names=str(path),
        needles={DIRECTORY: f"{cannot}: Is a directory"},
        deep=DEEP_JSON, limit=len(settings.encode()), nul=b'{"policy": "\0"}',
        bad_utf8=b'{"policy": "\xff"}', check=sealed)


@reader("rollback-marks")
def rollback_marks(ctx: Ctx, hostile: str) -> list[Case]:
    def advancing(state: Path) -> Callable[[], object]:
        def call() -> object:  # as the verifier does: judge a candidate, then advance
            marks = StateDir(str(state), True)
            marks.judge("pkg 1.0", "pkg", 2, "cd" * 32, "the manifest")
            marks.advance("pkg 1.0", "pkg", 2, "cd" * 32, "the manifest")
            return marks.mark("pkg")
        return call

    def advanced(result: object) -> None:
        assert result == (2, "cd" * 32)

    cannot = "cannot read the state file"
    if hostile in (LONG_NAME, LONG_PATH):
        far = (long_name if hostile == LONG_NAME else long_path)(ctx.tmp)
        return [Case(hostile, advancing(far), str(far / MARKS_FILE),
                     f"{cannot}: File name too long")]
    state = ctx.tmp / (BAD_NAME if hostile == BAD_UTF8_NAME else "state")
    state.mkdir(mode=0o700)
    path = state / MARKS_FILE
    path.write_text('{"pkg": {"serial": 1, "digest": "' + "ab" * 32 + '"}}')
    if hostile == BAD_UTF8_NAME:
        return [Case("a state directory named with \\xff", advancing(state), check=advanced)]
    corrupt = "the state file is corrupt"
    return file_cases(
        hostile, path, advancing(state), names=str(path),
        needles={DEEP: corrupt, HUGE: "the state file is larger than 1 MiB", "number": corrupt,
                 NUL: corrupt, BAD_UTF8: corrupt, DIRECTORY: f"{cannot}: Is a directory",
                 MODE_000: f"{cannot}: Permission denied"},
        deep=DEEP_JSON,
        limit=MAX_MARKS_BYTES, number=b'{"pkg": {"serial": ' + HUGE_NUMBER + b"}}",
        nul=b'{"pkg": \0}', bad_utf8=b'{"pkg": "\xff"}', check=advanced)


def write_dist(site: Path, direct_url: bytes) -> Path:
    info = site / "pkg-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pkg\nVersion: 1.0\n")
    (info / "direct_url.json").write_bytes(direct_url)
    return info


DIRECT_URL = b'{"url": "file:///src/pkg", "dir_info": {"editable": true}}'


@reader("direct-url")
def direct_url(ctx: Ctx, hostile: str) -> list[Case]:
    def reading(info: Path) -> Callable[[], object]:
        return lambda: is_editable(Distribution.at(info), "pkg 1.0")

    def editable(expected: bool) -> Callable[[object], None]:
        def check(result: object) -> None:
            assert result is expected
        return check

    if hostile == BAD_UTF8_NAME:
        info = write_dist(ctx.tmp / BAD_NAME, DIRECT_URL)
        return [Case("a site directory named with \\xff", reading(info), check=editable(True))]
    info = write_dist(ctx.tmp / "site", DIRECT_URL)
    path = info / "direct_url.json"
    unreadable_metadata = "pkg 1.0 has unreadable install metadata"
    return file_cases(
        hostile, path, reading(info), names=str(path),
        needles=dict.fromkeys((DEEP, HUGE, NUL, BAD_UTF8, DIRECTORY, MODE_000),
                              unreadable_metadata),
        deep=DEEP_JSON,
        limit=1 << 20, nul=DIRECT_URL[:-1] + b"\0}", bad_utf8=DIRECT_URL[:-1] + b', "\xff": 1}',
        check=editable(False))


PTH = "__editable__.pkg-1.0.pth"
FINDER = "__editable___pkg_1_0_finder.py"


def write_editable(root: Path, project: Path) -> tuple[Editable, Path]:
    """An editable install as setuptools' default mode leaves it: a .pth that imports a
    finder, whose MAPPING names the package in the project directory."""
    source = project / "pkg"
    source.mkdir(parents=True)
    (source / "__init__.py").write_text("")
    root.mkdir(parents=True, exist_ok=True)
    (root / PTH).write_text(f"import {FINDER[:-3]}; {FINDER[:-3]}.install()\n")
    (root / FINDER).write_text(f"MAPPING = {{'pkg': {str(source)!r}}}\nNAMESPACES = {{}}\n")
    return Editable(PTH, FINDER, None, {"pkg": str(source)}), root


def _editable_cases(ctx: Ctx, hostile: str, name: str) -> list[Case]:
    if hostile == BAD_UTF8_NAME:
        layout, root = write_editable(ctx.tmp / BAD_NAME / "site", ctx.tmp / BAD_NAME / "src")
        return [Case("an install root named with \\xff",
                     lambda: check_installed(layout, root, "pkg 1.0", True))]
    layout, root = write_editable(ctx.tmp / "site", ctx.tmp / "src")
    path = root / name
    legit = path.read_bytes()
    changed = "pkg 1.0: its editable install changed: pkg 1.0 is an editable install tt_meta " \
              "cannot cover: "
    what = "its .pth file" if name == PTH else f"its finder module {name}"
    cannot = f"{changed}cannot read {what}" if name == PTH else \
        f"{changed}cannot parse its finder module"
    # A NUL, and a byte that is not UTF-8, in the .pth's import line or the finder's MAPPING.
    at = legit.index(b";" if name == PTH else b"}")
    return file_cases(
        hostile, path, lambda: check_installed(layout, root, "pkg 1.0", True), names=name,
        needles={DEEP: cannot, HUGE: f"{changed}{what} is larger than 1 MiB",
                 NUL: changed, BAD_UTF8: changed,
                 DIRECTORY: cannot, DANGLING: cannot, MODE_000: cannot},
        deep={"unary operators": b"MAPPING = " + b"-" * DEPTH + b"1\n",
              "binary operators": b"MAPPING = 1" + b"+1" * DEPTH + b"\n",
              "brackets": b"MAPPING = " + b"[" * DEPTH + b"\n"},
        limit=MAX_EDITABLE_BYTES, nul=legit[:at] + b"\0" + legit[at:],
        bad_utf8=legit[:at] + b"\xff" + legit[at:])


@reader("editable-pth")
def editable_pth(ctx: Ctx, hostile: str) -> list[Case]:
    return _editable_cases(ctx, hostile, PTH)


@reader("editable-finder")
def editable_finder(ctx: Ctx, hostile: str) -> list[Case]:
    return _editable_cases(ctx, hostile, FINDER)


# -- The tests ---------------------------------------------------------------------------------

def _cells() -> Iterator[object]:
    for name, row in MATRIX.items():
        for hostile in INPUTS:
            expected = row.get(hostile, "")
            if expected not in (REFUSED, ACCEPTED):
                continue
            marks = []
            if hostile == MODE_000:
                marks.append(pytest.mark.skipif(ROOT, reason="root reads a file of mode 000: "
                                                "make pytest-unprivileged runs this"))
            yield pytest.param(name, hostile, expected, marks=marks, id=f"{name}-{hostile}")


def test_the_matrix_is_complete() -> None:
    """Every reader against every hostile input: a verdict, or why it does not apply."""
    assert set(MATRIX) == set(READERS)
    for name, row in MATRIX.items():
        assert set(row) == set(INPUTS), (name, sorted(set(INPUTS) ^ set(row)))
        for hostile, verdict in row.items():
            assert verdict in (REFUSED, ACCEPTED) or (
                verdict.startswith("n/a: ") and len(verdict) > 20), (name, hostile, verdict)


@pytest.mark.parametrize(("name", "hostile", "expected"), list(_cells()))
def test_hostile_input(name: str, hostile: str, expected: str, tmp_path: Path,
                       request: pytest.FixtureRequest) -> None:
    cases = READERS[name](Ctx(tmp_path, request), hostile)
    assert cases, "no case for a cell the matrix says applies"
    failures = []
    for case in cases:
        result, error, peak = run(case)
        why = _judge(case, expected, result, error, peak)
        if why:
            failures.append(f"{case.label}: {why}")
    try:
        assert not failures, "\n".join(failures)
    finally:
        for path in tmp_path.rglob("*"):  # mode 000 files left for tmp_path's cleanup
            if not path.is_symlink():
                os.chmod(path, 0o700)


def _judge(case: Case, expected: str, result: object, error: BaseException | None,
           peak: int) -> str | None:
    """Why the outcome of `case` fails, or None."""
    if case.memory is not None and peak > case.memory:
        return f"allocated {peak >> 20} MiB, more than {case.memory >> 20} MiB: it read " \
               "more than its limit"
    if isinstance(error, Hung):
        return str(error)
    if expected == ACCEPTED:
        if error is not None:
            return f"refused an acceptable input: {error!r}"
        if case.check is not None:
            try:
                case.check(result)
            except AssertionError as failed:
                return f"accepted, but gave {result!r} ({failed})"
        return None
    if error is None:
        return f"accepted: {result!r}"
    if not isinstance(error, TTMetaError):
        return f"escaped as {type(error).__name__}: {error!r}"
    if error.code == "internal":
        return f"an internal error: {error.render()}"
    rendered = error.render()
    if case.needle not in rendered:
        return f"refused, but not saying {case.needle!r}: {rendered[:2000]}"
    if case.names not in rendered:
        return f"refused, but not naming {case.names[:300]!r}: {rendered[:2000]}"
    return None
