"""The hook interface a backend plugin implements (pluggy), and the built-in answers to it.

A third-party distribution adds a backend through the entry-point group `tt_meta.backends`;
the object it names implements `BackendSpec`. The built-in backends and the default checks
are registered too, as plugins answering last, so a third-party plugin can override them.
"""

from __future__ import annotations

from collections.abc import Sequence

import pluggy

from .._metadata import Distribution
from .backends import (
    BUILTIN_BACKENDS,
    Backend,
    default_unusable_reason,
    default_vllm_requirement,
)

PROJECT = "tt_meta"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


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
        return BUILTIN_BACKENDS


class _DefaultChecks:
    """Answers for any backend whose own plugin does not answer: run last."""

    @hookimpl(trylast=True)
    def tt_meta_unusable_reason(self, backend: Backend, dist: Distribution) -> str | None:
        return default_unusable_reason(backend, dist)

    @hookimpl(trylast=True)
    def tt_meta_vllm_requirement(self, backend: Backend, dist: Distribution) -> str | None:
        return default_vllm_requirement(backend, dist)


def plugin_manager() -> pluggy.PluginManager:
    """A plugin manager with the hook specification and the built-in plugins registered."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(BackendSpec)
    pm.register(_DefaultChecks(), name="default-checks")
    pm.register(_BuiltinBackends(), name="builtin")
    return pm
