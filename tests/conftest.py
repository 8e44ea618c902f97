"""Shared fixtures: real wheels of the simulated backends, installed the normal way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SUPPORT = REPO / "tests" / "support"
sys.path.insert(0, str(SUPPORT))

from sim import build_all, build_wheel, install  # noqa: E402

from tt_meta_plugin._keys import generate, load_private  # noqa: E402
from tt_meta_plugin._metadata import Distribution, normalize  # noqa: E402
from tt_meta_plugin._sign import build_manifest, sign_manifest, write_manifest  # noqa: E402

__all__ = ["build_wheel", "install"]

# Variables the tests set themselves; the developer's own values must not leak in.
_SCRUBBED_PREFIXES = ("TT_META_", "VLLM_PLUGINS", "HF_MODEL", "TT_SIM_", "VLLM_RAY_")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def sim_wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_all(tmp_path_factory.mktemp("wheels"))


SiteMaker = Callable[..., Path]


# Which backend each test distribution is signed as.
SIGN_AS = {"tt-vllm-plugin": "metal", "vllm-tt-plugin": "metal", "vllm-tt": "forge",
           "quasar-vllm": "quasar"}


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
# way vLLM does (platform function twice, general plugins once per process).
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
            "tt_meta_plugin._policy", "tt_meta_plugin._verify", "tt_meta_plugin._catalog"))
        vllm_entry.general_plugin(); vllm_entry.general_plugin()
        out["inherited"] = vllm_entry.current().inherited
    except SystemExit as exc:
        out["exit"] = exc.code
    out["decision"] = os.environ.get("TT_META_DECISION")
    out["ray"] = os.environ.get("VLLM_RAY_EXTRA_ENV_VARS_TO_COPY")
    print("RESULT " + json.dumps(out))
    """
)


class ProcessResult:
    def __init__(self, proc: subprocess.CompletedProcess[str], record_dir: Path) -> None:
        self.proc = proc
        self.stderr = proc.stderr
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        self.result: dict[str, object] = json.loads(lines[-1][7:]) if lines else {}
        self.events: list[dict[str, object]] = []
        for path in sorted(record_dir.glob("*.jsonl")):
            self.events += [json.loads(x) for x in path.read_text().splitlines()]

    @property
    def refused(self) -> bool:
        return self.result.get("exit") == 1

    def dists(self, event: str) -> list[object]:
        return [e["dist"] for e in self.events if e["event"] == event]


ProcessRunner = Callable[..., ProcessResult]


@pytest.fixture
def run_process(tmp_path: Path) -> Iterator[ProcessRunner]:
    def run(site: Path, argv: list[str] | None = None, **env: str) -> ProcessResult:
        record = tmp_path / f"record-{len(list(tmp_path.glob('record-*')))}"
        record.mkdir()
        full_env = clean_env(PYTHONPATH=str(site), TT_SIM_RECORD_DIR=str(record))
        full_env.setdefault("VLLM_PLUGINS", "tt_meta")
        full_env.update(env)
        full_env = {k: v for k, v in full_env.items() if v != "<unset>"}
        if argv is not None:
            full_env["TEST_ARGV"] = json.dumps(argv)
        proc = subprocess.run([sys.executable, "-c", PROCESS_SCRIPT], env=full_env,
                              capture_output=True, text=True, timeout=120)
        return ProcessResult(proc, record)

    yield run


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
