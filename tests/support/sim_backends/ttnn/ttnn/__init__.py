"""Simulated Metal runtime (the real ttnn holds tt-metal's Python API and its libraries)."""

from pathlib import Path

# The real package loads its shared libraries from here; this one only names them.
LIBRARIES = sorted(p.name for p in (Path(__file__).parent / "lib").glob("*.so"))
