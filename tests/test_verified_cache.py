"""The verification record: written by a first process, searched in place by children."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from tt_meta_plugin._errors import TrustError
from tt_meta_plugin.trust import verification_record as vc
from tt_meta_plugin.trust.manifest import ManifestFacts

FACTS = ManifestFacts("metal", "pkg", "1.0", {"vllm.platform_plugins": {"tt": "pkg:register"}},
                      None, 1, 2, 3)


def _files() -> dict[str, tuple[int, str]]:
    names = ["pkg/__init__.py", "pkg/a.py", "pkg/a/b.py", "pkg/ä.py", "pkg/z.bin", "top.py",
             "pkg-1.0.dist-info/METADATA"] + [f"pkg/d{i:03d}/m.py" for i in range(300)]
    return {n: (len(n), hashlib.sha256(n.encode()).hexdigest()) for n in names}


def _store(tmp_path: Path) -> tuple[str, vc.Identity, dict[str, tuple[int, str]]]:
    files = _files()
    walked = vc.Walked({"pkg": (1, 2, 3, 4, 5)},
                       {p: (1, i, 7, 8, 9) for i, p in enumerate(files)})
    walked.dirs.update({p.rpartition("/")[0]: (1, 2, 3, 4, 5) for p in files if "/" in p})
    key = "ab" * 32
    _, ident = vc.store(str(tmp_path), key, "cd" * 32, Path("/site"), frozenset({"pkg"}),
                        FACTS, [("k", b"s")], frozenset({("k", b"s")}), files, walked)
    return key, ident, files


def test_index_finds_every_signed_path_and_nothing_else(tmp_path: Path) -> None:
    key, ident, files = _store(tmp_path)
    head = vc.load_for_child(str(tmp_path), key, ident, strict=True)
    index = head.index
    assert (head.root, head.tops, len(index)) == (Path("/site"), frozenset({"pkg"}), len(files))
    assert (head.distribution, head.version, head.serial) == ("pkg", "1.0", 3)
    assert head.entry_points == FACTS.entry_points
    for path, entry in files.items():
        assert index.get(path) == entry
    for absent in ("pkg", "pkg/", "pkg/a", "pkg/a.pyc", "", "zzz", "pkg/d299/m.p", "a"):
        assert index.get(absent) is None
    assert dict(index.items()) == files


def test_warm_reader_gets_facts_signatures_and_walk_back(tmp_path: Path) -> None:
    key, _ident, files = _store(tmp_path)
    cached = vc.load(str(tmp_path), key, Path("/site"), strict=True)
    assert cached is not None
    assert (cached.payload_digest, cached.facts) == ("cd" * 32, FACTS)
    assert cached.listed == [("k", b"s")] and cached.verified == {("k", b"s")}
    walked = cached.walked()
    assert set(walked.files) == set(files) and walked.dirs["pkg"] == (1, 2, 3, 4, 5)
    assert vc.load(str(tmp_path), key, Path("/elsewhere"), strict=True) is None


def test_child_refuses_a_record_changed_after_it_was_written(tmp_path: Path) -> None:
    key, ident, _ = _store(tmp_path)
    path = vc.index_path(str(tmp_path), key)
    data = path.read_bytes()
    # Same size, same bytes, same mtime: only the ctime moves. Written again until it does,
    # since a kernel may keep ctime at a coarse granularity (a few ms) and this runs in µs.
    deadline = time.monotonic() + 5
    while os.stat(path).st_ctime_ns == ident[4]:
        assert time.monotonic() < deadline, "the file system never moved the ctime"
        time.sleep(0.002)
        with open(path, "r+b") as handle:
            handle.write(data)
        os.utime(path, ns=(ident[3], ident[3]))
    assert path.read_bytes() == data and os.stat(path).st_mtime_ns == ident[3]
    with pytest.raises(TrustError, match="changed after the parent wrote it"):
        vc.load_for_child(str(tmp_path), key, ident, strict=True)
