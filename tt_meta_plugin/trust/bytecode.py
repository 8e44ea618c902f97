"""Signing checks that each module's bytecode is a compile of its signed source.

The import guard runs a module's signed `__pycache__/*.pyc` when Python itself would (its
header matches the source), instead of compiling the source in every process. Python trusts
that header: a `.pyc` compiled from other source (a stale one whose source's mtime was set
back, an unchecked-hash one, or one an image build planted) would run although the `.py`
beside it hashes clean. So `tt-meta sign` compiles each source that has bytecode for this
interpreter and compares the code objects (their equality compares the bytecode, constants,
names and line tables of every nested code object, not the file name); bytecode that is not
exactly its source's is refused, and only then signed. Verification needs no such step: the
signed bytes cannot change.
"""

from __future__ import annotations

import importlib.util
import marshal
import re
import sys
from collections.abc import Mapping

from .._errors import ConfigError

_TAG = re.escape(sys.implementation.cache_tag or "-")
_PYC = re.compile(r"^(?P<folder>(?:.*/)?)__pycache__/(?P<stem>[^/]+)\." + _TAG
                  + r"(?:\.opt-(?P<opt>[12]))?\.pyc$")


def check_bytecode(located: Mapping[str, str], label: str) -> int:
    """Refuse to sign bytecode (for this interpreter, of a signed source) that is not what
    compiling that source gives. `located`: signed path -> file on disk. Returns how many
    were compared."""
    compared = 0
    for rel, path in located.items():
        match = _PYC.match(rel)
        source = match and located.get(f"{match['folder']}{match['stem']}.py")
        if not match or source is None:
            continue  # not this interpreter's bytecode, or no source: never run by the guard
        with open(path, "rb") as handle:
            data = handle.read()
        if data[:4] != importlib.util.MAGIC_NUMBER:
            continue  # another Python's: the guard compiles the source instead
        with open(source, "rb") as handle:
            text = handle.read()
        try:
            same = marshal.loads(memoryview(data)[16:]) == compile(
                text, source, "exec", dont_inherit=True, optimize=int(match["opt"] or 0))
        except (ValueError, EOFError, TypeError, SyntaxError):
            same = False
        if not same:
            raise ConfigError(
                f"{rel} of {label} is not a compile of its source {match['stem']}.py (stale, "
                "or compiled from other code): the import guard would run it in place of the "
                "signed source",
                where=path,
                fix="recompile the package from its installed sources (python -m compileall "
                "-f DIR) or delete its __pycache__, then sign again")
        compared += 1
    return compared
