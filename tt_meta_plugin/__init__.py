"""tt-meta-plugin: one vLLM plugin that chooses, verifies and delegates to a Tenstorrent backend.

Public surface for backend authors and tools. vLLM itself only calls
`tt_meta_plugin.vllm_entry.platform_plugin` and `general_plugin`.
"""

from ._catalog import BACKENDS_GROUP, Backend, BackendSpec, hookimpl, hookspec
from ._errors import (
    ConfigError,
    DelegationError,
    HandoffError,
    SelectionError,
    TrustError,
    TTMetaError,
)

__version__ = "0.1.0"

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
