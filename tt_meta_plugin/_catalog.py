"""The backend catalog: what a backend is, the built-in ones, and how others are added.

A backend is a name (what policies speak of) and the distributions that provide it. It is
found by distribution, never by vLLM entry-point name: every Tenstorrent platform plugin calls
its entry point `tt`. The interface is a pluggy hook specification so that a third party can
add a backend from its own distribution through the entry-point group `tt_meta.backends`;
such a plugin is loaded only when the policy names its backend.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from typing import NamedTuple

import pluggy

from ._errors import ConfigError
from ._metadata import Distribution, EntryPoint, entry_points, find_distribution, normalize

PROJECT = "tt_meta"
BACKENDS_GROUP = "tt_meta.backends"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class Backend(NamedTuple):
    """A backend as policies name it."""

    name: str
    distributions: tuple[str, ...]
    # Modules the backend needs at run time (its device runtime). Their absence is the usual
    # reason a backend's platform function answers None; we look them up to say so.
    runtime_modules: tuple[str, ...] = ()
    summary: str = ""


class BackendSpec:
    """Hooks a backend plugin implements. Only `tt_meta_backends` is required."""

    @hookspec
    def tt_meta_backends(self) -> Sequence[Backend]:  # type: ignore[empty-body]
        """Describe the backends this plugin provides."""

    @hookspec(firstresult=True)
    def tt_meta_unusable_reason(self, backend: Backend, dist: Distribution) -> str | None:
        """Why `dist` cannot serve `backend` on this machine, or None when it can."""

    @hookspec(firstresult=True)
    def tt_meta_vllm_requirement(self, backend: Backend, dist: Distribution) -> str | None:
        """The vLLM version specifier `dist` declares it needs (PEP 440), or None."""


class _BuiltinBackends:
    """Metal and Forge, with the distribution names the real packages declare."""

    @hookimpl
    def tt_meta_backends(self) -> Sequence[Backend]:
        return (
            Backend(
                "metal",
                ("tt-vllm-plugin", "vllm-tt-plugin"),
                ("ttnn",),
                "TT-Metal / TTNN models (tt-vllm-plugin, vllm-tt-plugin)",
            ),
            Backend(
                "forge",
                ("vllm-tt",),
                ("pjrt_plugin_tt",),
                "TT-XLA / Forge models (tt-xla's vllm-tt)",
            ),
        )


class _DefaultChecks:
    """Answers for any backend whose own plugin does not answer: run last."""

    @hookimpl(trylast=True)
    def tt_meta_unusable_reason(self, backend: Backend, dist: Distribution) -> str | None:
        missing = [m for m in backend.runtime_modules if importlib.util.find_spec(m) is None]
        if missing:
            return f"its runtime module '{missing[0]}' cannot be imported in this environment"
        return None

    @hookimpl(trylast=True)
    def tt_meta_vllm_requirement(self, backend: Backend, dist: Distribution) -> str | None:
        from packaging.requirements import InvalidRequirement, Requirement

        for text in dist.requires or ():
            try:
                req = Requirement(text)
            except InvalidRequirement:
                continue  # not ours to judge; pip would not have installed it either
            if normalize(req.name) != "vllm":
                continue
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                return str(req.specifier) or None
        return None


BeforeLoad = Callable[[str, Distribution], None]


class Catalog:
    """The known backends. Built-ins always; third-party plugins only when asked for.

    `before_load(name, dist)` runs before a third-party plugin's code is imported: the
    dispatcher verifies that distribution there, so no unverified plugin code runs.
    """

    def __init__(self, before_load: BeforeLoad | None = None) -> None:
        self._before_load = before_load
        self._pm = pluggy.PluginManager(PROJECT)
        self._pm.add_hookspecs(BackendSpec)
        self._pm.register(_DefaultChecks(), name="default-checks")
        self._pm.register(_BuiltinBackends(), name="builtin")
        self._backends: dict[str, Backend] = {}
        self._refresh()

    def _refresh(self) -> None:
        for provided in self._pm.hook.tt_meta_backends():
            for backend in provided:
                self._backends.setdefault(backend.name, backend)

    def names(self) -> tuple[str, ...]:
        return tuple(self._backends)

    def distribution_names(self) -> tuple[str, ...]:
        """Every distribution any known backend is provided by."""
        return tuple(d for b in self._backends.values() for d in b.distributions)

    def get(self, name: str, policy_source: str) -> Backend:
        """The backend called `name`, loading a third-party plugin for it if one is installed."""
        if name not in self._backends:
            self._load_third_party(name)
        if name not in self._backends:
            raise ConfigError(
                f"unknown backend '{name}': it is not built in (metal, forge) and no installed "
                f"distribution provides it in the entry-point group '{BACKENDS_GROUP}'",
                where=policy_source,
                fix=f"correct the backend name, or install the distribution that provides '{name}'",
            )
        return self._backends[name]

    def third_party_entry_point(self, name: str) -> EntryPoint | None:
        found = [ep for ep in entry_points(group=BACKENDS_GROUP) if ep.name == name]
        return found[0] if found else None

    def _load_third_party(self, name: str) -> None:
        ep = self.third_party_entry_point(name)
        if ep is None:
            return
        if self._before_load is not None and ep.dist is not None:
            self._before_load(name, ep.dist)
        try:
            plugin = ep.load()
            # An entry point may name a module, an object or a class; a class is instantiated.
            self._pm.register(plugin() if isinstance(plugin, type) else plugin,
                              name=f"{BACKENDS_GROUP}:{name}")
            self._refresh()
        except Exception as exc:  # the plugin's own failure, reported as a diagnostic
            raise ConfigError(
                f"the backend plugin for '{name}' failed to load: {exc!r}",
                where=f"entry point {ep.name} = {ep.value} in group {BACKENDS_GROUP}",
                fix="fix or reinstall the distribution that provides it",
            ) from None

    def installed(self, backend: Backend) -> list[Distribution]:
        """The installed distributions that provide `backend`, in catalog order."""
        return [d for d in map(find_distribution, backend.distributions) if d is not None]

    def unusable_reason(self, backend: Backend, dist: Distribution) -> str | None:
        result: str | None = self._pm.hook.tt_meta_unusable_reason(backend=backend, dist=dist)
        return result

    def vllm_requirement(self, backend: Backend, dist: Distribution) -> str | None:
        result: str | None = self._pm.hook.tt_meta_vllm_requirement(backend=backend, dist=dist)
        return result
