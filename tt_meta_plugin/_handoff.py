"""One decision per serving job: the first process records it, its children reuse it.

vLLM starts the engine core and workers as new processes (often with `spawn`), and Ray actors
on other nodes see neither the parent's memory nor its command line. What they all inherit is
the environment, so the decision travels there, in `TT_META_DECISION`, and Ray is told to copy
it. It is written only after a successful activation: a process that failed never leaves a
decision behind for another to trust.

A child re-reads its own inputs; if they name another model, device or backend than the
recorded decision, that is an error, never a silent switch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, MutableMapping
from typing import NamedTuple

from ._errors import ConfigError, HandoffError
from ._inputs import Inputs

ENV_DECISION = "TT_META_DECISION"
ENV_RAY_COPY = "VLLM_RAY_EXTRA_ENV_VARS_TO_COPY"
_FORMAT = 1


class Handoff(NamedTuple):
    """The decision as children need it: what to load, and what it was decided for."""

    backend: str
    distribution: str
    version: str
    platform: str
    model: str | None
    device: str | None
    reason: str
    policy: str
    # The verified manifest (payload SHA-256), its serial and signers, and the SHA-256 of the
    # verification record children load (see _verified_cache.py); all None without signatures.
    manifest_digest: str | None = None
    index_digest: str | None = None
    serial: int | None = None
    signers: tuple[str, ...] | None = None
    format: int = _FORMAT

    def encode(self) -> str:
        return json.dumps(self._asdict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str) -> Handoff:
        fix = f"unset {ENV_DECISION}; tt_meta sets it itself for the processes vLLM starts"
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            raise ConfigError(
                f"{ENV_DECISION} is not a decision recorded by tt_meta",
                where=f"environment variable {ENV_DECISION}",
                fix=fix,
            ) from None
        names = set(cls._fields)
        if not isinstance(data, dict) or data.get("format") != _FORMAT or set(data) != names:
            raise ConfigError(
                f"{ENV_DECISION} holds a decision in a format this tt_meta does not read",
                where=f"environment variable {ENV_DECISION}",
                fix=fix,
            )
        if data["signers"] is not None:
            data["signers"] = tuple(data["signers"])
        return cls(**data)


def read(environ: Mapping[str, str]) -> Handoff | None:
    text = environ.get(ENV_DECISION)
    return Handoff.decode(text) if text else None


def record(environ: MutableMapping[str, str], handoff: Handoff) -> None:
    """Leave the decision for child processes, and ask vLLM's Ray executor to carry it."""
    environ[ENV_DECISION] = handoff.encode()
    names = [n for n in environ.get(ENV_RAY_COPY, "").split(",") if n.strip()]
    if ENV_DECISION not in names:
        environ[ENV_RAY_COPY] = ",".join([*names, ENV_DECISION])


def _same_model(a: str, b: str) -> bool:
    if a == b:
        return True
    # `./m` in one process and `/abs/m` in another are the same directory.
    return os.path.isdir(a) and os.path.isdir(b) and os.path.samefile(a, b)


def check_agreement(handoff: Handoff, inputs: Inputs) -> None:
    """Refuse when this process's own reading contradicts the recorded decision."""
    conflicts: list[str] = []
    if inputs.model and handoff.model and not _same_model(inputs.model.value, handoff.model):
        conflicts.append(f"model {inputs.model} but the decision is for {handoff.model!r}")
    if inputs.device and handoff.device and inputs.device.value != handoff.device:
        conflicts.append(f"device {inputs.device} but the decision is for {handoff.device!r}")
    if inputs.backend and inputs.backend.value != handoff.backend:
        conflicts.append(f"backend {inputs.backend} but the decision chose {handoff.backend!r}")
    if conflicts:
        raise HandoffError(
            "this process reads "
            + "; ".join(conflicts)
            + f" (decided in a parent process by {handoff.reason})",
            where=f"environment variable {ENV_DECISION}",
            fix=(
                "start every process of one vLLM server with the same model, device and "
                f"backend settings; unset {ENV_DECISION} when starting a new, unrelated server"
            ),
        )
