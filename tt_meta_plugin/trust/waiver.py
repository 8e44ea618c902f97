"""The policy's two waivers, each one object that stands for running unverified code.

`require_signatures = false` (`UnsafeNoVerification`): nothing is verified.
`[trust] require_runtime_signatures = false` (`UnsafeUnverifiedRuntimes`): the backend's
plugin distribution is verified, its device runtime (ttnn, pjrt-plugin-tt) is not.

Modelled on sigstore-python's `UnsafeNoOp` policy: the insecure choice is explicit, has a
name, and warns every time it is used, in every process, so it never goes unnoticed in a log.
"""

from __future__ import annotations

import logging

from .._log import log
from .._metadata import Distribution
from .manifest import installed_entry_points


class UnsafeNoVerification:
    """Stands in for verification when the policy waives signatures."""

    __slots__ = ("policy",)

    def __init__(self, policy: str) -> None:
        #: the policy file that waived signatures, named in every warning
        self.policy = policy

    def entry_points(self, dist: Distribution) -> dict[str, dict[str, str]]:
        """The installed (unsigned) vLLM entry points of `dist`, with a WARNING."""
        log(logging.WARNING, "tt_meta: require_signatures = false in %s: delegating to %s %s "
            "WITHOUT verifying it", self.policy, dist.name, dist.version)
        return installed_entry_points(dist)


class UnsafeUnverifiedRuntimes:
    """Stands in for verifying a backend's runtimes when the policy waives them."""

    __slots__ = ("policy",)

    def __init__(self, policy: str) -> None:
        #: the policy file that waived runtime signatures, named in every warning
        self.policy = policy

    def skip(self, backend: str, runtimes: str) -> None:
        """Let `backend`'s runtimes (`runtimes`: what to call them) run, with a WARNING."""
        log(logging.WARNING, "tt_meta: require_runtime_signatures = false in %s: backend "
            "'%s' runs its runtime (%s) WITHOUT verifying it", self.policy, backend, runtimes)
