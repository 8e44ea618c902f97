"""What a backend is, the built-in ones, and the default answers about them.

A backend is a name (what policies speak of) and the distributions that provide it. The
catalog (`catalog.py`) and the hook interface (`hooks.py`) both build on this module, which
imports neither of them.
"""

from __future__ import annotations

import importlib.util
import re
from typing import NamedTuple

from .._metadata import Distribution, normalize

_REQUIREMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class Backend(NamedTuple):
    """A backend as policies name it."""

    name: str
    distributions: tuple[str, ...]
    # Modules the backend needs at run time (its device runtime). Their absence is the usual
    # reason a backend's platform function answers None; we look them up to say so.
    runtime_modules: tuple[str, ...] = ()
    summary: str = ""
    # The distributions of that runtime, signed and verified with the backend (as its
    # "runtime" role): the code that drives the hardware is there, not in the plugin.
    runtime_distributions: tuple[str, ...] = ()


BUILTIN_BACKENDS = (
    Backend("metal", ("tt-vllm-plugin", "vllm-tt-plugin"), ("ttnn",),
            "TT-Metal / TTNN models (tt-vllm-plugin, vllm-tt-plugin)", ("ttnn",)),
    Backend("forge", ("vllm-tt",), ("pjrt_plugin_tt",), "TT-XLA / Forge models (tt-xla's vllm-tt)",
            ("pjrt-plugin-tt",)),
)


def default_unusable_reason(backend: Backend, dist: Distribution) -> str | None:
    """A runtime module of the backend that cannot be imported here, named."""
    missing = [m for m in backend.runtime_modules if importlib.util.find_spec(m) is None]
    if missing:
        return f"its runtime module '{missing[0]}' cannot be imported in this environment"
    return None


def default_vllm_requirement(backend: Backend, dist: Distribution) -> str | None:
    """The specifier of the distribution's unconditional requirement on vllm, if any."""
    for text in dist.requires or ():
        # Only a requirement on vllm is parsed: packaging's parser is slow to import.
        named = _REQUIREMENT_NAME.match(text)
        if named is None or normalize(named.group(0)) != "vllm":
            continue
        from packaging.requirements import InvalidRequirement, Requirement

        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue  # not ours to judge; pip would not have installed it either
        if normalize(req.name) != "vllm":
            continue
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            return str(req.specifier) or None
    return None
