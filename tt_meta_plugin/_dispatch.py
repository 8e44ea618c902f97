"""From inputs to a delegated backend: the whole path, in one place, for every process.

`plan()` decides and locates without running any backend code. `trust()` verifies the chosen
distribution and installs the import guard, so that from then on only verified bytes of it
execute. `activate()` is what a vLLM process runs: it reuses the decision a parent recorded or
makes a plan, verifies, calls the backend's platform function, and records the decision for
the children only once everything succeeded.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import MutableMapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from . import _handoff, _import_guard, _perms
from ._catalog import Backend, Catalog
from ._delegate import Target, call_platform, check_vllm_plugins, locate, vllm_mismatch
from ._errors import DelegationError, HandoffError, SelectionError, TrustError
from ._inputs import Inputs, read_inputs
from ._log import log
from ._metadata import Distribution
from ._policy import Policy, load_policy
from ._verify import VerifiedBackend, Verifier

if TYPE_CHECKING:
    from ._decide import Decision


class Plan(NamedTuple):
    """A decision and the installed distribution that would carry it out."""

    policy: Policy
    inputs: Inputs
    decision: Decision
    backend: Backend
    target: Target
    vllm_warning: str | None


class Activation(NamedTuple):
    """What one vLLM process runs on."""

    policy: Policy
    catalog: Catalog
    target: Target
    platform: str
    handoff: _handoff.Handoff
    verified: VerifiedBackend | None
    inherited: bool
    seconds: float


def load_checked_policy(environ: MutableMapping[str, str]) -> Policy:
    policy = load_policy(environ)
    _perms.check(Path(policy.source), "policy", policy.trust.strict_permissions)
    return policy


def catalog_for(policy: Policy) -> Catalog:
    """A catalog that verifies a third-party backend plugin's distribution before loading it."""

    def verify_plugin(name: str, dist: Distribution) -> None:
        trust(policy, name, dist)

    return Catalog(before_load=verify_plugin)


def plan(environ: MutableMapping[str, str], argv: Sequence[str], catalog: Catalog,
         policy: Policy) -> Plan:
    from ._decide import decide, gather_facts  # first processes only

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


def trust(policy: Policy, backend: str, dist: Distribution,
          inherited: _handoff.Handoff | None = None) -> VerifiedBackend | None:
    """Verify `dist` as `backend` and guard its imports; None when the policy waives it.

    A child passes the decision it inherited: it loads the verification record its parent
    wrote (bound by the digest in the decision) instead of verifying again, and the import
    guard still checks every file the child loads against the verified hashes.
    """
    if not policy.trust.require_signatures:
        log(logging.WARNING, "tt_meta: require_signatures = false in %s: delegating to %s %s "
            "WITHOUT verifying it", policy.source, dist.name, dist.version)
        return None
    verifier = Verifier(policy.trust)
    if inherited is None:
        verified = verifier.verify(backend, dist)
    elif (inherited.manifest_digest is None or inherited.index_digest is None
          or inherited.serial is None or inherited.signers is None):
        raise TrustError(
            "the recorded decision carries no verified manifest, but the policy requires "
            "signatures",
            where=f"environment variable {_handoff.ENV_DECISION}",
            fix=f"unset {_handoff.ENV_DECISION} and start the server again",
        )
    else:
        verified = verifier.inherited(dist, inherited.manifest_digest, inherited.index_digest,
                                      inherited.serial, inherited.signers)
    _import_guard.install(verified)
    return verified


def activate(environ: MutableMapping[str, str], argv: Sequence[str]) -> Activation:
    started = time.perf_counter()
    recorded = _handoff.read(environ)
    policy = load_checked_policy(environ)
    catalog = catalog_for(policy)
    if recorded is not None:
        return _reuse(environ, argv, policy, catalog, recorded, started)
    check_vllm_plugins(environ, catalog)
    chosen = plan(environ, argv, catalog, policy)
    if chosen.vllm_warning:
        log(logging.WARNING, "tt_meta: %s (the policy allows it: vllm_version_mismatch = warn)",
            chosen.vllm_warning)
    verified = trust(policy, chosen.backend.name, chosen.target.dist)
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
        policy=policy.source,
        manifest_digest=verified.payload_digest if verified else None,
        index_digest=verified.index_digest if verified else None,
        serial=verified.serial if verified else None,
        signers=verified.signers if verified else None,
    )
    _handoff.record(environ, handoff)
    seconds = time.perf_counter() - started
    return Activation(policy, catalog, chosen.target, platform, handoff, verified, False, seconds)


def _reuse(
    environ: MutableMapping[str, str],
    argv: Sequence[str],
    policy: Policy,
    catalog: Catalog,
    recorded: _handoff.Handoff,
    started: float,
) -> Activation:
    """A child: check that it agrees with its parent, then load exactly what was chosen."""
    where = f"environment variable {_handoff.ENV_DECISION}"
    _handoff.check_agreement(recorded, read_inputs(environ, argv))
    if os.path.abspath(policy.source) != os.path.abspath(recorded.policy):
        raise HandoffError(
            f"this process reads the policy {policy.source}, but the decision was made under "
            f"{recorded.policy}",
            where=where,
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
            where=where,
            fix="install the same backend version on every node of the server",
        )
    verified = trust(policy, recorded.backend, target.dist, recorded)
    platform = call_platform(catalog, target)
    if platform != recorded.platform:
        raise HandoffError(
            f"{target.label} answered platform {platform!r} here, {recorded.platform!r} in the "
            "parent process",
            where=where,
            fix="make the backend's runtime the same in every process (devices, environment)",
        )
    seconds = time.perf_counter() - started
    return Activation(policy, catalog, target, platform, recorded, verified, True, seconds)
