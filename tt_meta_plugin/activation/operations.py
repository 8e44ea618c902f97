"""What a server's first process tells its operator besides the decision: manifests about to
expire, and (in a process that serves vLLM's `/metrics`) tt_meta's metrics.

First processes only: a child inherits its first process's verification and says nothing of
expiry (its first process warned), and never imports this module (tests/test_child_path.py).
Metric code (activation/metrics.py, prometheus_client) is imported only in a process whose
command line serves vLLM's OpenAI API, and only once the backend's general plugins ran: by
then vLLM has imported prometheus_client itself for its own `/metrics`, so tt_meta adds no
import to the process (and none to a process that serves no metrics).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .._log import log
from .._metadata import Distribution, find_distribution

if TYPE_CHECKING:
    from ..selection.backends import Backend
    from ..selection.inputs import Inputs
    from ..trust.trusted_set import TrustedSet
    from ..trust.verification_record import VerifiedBackend
    from .recorded_decision import Handoff

DAY = 86400
#: the vLLM command lines whose process serves the OpenAI API and its /metrics
SERVING_COMMANDS = frozenset({
    "vllm serve", "vllm.entrypoints.openai.api_server",
    "vllm.entrypoints.launchers.api_server.entry",
})


class Report:
    """What the metrics say of this server: its decision, the manifests in use, the time."""

    __slots__ = ("handoff", "manifests", "seconds")

    def __init__(self, handoff: Handoff, manifests: Sequence[VerifiedBackend],
                 seconds: float) -> None:
        self.handoff = handoff  #: the decision this first process recorded
        self.manifests = tuple(manifests)  #: what was verified: the plugin, its runtimes
        self.seconds = seconds  #: this process's activation


_report: Report | None = None  # set in a serving first process until its metrics register


def manifests_in_use(trusted: TrustedSet, backend: Backend, dist: Distribution
                     ) -> list[VerifiedBackend]:
    """The verified manifests the backend runs under: its plugin's, and each installed
    runtime's (none under a waiver, which verifies nothing)."""
    found = [dist, *(d for d in map(find_distribution, backend.runtime_distributions) if d)]
    return [v for v in map(trusted.verified, found) if v is not None]


def days_left(expires: int, now: float | None = None) -> float:
    return (expires - (time.time() if now is None else now)) / DAY


def warn_expiring(manifests: Sequence[VerifiedBackend], warn_days: int, policy: str) -> None:
    """A WARNING for each manifest in use that expires within `warn_days` (0: never warn)."""
    if warn_days <= 0:
        return
    now = time.time()
    for verified in manifests:
        if verified.expires is None or days_left(verified.expires, now) > warn_days:
            continue
        log(logging.WARNING, "tt_meta: the manifest of %s %s expires in %.1f days (%s): from "
            "then on every vLLM server refuses to start with it (warn_expiry_days = %d in %s)",
            verified.distribution, verified.version, days_left(verified.expires, now),
            time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(verified.expires)), warn_days,
            policy)


def after_activation(inputs: Inputs, report: Report, warn_days: int, policy: str) -> None:
    """A first process has delegated: warn of expiry; a serving one keeps what its metrics
    will say until `general_plugins_ran()`."""
    global _report
    warn_expiring(report.manifests, warn_days, policy)
    command = inputs.command
    if command is not None and command.command in SERVING_COMMANDS:
        _report = report


def general_plugins_ran() -> None:
    """Register the metrics of a serving first process (prometheus_client is vLLM's
    dependency; without it, vLLM serves no /metrics and there is nothing to add to)."""
    global _report
    report, _report = _report, None
    if report is None:
        return
    from importlib.util import find_spec

    try:
        if find_spec("prometheus_client") is None:
            log(logging.DEBUG, "tt_meta: prometheus_client is not installed; no metrics")
            return
        from . import metrics  # a serving first process only

        metrics.register(report)
    except Exception as exc:  # the metrics are a report, not a gate: the server goes on
        log(logging.WARNING, "tt_meta: its metrics are not in this server's /metrics: %r", exc)
