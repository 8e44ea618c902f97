"""Device detection when TT_META_DEVICE is not set: `tt-smi -s`, its per-boot cache, and the
decision, explain and doctor that use it.

Every tt-smi here is a real program: a small shell script the test writes into a PATH
directory, printing what `tt-smi -s` prints (its JSON snapshot) and counting its runs in a
file. conftest.py keeps any real tt-smi off PATH for the whole suite.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import METAL, Scene, assert_delegated, clean_env

from tt_meta_plugin._errors import ConfigError
from tt_meta_plugin.selection import device_cache
from tt_meta_plugin.selection.device import BOARDS_TO_DEVICE, detect_device, tt_smi_environment
from tt_meta_plugin.selection.policy import Policy, parse_policy

FORGE = "vllm-tt"


def snapshot(*board_types: str) -> dict[str, Any]:
    """A `tt-smi -s` snapshot as tt-smi prints it: host information and, per chip, board,
    telemetry and firmware tables; tt_meta reads only `device_info[].board_info.board_type`."""
    return {
        "time": "2026-11-30T01:00:00.000000",
        "host_info": {"OS": "Linux", "Distro": "Ubuntu 22.04.5 LTS", "Kernel": "5.15.0",
                      "Hostname": "tt-host", "Platform": "x86_64", "Python": "3.10.12",
                      "Memory": "503.52 GB", "Driver": "TT-KMD 2.0.0"},
        "device_info": [
            {"smbus_telem": {"BOARD_ID": f"0x10000{i:02x}"},
             "board_info": {"bus_id": f"0000:{i:02x}:00.0", "board_type": board,
                            "board_id": f"10000{i:02x}", "coords": "N/A",
                            "dram_status": True, "dram_speed": "12G", "pcie_speed": 4,
                            "pcie_width": "16"},
             "telemetry": {"voltage": "0.80", "current": " 31.0", "power": " 25.0",
                           "aiclk": " 500", "asic_temperature": "41.2"},
             "firmwares": {"fw_bundle_version": "18.7.0", "arc_fw": "2.32.0.0"},
             "limits": {"vdd_min": "0.65", "tdp_limit": " 85"}}
            for i, board in enumerate(board_types)
        ],
    }


class TtSmi:
    """A stand-in `tt-smi` in its own PATH directory: prints `output`, exits with `status`,
    and appends its arguments to a file on every run."""

    def __init__(self, root: Path) -> None:
        self.bin = root / "bin"
        self.bin.mkdir(parents=True)
        self.path = self.bin / "tt-smi"
        self.runs_file = root / "runs"
        self.output = root / "snapshot.out"

    def prints(self, data: dict[str, Any] | bytes, status: int = 0, extra: str = "") -> TtSmi:
        self.output.write_bytes(data if isinstance(data, bytes) else json.dumps(data).encode())
        self.script(f'cat "{self.output}"\n{extra}exit {status}\n')
        return self

    def script(self, body: str) -> None:
        self.path.write_text(f'#!/bin/sh\necho "$@" >> "{self.runs_file}"\n{body}')
        self.path.chmod(0o755)

    def runs(self) -> list[str]:
        return self.runs_file.read_text().splitlines() if self.runs_file.exists() else []

    @property
    def search_path(self) -> str:
        """PATH with this tt-smi first."""
        return f"{self.bin}{os.pathsep}{os.environ['PATH']}"

    def env(self) -> dict[str, str]:
        return {"PATH": self.search_path}


@pytest.fixture
def tt_smi(tmp_path: Path) -> TtSmi:
    return TtSmi(tmp_path / "tt-smi")


def policy(tmp_path: Path, top: str = "", rules: str = "") -> Policy:
    text = (f'version = 1\nallowed_backends = ["metal", "forge"]\n{top}\n{rules}\n'
            f'[trust]\nstate_dir = "{tmp_path / "state"}"\n')
    return parse_policy(text.encode(), str(tmp_path / "policy.toml"))


def cache_file(tmp_path: Path) -> Path:
    return tmp_path / "state" / device_cache.NAME


# -- Board shapes: tt-inference-server's table, one stand-in each -------------------------

# (board types tt-smi lists, one per chip, with the spellings it uses) -> device
SHAPES = [
    (["n150 L"], "n150"),
    (["n150 L"] * 4, "n150x4"),
    (["n300 L", "n300 R"], "n300"),
    (["n300 L", "n300 R"] * 4, "t3k"),
    (["tt-galaxy-wh"] * 32, "galaxy"),
    (["e150"], "e150"),
    (["p100"], "p100"),
    (["p150"], "p150"),
    (["p150"] * 4, "p150x4"),
    (["P150 "] * 8, "p150x8"),  # lower-cased and stripped, as tt-inference-server does
    (["p300 L", "p300 R"], "p300"),
    (["p300  L", "P300 r"] * 2, "p300x2"),
    (["tt-galaxy-bh"] * 32, "blackhole_galaxy"),
]


def test_the_shapes_cover_the_table() -> None:
    assert sorted(device for _boards, device in SHAPES) == sorted(BOARDS_TO_DEVICE.values())


@pytest.mark.parametrize(("boards", "device"), SHAPES, ids=[d for _b, d in SHAPES])
def test_each_board_shape_is_its_device(tmp_path: Path, tt_smi: TtSmi, boards: list[str],
                                        device: str) -> None:
    tt_smi.prints(snapshot(*boards))
    found, why = detect_device(policy(tmp_path), tt_smi.env())
    assert why is None and found is not None
    assert (found.value, found.source) == (device, f"tt-smi -s ({tt_smi.path})")
    assert tt_smi.runs() == ["-s"]


# -- What leaves the device unknown -------------------------------------------------------

def _entries(*entries: object) -> dict[str, Any]:
    return {"device_info": list(entries)}


UNKNOWN: dict[str, tuple[dict[str, Any] | bytes, str]] = {
    "not JSON": (b"\x1b[31m Error in detecting devices!\x1b[0m\n", "did not print JSON: "
                 "Error in detecting devices!"),
    "not UTF-8": (b"\xff\xfe{}", "did not print JSON"),
    "nested too deeply": (b"[" * 100_000, "did not print JSON"),
    "a list": (b"[]", "printed no device_info list"),
    "no device_info": ({"host_info": {}}, "printed no device_info list"),
    "device_info not a list": ({"device_info": {"board_type": "n150"}},
                               "printed no device_info list"),
    "entry not an object": (_entries("n150"), "printed device_info[0] without a "
                            "board_info.board_type"),
    "no board_info": (_entries({"board_info": {"board_type": "n150"}}, {"telemetry": {}}),
                      "printed device_info[1] without a board_info.board_type"),
    "board_type not text": (_entries({"board_info": {"board_type": 150}}),
                            "printed device_info[0] without"),
    "empty board_type": (_entries({"board_info": {"board_type": "  "}}),
                         "printed device_info[0] without"),
    "no devices": (_entries(), "lists no devices"),
    "odd n300 chips": (snapshot("n300 L", "n300 R", "n300 L"),
                       "lists 3 chips of n300 boards, which have two each"),
    "mixed boards": (snapshot("n150 L", "n300 L", "n300 R"),
                     "reports 1 x n150, 1 x n300, which makes no device tt_meta knows"),
    "a count not in the table": (snapshot("n150", "n150"),
                                 "reports 2 x n150, which makes no device tt_meta knows"),
    "a board not in the table": (snapshot("p150a"), "reports 1 x p150a, which makes no"),
}


@pytest.mark.parametrize("case", sorted(UNKNOWN))
def test_output_tt_meta_cannot_read_leaves_the_device_unknown(
        tmp_path: Path, tt_smi: TtSmi, case: str, caplog: pytest.LogCaptureFixture) -> None:
    output, expected = UNKNOWN[case]
    tt_smi.prints(output)
    caplog.set_level(logging.INFO, logger="vllm.tt_meta")
    found, why = detect_device(policy(tmp_path), tt_smi.env())
    assert found is None and why is not None and expected in why, why
    assert tt_smi.runs() == ["-s"]
    assert not cache_file(tmp_path).exists()  # a failure is asked again next time
    (line,) = caplog.records  # said once; INFO: no rule of this policy names a device
    assert line.levelno == logging.INFO and expected in line.getMessage()


def test_unknown_is_a_warning_when_a_rule_names_a_device(
        tmp_path: Path, tt_smi: TtSmi, caplog: pytest.LogCaptureFixture) -> None:
    tt_smi.prints(b"garbage")
    rules = ('[[rule]]\nmodel = "a/*"\nbackend = "metal"\n\n'
             '[[rule]]\ndevice = ["n300", "t3k"]\nbackend = "forge"\n')
    caplog.set_level(logging.INFO, logger="vllm.tt_meta")
    found, _why = detect_device(policy(tmp_path, rules=rules), tt_smi.env())
    assert found is None
    (line,) = caplog.records
    assert line.levelno == logging.WARNING
    assert line.getMessage() == (
        f"tt_meta: the device is unknown (TT_META_DEVICE is not set, and `{tt_smi.path} -s` "
        "did not print JSON: garbage): rules naming a device (rule 2) cannot match; set "
        "TT_META_DEVICE to the device type (e.g. n150, n300, t3k, p150, p300x2, galaxy)")


def test_a_failing_tt_smi_is_quoted(tmp_path: Path, tt_smi: TtSmi) -> None:
    """tt-smi prints its errors on stdout, in colour; the last line is quoted, plainly."""
    tt_smi.prints(b"\x1b[31m No Tenstorrent devices detected! Please check your hardware "
                  b"and try again. Exiting... \x1b[0m\n", status=1,
                  extra='echo "UserWarning: pkg_resources is deprecated" >&2\n')
    found, why = detect_device(policy(tmp_path), tt_smi.env())
    assert found is None and why == (
        f"`{tt_smi.path} -s` exited with status 1: No Tenstorrent devices detected! Please "
        "check your hardware and try again. Exiting...")
    tt_smi.prints(b"", status=3)
    assert detect_device(policy(tmp_path), tt_smi.env())[1] == (
        f"`{tt_smi.path} -s` exited with status 3 and printed nothing")
    # Even with a valid snapshot: a failing tt-smi is not believed.
    tt_smi.prints(snapshot("n150"), status=1)
    assert detect_device(policy(tmp_path), tt_smi.env())[0] is None


@pytest.mark.parametrize("end", ["wait", "exit 0"], ids=["hangs", "exits, its child hangs"])
def test_a_hanging_tt_smi_is_stopped_with_what_it_started(tmp_path: Path, tt_smi: TtSmi,
                                                          end: str) -> None:
    """Stopped at the timeout, with every program of its session: also one it left behind
    holding its output open after it exited."""
    pid_file = tmp_path / "sleep.pid"
    tt_smi.script(f'sleep 60 &\necho $! > "{pid_file}"\n{end}\n')
    started = time.monotonic()
    found, why = detect_device(policy(tmp_path, top="tt_smi_timeout = 0.5"), tt_smi.env())
    elapsed = time.monotonic() - started
    assert found is None and why == f"`{tt_smi.path} -s` did not finish within 0.5 s (stopped)"
    assert 0.5 <= elapsed < 3, elapsed
    # The program it started (holding the pipe) was killed with it: its session is gone.
    sleeper = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(sleeper) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(sleeper)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_output_is_read_up_to_4_mib(tmp_path: Path, tt_smi: TtSmi) -> None:
    tt_smi.script("head -c 6000000 /dev/zero\n")
    found, why = detect_device(policy(tmp_path), tt_smi.env())
    assert found is None and why == f"`{tt_smi.path} -s` printed more than 4 MiB"


def test_no_tt_smi_on_path(tmp_path: Path, tt_smi: TtSmi, caplog: pytest.LogCaptureFixture,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.INFO, logger="vllm.tt_meta")
    assert detect_device(policy(tmp_path), {"PATH": os.environ["PATH"]}) == (
        None, "tt-smi is not on PATH")
    assert detect_device(policy(tmp_path), {}) == (None, "tt-smi is not on PATH")
    assert [r.getMessage() for r in caplog.records] == [
        "tt_meta: the device is unknown (TT_META_DEVICE is not set, and tt-smi is not on "
        "PATH)"] * 2
    # A relative PATH entry is not searched: it would run the working directory's tt-smi.
    tt_smi.prints(snapshot("n150"))
    monkeypatch.chdir(tt_smi.bin)
    assert detect_device(policy(tmp_path), {"PATH": f".{os.pathsep}"})[1] == (
        "tt-smi is not on PATH")
    assert tt_smi.runs() == []


def test_a_timeout_of_0_never_runs_tt_smi(tmp_path: Path, tt_smi: TtSmi) -> None:
    tt_smi.prints(snapshot("n150"))
    assert detect_device(policy(tmp_path, top="tt_smi_timeout = 0"), tt_smi.env()) == (
        None, "tt_smi_timeout = 0 in the policy, so tt-smi is not run")
    assert tt_smi.runs() == []


def test_a_tt_smi_others_can_write_is_not_run(tmp_path: Path, tt_smi: TtSmi) -> None:
    tt_smi.prints(snapshot("n150"))
    tt_smi.path.chmod(0o777)
    found, why = detect_device(policy(tmp_path), tt_smi.env())
    assert found is None and why is not None
    assert why.startswith(f"{tt_smi.path} is not run: refusing the tt-smi program: ")
    assert "writable by group or others (mode 777)" in why
    assert tt_smi.runs() == []


@pytest.mark.parametrize(("value", "timeout"), [("2", 2.0), ("0.25", 0.25), ("0", 0.0)])
def test_the_timeout_setting(tmp_path: Path, value: str, timeout: float) -> None:
    assert policy(tmp_path, top=f"tt_smi_timeout = {value}").tt_smi_timeout == timeout
    assert policy(tmp_path).tt_smi_timeout == 5.0


@pytest.mark.parametrize("value", ['"5"', "-1", "601", "true", "nan", "inf", "[1]"])
def test_a_bad_timeout_is_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        policy(tmp_path, top=f"tt_smi_timeout = {value}")
    assert caught.value.summary.startswith(
        "'tt_smi_timeout' must be a number of seconds from 0 to 600, not ")
    assert caught.value.where == f"{tmp_path / 'policy.toml'}, key 'tt_smi_timeout'"


# -- The per-boot cache ---------------------------------------------------------------------

def test_the_cache_spares_later_processes_a_run(tmp_path: Path, tt_smi: TtSmi) -> None:
    tt_smi.prints(snapshot("n300 L", "n300 R"))
    first, _ = detect_device(policy(tmp_path), tt_smi.env())
    path = cache_file(tmp_path)
    assert first is not None and first.source == f"tt-smi -s ({tt_smi.path})"
    info = path.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == os.geteuid()
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    data = json.loads(path.read_text())
    assert data["device"] == "n300" and data["tt_smi"] == str(tt_smi.path)
    assert data["boot_id"] == device_cache.BOOT_ID.read_text().strip()
    second, _ = detect_device(policy(tmp_path), tt_smi.env())
    assert second is not None and second.value == "n300"
    assert second.source == f"tt-smi -s ({tt_smi.path}), cached for this boot in {path}"
    assert tt_smi.runs() == ["-s"]


def _rewrite(path: Path, change: dict[str, Any]) -> None:
    """Change the cache as tt_meta would have written it (0600, atomically)."""
    data = json.loads(path.read_text()) | change
    tmp = path.with_name(".edit")
    tmp.write_text(json.dumps(data))
    tmp.chmod(0o600)
    os.replace(tmp, path)


def test_another_boot_or_another_tt_smi_runs_it_again(tmp_path: Path, tt_smi: TtSmi) -> None:
    tt_smi.prints(snapshot("n300 L", "n300 R"))
    detect_device(policy(tmp_path), tt_smi.env())
    # Left from an earlier boot, with another device: stale, asked again, replaced.
    _rewrite(cache_file(tmp_path), {"boot_id": "00000000-0000-0000-0000-000000000000",
                                    "device": "galaxy"})
    found, _ = detect_device(policy(tmp_path), tt_smi.env())
    assert found is not None and found.value == "n300" and len(tt_smi.runs()) == 2
    assert json.loads(cache_file(tmp_path).read_text())["boot_id"] == \
        device_cache.BOOT_ID.read_text().strip()
    # tt-smi upgraded (the program changed): asked again.
    tt_smi.prints(snapshot("n300 L", "n300 R") | {"time": "later"})
    found, _ = detect_device(policy(tmp_path), tt_smi.env())
    assert found is not None and found.source == f"tt-smi -s ({tt_smi.path})"
    assert len(tt_smi.runs()) == 3
    # Another tt-smi first on PATH: asked, not the one cached.
    other = TtSmi(tmp_path / "other").prints(snapshot("p150"))
    found, _ = detect_device(policy(tmp_path), {"PATH": f"{other.bin}{os.pathsep}"
                                                f"{tt_smi.env()['PATH']}"})
    assert found is not None and found.value == "p150" and other.runs() == ["-s"]
    assert detect_device(policy(tmp_path), tt_smi.env())[0] is not None
    assert len(tt_smi.runs()) == 4


def _foreign(path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    os.chown(path, 12345, 12345)


def _group_writable(path: Path) -> None:
    path.chmod(0o620)


def _symlink(path: Path) -> None:
    real = path.with_name("elsewhere.json")
    os.replace(path, real)
    path.symlink_to(real)


def _garbage(path: Path) -> None:
    path.write_text('{"device": "n150"}')


def _unknown_device(path: Path) -> None:
    _rewrite(path, {"device": "gpu"})


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path, 0o600)  # opened without blocking, never read


def _huge(path: Path) -> None:
    with path.open("r+b") as handle:
        handle.truncate(1 << 30)  # sparse: read up to 4 KiB only


def _nested(path: Path) -> None:
    path.write_bytes(b"[" * 100_000)


def _not_utf8(path: Path) -> None:
    path.write_bytes(b'{"device": "\xff"}')


SPOILED = {
    "a FIFO": (_fifo, "it is not a regular file"),
    "huge": (_huge, "it is not a device cache tt_meta wrote"),
    "nested too deeply": (_nested, "it is not a device cache tt_meta wrote"),
    "not UTF-8": (_not_utf8, "it is not a device cache tt_meta wrote"),
    "foreign-owned": (_foreign, "is owned by uid 12345, not by root"),
    "group-writable": (_group_writable, "is writable by group or others (mode 620)"),
    "a symlink": (_symlink, "it cannot be read: Too many levels of symbolic links"),
    "not written by tt_meta": (_garbage, "it is not a device cache tt_meta wrote"),
    "a device tt_meta does not know": (_unknown_device, "it is not a device cache tt_meta"),
}


@pytest.mark.parametrize("case", sorted(SPOILED))
def test_a_cache_that_could_be_forged_is_ignored_with_a_warning(
        tmp_path: Path, tt_smi: TtSmi, case: str, caplog: pytest.LogCaptureFixture) -> None:
    """Ignored, not refused: tt-smi is asked again and the file replaced by tt_meta's own
    (docs/policy.md, "Device detection"). Whatever is there, it is read without blocking and
    at most 4 KiB of it."""
    spoil, reason = SPOILED[case]
    tt_smi.prints(snapshot("n150"))
    detect_device(policy(tmp_path), tt_smi.env())
    path = cache_file(tmp_path)
    spoil(path)
    caplog.set_level(logging.WARNING, logger="vllm.tt_meta")
    found, _ = detect_device(policy(tmp_path), tt_smi.env())
    assert found is not None and found.source == f"tt-smi -s ({tt_smi.path})"
    assert len(tt_smi.runs()) == 2
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"tt_meta: ignoring the device cache {path}: ") and reason in line
    assert line.endswith("; running tt-smi again (remove the file if it is not tt_meta's)")
    info = os.lstat(path)  # replaced by tt_meta's own
    assert stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_uid == os.geteuid()
    assert detect_device(policy(tmp_path), tt_smi.env())[0] is not None
    assert len(tt_smi.runs()) == 2


def test_a_state_directory_it_cannot_write_is_said(tmp_path: Path, tt_smi: TtSmi,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "state").write_text("a file, not a directory")
    tt_smi.prints(snapshot("n150"))
    caplog.set_level(logging.WARNING, logger="vllm.tt_meta")
    found, _ = detect_device(policy(tmp_path), tt_smi.env())
    assert found is not None and found.value == "n150"
    (line,) = [r.getMessage() for r in caplog.records]
    assert line == (f"tt_meta: cannot keep the detected device in {cache_file(tmp_path)}: "
                    "File exists (every first process runs tt-smi until it can)")


# -- Serving: the decision, children, the CLI -----------------------------------------------

DEVICE_POLICY = """
    version = 1
    allowed_backends = ["metal", "forge"]
    default_backend = "metal"

    [[rule]]
    name = "n300 hosts run Forge"
    device = "n300"
    backend = "forge"
"""
WORKER = ["/venv/bin/worker.py"]


def test_the_detected_device_decides_and_children_reuse_it(scene: Scene,
                                                          tt_smi: TtSmi) -> None:
    tt_smi.prints(snapshot("n300 L", "n300 R"))
    policy = scene.policy_with(body=DEVICE_POLICY)
    parent = scene.run(policy, PATH=tt_smi.search_path)
    assert_delegated(parent, FORGE)
    decision = json.loads(parent.decision)
    assert decision["device"] == "n300" and decision["backend"] == "forge"
    assert decision["reason"] == "rule 1 (n300 hosts run Forge): device = 'n300'"
    assert tt_smi.runs() == ["-s"]
    # A restart: the same device, from the cache, without running tt-smi.
    assert_delegated(scene.run(policy, PATH=tt_smi.search_path), FORGE)
    assert tt_smi.runs() == ["-s"]
    # A child never runs tt-smi, even on PATH and with no cache: the decision has its device.
    (scene.state / device_cache.NAME).unlink()
    child = scene.run(policy, WORKER, TT_META_DECISION=parent.decision,
                      PATH=tt_smi.search_path)
    assert_delegated(child, FORGE, inherited=True)
    assert tt_smi.runs() == ["-s"]
    # A child whose own TT_META_DEVICE says otherwise is refused, as before.
    other = scene.run(policy, WORKER, TT_META_DECISION=parent.decision,
                      TT_META_DEVICE="n150", PATH=tt_smi.search_path)
    assert other.refused and "this process reads device 'n150' (from environment variable "\
        "TT_META_DEVICE) but the decision is for 'n300'" in other.stderr
    assert tt_smi.runs() == ["-s"]


def test_without_a_device_a_device_rule_does_not_match(scene: Scene, tt_smi: TtSmi) -> None:
    tt_smi.prints(b"", status=1)
    result = scene.run(scene.policy_with(body=DEVICE_POLICY), PATH=tt_smi.search_path)
    assert_delegated(result, METAL)
    assert json.loads(result.decision)["device"] is None
    (line,) = [ln for ln in result.stderr.splitlines() if "device is unknown" in ln]
    assert line.startswith("WARNING ") and "rules naming a device (rule 1)" in line
    # TT_META_DEVICE comes first: tt-smi is not run.
    named = scene.run(scene.policy_with(body=DEVICE_POLICY), TT_META_DEVICE="N300",
                      PATH=tt_smi.search_path)
    assert_delegated(named, FORGE)
    assert len(tt_smi.runs()) == 1


LOADED = textwrap.dedent("""
    import json, sys
    sys.argv = sys.argv[1:]
    from tt_meta_plugin import vllm_entry
    vllm_entry.platform_plugin()
    print("LOADED " + json.dumps(sorted(m for m in sys.modules if m.startswith("tt_meta"))))
""")


def test_the_detection_module_loads_only_without_tt_meta_device(scene: Scene,
                                                                tt_smi: TtSmi) -> None:
    """The first process imports it only to look; a child never (tests/test_child_path.py
    holds the child's whole budget)."""
    tt_smi.prints(snapshot("n150"))

    def loaded(**env: str) -> list[str]:
        proc = subprocess.run(
            [sys.executable, "-c", LOADED, "/venv/bin/vllm", "serve", "metal-org/llama"],
            capture_output=True, text=True, timeout=120,
            env=clean_env(PYTHONPATH=str(scene.site), VLLM_PLUGINS="tt_meta",
                          TT_META_POLICY=str(scene.policy), **env))
        assert proc.returncode == 0, proc.stderr[-3000:]
        (line,) = [x for x in proc.stdout.splitlines() if x.startswith("LOADED ")]
        found: list[str] = json.loads(line[len("LOADED "):])
        return found

    detecting = {"tt_meta_plugin.selection.device", "tt_meta_plugin.selection.device_cache"}
    assert detecting <= set(loaded(PATH=tt_smi.search_path))
    assert not detecting & set(loaded(TT_META_DEVICE="n150", PATH=tt_smi.search_path))
    assert tt_smi.runs() == ["-s"]


def tt_meta(scene: Scene, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tt_meta_plugin.cli", *args],
                          env=clean_env(PYTHONPATH=str(scene.site), **env),
                          capture_output=True, text=True, timeout=60)


def test_explain_and_doctor_show_the_device_and_its_source(scene: Scene,
                                                          tt_smi: TtSmi) -> None:
    policy = str(scene.policy_with(body=DEVICE_POLICY))
    tt_smi.prints(snapshot(*["n300 L", "n300 R"] * 4))
    proc = tt_meta(scene, "explain", "--json", "--model", "metal-org/llama",
                   TT_META_POLICY=policy, PATH=tt_smi.search_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["inputs"]["device"] == {"value": "t3k",
                                          "source": f"tt-smi -s ({tt_smi.path})"}
    assert report["inputs"]["device_unknown"] is None and report["backend"] == "metal"
    text = tt_meta(scene, "explain", "--model", "metal-org/llama", TT_META_POLICY=policy,
                   PATH=tt_smi.search_path).stdout
    cached = f"{scene.state / device_cache.NAME}"
    assert (f"device:        't3k' (from tt-smi -s ({tt_smi.path}), cached for this boot in "
            f"{cached})") in text, text
    doctor = tt_meta(scene, "doctor", TT_META_POLICY=policy, PATH=tt_smi.search_path).stdout
    assert (f"[  ok] device: 't3k' (from tt-smi -s ({tt_smi.path}), cached for this boot in "
            f"{cached})") in doctor, doctor
    assert tt_smi.runs() == ["-s"]
    # --device (TT_META_DEVICE) comes first.
    named = json.loads(tt_meta(scene, "explain", "--json", "--model", "metal-org/llama",
                               "--device", "n300", TT_META_POLICY=policy,
                               PATH=tt_smi.search_path).stdout)
    assert named["inputs"]["device"]["source"] == "environment variable TT_META_DEVICE"
    assert named["backend"] == "forge" and tt_smi.runs() == ["-s"]


def test_explain_and_doctor_say_why_the_device_is_unknown(scene: Scene) -> None:
    policy = str(scene.policy_with(body=DEVICE_POLICY))
    proc = tt_meta(scene, "explain", "--json", "--model", "metal-org/llama",
                   TT_META_POLICY=policy)
    report = json.loads(proc.stdout)
    assert report["inputs"]["device"] is None
    assert report["inputs"]["device_unknown"] == "tt-smi is not on PATH"
    assert "rules naming a device (rule 1) cannot match" in proc.stderr  # the one WARNING
    text = tt_meta(scene, "explain", "--model", "metal-org/llama", TT_META_POLICY=policy)
    assert ("device:        unknown (TT_META_DEVICE is not set, and tt-smi is not on PATH)"
            in text.stdout), text.stdout
    doctor = tt_meta(scene, "doctor", TT_META_POLICY=policy).stdout
    assert ("[warn] device: unknown (TT_META_DEVICE is not set, and tt-smi is not on PATH): "
            "rules naming a device do not match") in doctor, doctor


def test_tt_smi_runs_without_python_variables_or_relative_path_entries() -> None:
    """tt-smi is a Python program whose answer picks rules: what would change the code it
    runs (PYTHONPATH, PYTHONSTARTUP, a relative PATH entry for its interpreter) is not
    passed on."""
    env = tt_smi_environment({"PATH": f".{os.pathsep}/usr/bin{os.pathsep}{os.pathsep}rel",
                              "PYTHONPATH": "/tmp/evil", "PYTHONSTARTUP": "/tmp/evil.py",
                              "PYTHONHOME": "/tmp", "HOME": "/root", "TT_VISIBLE_DEVICES": "0"})
    assert env == {"PATH": "/usr/bin", "HOME": "/root", "TT_VISIBLE_DEVICES": "0"}
