"""A first process: from inputs to a delegated backend, the whole path in one place.

`plan()` decides and locates without running any backend code. `trust()` verifies the chosen
distribution and installs the import guard, so that from then on only verified bytes of it
execute. `activate()` is what the first process of a vLLM server runs: it makes a plan,
verifies, calls the backend's platform function, and records the decision for the children
only once everything succeeded. The children take the short path in `_inherit.py`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import MutableMapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from .._errors import DelegationError
from .._log import log
from .._metadata import Distribution
from ..selection.catalog import Backend, Catalog
from ..selection.inputs import Inputs, read_inputs
from ..selection.policy import Policy, load_policy
from ..trust import import_guard, permissions
from ..trust.verification_record import VerifiedBackend
from ..trust.verifier import Verifier
from . import recorded_decision
from .backend import (
    Activation,
    Target,
    call_platform,
    check_vllm_plugins,
    locate,
    vllm_mismatch,
    warn_unverified,
)

if TYPE_CHECKING:
    from ..selection.decide import Decision


class Plan(NamedTuple):
    """A decision and the installed distribution that would carry it out."""

    policy: Policy
    inputs: Inputs
    decision: Decision
    backend: Backend
    target: Target
    vllm_warning: str | None


def load_checked_policy(environ: MutableMapping[str, str]) -> Policy:
    policy = load_policy(environ)
    permissions.check(Path(policy.source), "policy", policy.trust.strict_permissions)
    return policy


def catalog_for(policy: Policy) -> Catalog:
    """A catalog that verifies a third-party backend plugin's distribution before loading it."""

    def verify_plugin(name: str, dist: Distribution) -> None:
        trust(policy, name, dist)

    return Catalog(before_load=verify_plugin)


def plan(environ: MutableMapping[str, str], argv: Sequence[str], catalog: Catalog,
         policy: Policy) -> Plan:
    from ..selection.decide import decide, gather_facts  # first processes only

    inputs = read_inputs(environ, argv)
    facts, config = gather_facts(inputs, environ)
    decision = decide(policy, inputs, facts, config)
    backend = catalog.get(decision.backend, policy.source)
    target = locate(catalog, backend)
    mismatch = vllm_mismatch(catalog, backend, target)
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


def trust(policy: Policy, backend: str, dist: Distribution) -> VerifiedBackend | None:
    """Verify `dist` as `backend` and guard its imports; None when the policy waives it."""
    if not policy.trust.require_signatures:
        warn_unverified(policy.source, dist)
        return None
    verified = Verifier(policy.trust).verify(backend, dist)
    import_guard.install(verified)
    return verified


def call_backend(catalog: Catalog, backend: Backend, target: Target) -> str:
    """The backend's platform function; the catalog explains a failure."""
    return call_platform(target, lambda: catalog.unusable_reason(backend, target.dist))


def activate(environ: MutableMapping[str, str], argv: Sequence[str]) -> Activation:
    started = time.perf_counter()
    policy = load_checked_policy(environ)
    catalog = catalog_for(policy)
    check_vllm_plugins(environ, catalog)
    chosen = plan(environ, argv, catalog, policy)
    if chosen.vllm_warning:
        log(logging.WARNING, "tt_meta: %s (the policy allows it: vllm_version_mismatch = warn)",
            chosen.vllm_warning)
    target = chosen.target
    verified = trust(policy, chosen.backend.name, target.dist)
    platform = call_backend(catalog, chosen.backend, target)
    decision = chosen.decision
    settings = policy.trust
    handoff = recorded_decision.Handoff(
        backend=chosen.backend.name,
        distribution=target.dist.name,
        version=str(target.dist.version),
        platform=platform,
        model=decision.facts.model,
        device=decision.facts.device,
        reason=decision.reason,
        policy=policy.source,
        policy_digest=policy.digest,
        require_signatures=settings.require_signatures,
        strict_permissions=settings.strict_permissions,
        state_dir=settings.state_dir,
        audit_log=settings.audit_log,
        extra_general_plugins=policy.extra_general_plugins,
        backend_distributions=catalog.distribution_names(),
        manifest_digest=verified.manifest_digest if verified else None,
        index_identity=verified.index_identity if verified else None,
        serial=verified.serial if verified else None,
        signers=verified.signers if verified else None,
    )
    recorded_decision.record(environ, handoff)
    seconds = time.perf_counter() - started
    return Activation(handoff, target, platform, verified, False, seconds)
