"""A child process (engine core, worker, Ray actor): reuse what its server's first process
decided and verified.

This runs in every child of every server, so it must cost next to nothing whatever the
backend's size: it parses no policy (its policy file must have the bytes the first process
parsed, and the settings it acts on are those the first process sealed in the state
directory), loads no catalog, checks no signature and walks no tree. Its `TrustedSet`
inherits the verification records the first process wrote (bound by their identity in the
decision), the import guard checks every file it imports against them, and the entry points
it calls are the signed ones they hold. Anything that disagrees with the first process is a
refusal. The modules a child may import are listed in docs/architecture.md ("The child
path") and enforced by tests/test_child_path.py.
"""

from __future__ import annotations

import os
import time
from collections.abc import MutableMapping, Sequence

from .._errors import HandoffError, InheritanceError
from .._metadata import find_distribution
from ..selection.inputs import policy_digest, read_inputs, read_policy
from ..trust import permissions, settings_seal
from ..trust.trusted_set import TrustedSet
from . import recorded_decision
from .backend import Activation, call_platform, target_of

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
    settings = settings_seal.unseal(recorded.state_dir, recorded.policy_digest, WHERE)
    permissions.check(path, "policy", settings.strict_permissions)
    dist = find_distribution(recorded.distribution)
    if dist is None or str(dist.version) != recorded.version:
        found = f"{dist.name} {dist.version}" if dist else "no such distribution"
        raise HandoffError(
            f"the decision was made for {recorded.distribution} {recorded.version}, but this "
            f"process finds {found}",
            where=WHERE,
            fix="install the same backend version on every node of the server",
        )
    if settings.require_signatures:
        trusted = TrustedSet(None, None)
        if not recorded.trusted:
            raise InheritanceError(
                "the recorded decision carries no verified manifest, but the policy requires "
                "signatures",
                where=WHERE,
                fix=f"unset {recorded_decision.ENV_DECISION} and start the server again",
            )
        trusted.inherit(settings.state_dir, settings.strict_permissions, recorded.trusted,
                        WHERE)
    else:
        from ..trust.waiver import UnsafeNoVerification  # only when the policy waives

        trusted = TrustedSet(None, UnsafeNoVerification(settings.policy))
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
                      time.perf_counter() - started)
