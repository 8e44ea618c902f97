"""`tt-meta explain` and `tt-meta doctor`, run as an operator runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import TWO_BACKENDS_POLICY, SiteMaker, clean_env

from tt_meta_plugin.cli import doctor as _doctor


def tt_meta(site: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tt_meta_plugin.cli", *args],
        env=clean_env(PYTHONPATH=str(site), **env), capture_output=True, text=True, timeout=60,
    )


def test_explain_delegates(make_site: SiteMaker, policy_file: Callable[[str], Path]) -> None:
    site = make_site("tt-vllm-plugin", "vllm-tt", "pjrt-plugin-tt")
    proc = tt_meta(site, "explain", "--model", "forge-org/qwen", "--device", "p150",
                   TT_META_POLICY=str(policy_file(TWO_BACKENDS_POLICY)))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "'forge-org/qwen' (from environment variable TT_META_MODEL)" in out
    assert "'p150' (from environment variable TT_META_DEVICE)" in out
    assert "backend 'forge' by rule 1: model = 'forge-org/*'" in out
    assert "vllm_tt 0.1.0" in out and "tt = vllm_tt:register" in out
    assert "platform:      vllm_tt.platform.TTPlatform" in out
    assert "would delegate" in out


def test_explain_reads_a_vllm_command_line_and_prints_json(
    make_site: SiteMaker, policy_file: Callable[[str], Path]
) -> None:
    site = make_site("tt-vllm-plugin")
    proc = tt_meta(site, "explain", "--json", "--", "vllm", "serve", "metal-org/llama",
                   TT_META_POLICY=str(policy_file(TWO_BACKENDS_POLICY)))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["delegate"] is True and report["backend"] == "metal"
    assert report["inputs"]["model"] == {"value": "metal-org/llama",
                                         "source": "command line (vllm serve MODEL)"}
    assert report["rule"] == 2 and report["distribution"] == "tt-vllm-plugin"
    assert report["platform"] == "tt_vllm_plugin.platform.TTPlatform"


def test_explain_refusal_exits_1(make_site: SiteMaker, policy_file: Callable[[str], Path]
                                 ) -> None:
    site = make_site("tt-vllm-plugin")
    policy = policy_file(TWO_BACKENDS_POLICY)
    proc = tt_meta(site, "explain", "--model", "nobody/x", TT_META_POLICY=str(policy))
    assert proc.returncode == 1
    assert "REFUSED: model 'nobody/x' matches no rule and no default_backend is set" in proc.stdout
    assert f"where: {policy}" in proc.stdout and "fix:" in proc.stdout
    proc = tt_meta(site, "explain", "--json", "--model", "forge-org/x",
                   TT_META_POLICY=str(policy))
    assert proc.returncode == 1
    refusal = json.loads(proc.stdout)["refusal"]
    assert refusal["kind"] == "DelegationError" and "'vllm-tt'" in refusal["summary"]


def test_explain_bad_policy_is_a_diagnostic_not_a_traceback(
    make_site: SiteMaker, policy_file: Callable[[str], Path]
) -> None:
    site = make_site()
    proc = tt_meta(site, "explain", "--model", "a/b",
                   TT_META_POLICY=str(policy_file("version = 1\nallowed_backends = 'metal'\nx=1")))
    assert proc.returncode == 1
    assert "unknown key 'x'" in proc.stdout and "Traceback" not in proc.stdout + proc.stderr


def test_doctor_reports_conflicts_and_backends(
    make_site: SiteMaker, policy_file: Callable[[str], Path]
) -> None:
    site = make_site("tt-vllm-plugin", "vllm-tt")
    proc = tt_meta(site, "doctor", TT_META_POLICY=str(policy_file(TWO_BACKENDS_POLICY)))
    assert proc.returncode == 1  # VLLM_PLUGINS unset with backends installed
    out = proc.stdout
    assert "[FAIL] VLLM_PLUGINS: VLLM_PLUGINS is not set" in out
    assert "fix: set VLLM_PLUGINS=tt_meta" in out
    assert "[  ok] backend metal: tt-vllm-plugin 0.1.0" in out
    assert "runtime module 'pjrt_plugin_tt' cannot be imported" in out
    assert "[  ok] policy:" in out
    assert "[  ok] vLLM command lines: read with the option table of vLLM 0.32" in out
    assert "] devices: " in out  # what it says depends on the machine: tested below
    proc = tt_meta(site, "doctor", VLLM_PLUGINS="tt_meta",
                   TT_META_POLICY=str(policy_file(TWO_BACKENDS_POLICY)))
    assert proc.returncode == 0, proc.stdout


def test_doctor_checks_what_vllm_and_ray_read(
    make_site: SiteMaker, policy_file: Callable[[str], Path]
) -> None:
    site = make_site("tt-vllm-plugin", "vllm-tt")
    policy = str(policy_file(TWO_BACKENDS_POLICY))
    proc = tt_meta(site, "doctor", VLLM_PLUGINS="tt_meta, other", TT_META_POLICY=policy,
                   VLLM_TARGET_DEVICE="cpu", RAY_RUNTIME_ENV_HOOK="ops.hooks.env")
    assert proc.returncode == 1, proc.stdout
    out = proc.stdout
    assert ("[warn] VLLM_PLUGINS: VLLM_PLUGINS has spaces around 'other': vLLM does not strip "
            "them, so it looks for a plugin named ' other'") in out
    assert "[FAIL] VLLM_TARGET_DEVICE: VLLM_TARGET_DEVICE=cpu asks vLLM for its own cpu" in out
    assert "[  ok] RAY_RUNTIME_ENV_HOOK: RAY_RUNTIME_ENV_HOOK=ops.hooks.env: a vLLM server" in out
    relative = tt_meta(site, "doctor", VLLM_PLUGINS="tt_meta", TT_META_POLICY="policy.toml")
    assert "[warn] TT_META_POLICY: TT_META_POLICY=policy.toml is relative" in relative.stdout
    assert "fix: set TT_META_POLICY to an absolute path" in relative.stdout


def test_doctor_reports_start_up_files(
    make_site: SiteMaker, policy_file: Callable[[str], Path]
) -> None:
    """What Python runs from a backend's install root before tt_meta: listed, and a warning
    for a sitecustomize.py or a .pth no installed distribution put there."""
    site = make_site("tt-vllm-plugin")
    policy = str(policy_file(TWO_BACKENDS_POLICY))
    clean = tt_meta(site, "doctor", VLLM_PLUGINS="tt_meta", TT_META_POLICY=policy)
    assert f"[  ok] start-up files: none in {site}" in clean.stdout, clean.stdout
    (site / "usercustomize.py").write_text("")
    stray = tt_meta(site, "doctor", VLLM_PLUGINS="tt_meta", TT_META_POLICY=policy)
    assert (f"[warn] start-up files: Python runs these from {site} before tt_meta verifies "
            "anything: usercustomize.py (installed by nothing)") in stray.stdout, stray.stdout
    assert "fix: make sure each is yours" in stray.stdout
    assert stray.returncode == 0  # a warning: doctor cannot know whether it is wanted


def test_doctor_device_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The device probe, pointed at a folder the test controls instead of /dev/tenstorrent."""
    monkeypatch.setattr(_doctor, "DEVICE_GLOB", str(tmp_path / "*"))

    def devices() -> _doctor.Check:
        (check,) = [c for c in _doctor.run_checks({}) if c.topic == "devices"]
        return check

    none = devices()
    assert none.status == _doctor.WARN and "no Tenstorrent device found" in none.message
    for n in ("0", "1"):
        (tmp_path / n).touch()
    two = devices()
    assert two.status == _doctor.OK and two.message.startswith("2 Tenstorrent device(s)")
