"""A child process (engine core, worker, Ray actor): reuse what its server's first process
decided and verified.

This runs in every child of every server, so it must cost next to nothing whatever the
backend's size: it parses no policy (it checks that its policy file has the bytes the parent
parsed, and takes the settings it needs from the decision), loads no catalog, checks no
signature and walks no tree. It finds the recorded distribution, maps the parent's
verification record (bound by its identity in the decision), and lets the import guard check
every file it imports against it. Anything that disagrees with the parent is a refusal.
"""

from __future__ import annotations

import os
import time
from collections.abc import MutableMapping, Sequence

from .._errors import HandoffError, TrustError
from .._metadata import Distribution, find_distribution, install_root, refuse_editable
from ..selection.inputs import policy_digest, read_inputs, read_policy
from ..trust import import_guard, permissions, verification_record
from ..trust.verification_record import VerifiedBackend
from . import recorded_decision
from .backend import Activation, call_platform, target_of, warn_unverified

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
    permissions.check(path, "policy", recorded.strict_permissions)
    dist = find_distribution(recorded.distribution)
    if dist is None or str(dist.version) != recorded.version:
        found = f"{dist.name} {dist.version}" if dist else "no such distribution"
        raise HandoffError(
            f"the decision was made for {recorded.distribution} {recorded.version}, but this "
            f"process finds {found}",
            where=WHERE,
            fix="install the same backend version on every node of the server",
        )
    target = target_of(recorded.backend, dist)
    verified = _inherit_verification(recorded, dist)
    platform = call_platform(target)
    if platform != recorded.platform:
        raise HandoffError(
            f"{target.label} answered platform {platform!r} here, {recorded.platform!r} in the "
            "parent process",
            where=WHERE,
            fix="make the backend's runtime the same in every process (devices, environment)",
        )
    return Activation(recorded, target, platform, verified, True, time.perf_counter() - started)


def _inherit_verification(recorded: recorded_decision.Handoff, dist: Distribution
                          ) -> VerifiedBackend | None:
    """The parent's verification record, bound by the identity in the decision, behind the
    import guard; None when the policy waives signatures."""
    if not recorded.require_signatures:
        warn_unverified(recorded.policy, dist)
        return None
    if (recorded.manifest_digest is None or recorded.index_identity is None
            or recorded.serial is None or recorded.signers is None):
        raise TrustError(
            "the recorded decision carries no verified manifest, but the policy requires "
            "signatures",
            where=WHERE,
            fix=f"unset {recorded_decision.ENV_DECISION} and start the server again",
        )
    label = f"{dist.name} {dist.version}"
    refuse_editable(dist, label)
    identity = tuple(recorded.index_identity)
    root, tops, files = verification_record.load_for_child(
        recorded.state_dir, recorded.manifest_digest, identity)
    here = install_root(dist)
    if root != here:
        raise TrustError(
            f"{label} is installed at {here}, but the parent verified it at {root}",
            where=str(root), fix="start every process of one server in one environment",
        )
    verified = VerifiedBackend(
        distribution=dist.name, version=str(dist.version), serial=recorded.serial,
        signers=recorded.signers, manifest_path=None, manifest_digest=recorded.manifest_digest,
        index_identity=identity, root=root, files=files, top_levels=tops, files_checked=False,
    )
    import_guard.install(verified)
    return verified
