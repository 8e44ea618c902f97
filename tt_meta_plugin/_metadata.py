"""Installed-distribution metadata, one API on every supported Python.

The standard library's `importlib.metadata` has what we need from 3.11 on, and vLLM has
already imported it, so in a vLLM process it costs nothing; Python 3.10 uses the
`importlib-metadata` backport.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

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

from ._errors import EditableInstallError

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


def install_root(dist: Distribution) -> Path:
    return Path(str(dist.locate_file(""))).resolve()


def dist_info_dir(dist: Distribution) -> Path | None:
    path = getattr(dist, "_path", None)  # PathDistribution: its .dist-info directory
    return Path(path).resolve() if path is not None else None


# direct_url.json is a few hundred bytes: anything past this is not one pip wrote.
_MAX_DIRECT_URL_BYTES = 1 << 20


def is_editable(dist: Distribution, label: str) -> bool:
    """Is `dist` an editable install (`direct_url.json`: `"dir_info": {"editable": true}`)?
    Its code then lives outside the install root, where its .pth or finder says: only a
    manifest signed for an editable install covers it (`trust/editable.py`). A
    direct_url.json that exists but cannot be read, or is not the JSON pip writes, is a
    refusal: it may be an editable install."""
    info = dist_info_dir(dist)
    where = str(info / "direct_url.json") if info else "direct_url.json in its .dist-info"
    try:
        if info is None:  # not a directory on disk: importlib.metadata reads it
            text = dist.read_text("direct_url.json")
        else:
            try:
                with open(info / "direct_url.json", "rb") as handle:
                    raw = handle.read(_MAX_DIRECT_URL_BYTES + 1)
            except (FileNotFoundError, NotADirectoryError):
                return False
            if len(raw) > _MAX_DIRECT_URL_BYTES:
                raise ValueError("too large")
            text = raw.decode("utf-8")
        if not text:
            return False
        return bool(json.loads(text).get("dir_info", {}).get("editable"))
    except (OSError, ValueError, AttributeError, RecursionError):
        raise EditableInstallError(
            f"{label} has unreadable install metadata: it may be an editable install",
            where=where,
            fix="reinstall the backend (pip install, or pip install -e for an editable "
            "install), then sign it again",
        ) from None


def refuse_editable(dist: Distribution, label: str) -> None:
    """A child process: refuse only what cannot be read. An editable install is fine: the
    parent's verification record says where its sources are, and the import guard takes
    every module from there."""
    is_editable(dist, label)
