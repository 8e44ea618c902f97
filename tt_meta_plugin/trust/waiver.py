"""`require_signatures = false`: the one object that stands for delegating unverified.

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
