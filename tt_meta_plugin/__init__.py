"""tt-meta-plugin: one vLLM plugin that chooses, verifies and delegates to a Tenstorrent backend.

Public surface for backend authors and tools. vLLM itself only calls
`tt_meta_plugin.vllm_entry.platform_plugin` and `general_plugin`.

The backend-plugin names come from `_catalog`, which needs pluggy; they are imported on first
use, so that a vLLM process, which imports this package first, does not pay for pluggy unless
it loads a backend catalog.
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
    from ._catalog import BACKENDS_GROUP, Backend, BackendSpec, hookimpl, hookspec

__version__ = "0.1.0"

_FROM_CATALOG = frozenset({"BACKENDS_GROUP", "Backend", "BackendSpec", "hookimpl", "hookspec"})

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
    if name in _FROM_CATALOG:
        from . import _catalog

        return getattr(_catalog, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
