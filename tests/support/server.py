"""Start a real `vllm serve`, wait for it, talk to it, stop it (tests and demo share this)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

VLLM = shutil.which("vllm", path=os.path.dirname(sys.executable)) or "vllm"
SERVE_ARGS = ["--max-model-len", "128", "--enforce-eager", "--dtype", "float32",
              "--gpu-memory-utilization", "0.2"]
START_TIMEOUT = 300.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def post_json(url: str, body: Mapping[str, object]) -> dict[str, Any]:
    request = urllib.request.Request(url, json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        result: dict[str, Any] = json.load(response)
        return result


class Server(NamedTuple):
    port: int
    pid: int  #: the `vllm serve` process: the front end, parent of the engine core


@contextmanager
def vllm_server(model: Path, env: Mapping[str, str], log: Path, extra: Sequence[str] = ()
                ) -> Iterator[Server]:
    """`vllm serve MODEL` on a free port; yields it once /v1/models answers."""
    port = free_port()
    with log.open("w") as out:
        proc = subprocess.Popen([VLLM, "serve", str(model), "--port", str(port), *SERVE_ARGS,
                                 *extra],
                                env=dict(env), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"vllm serve exited with {proc.returncode}:\n"
                                   + log.read_text()[-4000:])
            if time.monotonic() > deadline:
                raise RuntimeError(f"vllm serve did not answer in {START_TIMEOUT:.0f} s:\n"
                                   + log.read_text()[-4000:])
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2)
                break
            except OSError:
                time.sleep(2)
        yield Server(port, proc.pid)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def complete(port: int, model: Path, prompt: str = "Hello", max_tokens: int = 5
             ) -> dict[str, Any]:
    return post_json(f"http://127.0.0.1:{port}/v1/completions",
                     {"model": str(model), "prompt": prompt, "max_tokens": max_tokens,
                      "temperature": 0})


def read_events(record: Path) -> list[dict[str, Any]]:
    """The simulated backends' activation records (one JSON line per event, per process)."""
    return [json.loads(line) for p in sorted(record.glob("*.jsonl"))
            for line in p.read_text().splitlines()]
