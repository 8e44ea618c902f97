"""From inputs to a delegated backend: the whole path, in one place, for every process.

`plan()` decides and locates without running any backend code; `tt-meta explain` shows it.
`activate()` is what a vLLM process runs: it either reuses the decision a parent recorded or
makes a plan, then calls the backend's platform function, and records the decision for the
children only once everything succeeded.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass

from . import _handoff
from ._catalog import Backend, Catalog
from ._decide import Decision, decide, gather_facts
from ._delegate import Target, call_platform, check_vllm_plugins, locate, vllm_mismatch
from ._errors import DelegationError, HandoffError, SelectionError
from ._inputs import Inputs, read_inputs
from ._log import log
from ._policy import Policy, load_policy


@dataclass(frozen=True)
class Plan:
    """A decision and the installed distribution that would carry it out."""

    policy: Policy
    inputs: Inputs
    decision: Decision
    backend: Backend
    target: Target
    vllm_warning: str | None


@dataclass(frozen=True)
class Activation:
    """What one vLLM process runs on."""

    policy: Policy
    catalog: Catalog
    target: Target
    platform: str
    handoff: _handoff.Handoff
    inherited: bool
    seconds: float


def plan(environ: MutableMapping[str, str], argv: Sequence[str], catalog: Catalog) -> Plan:
    policy = load_policy(environ)
    inputs = read_inputs(environ, argv)
    facts, config = gather_facts(inputs, environ)
    decision = decide(policy, inputs, facts, config)
    backend = catalog.get(decision.backend, policy.source)
    target = locate(catalog, backend)
    mismatch = vllm_mismatch(catalog, target)
    if mismatch and policy.vllm_version_mismatch == "refuse":
        raise DelegationError(
            mismatch,
            where=f"{policy.source}, key 'vllm_version_mismatch'",
            fix=(
                "install the vLLM version the backend was built for; or, knowing the risk, "
                'set vllm_version_mismatch = "warn" in the policy'
            ),
        )
    return Plan(policy, inputs, decision, backend, target, mismatch)


def activate(
    environ: MutableMapping[str, str], argv: Sequence[str], catalog: Catalog | None = None
) -> Activation:
    started = time.perf_counter()
    catalog = catalog or Catalog()
    recorded = _handoff.read(environ)
    if recorded is not None:
        return _reuse(environ, argv, catalog, recorded, started)
    check_vllm_plugins(environ, catalog)
    chosen = plan(environ, argv, catalog)
    if chosen.vllm_warning:
        log(logging.WARNING, "tt_meta: %s (the policy allows it: vllm_version_mismatch = warn)",
            chosen.vllm_warning)
    platform = call_platform(catalog, chosen.target)
    decision = chosen.decision
    handoff = _handoff.Handoff(
        backend=chosen.backend.name,
        distribution=chosen.target.dist.name,
        version=str(chosen.target.dist.version),
        platform=platform,
        model=decision.facts.model,
        device=decision.facts.device,
        reason=decision.reason,
        policy=chosen.policy.source,
    )
    _handoff.record(environ, handoff)
    seconds = time.perf_counter() - started
    return Activation(chosen.policy, catalog, chosen.target, platform, handoff, False, seconds)


def _reuse(
    environ: MutableMapping[str, str],
    argv: Sequence[str],
    catalog: Catalog,
    recorded: _handoff.Handoff,
    started: float,
) -> Activation:
    """A child: check that it agrees with its parent, then load exactly what was chosen."""
    _handoff.check_agreement(recorded, read_inputs(environ, argv))
    policy = load_policy(environ)
    if os.path.abspath(policy.source) != os.path.abspath(recorded.policy):
        raise HandoffError(
            f"this process reads the policy {policy.source}, but the decision was made under "
            f"{recorded.policy}",
            where=f"environment variable {_handoff.ENV_DECISION}",
            fix="start every process of one vLLM server with the same TT_META_POLICY",
        )
    if recorded.backend not in policy.allowed_backends:
        raise SelectionError(
            f"the recorded decision names backend '{recorded.backend}', which is not in "
            f"allowed_backends {list(policy.allowed_backends)}",
            where=policy.source,
            fix=f"unset {_handoff.ENV_DECISION}, or allow the backend in the policy",
        )
    target = locate(catalog, catalog.get(recorded.backend, policy.source))
    if (target.dist.name, str(target.dist.version)) != (recorded.distribution, recorded.version):
        raise HandoffError(
            f"the decision was made for {recorded.distribution} {recorded.version}, but this "
            f"process finds {target.label}",
            where=f"environment variable {_handoff.ENV_DECISION}",
            fix="install the same backend version on every node of the server",
        )
    platform = call_platform(catalog, target)
    if platform != recorded.platform:
        raise HandoffError(
            f"{target.label} answered platform {platform!r} here, {recorded.platform!r} in the "
            "parent process",
            where=f"environment variable {_handoff.ENV_DECISION}",
            fix="make the backend's runtime the same in every process (devices, environment)",
        )
    seconds = time.perf_counter() - started
    return Activation(policy, catalog, target, platform, recorded, True, seconds)
