"""A server's first process: from inputs to a delegated backend, the whole path in one place.

`plan()` decides and locates without running any backend code or reading its entry points.
The process's `TrustedSet` then verifies the chosen distribution (and, before that, a
third-party backend plugin's distribution, before its code is loaded) and gives the signed
entry points to call. `activate()` calls the backend's platform function, seals the policy
settings children act on, and records the decision for them only once everything succeeded.
Children take the short path in `child_process.py`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import MutableMapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from .._errors import DelegationError, HandoffError
from .._log import log
from .._metadata import Distribution, find_distribution, install_root
from ..ray_entry import ENV_RAY_HOOK, is_ray_worker
from ..selection.backends import BUILTIN_BACKENDS, Backend
from ..selection.catalog import Catalog
from ..selection.inputs import Inputs, read_inputs
from ..selection.policy import Policy, load_policy
from ..trust import permissions, settings_seal
from ..trust.roles import PLUGIN, RUNTIME
from ..trust.trusted_set import RecordRef, TrustedSet, refuse_unregistered_runtime
from ..trust.waiver import UnsafeNoVerification
from . import operations, recorded_decision
from .backend import (
    Activation,
    Target,
    call_platform,
    check_vllm_plugins,
    locate,
    target_of,
    vllm_mismatch,
)

if TYPE_CHECKING:
    from ..selection.decide import Decision


BUILTIN_NAMES = frozenset(b.name for b in BUILTIN_BACKENDS)


class Plan(NamedTuple):
    """A decision and the installed distribution that would carry it out."""

    policy: Policy
    inputs: Inputs
    decision: Decision
    backend: Backend
    dist: Distribution
    vllm_warning: str | None


def load_checked_policy(environ: MutableMapping[str, str]) -> Policy:
    policy = load_policy(environ)
    permissions.check(Path(policy.source), "policy", policy.trust.strict_permissions)
    return policy


def trusted_set_for(policy: Policy, expected: Sequence[RecordRef] | None = None) -> TrustedSet:
    """The process's trusted set; `expected`: the manifests a child verifying for itself must
    reach (its first process's), ignored under the waiver, which verifies nothing."""
    if not policy.trust.require_signatures:
        return TrustedSet(policy.trust, UnsafeNoVerification(policy.source))
    return TrustedSet(policy.trust, None, expected)


def catalog_for(trusted: TrustedSet) -> Catalog:
    """A catalog that verifies a third-party backend plugin's distribution before loading it,
    and keeps it guarded in this process and its children."""

    def verify_plugin(name: str, dist: Distribution) -> None:
        trusted.establish(name, dist)

    return Catalog(before_load=verify_plugin)


def plan(environ: MutableMapping[str, str], argv: Sequence[str], catalog: Catalog,
         policy: Policy) -> Plan:
    from ..selection.decide import decide, gather_facts  # first processes only

    inputs = read_inputs(environ, argv)
    if inputs.model is None and is_ray_worker(argv):
        raise HandoffError(
            "this Ray worker has no decision from the vLLM process that started it "
            f"({recorded_decision.ENV_DECISION} is not set) and no model: it cannot know "
            "which backend its driver chose, and does not decide on its own",
            where=f"environment variable {recorded_decision.ENV_DECISION}",
            fix="start the vLLM server itself with VLLM_PLUGINS=tt_meta: it passes the "
            f"decision to its Ray workers through {ENV_RAY_HOOK} (do not override that "
            "variable); for a vLLM engine created inside a Ray actor, set TT_META_MODEL in "
            "the actor's runtime environment",
        )
    if inputs.device is None:
        from ..selection.device import detect_device  # only when TT_META_DEVICE is unset

        inputs.device, inputs.device_unknown = detect_device(policy, environ)
    facts, config = gather_facts(inputs, environ)
    decision = decide(policy, inputs, facts, config)
    backend = catalog.get(decision.backend, policy.source)
    dist = locate(catalog, backend)
    return Plan(policy, inputs, decision, backend, dist,
                vllm_version_warning(policy, catalog, backend, dist))


def vllm_version_warning(policy: Policy, catalog: Catalog, backend: Backend,
                         dist: Distribution) -> str | None:
    """A vLLM other than the backend needs: a refusal, or (if the policy accepts the risk)
    the warning to log."""
    mismatch = vllm_mismatch(catalog, backend, dist)
    if mismatch and policy.vllm_version_mismatch == "refuse":
        raise DelegationError(
            mismatch,
            where=f"{policy.source}, key 'vllm_version_mismatch'",
            fix=(
                "install the vLLM version the backend was built for; or, knowing the risk, "
                'set vllm_version_mismatch = "warn" in the policy'
            ),
        )
    return mismatch


def warn_vllm_version(warning: str | None) -> None:
    if warning:
        log(logging.WARNING, "tt_meta: %s (the policy allows it: vllm_version_mismatch = warn)",
            warning)


def establish_backend(trusted: TrustedSet, policy: Policy, backend: Backend,
                      dist: Distribution) -> None:
    """Verify the backend's plugin distribution and each of its installed runtimes, before
    any of their code runs. A runtime that is not installed is not looked for: the backend's
    platform function then answers None, and tt_meta says which runtime is missing."""
    runtimes = [d for d in map(find_distribution, backend.runtime_distributions) if d]
    if not policy.trust.require_runtime_signatures:
        if runtimes:
            from ..trust.waiver import UnsafeUnverifiedRuntimes  # only when the policy waives

            UnsafeUnverifiedRuntimes(policy.source).skip(
                backend.name, ", ".join(f"{d.name} {d.version}" for d in runtimes))
        trusted.establish(backend.name, dist)
        return
    if policy.trust.require_signatures:  # before anything is verified or recorded
        check_unregistered_runtime(backend, runtimes)
    trusted.establish_together(backend.name, [(dist, PLUGIN), *((r, RUNTIME) for r in runtimes)])
    if policy.trust.require_signatures:  # under the waiver nothing is verified, nor forbidden
        trusted.forbid_unverified_runtime(backend.name, backend.runtime_modules)


def check_unregistered_runtime(backend: Backend, runtimes: list[Distribution]) -> None:
    """Before anything is verified: a runtime module importable from outside every installed
    runtime distribution is refused (trusted_set.refuse_unregistered_runtime)."""
    refuse_unregistered_runtime(backend.name, backend.runtime_modules,
                                backend.runtime_distributions,
                                [install_root(d) for d in runtimes])


def trusted_target(trusted: TrustedSet, chosen: Plan) -> Target:
    """Verify the chosen backend; the target calls its plugin's signed entry points."""
    establish_backend(trusted, chosen.policy, chosen.backend, chosen.dist)
    return target_of(chosen.backend.name, chosen.dist, trusted.entry_points(chosen.dist),
                     chosen.backend.runtime_modules)


def call_backend(catalog: Catalog, backend: Backend, target: Target) -> str:
    """The backend's platform function; the catalog explains a failure."""
    return call_platform(target, lambda: catalog.unusable_reason(backend, target.dist))


def child_settings(policy: Policy, catalog: Catalog) -> settings_seal.ChildSettings:
    """What children act on of the policy (sealed in the state directory)."""
    return settings_seal.ChildSettings(
        policy=policy.source, policy_digest=policy.digest,
        require_signatures=policy.trust.require_signatures,
        strict_permissions=policy.trust.strict_permissions, state_dir=policy.trust.state_dir,
        audit_log=policy.trust.audit_log, extra_general_plugins=policy.extra_general_plugins,
        backend_distributions=catalog.distribution_names(),
        require_runtime_signatures=policy.trust.require_runtime_signatures,
        runtimes={b.name: [list(b.runtime_distributions), list(b.runtime_modules)]
                  for b in catalog.backends() if b.runtime_modules},
    )


def activate(environ: MutableMapping[str, str], argv: Sequence[str]) -> Activation:
    started = time.perf_counter()
    policy = load_checked_policy(environ)
    trusted = trusted_set_for(policy)
    catalog = catalog_for(trusted)
    check_vllm_plugins(environ, catalog)
    chosen = plan(environ, argv, catalog, policy)
    if chosen.backend.name not in BUILTIN_NAMES:
        check_vllm_plugins(environ, catalog)  # again: the catalog now knows its distributions
    warn_vllm_version(chosen.vllm_warning)
    target = trusted_target(trusted, chosen)
    platform = call_backend(catalog, chosen.backend, target)
    settings = child_settings(policy, catalog)
    settings_seal.seal(settings)
    decision = chosen.decision
    verified = trusted.verified(target.dist)
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
        state_dir=policy.trust.state_dir,
        trusted=trusted.records(),
        serial=verified.serial if verified else None,
        signers=verified.signers if verified else None,
    )
    recorded_decision.record(environ, handoff)
    seconds = time.perf_counter() - started
    operations.after_activation(chosen.inputs, operations.Report(
        handoff, operations.manifests_in_use(trusted, chosen.backend, target.dist), seconds),
        policy.trust.warn_expiry_days, policy.source)
    return Activation(handoff, settings, target, platform, verified, False, seconds,
                      trusted.runtime_labels())
