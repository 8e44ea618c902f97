"""Installed-distribution metadata, one API on every supported Python.

The standard library's `importlib.metadata` has what we need from 3.11 on, and vLLM has
already imported it, so in a vLLM process it costs nothing; Python 3.10 uses the
`importlib-metadata` backport.
"""

from __future__ import annotations

import re
import sys

if sys.version_info >= (3, 11):
    from importlib.metadata import (
        Distribution,
        EntryPoint,
        PackageNotFoundError,
        distribution,
        entry_points,
    )
else:
    from importlib_metadata import (
        Distribution,
        EntryPoint,
        PackageNotFoundError,
        distribution,
        entry_points,
    )

__all__ = [
    "Distribution",
    "EntryPoint",
    "PackageNotFoundError",
    "distribution",
    "entry_points",
    "find_distribution",
    "normalize",
]

PLATFORM_GROUP = "vllm.platform_plugins"
GENERAL_GROUP = "vllm.general_plugins"


def normalize(name: str) -> str:
    """PEP 503 name normalisation: `vllm_tt`, `vllm-tt` and `VLLM.TT` are one distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


def find_distribution(name: str) -> Distribution | None:
    try:
        return distribution(name)
    except PackageNotFoundError:
        return None
