"""A child process (engine core, worker, Ray actor): reuse what its server's first process
decided and verified.

This runs in every child of every server, so it must cost next to nothing whatever the
backend's size: it parses no policy (its policy file must have the bytes the first process
parsed, and the settings it acts on are those the first process sealed in the state
directory), loads no catalog, checks no signature and walks no tree. Its `TrustedSet`
inherits the verification records the first process wrote (bound by their identity in the
decision), the import guard checks every file it imports against them, and the entry points
it calls are the signed ones they hold. Anything that disagrees with the first process is a
refusal.

The records are a cache, not a requirement: a process whose state directory lacks them (a Ray
worker on another node, with its own disk; a record another server replaced) verifies the
manifests the decision names itself, as a first process does, and goes on only if it reaches
the same signed manifests. The modules a child may import are listed in docs/architecture.md
("The child path") and enforced by tests/test_child_path.py.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import MutableMapping, Sequence

from .._errors import HandoffError, InheritanceError
from .._log import log
from .._metadata import Distribution, find_distribution
from ..selection.inputs import policy_digest, read_inputs, read_policy
from ..trust import permissions, settings_seal, verification_record
from ..trust.trusted_set import TrustedSet, refuse_unregistered_runtime
from . import recorded_decision
from .backend import Activation, call_platform, check_vllm_plugins, target_of

WHERE = f"environment variable {recorded_decision.ENV_DECISION}"


def activate(environ: MutableMapping[str, str], argv: Sequence[str],
             recorded: recorded_decision.Handoff) -> Activation:
    started = time.perf_counter()
    recorded_decision.check_agreement(recorded, read_inputs(environ, argv))
    path, raw = read_policy(environ)
    if (os.path.abspath(path) != os.path.abspath(recorded.policy)
            or policy_digest(raw) != recorded.policy_digest):
        raise HandoffError(
            f"this process reads the policy {path}, but the decision was made under "
            f"{recorded.policy}" + (" as it was then" if str(path) == recorded.policy else ""),
            where=WHERE,
            fix="start every process of one vLLM server with the same TT_META_POLICY, and do "
            "not change the policy file while a server starts",
        )
    dist = find_distribution(recorded.distribution)
    if dist is None or str(dist.version) != recorded.version:
        found = f"{dist.name} {dist.version}" if dist else "no such distribution"
        raise HandoffError(
            f"the decision was made for {recorded.distribution} {recorded.version}, but this "
            f"process finds {found}",
            where=WHERE,
            fix="install the same backend version on every node of the server",
        )
    if _recorded_here(recorded):
        with permissions.remembered():  # the seal's and the records' directories, judged once
            settings = settings_seal.unseal(recorded.state_dir, recorded.policy_digest, WHERE)
            permissions.check(path, "policy", settings.strict_permissions)
            trusted = _inherit(settings, recorded)
    else:
        settings, trusted = _verify_here(environ, recorded, dist)
    target = target_of(recorded.backend, dist, trusted.entry_points(dist))
    verified = trusted.verified(dist)
    platform = call_platform(target)
    if platform != recorded.platform:
        raise HandoffError(
            f"{target.label} answered platform {platform!r} here, {recorded.platform!r} in the "
            "parent process",
            where=WHERE,
            fix="make the backend's runtime the same in every process (devices, environment)",
        )
    return Activation(recorded, settings, target, platform, verified, True,
                      time.perf_counter() - started, trusted.runtime_labels())


def _inherit(settings: settings_seal.ChildSettings,
             recorded: recorded_decision.Handoff) -> TrustedSet:
    if not settings.require_runtime_signatures:
        from ..trust.waiver import UnsafeUnverifiedRuntimes  # only when the policy waives

        UnsafeUnverifiedRuntimes(settings.policy).skip(recorded.backend, "whatever is installed")
    if not settings.require_signatures:
        from ..trust.waiver import UnsafeNoVerification  # only when the policy waives

        return TrustedSet(None, UnsafeNoVerification(settings.policy))
    if not recorded.trusted:
        raise InheritanceError(
            "the recorded decision carries no verified manifest, but the policy requires "
            "signatures",
            where=WHERE,
            fix=f"unset {recorded_decision.ENV_DECISION} and start the server again",
        )
    trusted = TrustedSet(None, None)
    trusted.inherit(settings.state_dir, settings.strict_permissions, recorded.trusted, WHERE)
    if settings.require_runtime_signatures and recorded.backend in settings.runtimes:
        # This process's environment may offer a runtime its parent's did not (a Ray
        # worker's runtime_env, another PYTHONPATH): only what the parent verified may run.
        distributions, modules = settings.runtimes[recorded.backend]
        refuse_unregistered_runtime(recorded.backend, modules, distributions,
                                    trusted.runtime_roots())
        trusted.forbid_unverified_runtime(recorded.backend, modules)
    return trusted


def _recorded_here(recorded: recorded_decision.Handoff) -> bool:
    """Whether this node's state directory holds what the first process wrote for children:
    the sealed settings and each verification record, unchanged. Only a hint of which path
    to take: whatever is found is checked again when it is read."""
    try:
        os.stat(settings_seal.seal_path(recorded.state_dir, recorded.policy_digest))
        for ref in recorded.trusted:
            info = os.stat(verification_record.index_path(recorded.state_dir, str(ref[1])))
            if verification_record.identity(info) != tuple(ref[2:]):
                return False
    except (OSError, ValueError):  # ValueError: a NUL byte, or a character no file name holds
        return False
    return True


def _verify_here(environ: MutableMapping[str, str], recorded: recorded_decision.Handoff,
                 dist: Distribution) -> tuple[settings_seal.ChildSettings, TrustedSet]:
    """A process whose node lacks its first process's state (a Ray worker on another node, a
    record replaced by another server): verify the manifests the decision names, here, as a
    first process would, and go on only with the same result. The record is a cache."""
    from . import first_process  # only where the first process's state is missing

    policy = first_process.load_checked_policy(environ)
    if policy.digest != recorded.policy_digest:
        raise HandoffError(
            f"the policy {policy.source} changed while this process started",
            where=WHERE,
            fix="do not change the policy file while a server starts; give every node of one "
            "server the same policy file, byte for byte",
        )
    if os.path.abspath(policy.trust.state_dir) != os.path.abspath(recorded.state_dir):
        raise HandoffError(
            f"the decision names the state directory {recorded.state_dir}, but the policy "
            f"{policy.source} names {policy.trust.state_dir}",
            where=WHERE,
            fix=f"unset {recorded_decision.ENV_DECISION}: tt_meta sets it itself for the "
            "processes vLLM starts",
        )
    # Each distribution verified here must verify against the manifest the decision names.
    trusted = first_process.trusted_set_for(policy, recorded.trusted)
    catalog = first_process.catalog_for(trusted)
    backend = catalog.get(recorded.backend, policy.source)  # verifies a backend plugin
    # What a first process checks of its environment before it runs a backend, this node's
    # environment must pass too: it may have other backends or another vLLM installed.
    check_vllm_plugins(environ, catalog)
    first_process.warn_vllm_version(
        first_process.vllm_version_warning(policy, catalog, backend, dist))
    first_process.establish_backend(trusted, policy, backend, dist)
    if len(trusted.records()) != len(recorded.trusted):
        raise InheritanceError(
            f"the first process verified {len(recorded.trusted)} distributions, this process "
            f"{len(trusted.records())}",
            where=WHERE,
            fix="install the same backends on every node of the server",
        )
    log(logging.INFO, "tt_meta: no verification record of the first process here; verified "
        "%s %s in this process (same signed manifest)", dist.name, dist.version)
    settings = first_process.child_settings(policy, catalog)
    settings_seal.seal(settings)
    return settings, trusted

