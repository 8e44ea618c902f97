"""The policy settings a child acts on, sealed in the state directory by its first process.

A child never parses the policy: importing a TOML parser alone costs more than everything
else a child does. Nor may it take those settings from the decision in its environment: a
stale or copied TT_META_DECISION must not be able to turn verification off or move the state
directory. So the first process writes the settings it derived from the policy to
`<state_dir>/policies/<SHA-256 of the policy file>.json`, under the state directory's
permission rules; a child, whose own policy file must have that SHA-256, reads them there.
The file must not be writable by another user, and must name the state directory it is in:
a decision that names another state directory finds no seal, or the wrong one, and is
refused.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .._errors import InheritanceError, StateError
from . import permissions

SUBDIR = "policies"


class ChildSettings:
    """What a child process needs of the policy."""

    FIELDS = ("audit_log", "backend_distributions", "extra_general_plugins", "policy",
              "policy_digest", "require_runtime_signatures", "require_signatures", "runtimes",
              "state_dir", "strict_permissions")
    __slots__ = FIELDS

    def __init__(self, *, policy: str, policy_digest: str, require_signatures: bool,
                 strict_permissions: bool, state_dir: str, audit_log: str | None,
                 extra_general_plugins: tuple[str, ...],
                 backend_distributions: tuple[str, ...],
                 require_runtime_signatures: bool = True,
                 runtimes: dict[str, list[list[str]]] | None = None) -> None:
        #: the policy file, and the SHA-256 of the bytes these settings were derived from
        self.policy, self.policy_digest = policy, policy_digest
        #: [trust] require_signatures, strict_permissions, state_dir, audit_log
        self.require_signatures, self.strict_permissions = require_signatures, strict_permissions
        self.state_dir, self.audit_log = state_dir, audit_log
        #: [trust] require_runtime_signatures: false, and a child warns as its parent did
        self.require_runtime_signatures = require_runtime_signatures
        #: backend -> [its runtime distributions, its runtime modules]: a child checks that
        #: none of those modules is importable here unless its parent verified it
        self.runtimes = runtimes or {}
        #: extra_general_plugins, and every backend's distributions (never passed through)
        self.extra_general_plugins = extra_general_plugins
        self.backend_distributions = backend_distributions

    def encode(self) -> bytes:
        data = {k: getattr(self, k) for k in self.FIELDS}
        return (json.dumps(data, sort_keys=True, indent=1) + "\n").encode()


def seal_path(state_dir: str, policy_digest: str) -> Path:
    return Path(state_dir) / SUBDIR / f"{policy_digest}.json"


def seal(settings: ChildSettings) -> None:
    """Write the settings for children, unless the same are sealed already."""
    path = seal_path(settings.state_dir, settings.policy_digest)
    data = settings.encode()
    try:
        with open(path, "rb") as handle:
            same = handle.read(len(data) + 1) == data  # whatever else is there is replaced
        if same:
            permissions.check(path, "sealed policy settings", settings.strict_permissions)
            return
    except OSError:
        pass
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".seal.")
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except OSError as exc:
        raise StateError(
            f"cannot write the policy settings for child processes: {exc.strerror}",
            where=str(path),
            fix="let the user running vLLM write the state directory (trust.state_dir)",
        ) from None
    permissions.check(path, "sealed policy settings", settings.strict_permissions)


def unseal(state_dir: str, policy_digest: str, where: str) -> ChildSettings:
    """The settings the first process sealed for this policy in `state_dir`, or a refusal."""
    path = seal_path(state_dir, policy_digest)
    fix = ("start the server again: its first process seals the settings; do not point "
           "TT_META_DECISION at another server's state")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        try:
            raw = os.read(fd, 1 << 16)
        finally:
            os.close(fd)
        data = json.loads(raw)
        settings = ChildSettings(**{k: data[k] for k in ChildSettings.FIELDS})
    except OSError as exc:
        raise InheritanceError(f"cannot read the policy settings sealed by the first process: "
                         f"{exc.strerror}", where=str(path), fix=fix) from None
    except (ValueError, KeyError, TypeError, RecursionError):
        raise InheritanceError(
            "the policy settings sealed by the first process are unreadable",
            where=str(path), fix=fix) from None
    if (settings.policy_digest != policy_digest
            or os.path.abspath(settings.state_dir) != os.path.abspath(state_dir)):
        raise InheritanceError(
            f"the sealed policy settings are not those of the decision ({where})",
            where=str(path), fix=fix)
    # Who may write it decides what a child trusts: always checked strictly (tt_meta makes
    # the file 0600 in a 0700 directory), since the relaxation itself is one of its settings.
    permissions.check(path, "sealed policy settings", strict=True)
    settings.extra_general_plugins = tuple(settings.extra_general_plugins)
    settings.backend_distributions = tuple(settings.backend_distributions)
    return settings
