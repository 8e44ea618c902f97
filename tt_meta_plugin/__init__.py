"""tt-meta-plugin: one vLLM plugin that chooses, verifies and delegates to a Tenstorrent backend.

Public surface for backend authors and tools. vLLM itself only calls
`tt_meta_plugin.vllm_entry.platform_plugin` and `general_plugin`.

The backend-plugin names are imported on first use: the hook interface needs pluggy, and a
vLLM process, which imports this package first, does not pay for it unless a third-party
backend plugin is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._errors import (
    ConfigError,
    DelegationError,
    HandoffError,
    SelectionError,
    TrustError,
    TTMetaError,
)

if TYPE_CHECKING:
    from .selection.backends import Backend
    from .selection.catalog import BACKENDS_GROUP
    from .selection.hooks import BackendSpec, hookimpl, hookspec

# The version is pyproject.toml's, read from the installed metadata on first use (as pluggy
# does): one source, and no metadata lookup in the vLLM processes that never ask.
__version__: str
_DISTRIBUTION = "tt-meta-plugin"

_LAZY = {"BACKENDS_GROUP": "selection.catalog", "Backend": "selection.backends",
         "BackendSpec": "selection.hooks", "hookimpl": "selection.hooks",
         "hookspec": "selection.hooks"}

__all__ = [
    "BACKENDS_GROUP",
    "Backend",
    "BackendSpec",
    "ConfigError",
    "DelegationError",
    "HandoffError",
    "SelectionError",
    "TTMetaError",
    "TrustError",
    "__version__",
    "hookimpl",
    "hookspec",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from ._metadata import PackageNotFoundError, distribution

        try:
            return distribution(_DISTRIBUTION).version
        except PackageNotFoundError:  # a source tree on sys.path, not installed
            raise AttributeError("__version__: tt-meta-plugin is not installed, so it has no "
                                 "version (pip install it)") from None
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
