"""The package layout holds: no import cycles between its modules (lazy imports included,
type-checking-only imports excepted), and signing never imports verifying."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tt_meta_plugin"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Package modules `path` imports, anywhere but under `if TYPE_CHECKING:`."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.ImportFrom) and child.level:
                base = package.split(".")
                base = base[: len(base) - (child.level - 1)]
                target = ".".join([*base, *(child.module.split(".") if child.module else [])])
                found.add(target)
                found.update(f"{target}.{a.name}" for a in child.names)
            elif isinstance(child, ast.ImportFrom) and (child.module or "").startswith(
                    "tt_meta_plugin"):
                found.add(str(child.module))
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def _graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    names = {_module_name(p) for p in paths}
    # An import of a package's __init__ is an edge only if the __init__ has code; ours other
    # than the top level are empty.
    return {_module_name(p): {m for m in _imports(p) if m in names and m != _module_name(p)}
            for p in paths}


def test_no_import_cycles() -> None:
    graph = _graph()
    assert len(graph) > 30 and graph["tt_meta_plugin.vllm_entry"], "the graph was not read"
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt):], nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node)


def test_signing_never_imports_verifying() -> None:
    graph = _graph()
    seen, todo = set(), ["tt_meta_plugin.trust.signing"]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph.get(node, ()))
    assert not seen & {"tt_meta_plugin.trust.verifier", "tt_meta_plugin.trust.trusted_set",
                       "tt_meta_plugin.trust.import_guard"}, sorted(seen)


def test_subpackage_inits_are_empty() -> None:
    for sub in ("selection", "activation", "trust"):
        assert (PACKAGE / sub / "__init__.py").read_text() == "", sub
