"""tt_meta's metrics in vLLM's own `/metrics`, through prometheus_client as vLLM uses it.

Imported only by a first process that serves vLLM's OpenAI API (activation/operations.py),
never by a child: children report their activation time by appending it to a file this
process creates (`TT_META_METRICS_FILE`, written by activation/audit.py with plain `os`
calls), read here when `/metrics` is scraped.

- `tt_meta_backend_info{backend, distribution, version, serial, signers, rule}` (gauge, 1);
- `tt_meta_manifest_expiry_timestamp_seconds{distribution}` (gauge, Unix time) for each
  manifest in use (the backend's plugin and its runtimes);

distribution names are normalised (`vllm-tt`, as pip writes them), so the two join.
- `tt_meta_activation_seconds{kind="first"|"child"}` (summary: `_count`, `_sum`).

vLLM serves the process-wide registry (`prometheus_client.REGISTRY`) unless
`PROMETHEUS_MULTIPROC_DIR` is set; then it builds a registry that reads the metric files of
every process in that directory, so the values are written there instead (`kind="child"` is
then not reported: it is only known at scrape time). vLLM sets that directory itself only for
`--api-server-count` > 1, whose API servers are children: not covered (docs/operations.md).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, Gauge, Summary
from prometheus_client.core import GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from .._metadata import normalize
from .audit import ENV_METRICS_FILE, METRICS_FILE_PREFIX, METRICS_FILE_SUFFIX

if TYPE_CHECKING:  # operations imports this module
    from .operations import Report

INFO = "tt_meta_backend_info"
INFO_LABELS = ("backend", "distribution", "version", "serial", "signers", "rule")
EXPIRY = "tt_meta_manifest_expiry_timestamp_seconds"
ACTIVATION = "tt_meta_activation_seconds"
INFO_HELP = "The Tenstorrent backend tt_meta delegated this server to (always 1)"
EXPIRY_HELP = "When each signed manifest in use expires (Unix time)"
ACTIVATION_HELP = "Time tt_meta took to activate a vLLM process, by kind of process"
MAX_CHILD_BYTES = 1 << 20  # ~70,000 children: more is not read


def info_labels(report: Report) -> list[str]:
    h = report.handoff
    return [h.backend, normalize(h.distribution), h.version,
            "" if h.serial is None else str(h.serial), ",".join(h.signers or ()), h.reason]


def expiries(report: Report) -> list[tuple[str, int]]:
    return [(normalize(v.distribution), v.expires) for v in report.manifests
            if v.expires is not None]


class TTMetaCollector(Collector):
    """The metrics of one server, computed when scraped."""

    def __init__(self, report: Report, children: str) -> None:
        self.report = report
        self.children = children  #: the file children append their activation seconds to

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(INFO, INFO_HELP, labels=INFO_LABELS)
        info.add_metric(info_labels(self.report), 1)
        yield info
        expiry = GaugeMetricFamily(EXPIRY, EXPIRY_HELP, labels=["distribution"])
        for dist, expires in expiries(self.report):
            expiry.add_metric([dist], expires)
        yield expiry
        activation = SummaryMetricFamily(ACTIVATION, ACTIVATION_HELP, labels=["kind"])
        activation.add_metric(["first"], 1, self.report.seconds)
        times = child_seconds(self.children)
        activation.add_metric(["child"], len(times), sum(times))
        yield activation


def child_seconds(path: str) -> list[float]:
    """The activation times the children appended (each line written whole, by one write)."""
    try:
        with open(path, "rb") as handle:
            lines = handle.read(MAX_CHILD_BYTES).decode("ascii", "replace").splitlines()
    except OSError:
        return []
    times = []
    for line in lines:
        try:
            times.append(float(line))
        except ValueError:  # a line cut at MAX_CHILD_BYTES
            continue
    return times


def register(report: Report) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        _write_multiprocess(report)
        return
    fd, path = tempfile.mkstemp(prefix=METRICS_FILE_PREFIX, suffix=METRICS_FILE_SUFFIX)  # 0600
    os.close(fd)
    atexit.register(_remove, path)
    os.environ[ENV_METRICS_FILE] = path  # the children vLLM starts from here inherit it
    REGISTRY.register(TTMetaCollector(report, path))


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):  # already gone: nothing to clean
        os.unlink(path)


def _write_multiprocess(report: Report) -> None:
    """Values in this process's files of PROMETHEUS_MULTIPROC_DIR ("live" gauges: removed
    with the process's files when vLLM marks it dead)."""
    info = Gauge(INFO, INFO_HELP, INFO_LABELS, registry=None,
                 multiprocess_mode="livemostrecent")
    info.labels(*info_labels(report)).set(1)
    expiry = Gauge(EXPIRY, EXPIRY_HELP, ["distribution"], registry=None,
                   multiprocess_mode="livemostrecent")
    for dist, expires in expiries(report):
        expiry.labels(dist).set(expires)
    Summary(ACTIVATION, ACTIVATION_HELP, ["kind"], registry=None).labels("first").observe(
        report.seconds)
