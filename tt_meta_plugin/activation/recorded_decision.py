"""One decision per serving job: the first process records it, its children reuse it.

vLLM starts the engine core and workers as new processes (often with `spawn`), and Ray actors
on other nodes see neither the parent's memory nor its command line. What they all inherit is
the environment, so the decision travels there, in `TT_META_DECISION`, and Ray's runtime
environment carries it to Ray workers (`ray_entry.py`). It is written only after a successful
activation: a process that failed never leaves a decision behind for another to trust.

A child re-reads its own inputs; if they name another model, device or backend than the
recorded decision, that is an error, never a silent switch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, MutableMapping

from .._errors import ConfigError, HandoffError
from ..selection.inputs import Inputs

ENV_DECISION = "TT_META_DECISION"
_FORMAT = 3


class Handoff:
    """The decision as children need it: what to load, what it was decided for, and where
    the trust it rests on is kept. It carries no policy setting: a child reads those sealed
    in the state directory (`trust/settings_seal.py`), so that a stale or copied decision
    cannot change them. `serial` and `signers` are for the audit line only.

    A plain class (see selection/inputs.py for why); `FIELDS` is its JSON form, every key
    required.
    """

    FIELDS = (
        "backend", "distribution", "version", "platform", "model", "device", "reason",
        "policy", "policy_digest", "state_dir",
        # One entry per distribution the first process verified (the backend, and a
        # third-party backend plugin's own distribution): [name, SHA-256 of its manifest
        # file, then the identity of its verification record]. Empty without signatures.
        "trusted", "serial", "signers", "format",
    )
    __slots__ = FIELDS

    def __init__(
        self, *, backend: str, distribution: str, version: str, platform: str,
        model: str | None, device: str | None, reason: str, policy: str, policy_digest: str,
        state_dir: str, trusted: tuple[tuple[str | int, ...], ...] = (),
        serial: int | None = None, signers: tuple[str, ...] | None = None,
        format: int = _FORMAT,
    ) -> None:
        self.backend, self.distribution, self.version = backend, distribution, version
        self.platform, self.model, self.device, self.reason = platform, model, device, reason
        self.policy, self.policy_digest, self.state_dir = policy, policy_digest, state_dir
        self.trusted, self.serial, self.signers, self.format = trusted, serial, signers, format

    def encode(self) -> str:
        fields = {k: getattr(self, k) for k in self.FIELDS}
        return json.dumps(fields, sort_keys=True, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str) -> Handoff:
        fix = f"unset {ENV_DECISION}; tt_meta sets it itself for the processes vLLM starts"
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):  # not JSON, nested too deeply, a huge number
            raise ConfigError(
                f"{ENV_DECISION} is not a decision recorded by tt_meta",
                where=f"environment variable {ENV_DECISION}",
                fix=fix,
            ) from None
        if (not isinstance(data, dict) or data.get("format") != _FORMAT
                or set(data) != set(cls.FIELDS)
                or not all(_TYPES[k](v) for k, v in data.items())):
            raise ConfigError(
                f"{ENV_DECISION} holds a decision in a format this tt_meta does not read",
                where=f"environment variable {ENV_DECISION}",
                fix=fix,
            )
        data["trusted"] = tuple(tuple(entry) for entry in data["trusted"])
        if data["signers"] is not None:
            data["signers"] = tuple(data["signers"])
        return cls(**data)


def _str(value: object) -> bool:
    return isinstance(value, str)


def _optional(check: Callable[[object], bool]) -> Callable[[object], bool]:
    return lambda value: value is None or check(value)


def _list_of(kind: type) -> Callable[[object], bool]:
    return lambda value: isinstance(value, list) and all(isinstance(x, kind) for x in value)


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _trusted(value: object) -> bool:
    """[[name, manifest SHA-256, five identity integers], ...]"""
    return isinstance(value, list) and all(
        isinstance(e, list) and len(e) == 7 and _str(e[0]) and _str(e[1])
        and all(_int(x) for x in e[2:]) for e in value)


# What each field must hold once decoded from JSON; a decision that differs is refused.
_TYPES: dict[str, Callable[[object], bool]] = {
    "backend": _str, "distribution": _str, "version": _str, "platform": _str,
    "model": _optional(_str), "device": _optional(_str), "reason": _str, "policy": _str,
    "policy_digest": _str, "state_dir": _str, "trusted": _trusted,
    "serial": _optional(_int), "signers": _optional(_list_of(str)), "format": _int,
}


def read(environ: Mapping[str, str]) -> Handoff | None:
    text = environ.get(ENV_DECISION)
    return Handoff.decode(text) if text else None


def record(environ: MutableMapping[str, str], handoff: Handoff) -> None:
    """Leave the decision for child processes, and have Ray carry it to its workers."""
    from .. import ray_entry  # first processes only

    environ[ENV_DECISION] = handoff.encode()
    # A Ray worker resolves the platform before vLLM copies the driver's environment to it
    # (see ray_entry.py): Ray's runtime-environment hook carries the decision there in time.
    ray_entry.install(environ)


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
