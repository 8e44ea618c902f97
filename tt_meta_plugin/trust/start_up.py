"""Files in a sys.path entry that Python acts on when it starts, before tt_meta runs.

`site.py` imports `sitecustomize` and `usercustomize` by name and executes the `import` lines
of every `*.pth` file in a site directory. tt_meta cannot verify what ran before it: a backend
module imported that way is refused (`TrustedSet`), and anything else such a file does is
outside its reach. So `tt-meta verify` and `doctor` show them at each backend's install root,
with the installed distribution that put each one there, for the operator to judge.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

#: The modules site.py imports by name at start-up (any importable form: .py, package, .so).
START_UP_MODULES = ("sitecustomize", "usercustomize")


def is_start_up_name(name: str) -> bool:
    return name.partition(".")[0] in START_UP_MODULES or name.endswith(".pth")


class StartUpFile(NamedTuple):
    path: str  #: absolute path of the file (or package directory)
    owner: str | None  #: the installed distribution whose RECORD lists it; None: no installer


def start_up_files(folder: Path) -> list[StartUpFile]:
    """The start-up files directly in `folder`, each with the distribution that installed it."""
    try:
        names = sorted(e.name for e in os.scandir(folder) if is_start_up_name(e.name))
    except OSError:
        return []
    if not names:
        return []
    owners = _installed_by(folder, set(names))
    return [StartUpFile(str(folder / n), owners.get(n)) for n in names]


def _installed_by(folder: Path, names: set[str]) -> dict[str, str]:
    """Which distribution's RECORD (in `folder`) lists each of `names` at its top level."""
    import csv  # only verify and doctor get here

    owners: dict[str, str] = {}
    for info in folder.glob("*.dist-info"):
        try:
            with (info / "RECORD").open(encoding="utf-8", newline="") as handle:
                for row in csv.reader(handle):
                    top = row[0].split("/", 1)[0] if row else ""
                    if top in names:
                        owners.setdefault(top, info.name.split("-", 1)[0])
        except (OSError, UnicodeDecodeError, csv.Error):
            continue  # no readable record: nothing is attributed to it
    return owners
