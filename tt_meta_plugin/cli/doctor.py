"""`tt-meta doctor`: is this environment set up so that `VLLM_PLUGINS=tt_meta` can work?"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from .._errors import TTMetaError
from .._metadata import (
    PLATFORM_GROUP,
    Distribution,
    entry_points,
    find_distribution,
    install_root,
    normalize,
)
from ..activation.backend import (
    check_vllm_plugins,
    installed_vllm_version,
    locate,
    target_of,
    vllm_mismatch,
)
from ..activation.operations import DAY
from ..activation.recorded_decision import ENV_DECISION
from ..ray_entry import ENV_RAY_HOOK
from ..ray_entry import HOOK as RAY_HOOK
from ..selection.catalog import Catalog
from ..selection.inputs import ENV_DEVICE, ENV_POLICY
from ..selection.policy import load_policy
from ..trust.manifest import installed_entry_points
from ..trust.roles import PLUGIN, RUNTIME
from ..trust.start_up import START_UP_MODULES, start_up_files
from ..vllm_entry import check_target_device

OK, WARN, FAIL = "ok", "warn", "FAIL"
DEVICE_GLOB = "/dev/tenstorrent/*"


class Check(NamedTuple):
    status: str
    topic: str
    message: str
    fix: str | None = None


def run_checks(environ: Mapping[str, str]) -> list[Check]:
    checks: list[Check] = []
    catalog = Catalog()

    def from_error(topic: str, error: TTMetaError, status: str = FAIL) -> Check:
        text = error.summary + (f" ({error.where})" if error.where else "")
        return Check(status, topic, text, error.fix)

    try:
        check_vllm_plugins(environ, catalog)
        value = environ.get("VLLM_PLUGINS")
        if value is None:
            checks.append(Check(WARN, "VLLM_PLUGINS", "not set; no backend is installed yet",
                                "set VLLM_PLUGINS=tt_meta"))
        else:
            checks.append(Check(OK, "VLLM_PLUGINS", f"VLLM_PLUGINS={value}"))
    except TTMetaError as error:
        checks.append(from_error("VLLM_PLUGINS", error))
    spaced = [n for n in environ.get("VLLM_PLUGINS", "").split(",") if n != n.strip()]
    if spaced:
        checks.append(Check(WARN, "VLLM_PLUGINS",
                            f"VLLM_PLUGINS has spaces around {spaced[0].strip()!r}: vLLM does "
                            f"not strip them, so it looks for a plugin named {spaced[0]!r}",
                            "write the names separated by commas only, e.g. "
                            "VLLM_PLUGINS=tt_meta"))
    try:
        check_target_device(environ)
    except TTMetaError as error:
        checks.append(from_error("VLLM_TARGET_DEVICE", error))
    policy_env = environ.get(ENV_POLICY, "").strip()
    if policy_env and not os.path.isabs(policy_env):
        checks.append(Check(WARN, ENV_POLICY,
                            f"{ENV_POLICY}={policy_env} is relative: each vLLM process reads it "
                            "from its own working directory, and Ray workers on other nodes "
                            "start in another one",
                            f"set {ENV_POLICY} to an absolute path"))
    hook = environ.get(ENV_RAY_HOOK)
    if hook and hook != RAY_HOOK:
        checks.append(Check(OK, ENV_RAY_HOOK,
                            f"{ENV_RAY_HOOK}={hook}: a vLLM server under tt_meta runs it, then "
                            "adds its decision to the Ray job's environment"))
    if environ.get(ENV_DECISION):
        checks.append(Check(WARN, ENV_DECISION,
                            "set in this shell: every vLLM started here reuses that decision",
                            f"unset {ENV_DECISION}"))

    vllm_version = installed_vllm_version()
    checks.append(Check(OK if vllm_version else WARN, "vLLM",
                        f"vLLM {vllm_version} installed" if vllm_version else "vLLM not installed",
                        None if vllm_version else "install the vLLM build for your backend"))

    if vllm_version:
        from ..selection.command_line import option_table

        try:
            table = option_table()
            checks.append(Check(OK, "vLLM command lines",
                                f"read with the option table of vLLM {table.VLLM_VERSION} "
                                f"(default model {table.DEFAULT_MODEL})"))
        except TTMetaError as error:
            checks.append(from_error("vLLM command lines", error))

    roots: set[Path] = set()
    waived = runtimes_waived(environ)
    for name in catalog.names():
        backend = catalog.get(name, "built-in catalog")
        dists = catalog.installed(backend)
        topic = f"backend {name}"
        if not dists:
            checks.append(Check(WARN, topic, f"not installed (distribution "
                                f"{' or '.join(backend.distributions)})"))
            continue
        roots.update(install_root(d) for d in dists)
        try:
            dist = locate(catalog, backend)
            # As installed (doctor runs nothing of it; serving calls the signed ones).
            target = target_of(name, dist, installed_entry_points(dist))
        except TTMetaError as error:
            checks.append(from_error(topic, error))
            continue
        checks.append(Check(OK, topic, f"{target.label}, platform entry point "
                            f"{target.platform_ep.name} = {target.platform_ep.value}"))
        checks.extend(expiry_check(environ, name, d, role) for d, role in
                      [(dist, PLUGIN), *((r, RUNTIME) for r in filter(
                          None, map(find_distribution, backend.runtime_distributions))
                          if not waived)])
        for runtime in filter(None, map(find_distribution, backend.runtime_distributions)):
            roots.add(install_root(runtime))
            label = f"runtime {runtime.name} {runtime.version}"
            checks.append(
                Check(WARN, topic, f"{label}: NOT verified (require_runtime_signatures = "
                      "false in the policy)", f"sign it (tt-meta sign --dist {runtime.name} "
                      f"--backend {name}) and remove the setting, except in development")
                if waived else
                Check(OK, topic, f"{label}: verified with the backend in every server's first "
                      f"process (check it now: tt-meta verify --dist {runtime.name})"))
        reason = catalog.unusable_reason(backend, dist)
        if reason:
            checks.append(Check(WARN, topic, f"{target.label} cannot run here: {reason}",
                                "install the Tenstorrent runtime in this environment"))
        mismatch = vllm_mismatch(catalog, backend, dist)
        if mismatch:
            checks.append(Check(WARN, topic, mismatch, "install the vLLM the backend needs"))

    for root in sorted(roots):
        checks.append(start_up_check(root))

    known = {normalize(d) for d in catalog.distribution_names()} | {"tt-meta-plugin"}
    for ep in entry_points(group=PLATFORM_GROUP):
        owner = ep.dist.name if ep.dist else "?"
        if normalize(owner) not in known:
            checks.append(Check(WARN, "platform plugins",
                                f"'{ep.name}' of {owner} is another platform plugin",
                                "leave it out of VLLM_PLUGINS"))

    try:
        policy = load_policy(environ)
        checks.append(Check(OK, "policy", f"{policy.source}: {len(policy.rules)} rules, "
                            f"allowed_backends {list(policy.allowed_backends)}"))
    except TTMetaError as error:
        checks.append(from_error("policy", error))

    devices = sorted(glob.glob(DEVICE_GLOB))
    checks.append(Check(OK if devices else WARN, "devices",
                        f"{len(devices)} Tenstorrent device(s): {', '.join(devices)}" if devices
                        else f"no Tenstorrent device found ({DEVICE_GLOB})",
                        None if devices else "install the tt-kmd driver and check the cards"))
    checks.append(device_check(environ))
    return checks


def device_check(environ: Mapping[str, str]) -> Check:
    """The device a server's first process here matches rules on: TT_META_DEVICE, else what
    `tt-smi -s` reports (selection/device.py, with the policy's cache and timeout)."""
    value = environ.get(ENV_DEVICE, "").strip()
    if value:
        return Check(OK, "device", f"{value.lower()!r} (from environment variable {ENV_DEVICE})")
    from ..selection.device import detect_device  # runs tt-smi

    try:
        policy = load_policy(environ)
    except TTMetaError:  # reported by the policy check: tt-smi without cache, default timeout
        policy = None
    found, why = detect_device(policy, environ, say=False)
    if found is not None:
        return Check(OK, "device", f"{found.value!r} (from {found.source})")
    return Check(WARN, "device", f"unknown ({ENV_DEVICE} is not set, and {why}): rules naming "
                 "a device do not match", f"set {ENV_DEVICE} to the device type (e.g. n150, "
                 "n300, t3k, p150, p300x2, galaxy), or make `tt-smi -s` work for the user "
                 "running vLLM")


def expiry_check(environ: Mapping[str, str], backend: str, dist: Distribution,
                 role: str) -> Check:
    """When `dist`'s manifest expires, as a server's first process verifies it: a warning
    within the policy's warn_expiry_days."""
    from ..trust.verifier import Verifier  # hashes the backend (a cached record spares it)

    topic = f"manifest {dist.name} {dist.version}"
    refused = FAIL  # a status passed on: the message is the error's, documented where raised
    try:
        trust = load_policy(environ).trust
        if not trust.require_signatures:
            return Check(WARN, topic, "not verified (require_signatures = false in the "
                         "policy)", "sign the backends and remove the setting")
        expires = Verifier(trust).verify(backend, dist, role=role).expires or 0
    except TTMetaError as error:  # the refusal a server would give, as verify shows it
        return Check(refused, topic, error.summary, error.fix)
    left = (expires - time.time()) / DAY
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(expires))
    if left <= trust.warn_expiry_days:
        return Check(WARN, topic, f"expires in {left:.1f} days ({when}), within "
                     f"warn_expiry_days = {trust.warn_expiry_days}; after that every server "
                     "refuses to start", f"sign it again: tt-meta sign --dist {dist.name} "
                     f"--backend {backend} --expires DAYS")
    return Check(OK, topic, f"verified; expires in {left:.1f} days ({when})")


def runtimes_waived(environ: Mapping[str, str]) -> bool:
    """Does the policy waive runtimes? (A policy that cannot be read is reported below.)"""
    try:
        return not load_policy(environ).trust.require_runtime_signatures
    except TTMetaError:
        return False


def start_up_check(root: Path) -> Check:
    """The files Python runs from a backend's install root before tt_meta: a warning for
    sitecustomize/usercustomize and for any file no installed distribution put there."""
    found = start_up_files(root)
    if not found:
        return Check(OK, "start-up files", f"none in {root}")
    odd = [f for f in found if f.owner is None
           or Path(f.path).name.partition(".")[0] in START_UP_MODULES]
    listed = ", ".join(f"{Path(f.path).name} ({f.owner or 'installed by nothing'})"
                       for f in found)
    return Check(WARN if odd else OK, "start-up files",
                 f"Python runs these from {root} before tt_meta verifies anything: {listed}",
                 "make sure each is yours and remove what no installed package needs; keep "
                 "the directory writable by root only" if odd else None)


def render(checks: list[Check]) -> str:
    lines = []
    for check in checks:
        lines.append(f"[{check.status:>4}] {check.topic}: {check.message}")
        if check.fix and check.status != OK:
            lines.append(f"       fix: {check.fix}")
    return "\n".join(lines)
