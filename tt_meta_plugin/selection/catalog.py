"""The backend catalog: what a backend is, the built-in ones, and how others are added.

A backend is a name (what policies speak of) and the distributions that provide it. It is
found by distribution, never by vLLM entry-point name: every Tenstorrent platform plugin calls
its entry point `tt`. A third party adds a backend from its own distribution through the
entry-point group `tt_meta.backends`, implementing the pluggy hooks of `hooks.py`; such a
plugin is loaded only when the policy names its backend.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .._errors import ConfigError
from .._metadata import Distribution, EntryPoint, entry_points, find_distribution, normalize
from .backends import (
    BUILTIN_BACKENDS,
    Backend,
    default_unusable_reason,
    default_vllm_requirement,
)

if TYPE_CHECKING:
    import pluggy

BACKENDS_GROUP = "tt_meta.backends"

BeforeLoad = Callable[[str, Distribution], None]


class Catalog:
    """The known backends. Built-ins always; third-party plugins only when asked for.

    `before_load(name, dist)` runs before a third-party plugin's code is imported: the
    dispatcher verifies that distribution there, so no unverified plugin code runs.
    """

    def __init__(self, before_load: BeforeLoad | None = None) -> None:
        self._before_load = before_load
        # The hook interface (pluggy) joins only when a third-party backend plugin is loaded:
        # until then the built-in backends and default answers are all there is, and a vLLM
        # process does not pay for importing pluggy.
        self._pm: pluggy.PluginManager | None = None
        self._backends: dict[str, Backend] = {b.name: b for b in BUILTIN_BACKENDS}

    def _refresh(self, pm: pluggy.PluginManager) -> None:
        for provided in pm.hook.tt_meta_backends():
            for backend in provided:
                self._backends.setdefault(backend.name, backend)

    def names(self) -> tuple[str, ...]:
        return tuple(self._backends)

    def backends(self) -> tuple[Backend, ...]:
        """The backends known so far (built-ins, and third-party ones loaded)."""
        return tuple(self._backends.values())

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
            if self._pm is None:
                from .hooks import plugin_manager  # pluggy: only now

                self._pm = plugin_manager()
            # An entry point may name a module, an object or a class; a class is instantiated.
            self._pm.register(plugin() if isinstance(plugin, type) else plugin,
                              name=f"{BACKENDS_GROUP}:{name}")
            self._refresh(self._pm)
        except Exception as exc:  # the plugin's own failure, reported as a diagnostic
            raise ConfigError(
                f"the backend plugin for '{name}' failed to load: {exc!r}",
                where=f"entry point {ep.name} = {ep.value} in group {BACKENDS_GROUP}",
                fix="fix or reinstall the distribution that provides it",
            ) from None

    def installed(self, backend: Backend) -> list[Distribution]:
        """The installed distributions that provide `backend`, in catalog order."""
        return [d for d in map(find_distribution, backend.distributions) if d is not None]

    def backend_distributions(self) -> list[Distribution]:
        """Every installed distribution of a known backend, and every installed distribution
        that offers a third-party backend plugin (found without loading it)."""
        found: dict[str, Distribution] = {}
        for backend in self._backends.values():
            for dist in self.installed(backend):
                found.setdefault(normalize(dist.name), dist)
        for ep in entry_points(group=BACKENDS_GROUP):
            if ep.dist is not None:
                found.setdefault(normalize(ep.dist.name), ep.dist)
        return list(found.values())

    def unusable_reason(self, backend: Backend, dist: Distribution) -> str | None:
        if self._pm is None:
            return default_unusable_reason(backend, dist)
        result: str | None = self._pm.hook.tt_meta_unusable_reason(backend=backend, dist=dist)
        return result

    def vllm_requirement(self, backend: Backend, dist: Distribution) -> str | None:
        if self._pm is None:
            return default_vllm_requirement(backend, dist)
        result: str | None = self._pm.hook.tt_meta_vllm_requirement(backend=backend, dist=dist)
        return result
