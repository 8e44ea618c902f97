"""Shared fixtures: real wheels of the simulated backends, installed the normal way, and the
one environment every test runs in.

The suite must give the same answer on any machine, as root or as an ordinary user: so the
environment is pinned here, once, at start-up (`pytest_configure`): umask 022, no variable of
the developer's that changes what tt_meta, vLLM or Python do (see `_SCRUBBED`), an empty
Hugging Face cache, no tt-smi on PATH, and no real Tenstorrent package importable. What a
test needs beyond that, it sets itself.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import py_compile
import shutil
import struct
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SUPPORT = REPO / "tests" / "support"
sys.path.insert(0, str(SUPPORT))

from server import read_events  # noqa: E402
from sim import build_all, build_wheel, install  # noqa: E402

from tt_meta_plugin._metadata import Distribution, normalize  # noqa: E402
from tt_meta_plugin.selection.inputs import DEFAULT_POLICY  # noqa: E402
from tt_meta_plugin.trust.envelope import MANIFEST_TYPE, Envelope, Signature, pae  # noqa: E402
from tt_meta_plugin.trust.keys import generate, key_id, load_private  # noqa: E402
from tt_meta_plugin.trust.signing import build_manifest, sign_manifest, write_manifest  # noqa: E402

__all__ = ["build_wheel", "install", "read_events"]

# -- The pinned environment -----------------------------------------------------------------

# Variables that change what tt_meta decides (TT_META_*, HF_MODEL, VLLM_PLUGINS,
# VLLM_TARGET_DEVICE, ...), where caches are (HF_*, XDG_CACHE_HOME), or how Python writes and
# finds bytecode (a PYTHONPYCACHEPREFIX or SOURCE_DATE_EPOCH breaks the bytecode tests, and
# PYTHONDONTWRITEBYTECODE hides what writing it changes). Removed from this process and so
# from every process a test starts.
_SCRUBBED_PREFIXES = ("TT_META_", "TT_SIM_", "VLLM_", "HF_", "RAY_")
_SCRUBBED = frozenset({
    "TT_DEVICE", "TT_VISIBLE_DEVICES", "XDG_CACHE_HOME", "TRANSFORMERS_CACHE",
    "PYTHONPATH", "PYTHONPYCACHEPREFIX", "SOURCE_DATE_EPOCH", "PYTHONDONTWRITEBYTECODE",
    "PYTHONSTARTUP", "PYTHONSAFEPATH", "PYTHONNOUSERSITE", "PYTHONOPTIMIZE", "PYTHONINSPECT",
})
# Real Tenstorrent packages: with one of them importable, the simulated backends' outcomes
# (a runtime that cannot be imported, a backend that is not installed) would change.
_REAL_PACKAGES = ("ttnn", "pjrt_plugin_tt", "tt_vllm_plugin", "vllm_tt", "vllm_tt_plugin")
UMASK = 0o022
_CACHE = pytest.StashKey[str]()


def scrubbed(environ: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in environ.items()
            if not k.startswith(_SCRUBBED_PREFIXES) and k not in _SCRUBBED}


def pytest_configure(config: pytest.Config) -> None:
    os.umask(UMASK)
    sys.dont_write_bytecode = False  # as Python does by default, whatever started pytest
    clean = scrubbed(os.environ)
    os.environ.clear()
    os.environ.update(clean)
    # No tt-smi: without TT_META_DEVICE a first process would run the developer's and match
    # rules on their machine's device (selection/device.py). tests/test_device.py puts
    # stand-ins on PATH itself.
    os.environ["PATH"] = os.pathsep.join(
        d for d in os.environ.get("PATH", "").split(os.pathsep)
        if not os.path.exists(os.path.join(d or ".", "tt-smi")))
    # An empty, private cache: a hub id is never found in the developer's own cache.
    # HOME too: code given an environment without HF_HOME falls back to ~/.cache.
    cache = tempfile.mkdtemp(prefix="tt-meta-tests-cache-")
    os.environ.update(HF_HOME=os.path.join(cache, "hf"), XDG_CACHE_HOME=cache,
                      HF_HUB_OFFLINE="1", HOME=os.path.join(cache, "home"))
    os.mkdir(os.environ["HOME"])
    config.stash[_CACHE] = cache
    present = [m for m in _REAL_PACKAGES if importlib.util.find_spec(m) is not None]
    if present:
        raise pytest.UsageError(
            f"the test interpreter can import {present}: the tests need an environment "
            "without Tenstorrent packages (`make test` creates one in .venv)")


def pytest_unconfigure(config: pytest.Config) -> None:
    cache = config.stash.get(_CACHE, None)
    if cache:
        shutil.rmtree(cache, ignore_errors=True)


def clean_env(**extra: str) -> dict[str, str]:
    """The pinned environment plus `extra` (a value of "<unset>" removes the variable)."""
    env = scrubbed(os.environ)
    env.update(HF_HOME=os.environ["HF_HOME"], XDG_CACHE_HOME=os.environ["XDG_CACHE_HOME"],
               HF_HUB_OFFLINE="1")
    env.update(extra)
    return {k: v for k, v in env.items() if v != "<unset>"}


# What a vLLM command line's argv[0] looks like: the `vllm` script beside this interpreter.
# (Not derived by replacing "python" in the interpreter's name: `python3` would give `vllm3`.)
VLLM_ARGV0 = str(Path(sys.executable).with_name("vllm"))
BUILTIN_POLICY = DEFAULT_POLICY  # named explicitly: a machine may have /etc/tt-meta/policy.toml


# Tenstorrent's release_model_spec.json of the release the built-in policy is generated from.
# It is tt-inference-server's file, not ours, so it is not in this repository: the tests that
# need it (the built-in policy is exactly its generated rules; its matrix is Tenstorrent's
# choice) read it from MODEL_SPEC_FILE or beside the checkout, in ../shared/reference/, and
# skip, saying so, where neither has it. Its SHA-256 must be the one the policy names.
MODEL_SPEC_FILE = "MODEL_SPEC_FILE"
SHARED_SPEC = Path(__file__).resolve().parents[2] / "shared" / "reference" / \
    "release_model_spec-0.20.0.json"


@pytest.fixture(scope="session")
def real_spec() -> Path:
    import hashlib
    import re

    path = Path(os.environ.get(MODEL_SPEC_FILE) or SHARED_SPEC)
    if not path.is_file():
        pytest.skip(f"Tenstorrent's release_model_spec.json (release 0.20.0) is not at {path}: "
                    f"set {MODEL_SPEC_FILE} to a copy (tt-inference-server's repository root)")
    named = re.search(r"^# The spec file's SHA-256: ([0-9a-f]{64})$",
                      BUILTIN_POLICY.read_text(encoding="utf-8"), re.M)
    assert named, f"{BUILTIN_POLICY} names no spec SHA-256"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == named.group(1), f"{path} is not the release the built-in policy names"
    return path


@pytest.fixture(scope="session")
def sim_wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_all(tmp_path_factory.mktemp("wheels"))


SiteMaker = Callable[..., Path]


# Which backend each test distribution is signed as.
SIGN_AS = {"tt-vllm-plugin": "metal", "vllm-tt-plugin": "metal", "vllm-tt": "forge",
           "quasar-vllm": "quasar", "quasar-plugin": "quasar",
           # the backends' runtimes, signed as such (tt-meta sign finds the role)
           "ttnn": "metal", "pjrt-plugin-tt": "forge"}


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A key pair made as `tt-meta keygen` makes it: (keys directory, key id)."""
    folder = tmp_path_factory.mktemp("keys")
    keyid = generate(folder / "release")
    return folder, keyid


def sign_site(site: Path, key: Path, serial: int = 1, expires_days: float = 30) -> list[Path]:
    """Sign every backend distribution in `site` as an image build would (`tt-meta sign`)."""
    written = []
    for info in sorted(site.glob("*.dist-info")):
        dist = Distribution.at(info)
        backend = SIGN_AS.get(normalize(dist.name))
        if backend is None:
            continue
        manifest = build_manifest(dist, backend, serial, expires_days)
        out = info / "tt_meta.manifest.json"
        write_manifest(sign_manifest(manifest, [load_private(key)]), out)
        written.append(out)
    return written


@pytest.fixture
def make_site(tmp_path: Path, sim_wheels: dict[str, Path],
              signing_key: tuple[Path, str]) -> SiteMaker:
    """make_site("tt-vllm-plugin", "vllm-tt", extra=[wheel, ...]) -> an installed site dir,
    whose backend distributions are signed with the session's key (unless sign=False)."""
    counter = iter(range(1000))

    def make(*projects: str, extra: list[Path] | None = None, sign: bool = True) -> Path:
        wanted = [sim_wheels["sim-record"], *(sim_wheels[p] for p in projects), *(extra or [])]
        site = install(wanted, tmp_path / f"site{next(counter)}")
        if sign:
            sign_site(site, signing_key[0] / "release.key")
        return site

    return make


def write_project(root: Path, name: str, package: str, files: Mapping[str, str],
                  entry_points: Mapping[str, Mapping[str, str]],
                  dependencies: list[str] | None = None) -> Path:
    """Write a small installable project (for backends shaped in ways the sims are not)."""
    project = root / name
    (project / package).mkdir(parents=True, exist_ok=True)
    lines = [
        '[build-system]', 'requires = ["setuptools>=68"]',
        'build-backend = "setuptools.build_meta"', '', '[project]',
        f'name = "{name}"', 'version = "1.0.0"', f"dependencies = {json.dumps(dependencies or [])}",
        '',
    ]
    for group, eps in entry_points.items():
        lines.append(f'[project.entry-points."{group}"]')
        lines += [f'{k} = "{v}"' for k, v in eps.items()]
        lines.append("")
    lines += ["[tool.setuptools]", f'packages = ["{package}"]']
    (project / "pyproject.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for rel, text in files.items():
        (project / package / rel).write_text(textwrap.dedent(text), encoding="utf-8")
    return project


# A script run in a fresh interpreter: it plays one vLLM process, calling our entry points the
# way vLLM does (platform function twice, general plugins once per process). It exits as the
# vLLM process would: with tt_meta's SystemExit code, else 0.
PROCESS_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    argv = json.loads(os.environ.pop("TEST_ARGV", "[]"))
    if argv:
        sys.argv = argv
    from tt_meta_plugin import vllm_entry
    out = {}
    try:
        out["platform"] = [vllm_entry.platform_plugin(), vllm_entry.platform_plugin()]
        # The costly modules activation loaded (children and warm first processes avoid
        # them); taken before the backend's general plugins, which import what they like.
        out["modules"] = sorted(m for m in sys.modules if m.split(".")[0] in (
            "tomllib", "pluggy", "cryptography", "packaging") or m in (
            "tt_meta_plugin.selection.policy", "tt_meta_plugin.trust.verifier",
            "tt_meta_plugin.selection.catalog"))
        vllm_entry.general_plugin(); vllm_entry.general_plugin()
        out["general_plugins_ran"] = True
        out["inherited"] = vllm_entry.current().inherited
    except SystemExit as exc:
        out["exit"] = exc.code
        out["code"] = getattr(getattr(exc, "error", None), "code", None)
    out["decision"] = os.environ.get("TT_META_DECISION")
    out["ray"] = os.environ.get("RAY_RUNTIME_ENV_HOOK")
    print("RESULT " + json.dumps(out))
    sys.exit(out.get("exit") or 0)
    """
)

# The platform class each simulated backend distribution answers.
PLATFORM_OF = {"tt-vllm-plugin": "tt_vllm_plugin.platform.TTPlatform",
               "vllm-tt": "vllm_tt.platform.TTPlatform",
               "vllm-tt-plugin": "vllm_tt_plugin.platform.TTPlatform",
               "quasar-vllm": "quasar_vllm.platform.QuasarPlatform"}


class ProcessResult:
    def __init__(self, proc: subprocess.CompletedProcess[str], record_dir: Path) -> None:
        self.proc = proc
        self.returncode = proc.returncode
        self.stderr = proc.stderr
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        self.result: dict[str, object] = json.loads(lines[-1][7:]) if lines else {}
        self.events = read_events(record_dir)

    @property
    def refused(self) -> bool:
        return self.result.get("exit") == 1 and self.returncode == 1

    @property
    def decision(self) -> str:
        decision = self.result.get("decision")
        assert isinstance(decision, str), (self.result, self.stderr[-2000:])
        return decision

    def dists(self, event: str) -> list[object]:
        return [e["dist"] for e in self.events if e["event"] == event]


ProcessRunner = Callable[..., ProcessResult]


@pytest.fixture
def run_process(tmp_path: Path) -> Iterator[ProcessRunner]:
    def run(site: Path, argv: list[str] | None = None, **env: str) -> ProcessResult:
        record = tmp_path / f"record-{len(list(tmp_path.glob('record-*')))}"
        record.mkdir()
        full_env = clean_env(PYTHONPATH=str(site), TT_SIM_RECORD_DIR=str(record),
                             VLLM_PLUGINS="tt_meta")
        full_env.update(env)
        full_env = {k: v for k, v in full_env.items() if v != "<unset>"}
        if argv is not None:
            full_env["TEST_ARGV"] = json.dumps(argv)
        proc = subprocess.run([sys.executable, "-c", PROCESS_SCRIPT], env=full_env,
                              capture_output=True, text=True, timeout=120)
        return ProcessResult(proc, record)

    yield run


def assert_delegated(result: ProcessResult, dist: str, *, also: Iterable[str] = (),
                     inherited: bool = False) -> None:
    """The process delegated to `dist` as vLLM needs it: exit 0, the platform class answered
    to both calls, the backend's platform function and general plugins ran, no error, and no
    other backend's code ran (`also`: other distributions whose general plugins may run)."""
    tail = result.stderr[-3000:]
    assert result.returncode == 0 and "exit" not in result.result, (result.result, tail)
    assert result.result.get("platform") == [PLATFORM_OF[dist]] * 2, (result.result, tail)
    assert result.result.get("general_plugins_ran") is True, (result.result, tail)
    assert result.result.get("inherited") is inherited, (result.result, tail)
    assert "ERROR" not in result.stderr and "Traceback" not in result.stderr, tail
    assert {e["dist"] for e in result.events} == {dist, *also}, result.events
    ran = {e["event"] for e in result.events if e["dist"] == dist}
    assert {"platform_function", "general_plugin"} <= ran, result.events
    assert result.dists("platform_function") == [dist], "platform function called twice"
    assert json.loads(result.decision)["distribution"] in (dist, dist.replace("-", "_"))


class StateWatch:
    """Every file tt_meta writes that another process trusts: the rollback marks and the
    verification records under the state directory, and the audit log. `before()` takes a
    picture; `assert_nothing_trusted_added()` proves a refused run changed none of it and
    logged only refusals."""

    def __init__(self, state: Path, audit: Path | None = None) -> None:
        self.state, self.audit = state, audit
        self._files: dict[str, str] = {}
        self._audit_lines = 0

    def _picture(self) -> dict[str, str]:
        if not self.state.exists():
            return {}
        return {p.relative_to(self.state).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(self.state.rglob("*")) if p.is_file() and p.name != ".lock"}

    def _audit(self) -> list[dict[str, object]]:
        if self.audit is None or not self.audit.exists():
            return []
        return [json.loads(x) for x in self.audit.read_text().splitlines()]

    def before(self) -> None:
        self._files = self._picture()
        self._audit_lines = len(self._audit())

    def files(self) -> dict[str, str]:
        return self._picture()

    def assert_nothing_trusted_added(self) -> None:
        now = self._picture()
        changed = sorted(k for k in now.keys() | self._files.keys()
                         if now.get(k) != self._files.get(k))
        assert changed == [], f"a refused run changed trusted state: {changed}"
        if self.audit is not None:
            added = self._audit()[self._audit_lines:]
            assert added, "the refusal was not written to the audit log"
            # A process may have delegated before it failed; its last word is the refusal.
            last = {e["pid"]: e["verdict"] for e in added}
            assert set(last.values()) == {"refused"}, added


def assert_refused(result: ProcessResult, *needles: str, where: object = None,
                   code: str | None = None, state: StateWatch | None = None) -> None:
    """A clean refusal: exit 1 through tt_meta's own SystemExit, with the error `code` (see
    tt_meta_plugin._errors), each needle in the ERROR message, `where` (the file or variable
    refused) on its `where:` line, no traceback, no backend code run, no decision left for
    children, and (given `state`) nothing trusted written."""
    tail = result.stderr[-3000:]
    assert result.refused, (result.returncode, result.result, tail)
    if code is not None:
        assert result.result.get("code") == code, (result.result.get("code"), code, tail)
    for needle in needles:
        assert needle in result.stderr, (needle, tail)
    if where is not None:
        assert f"where: {where}" in result.stderr, (f"where: {where}", tail)
    assert "ERROR" in result.stderr, tail
    assert "Traceback" not in result.stderr, tail
    assert result.events == [], f"backend code ran: {result.events}"
    assert result.result.get("decision") is None, "a decision was left for children"
    if state is not None:
        state.assert_nothing_trusted_added()


def trust_table(keys: Path, keyid: str, state: Path) -> str:
    signers = "\n".join(f'{b} = ["{keyid}"]' for b in sorted(set(SIGN_AS.values())))
    return (f'\n[trust]\nkey_dirs = ["{keys}"]\nstate_dir = "{state}"\n'
            f"\n[trust.signers]\n{signers}\n")


@pytest.fixture
def policy_file(tmp_path: Path, signing_key: tuple[Path, str]) -> Callable[[str], Path]:
    """Write a policy; unless it has its own [trust] table, it trusts the session's key."""
    counter = iter(range(1000))

    def write(text: str) -> Path:
        path = tmp_path / f"policy{next(counter)}.toml"
        text = textwrap.dedent(text)
        if "[trust]" not in text:
            text += trust_table(signing_key[0], signing_key[1], tmp_path / "state")
        path.write_text(text, encoding="utf-8")
        return path

    return write


TWO_BACKENDS_POLICY = """
    version = 1
    allowed_backends = ["metal", "forge"]

    [[rule]]
    model = "forge-org/*"
    backend = "forge"

    [[rule]]
    model = "metal-org/*"
    backend = "metal"
"""


# -- A signed site under attack (the threat-model tests) -----------------------------------

MODEL = [VLLM_ARGV0, "serve", "metal-org/llama"]
METAL = "tt-vllm-plugin"
METAL_INFO = "tt_vllm_plugin-0.1.0.dist-info"
PolicyFile = Callable[[str], Path]


class Scene:
    """A signed site, its policy and trust directories, and the means to attack them."""

    def __init__(self, root: Path, site: Path, keys: Path, keyid: str, run: ProcessRunner,
                 policy_file: PolicyFile) -> None:
        self.root, self.site, self.keys, self.keyid = root, site, keys, keyid
        self.run_process, self.policy_file = run, policy_file
        self.state = root / "state"
        self.audit = root / "audit.jsonl"
        self.watch = StateWatch(self.state, self.audit)
        self.manifest = site / METAL_INFO / "tt_meta.manifest.json"
        self.policy = self.policy_with()

    def run(self, policy: Path | None = None, argv: list[str] | None = None,
            **env: str) -> ProcessResult:
        """One process; what tt_meta had written before it is kept for `assert_refused`."""
        self.watch.before()
        return self.run_process(self.site, argv or MODEL,
                                TT_META_POLICY=str(policy or self.policy), **env)

    def child(self, decision: str, policy: Path | None = None) -> ProcessResult:
        """A process vLLM starts (worker), from its parent's environment."""
        return self.run(policy, ["/venv/bin/worker.py"], TT_META_DECISION=decision)

    def policy_with(self, trust: str = "", top: str = "", body: str = TWO_BACKENDS_POLICY,
                    keys: Path | None = None, signers: str | None = None) -> Path:
        """A policy: `body` (rules) with extra top-level keys and extra [trust] lines,
        trusting `keys` (the session's by default) for `signers` (every backend). Every
        scene's policy keeps an audit log, so each refusal is checked to be logged."""
        if signers is None:
            signers = "\n".join(f'{b} = ["{self.keyid}"]' for b in ("forge", "metal"))
        return self.policy_file(
            f'{top}{body}\n[trust]\nkey_dirs = ["{keys or self.keys}"]\n'
            f'state_dir = "{self.state}"\naudit_log = "{self.audit}"\n{trust}\n'
            f"[trust.signers]\n{signers}\n")

    def envelope(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.manifest.read_bytes())
        return data

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(base64.b64decode(self.envelope()["payload"]))
        return data

    def write_envelope(self, data: dict[str, Any] | bytes) -> None:
        raw = data if isinstance(data, bytes) else json.dumps(data).encode()
        self.manifest.write_bytes(raw)

    def resign(self, payload: bytes, key: Path | None = None,
               payload_type: str = MANIFEST_TYPE, extra: list[Signature] | None = None) -> None:
        private = load_private(key or self.keys / "release.key")
        sig = Signature(self.keyid if key is None else _keyid(key),
                        private.sign(pae(payload_type, payload)))
        envelope = Envelope(payload_type, payload, (sig, *(extra or [])))
        self.manifest.write_bytes(envelope.to_bytes())

    def resign_payload(self, change: Callable[[dict[str, Any]], None]) -> None:
        payload = self.payload()
        change(payload)
        self.resign(json.dumps(payload).encode())


def _keyid(key: Path) -> str:
    return key_id(load_private(key).public_key())


@pytest.fixture
def scene(tmp_path: Path, make_site: SiteMaker, run_process: ProcessRunner,
          policy_file: PolicyFile, signing_key: tuple[Path, str]) -> Scene:
    site = make_site("tt-vllm-plugin", "vllm-tt", "pjrt-plugin-tt")
    return Scene(tmp_path, site, signing_key[0], signing_key[1], run_process, policy_file)


def refused(scene: Scene, result: ProcessResult, *needles: str, where: object = None,
            code: str | None = None) -> None:
    """A clean refusal of `scene.run()` that wrote nothing another process trusts."""
    assert_refused(result, *needles, where=where, code=code, state=scene.watch)



# -- Installed files ------------------------------------------------------------------------

def platform_py(scene: Scene) -> Path:
    return scene.site / "tt_vllm_plugin" / "platform.py"


def tamper_bytecode(source: Path, evil: str) -> Path:
    """A __pycache__ file for `source` whose header matches its mtime and size, holding
    code compiled from `evil`: what Python 3.11 would run instead of the source."""
    fake = source.with_name("_evil_src.py")
    fake.write_text(evil)
    compiled = py_compile.compile(str(fake), cfile=str(source.with_name("_evil.pyc")))
    assert compiled is not None
    cached = Path(compiled)
    fake.unlink()
    data = bytearray(cached.read_bytes())
    info = source.stat()
    data[8:16] = struct.pack("<II", int(info.st_mtime) & 0xFFFFFFFF, info.st_size & 0xFFFFFFFF)
    target = Path(importlib.util.cache_from_source(str(source)))
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(bytes(data))
    cached.unlink()
    return target


EVIL = textwrap.dedent(
    """
    from tt_sim_record import record
    record("tt-vllm-plugin", "TAMPERED")
    def register():
        record("tt-vllm-plugin", "TAMPERED")
        return "tt_vllm_plugin.platform.TTPlatform"
    def register_models():
        pass
    """
)


