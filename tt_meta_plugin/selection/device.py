"""The device rules match on when `TT_META_DEVICE` does not name one: what `tt-smi -s` reports.

Source order: `TT_META_DEVICE` (inputs.py), then `tt-smi -s`, then unknown. Only a first
process looks (activation/first_process.py imports this module only when `TT_META_DEVICE`
is unset); a child takes its parent's device from the recorded decision and never runs
tt-smi. The board types and counts tt-smi lists map to a device exactly as Tenstorrent's
inference server maps them (tt-inference-server, workflows/device_utils.py:
`_get_tt_smi_board_type_counts` and `BOARD_TYPE_COUNT_TO_DEVICE`; the names are its
`DeviceTypes`, lower-cased). What tt_meta cannot read with certainty (output that is not
JSON, an entry without a board type, mixed boards, an odd chip count, a timeout) leaves the
device unknown, with what tt-smi reported: it is not an error, since a rule without `device`
still matches; a rule with one does not.

tt-smi is looked up on PATH (absolute directories only), run without a shell, its stdin
closed, in a session of its own (killed whole at the timeout), and at most 4 MiB of its
output is read. A device found is kept for the rest of the boot (device_cache.py), so a
server's restarts and the other servers of the host do not run tt-smi again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import selectors
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from .._errors import PermissionsError
from .._log import log
from ..trust import permissions
from . import device_cache
from .inputs import ENV_DEVICE, Input
from .policy import DEFAULT_TT_SMI_TIMEOUT, Policy

TT_SMI = "tt-smi"
MAX_OUTPUT = 4 << 20  # a Galaxy's snapshot (32 chips, telemetry and firmware) is ~100 KiB

# (board type, boards) -> device: tt-inference-server's BOARD_TYPE_COUNT_TO_DEVICE, with its
# DeviceTypes names lower-cased. A combination not listed (mixed boards too) is no device.
BOARDS_TO_DEVICE: dict[tuple[tuple[str, int], ...], str] = {
    (("n300", 1),): "n300",
    (("n300", 4),): "t3k",
    (("tt-galaxy-wh", 32),): "galaxy",
    (("n150", 1),): "n150",
    (("n150", 4),): "n150x4",
    (("e150", 1),): "e150",
    (("p100", 1),): "p100",
    (("p150", 1),): "p150",
    (("p150", 4),): "p150x4",
    (("p150", 8),): "p150x8",
    (("p300", 1),): "p300",
    (("p300", 2),): "p300x2",
    (("tt-galaxy-bh", 32),): "blackhole_galaxy",
}
DEVICES = frozenset(BOARDS_TO_DEVICE.values())
# Boards of two chips, which tt-smi lists once per chip ("n300 L", "n300 R"): counted in
# chips, then halved (an odd count is no whole number of boards).
TWO_CHIP_BOARDS = ("n300", "p300")
_COLOUR = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # tt-smi colours its error messages
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Unknown(Exception):
    """Why the device is unknown (what tt-smi reported); not a refusal."""


def detect_device(policy: Policy | None, environ: Mapping[str, str],
                  say: bool = True) -> tuple[Input | None, str | None]:
    """The device with its source, or None and why it is unknown. `say`: log it (one line);
    `policy` None (`tt-meta doctor` with a policy it cannot read): no cache, the default
    timeout."""
    try:
        found = _detect(policy, environ)
    except Unknown as why:
        if say:
            _say_unknown(policy, str(why))
        return None, str(why)
    if say:
        log(logging.INFO, "tt_meta: device %r from %s (%s is not set)", found.value,
            found.source, ENV_DEVICE)
    return found, None


def _detect(policy: Policy | None, environ: Mapping[str, str]) -> Input:
    timeout = policy.tt_smi_timeout if policy is not None else DEFAULT_TT_SMI_TIMEOUT
    if timeout == 0:
        raise Unknown("tt_smi_timeout = 0 in the policy, so tt-smi is not run")
    program = find_tt_smi(environ)
    if program is None:
        raise Unknown("tt-smi is not on PATH")
    strict = policy.trust.strict_permissions if policy is not None else True
    try:
        # Whoever can replace tt-smi chooses the device, and so the backend rules give.
        permissions.check(Path(program), "tt-smi program", strict)
        info = os.stat(program)
    except PermissionsError as error:
        raise Unknown(f"{program} is not run: {error.summary}") from None
    except OSError as exc:
        raise Unknown(f"{program} cannot be read: {exc.strerror}") from None
    source = f"tt-smi -s ({program})"
    cache = (device_cache.for_program(policy.trust.state_dir, os.path.realpath(program), info)
             if policy is not None else None)
    if cache is not None:
        cached = cache.read(DEVICES)
        if cached is not None:
            return Input(cached, f"{source}, cached for this boot in {cache.path}")
    device = device_for(board_counts(run_tt_smi(program, timeout, environ), program))
    if cache is not None:
        cache.write(device)
    return Input(device, source)


def find_tt_smi(environ: Mapping[str, str]) -> str | None:
    """tt-smi on PATH, searched in its absolute directories only: a relative one (`.`, an
    empty entry) would run whatever tt-smi the working directory holds."""
    folders = [d for d in environ.get("PATH", "").split(os.pathsep) if os.path.isabs(d)]
    return shutil.which(TT_SMI, path=os.pathsep.join(folders)) if folders else None


def tt_smi_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """tt-smi's environment: this one, with PATH cut to its absolute directories (as tt-smi
    itself was found) and without the variables that change which Python code runs
    (PYTHONPATH, PYTHONSTARTUP, ...): tt-smi is a Python program whose answer picks rules."""
    env = {k: v for k, v in environ.items() if not k.startswith("PYTHON")}
    env["PATH"] = os.pathsep.join(d for d in environ.get("PATH", "").split(os.pathsep)
                                  if os.path.isabs(d))
    return env


def run_tt_smi(program: str, timeout: float, environ: Mapping[str, str]) -> bytes:
    """`tt-smi -s`'s standard output, or Unknown: it failed, hung or printed too much."""
    command = f"`{program} -s`"
    try:
        proc = subprocess.Popen([program, "-s"], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=tt_smi_environment(environ), start_new_session=True,
                                close_fds=True)
    except OSError as exc:
        raise Unknown(f"{command} could not be started: {exc.strerror}") from None
    try:
        out, err = _read_bounded(proc, time.monotonic() + timeout, command, timeout)
        code = proc.wait()
    except BaseException:  # timed out, too much output, or interrupted
        _kill(proc)
        raise
    if code != 0:
        said = _last_line(out) or _last_line(err)  # tt-smi prints its errors on stdout
        raise Unknown(f"{command} exited with status {code}"
                      + (f": {said}" if said else " and printed nothing"))
    return out


def _read_bounded(proc: subprocess.Popen[bytes], deadline: float, command: str,
                  timeout: float) -> tuple[bytes, bytes]:
    """Both pipes, until tt-smi closes them, the deadline passes or MAX_OUTPUT is read."""
    assert proc.stdout is not None and proc.stderr is not None
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    chunks: dict[int, list[bytes]] = {out_fd: [], err_fd: []}
    total = 0
    with selectors.DefaultSelector() as selector:
        for pipe in (proc.stdout, proc.stderr):
            selector.register(pipe, selectors.EVENT_READ)
        while selector.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                raise Unknown(f"{command} did not finish within {timeout:g} s (stopped)")
            for key, _ in selector.select(left):
                data = os.read(key.fd, 65536)
                if not data:
                    selector.unregister(key.fileobj)
                    continue
                chunks[key.fd].append(data)
                total += len(data)
                if total > MAX_OUTPUT:
                    raise Unknown(f"{command} printed more than {MAX_OUTPUT >> 20} MiB")
    proc.stdout.close()
    proc.stderr.close()
    # The pipes are closed; the process may still be exiting: the deadline holds for that too.
    try:
        proc.wait(max(deadline - time.monotonic(), 0.001))
    except subprocess.TimeoutExpired:
        raise Unknown(f"{command} did not finish within {timeout:g} s (stopped)") from None
    return b"".join(chunks[out_fd]), b"".join(chunks[err_fd])


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """tt-smi and whatever it started (its own session, which outlives tt-smi if a program
    it started still holds a pipe): nothing is left running."""
    with contextlib.suppress(OSError):  # all gone already
        os.killpg(proc.pid, signal.SIGKILL)
    # Not waited for without bound: a program stuck in the driver (state D) dies only when
    # it leaves it, and the server must not wait for that.
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(1)
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def _last_line(data: bytes) -> str:
    """The last line printed, shown in a message: printable, on one line, 200 characters."""
    lines = [" ".join(_CONTROL.sub(" ", _COLOUR.sub("", line)).split())
             for line in data.decode("utf-8", "replace").splitlines()]
    text = next((line for line in reversed(lines) if line), "")
    return text if len(text) <= 200 else text[:200] + "..."


def board_counts(output: bytes, program: str) -> dict[str, int]:
    """Boards per board type in `tt-smi -s` output, as tt-inference-server counts them:
    `device_info[].board_info.board_type`, lower-cased, its first word; the two-chip boards
    halved. Unlike it, an entry without a board type makes the whole answer unknown (it
    skips such an entry, which could turn a machine it cannot read into a smaller one)."""
    command = f"`{program} -s`"
    try:
        data = json.loads(output.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        said = _last_line(output)
        raise Unknown(f"{command} did not print JSON" + (f": {said}" if said else "")) from None
    entries = data.get("device_info") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise Unknown(f"{command} printed no device_info list")
    counts: dict[str, int] = {}
    for number, entry in enumerate(entries):
        board = entry.get("board_info") if isinstance(entry, dict) else None
        kind = board.get("board_type") if isinstance(board, dict) else None
        words = kind.lower().split() if isinstance(kind, str) else []
        if not words:
            raise Unknown(f"{command} printed device_info[{number}] without a "
                          "board_info.board_type")
        counts[words[0]] = counts.get(words[0], 0) + 1
    if not counts:
        raise Unknown(f"{command} lists no devices")
    for board in TWO_CHIP_BOARDS:
        chips = counts.get(board, 0)
        if chips % 2:
            raise Unknown(f"{command} lists {chips} chips of {board} boards, which have two "
                          "each")
        if chips:
            counts[board] = chips // 2
    return counts


def device_for(counts: Mapping[str, int]) -> str:
    """The device these boards make (tt-inference-server's table), or Unknown."""
    device = BOARDS_TO_DEVICE.get(tuple(sorted(counts.items())))
    if device is None:
        boards = ", ".join(f"{n} x {kind}" for kind, n in sorted(counts.items()))
        raise Unknown(f"tt-smi -s reports {boards}, which makes no device tt_meta knows")
    return device


def _say_unknown(policy: Policy | None, why: str) -> None:
    """One line: a WARNING when a rule of the policy names a device (it cannot match)."""
    named = [f"rule {r.number}" for r in policy.rules if r.device] if policy is not None else []
    if named:
        log(logging.WARNING, "tt_meta: the device is unknown (%s is not set, and %s): "
            "rules naming a device (%s) cannot match; set %s to the device type (e.g. "
            "n150, n300, t3k, p150, p300x2, galaxy)", ENV_DEVICE, why, ", ".join(named),
            ENV_DEVICE)
    else:
        log(logging.INFO, "tt_meta: the device is unknown (%s is not set, and %s)",
            ENV_DEVICE, why)
