"""Every message tt_meta can show an operator is documented, in its own words, in docs/errors.md.

The package's source is read with `ast`; nothing of it is imported or run.

What is collected, each as one or more *templates* (literal text and holes for what varies):

* errors: the first argument of every call to an error class. The error classes are the
  classes of `tt_meta_plugin._errors` whose names end in "Error", the package's classes derived
  from one of them, and the package's classes derived from ImportError (the import guard's
  `TamperedImport`: logged at ERROR, and shown to the operator inside a TrustError);
* log lines at WARNING or above, passed to the package's `_log.log`. WARNING lines are
  *warnings*; ERROR lines belong with the errors;
* `tt-meta doctor` findings: the message of every `_doctor.Check` (status, topic, message,
  fix) whose status is not OK. A Check whose status is not a constant re-renders an error
  that is collected where it is raised, and is skipped.

How a message expression becomes templates: string constants are literal text; an f-string
keeps its literal parts and puts each `{...}` in a hole, except a module constant of the
package (`{ENV_DECISION}`, `{_MAX_SIGNATURES}`), which is its value; `a + b` concatenates;
`x if c else y` and `x or y` give the templates of both; a local variable gives those of every
value assigned or appended to it in its function; a call of a package function gives those of
its return values; `sep.join(...)` gives its elements (the one-element case), or the joined
value of a constant tuple; `%s`-style placeholders of log lines are holes. Anything else is
a hole.

Helpers are found by what they do, not listed: a function whose error message uses one of its
own parameters (`bad(why)` in `_manifest.py`, `_Tampered.__call__` in `_verify.py`,
`_perms.check(path, what, strict)`, `strict_json(raw, what, where)`, `_read_small(path, what)`,
`_Table._wrong`, the import guard's `_refuse`...) is a helper, and at each call of it the
extractor can resolve (a plain name, `self.method`, `module.function`, or an instance of a
class with `__call__`) the argument fills the hole. The template checked is then the message
as the operator reads it ("the manifest lists 'P' twice", not "the manifest WHY"). Only
text that reaches a message through a call the extractor cannot follow (a pluggy hook, a
callback) is named explicitly, in MESSAGE_PARTS, and checked on its own.

The check: the literal fragments of a template (the text between its holes, whitespace
collapsed, backticks dropped), those of at least MIN_FRAGMENT (10) characters, must all occur,
in order, in ONE message line of the doc, in a section of the template's kind: a heading that
says "warning" holds warnings, one that says "doctor" holds doctor findings, every other
section holds errors. A message line is the first cell of a table row (split at `<br>`), or a
paragraph of prose. Shorter fragments are the punctuation and single words around variable parts
("' (", " of ", "model "): the doc writes those around its CAPITALS, and they would match
anywhere. A template with no fragment that long cannot be checked, and is reported as such.

Conversely, every message line of a table must be matched by some template of its section's
kind, so a row whose wording drifted away from the code fails too.
"""

from __future__ import annotations

import ast
import functools
import io
import logging
import re
import tokenize
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "tt_meta_plugin"
DOC = ROOT / "docs" / "errors.md"

MIN_FRAGMENT = 10
# More variants than this for one message means the expansion went astray: reported.
MAX_VARIANTS = 256
# The package has ~150 places that raise an error (a call of an error class, or of a helper
# that builds one); an extractor that finds far fewer has stopped seeing them.
MIN_ERROR_SITES = 130
MIN_TEMPLATES = 170

# Named explicitly, module names relative to the package: the logging function whose
# WARNING/ERROR lines the operator reads, and the doctor's finding type (status, message index).
LOG_FUNCTION = ("_log", "log")
FINDING_CLASS = ("cli.doctor", "Check")
FINDING_STATUS, FINDING_MESSAGE = 0, 2
OK_STATUS = "ok"
# Functions whose returned text becomes part of messages through calls the extractor cannot
# follow (a pluggy hook, a callback passed in): each text they return is checked as an error
# message of its own.
MESSAGE_PARTS = (("selection.backends", "default_unusable_reason"),)


# -- Templates -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hole:
    """A variable part. `owner`/`param`: a parameter of that function (a helper's argument)."""

    owner: str | None = None
    param: str | None = None


Part: TypeAlias = "str | Hole"
Template: TypeAlias = "tuple[Part, ...]"
HOLE: Template = (Hole(),)
HOLE_ONLY: list[Template] = [HOLE]


class TooManyVariants(Exception):
    pass


def _canonical(template: Template) -> Template:
    """Adjacent literals joined, adjacent anonymous holes merged, empty literals dropped."""
    out: list[Part] = []
    for part in template:
        if isinstance(part, str):
            if not part:
                continue
            if out and isinstance(out[-1], str):
                out[-1] += part
                continue
        elif part == Hole() and out and out[-1] == Hole():
            continue
        out.append(part)
    return tuple(out)


def _dedupe(templates: Sequence[Template]) -> list[Template]:
    return list(dict.fromkeys(_canonical(t) for t in templates))


def _product(choices: Sequence[Sequence[Template]]) -> list[Template]:
    out: list[Template] = [()]
    for alternatives in choices:
        out = _dedupe([a + b for a in out for b in (alternatives or HOLE_ONLY)])
        if len(out) > MAX_VARIANTS:
            raise TooManyVariants
    return out


def _plain(templates: Sequence[Template]) -> list[Template]:
    """The same templates with every parameter hole made anonymous."""
    return _dedupe([tuple(Hole() if isinstance(p, Hole) else p for p in t) for t in templates])


_PERCENT = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[diouxXeEfFgGcrsa%]")


def _percent_holes(template: Template) -> Template:
    """A %-style log format: every placeholder a hole, `%%` a literal `%`."""
    out: list[Part] = []
    for part in template:
        if not isinstance(part, str):
            out.append(part)
            continue
        at = 0
        for match in _PERCENT.finditer(part):
            out.append(part[at:match.start()])
            out.append("%" if match.group() == "%%" else Hole())
            at = match.end()
        out.append(part[at:])
    return _canonical(tuple(out))


def normalize(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("`", "").replace("\\|", "|")).strip()


def fragments(template: Template) -> list[str]:
    """The literal runs of a template that are long enough to be checked."""
    runs: list[str] = []
    current = ""
    for part in (*template, Hole()):
        if isinstance(part, str):
            current += part
            continue
        text = normalize(current)
        if len(text) >= MIN_FRAGMENT:
            runs.append(text)
        current = ""
    return runs


def render(template: Template) -> str:
    return "".join(p if isinstance(p, str) else "…" for p in template).replace("\n", "\\n")


# -- The package, indexed --------------------------------------------------------------------

Binding: TypeAlias = "ast.expr | None"  # None: bound, but not to a value we can read


@dataclass(eq=False)
class Func:
    node: ast.FunctionDef | ast.AsyncFunctionDef
    mod: Mod
    parent: Func | None  # the enclosing function: its names are visible here
    cls: str | None  # the class this is a method of
    key: str
    params: list[str]
    positional: list[str]
    annotations: dict[str, ast.expr] = field(default_factory=dict)
    bindings: dict[str, list[Binding]] = field(default_factory=dict)
    appends: dict[str, list[ast.expr]] = field(default_factory=dict)
    defs: dict[str, Func] = field(default_factory=dict)
    returns: list[ast.expr] = field(default_factory=list)


@dataclass(eq=False)
class Mod:
    name: str
    path: str
    tree: ast.Module
    is_package: bool
    imports: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    assigned: dict[str, list[Binding]] = field(default_factory=dict)
    funcs: dict[str, Func] = field(default_factory=dict)
    classes: dict[str, ast.ClassDef] = field(default_factory=dict)
    methods: dict[str, dict[str, Func]] = field(default_factory=dict)


@dataclass(frozen=True)
class Found:
    """What a name refers to: param/local (of `func`), def (`func`), class/const/module."""

    kind: str
    func: Func | None = None
    mod: Mod | None = None
    name: str = ""


@dataclass(frozen=True)
class Message:
    kind: str  # "error", "warning" or "doctor"
    where: str  # path:line of the call that builds it
    via: str | None  # path:line of the helper call that filled part of it
    template: Template

    def describe(self) -> str:
        via = f" (via {self.via})" if self.via else ""
        return f"{self.where}{via}: [{self.kind}] {render(self.template)}"


@dataclass
class Construction:
    kind: str
    where: str
    templates: list[Template]
    is_error_class: bool


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


def _scope_nodes(body: Sequence[ast.AST]) -> Iterator[ast.AST]:
    """The nodes of one scope; nested functions, lambdas and classes are yielded, not entered."""
    stack = list(reversed(body))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, _SCOPES):
            stack.extend(reversed(list(ast.iter_child_nodes(node))))


def _bind(target: ast.expr, value: ast.expr | None, into: dict[str, list[Binding]]) -> None:
    if isinstance(target, ast.Name):
        into.setdefault(target.id, []).append(value)
    elif isinstance(target, (ast.Tuple, ast.List)):
        pairs = (isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) == len(target.elts)
                 and not any(isinstance(e, ast.Starred) for e in (*target.elts, *value.elts)))
        for i, element in enumerate(target.elts):
            inner = value.elts[i] if pairs and isinstance(value, (ast.Tuple, ast.List)) else None
            _bind(element.value if isinstance(element, ast.Starred) else element, inner, into)


def _record_binding(node: ast.AST, into: dict[str, list[Binding]]) -> None:
    if isinstance(node, ast.Assign):
        for target in node.targets:
            _bind(target, node.value, into)
    elif isinstance(node, ast.NamedExpr | ast.AnnAssign):
        if node.value is not None:
            _bind(node.target, node.value, into)
    elif isinstance(node, ast.AugAssign | ast.For | ast.AsyncFor):
        _bind(node.target, None, into)
    elif isinstance(node, ast.withitem) and node.optional_vars is not None:
        _bind(node.optional_vars, None, into)
    elif isinstance(node, ast.ExceptHandler) and node.name:
        into.setdefault(node.name, []).append(None)


class Extractor:
    """Every message of a package, from its modules' sources: {module: (path, source)}."""

    def __init__(self, package: str, sources: Mapping[str, tuple[str, str]],
                 message_parts: Sequence[tuple[str, str]] = ()) -> None:
        self.package = package
        self.message_parts = message_parts
        self.mods: dict[str, Mod] = {}
        for name, (path, text) in sources.items():
            self.mods[name] = Mod(name, path, ast.parse(text, path),
                                  path.endswith("__init__.py"))
        self.func_of: dict[int, Func] = {}
        for mod in self.mods.values():
            self._index(mod)
        self.error_classes = self._error_classes()
        self.calls: list[tuple[ast.Call, Func | None, Mod]] = []
        for mod in self.mods.values():
            self.calls.extend(self._calls(mod.tree, None, mod))
        self.problems: list[str] = []
        self.constructions: list[Construction] = []
        self.messages: list[Message] = self._messages()

    # -- indexing ---------------------------------------------------------------------------

    def _index(self, mod: Mod) -> None:
        for node in ast.walk(mod.tree):
            if isinstance(node, ast.ImportFrom):
                self._import_from(mod, node)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        mod.imports[alias.asname] = (alias.name, None)
                    else:
                        first = alias.name.split(".")[0]
                        mod.imports[first] = (first, None)
        for node in mod.tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                mod.funcs[node.name] = self._function(mod, node, None, None, node.name)
            elif isinstance(node, ast.ClassDef):
                self._class(mod, node, None, node.name)
            else:
                for sub in _scope_nodes([node]):
                    _record_binding(sub, mod.assigned)

    def _import_from(self, mod: Mod, node: ast.ImportFrom) -> None:
        if node.level:
            parts = mod.name.split(".") if mod.is_package else mod.name.split(".")[:-1]
            parts = parts[:len(parts) - node.level + 1]
            target = ".".join([*parts, *([node.module] if node.module else [])])
        else:
            target = node.module or ""
        for alias in node.names:
            local = alias.asname or alias.name
            if f"{target}.{alias.name}" in self.mods:
                mod.imports[local] = (f"{target}.{alias.name}", None)
            else:
                mod.imports[local] = (target, alias.name)

    def _class(self, mod: Mod, node: ast.ClassDef, parent: Func | None, qual: str) -> None:
        if parent is None:
            mod.classes[node.name] = node
        methods = mod.methods.setdefault(node.name, {})
        for item in node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                methods[item.name] = self._function(mod, item, parent, node.name,
                                                    f"{qual}.{item.name}")

    def _function(self, mod: Mod, node: ast.FunctionDef | ast.AsyncFunctionDef,
                  parent: Func | None, cls: str | None, qual: str) -> Func:
        a = node.args
        positional = [x.arg for x in (*a.posonlyargs, *a.args)]
        every = [*positional, *(x.arg for x in a.kwonlyargs)]
        every += [x.arg for x in (a.vararg, a.kwarg) if x is not None]
        func = Func(node, mod, parent, cls, f"{mod.name}:{qual}", every, positional)
        for arg in (*a.posonlyargs, *a.args, *a.kwonlyargs):
            if arg.annotation is not None:
                func.annotations[arg.arg] = arg.annotation
        self.func_of[id(node)] = func
        for sub in _scope_nodes(node.body):
            if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)):
                func.defs[sub.name] = self._function(mod, sub, func, None, f"{qual}.{sub.name}")
            elif isinstance(sub, ast.ClassDef):
                self._class(mod, sub, func, f"{qual}.{sub.name}")
            elif isinstance(sub, ast.Return) and sub.value is not None:
                func.returns.append(sub.value)
            elif (isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute)
                  and isinstance(sub.func.value, ast.Name) and sub.args
                  and sub.func.attr in ("append", "add", "insert")):
                func.appends.setdefault(sub.func.value.id, []).append(sub.args[-1])
            else:
                _record_binding(sub, func.bindings)
        return func

    def _error_classes(self) -> set[tuple[str, str]]:
        classes = {(m.name, c): (m, node) for m in self.mods.values()
                   for c, node in m.classes.items()}
        found = {key for key in classes
                 if key[0] == f"{self.package}._errors" and key[1].endswith("Error")}
        grew = True
        while grew:
            grew = False
            for key, (mod, node) in classes.items():
                if key in found:
                    continue
                for base in node.bases:
                    if (self.resolve_class(base, None, mod) in found
                            or (isinstance(base, ast.Name) and base.id == "ImportError")):
                        found.add(key)
                        grew = True
                        break
        return found

    def _calls(self, node: ast.AST, func: Func | None, mod: Mod
               ) -> Iterator[tuple[ast.Call, Func | None, Mod]]:
        for child in ast.iter_child_nodes(node):
            inner = self.func_of.get(id(child), func)
            if isinstance(child, ast.Call):
                yield child, func, mod
            yield from self._calls(child, inner, mod)

    # -- names --------------------------------------------------------------------------------

    def lookup(self, name: str, func: Func | None, mod: Mod) -> Found:
        scope = func
        while scope is not None:
            if name in scope.params:
                return Found("param", func=scope)
            if name in scope.bindings or name in scope.appends:
                return Found("local", func=scope)
            if name in scope.defs:
                return Found("def", func=scope.defs[name])
            scope = scope.parent
        return self._global(mod, name, frozenset())

    def _global(self, mod: Mod, name: str, seen: frozenset[tuple[str, str]]) -> Found:
        if name in mod.funcs:
            return Found("def", func=mod.funcs[name])
        if name in mod.classes:
            return Found("class", mod=mod, name=name)
        if name in mod.assigned:
            return Found("const", mod=mod, name=name)
        if name in mod.imports and (mod.name, name) not in seen:
            target, attr = mod.imports[name]
            other = self.mods.get(target)
            if other is None:
                return Found("none")
            if attr is None:
                return Found("module", mod=other)
            return self._global(other, attr, seen | {(mod.name, name)})
        return Found("none")

    def const_value(self, mod: Mod, name: str) -> str | tuple[str, ...] | None:
        values = mod.assigned.get(name, [])
        if len(values) != 1 or values[0] is None:
            return None
        value = values[0]
        if isinstance(value, (ast.Tuple, ast.List)) and all(
                isinstance(e, ast.Constant) and isinstance(e.value, str) for e in value.elts):
            return tuple(str(e.value) for e in value.elts if isinstance(e, ast.Constant))
        alternatives = self.expand(value, None, mod, frozenset({("const", mod.name, name)}))
        if len(alternatives) == 1 and all(isinstance(p, str) for p in alternatives[0]):
            return "".join(str(p) for p in alternatives[0])
        return None

    def resolve_class(self, node: ast.expr, func: Func | None, mod: Mod) -> tuple[str, str] | None:
        if isinstance(node, ast.Name):
            found = self.lookup(node.id, func, mod)
            if found.kind == "class" and found.mod is not None:
                return found.mod.name, found.name
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            found = self.lookup(node.value.id, func, mod)
            if found.kind == "module" and found.mod is not None and node.attr in found.mod.classes:
                return found.mod.name, node.attr
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            return self.resolve_class(ast.Name(node.value), func, mod)
        return None

    def _method(self, cls: tuple[str, str], name: str) -> Func | None:
        return self.mods[cls[0]].methods.get(cls[1], {}).get(name)

    def _instance_of(self, func: Func, name: str) -> tuple[str, str] | None:
        """The package class a local or parameter holds an instance of, if that is clear."""
        if name in func.annotations:
            return self.resolve_class(func.annotations[name], func, func.mod)
        for value in func.bindings.get(name, []):
            if isinstance(value, ast.Call):
                cls = self.resolve_class(value.func, func, func.mod)
                if cls is not None:
                    return cls
        return None

    def resolve_callee(self, node: ast.expr, func: Func | None, mod: Mod) -> Func | None:
        if isinstance(node, ast.Name):
            found = self.lookup(node.id, func, mod)
            if found.kind == "def":
                return found.func
            if found.kind in ("param", "local") and found.func is not None:
                cls = self._instance_of(found.func, node.id)
                return self._method(cls, "__call__") if cls else None
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            found = self.lookup(node.value.id, func, mod)
            if found.kind == "module" and found.mod is not None:
                return found.mod.funcs.get(node.attr)
            if found.kind == "class" and found.mod is not None:
                return self._method((found.mod.name, found.name), node.attr)
            owner = found.func
            if (found.kind == "param" and owner is not None and owner.cls is not None
                    and owner.positional[:1] == [node.value.id]):
                return self._method((owner.mod.name, owner.cls), node.attr)
        return None

    # -- expressions --------------------------------------------------------------------------

    def expand(self, node: ast.expr, func: Func | None, mod: Mod,
               seen: frozenset[object]) -> list[Template]:
        """The templates of the strings `node` can evaluate to ([] for None)."""
        if isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, str):
                return [(value,)]
            if value is None:
                return []
            if isinstance(value, int | float) and not isinstance(value, bool):
                return [(str(value),)]
            return [HOLE]
        if isinstance(node, ast.JoinedStr):
            choices: list[list[Template]] = []
            for piece in node.values:
                if isinstance(piece, ast.Constant) and isinstance(piece.value, str):
                    choices.append([(piece.value,)])
                elif isinstance(piece, ast.FormattedValue):
                    choices.append(self._formatted(piece, func, mod, seen))
                else:
                    choices.append([HOLE])
            return _product(choices)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return _product([self.expand(node.left, func, mod, seen),
                             self.expand(node.right, func, mod, seen)])
        if isinstance(node, ast.IfExp):
            return _dedupe(self.expand(node.body, func, mod, seen)
                           + self.expand(node.orelse, func, mod, seen))
        if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
            return _dedupe([t for v in node.values for t in self.expand(v, func, mod, seen)])
        if isinstance(node, ast.NamedExpr):
            return self.expand(node.value, func, mod, seen)
        if isinstance(node, ast.Name):
            return self._name(node.id, func, mod, seen)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            found = self.lookup(node.value.id, func, mod)
            if found.kind == "module" and found.mod is not None:
                return self._name(node.attr, None, found.mod, seen)
            return [HOLE]
        if isinstance(node, ast.Call):
            return self._call(node, func, mod, seen)
        return [HOLE]

    def _formatted(self, node: ast.FormattedValue, func: Func | None, mod: Mod,
                   seen: frozenset[object]) -> list[Template]:
        if node.format_spec is not None or node.conversion in (ord("r"), ord("a")):
            return [HOLE]
        return self.expand(node.value, func, mod, seen) or [HOLE]

    def _name(self, name: str, func: Func | None, mod: Mod,
              seen: frozenset[object]) -> list[Template]:
        found = self.lookup(name, func, mod)
        scope = found.func
        if found.kind == "param" and scope is not None:
            return [(Hole(scope.key, name),)]
        if found.kind == "local" and scope is not None:
            key = ("local", scope.key, name)
            if key in seen:
                return [HOLE]
            alternatives: list[Template] = []
            for value in scope.bindings.get(name, []):
                alternatives += (HOLE_ONLY if value is None
                                 else self.expand(value, scope, scope.mod, seen | {key}))
            return _dedupe(alternatives) or [HOLE]
        if found.kind == "const" and found.mod is not None:
            if ("const", found.mod.name, found.name) in seen:
                return [HOLE]
            constant = self.const_value(found.mod, found.name)
            return [(constant,)] if isinstance(constant, str) else [HOLE]
        return [HOLE]

    def _call(self, node: ast.Call, func: Func | None, mod: Mod,
              seen: frozenset[object]) -> list[Template]:
        callee = node.func
        if (isinstance(callee, ast.Attribute) and callee.attr == "join" and len(node.args) == 1
                and isinstance(callee.value, ast.Constant) and isinstance(callee.value.value, str)):
            joined = self._constant_sequence(node.args[0], func, mod)
            if joined is not None:
                return [(callee.value.value.join(joined),)]
            return self._elements(node.args[0], func, mod, seen) or [HOLE]
        if (isinstance(callee, ast.Name) and callee.id == "str" and len(node.args) == 1
                and self.lookup("str", func, mod).kind == "none"):
            return self.expand(node.args[0], func, mod, seen) or [HOLE]
        target = self.resolve_callee(callee, func, mod)
        if target is None or ("call", target.key) in seen:
            return [HOLE]
        key = ("call", target.key)
        alternatives = [t for r in target.returns
                        for t in self.expand(r, target, target.mod, seen | {key})]
        return _plain(alternatives) or [HOLE]

    def _constant_sequence(self, node: ast.expr, func: Func | None, mod: Mod
                           ) -> tuple[str, ...] | None:
        if isinstance(node, ast.Name):
            found = self.lookup(node.id, func, mod)
            if found.kind == "const" and found.mod is not None:
                value = self.const_value(found.mod, found.name)
                return value if isinstance(value, tuple) else None
        return None

    def _elements(self, node: ast.expr, func: Func | None, mod: Mod,
                  seen: frozenset[object]) -> list[Template]:
        """The templates of one element of the sequence `node`."""
        if isinstance(node, (ast.GeneratorExp, ast.ListComp, ast.SetComp)):
            return self.expand(node.elt, func, mod, seen)
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            return _dedupe([t for e in node.elts for t in self.expand(e, func, mod, seen)])
        if isinstance(node, ast.Name):
            found = self.lookup(node.id, func, mod)
            scope = found.func
            key = ("elements", scope.key if scope else mod.name, node.id)
            if found.kind != "local" or scope is None or key in seen:
                return [HOLE]
            out: list[Template] = []
            for value in scope.appends.get(node.id, []):
                out += self.expand(value, scope, scope.mod, seen | {key})
            for bound in scope.bindings.get(node.id, []):
                if bound is not None:
                    out += self._elements(bound, scope, scope.mod, seen | {key})
            return _dedupe(out)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return _dedupe(self._elements(node.left, func, mod, seen)
                           + self._elements(node.right, func, mod, seen))
        return [HOLE]

    # -- messages -----------------------------------------------------------------------------

    def _where(self, mod: Mod, node: ast.AST) -> str:
        return f"{mod.path}:{getattr(node, 'lineno', 0)}"

    def _templates(self, node: ast.expr, func: Func | None, mod: Mod) -> list[Template]:
        try:
            return self.expand(node, func, mod, frozenset()) or [HOLE]
        except TooManyVariants:
            self.problems.append(f"{self._where(mod, node)}: more than {MAX_VARIANTS} variants")
            return [HOLE]

    def _level(self, node: ast.expr) -> int | None:
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id == "logging":
            level = getattr(logging, node.attr, None)
            return level if isinstance(level, int) else None
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        return None

    def _status(self, node: ast.expr, func: Func | None, mod: Mod) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            found = self.lookup(node.id, func, mod)
            if found.kind == "const" and found.mod is not None:
                value = self.const_value(found.mod, found.name)
                return value if isinstance(value, str) else None
        return None

    def _construction(self, call: ast.Call, func: Func | None, mod: Mod
                      ) -> Construction | None:
        where = self._where(mod, call)
        cls = self.resolve_class(call.func, func, mod)
        if cls in self.error_classes:
            message = call.args[0] if call.args and not isinstance(call.args[0], ast.Starred) \
                else next((k.value for k in call.keywords if k.arg in ("summary", "message")),
                          None)
            if message is None:
                self.problems.append(f"{where}: {cls[1]} built without a message argument")
                return None
            return Construction("error", where, self._templates(message, func, mod), True)
        callee = self.resolve_callee(call.func, func, mod)
        log_function = f"{self.package}.{LOG_FUNCTION[0]}:{LOG_FUNCTION[1]}"
        if callee is not None and callee.key == log_function and len(call.args) >= 2:
            level = self._level(call.args[0])
            if level is None:
                self.problems.append(f"{where}: log level is not a logging constant")
                return None
            if level < logging.WARNING:
                return None
            kind = "warning" if level < logging.ERROR else "error"
            templates = [_percent_holes(t) for t in self._templates(call.args[1], func, mod)]
            return Construction(kind, where, templates, False)
        if cls == (f"{self.package}.{FINDING_CLASS[0]}", FINDING_CLASS[1]) and len(
                call.args) > FINDING_MESSAGE:
            status, message = call.args[FINDING_STATUS], call.args[FINDING_MESSAGE]
            pairs = [(status, message)]
            if isinstance(status, ast.IfExp) and isinstance(message, ast.IfExp):
                pairs = [(status.body, message.body), (status.orelse, message.orelse)]
            shown = [m for s, m in pairs if self._status(s, func, mod) not in (None, OK_STATUS)]
            if not shown:
                return None  # OK, or a status passed in: an error collected where it is raised
            templates = [t for m in shown for t in self._templates(m, func, mod)]
            return Construction("doctor", where, _dedupe(templates), False)
        return None

    def _messages(self) -> list[Message]:
        for call, func, mod in self.calls:
            construction = self._construction(call, func, mod)
            if construction is not None:
                self.constructions.append(construction)
        # Helpers: functions whose messages use their own parameters.
        owners: dict[str, list[Construction]] = {}
        for construction in self.constructions:
            keys = {p.owner for t in construction.templates for p in t
                    if isinstance(p, Hole) and p.owner is not None}
            for key in keys:
                owners.setdefault(key, []).append(construction)
        helper_calls: dict[str, list[tuple[ast.Call, Func | None, Mod, Func]]] = {}
        for call, func, mod in self.calls:
            callee = self.resolve_callee(call.func, func, mod)
            if callee is not None and callee.key in owners:
                helper_calls.setdefault(callee.key, []).append((call, func, mod, callee))
        messages: list[Message] = []
        for module, name in self.message_parts:
            part = self.mods[f"{self.package}.{module}"].funcs.get(name) \
                if f"{self.package}.{module}" in self.mods else None
            if part is None:
                self.problems.append(f"MESSAGE_PARTS names {module}.{name}, not found")
                continue
            for value in part.returns:
                if isinstance(value, ast.Constant) and value.value is None:
                    continue
                messages += [Message("error", self._where(part.mod, value), None, t)
                             for t in _plain(self._templates(value, part, part.mod))]
        for construction in self.constructions:
            helpers = sorted({p.owner for t in construction.templates for p in t
                              if isinstance(p, Hole) and p.owner in helper_calls})
            if not helpers:
                messages += [Message(construction.kind, construction.where, None, t)
                             for t in _plain(construction.templates)]
                continue
            for call, func, mod, helper in helper_calls[helpers[0]]:
                via = self._where(mod, call)
                try:
                    filled = [s for t in construction.templates
                              for s in self._fill(t, helper, call, func, mod)]
                except TooManyVariants:
                    self.problems.append(f"{via}: more than {MAX_VARIANTS} variants")
                    continue
                messages += [Message(construction.kind, construction.where, via, t)
                             for t in _plain(filled)]
        return list(dict.fromkeys(messages))

    def _fill(self, template: Template, helper: Func, call: ast.Call, func: Func | None,
              mod: Mod) -> list[Template]:
        """`template` of `helper`, with the arguments of this call of it in its holes."""
        params = helper.positional[1:] if helper.cls is not None else helper.positional
        args: dict[str, ast.expr] = {}
        for param, arg in zip(params, call.args, strict=False):
            if isinstance(arg, ast.Starred):
                break
            args[param] = arg
        args.update({k.arg: k.value for k in call.keywords if k.arg is not None})
        choices: list[list[Template]] = []
        for part in template:
            if isinstance(part, Hole) and part.owner == helper.key and part.param in args:
                choices.append(self.expand(args[part.param], func, mod, frozenset()) or [HOLE])
            else:
                choices.append([(part,)])
        return _product(choices)


# -- The doc ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DocLine:
    kind: str  # the kind of message its section holds
    lineno: int
    text: str  # normalised
    row: bool  # a table row's message (else a line of prose)


def doc_lines(text: str) -> list[DocLine]:
    lines = text.splitlines()
    out: list[DocLine] = []
    kind = "error"
    paragraph: list[str] = []
    for index, raw in enumerate([*lines, ""]):
        stripped = raw.strip()
        if paragraph and (not stripped or stripped.startswith(("#", "|"))):
            out.append(DocLine(kind, index - len(paragraph) + 1, normalize(" ".join(paragraph)),
                               False))
            paragraph = []
        if stripped.startswith("#"):
            title = stripped.lstrip("#").lower()
            kind = ("codes" if title.strip() == "codes" else "warning" if "warning" in title
                    else "doctor" if "doctor" in title else "error")
            continue
        if kind == "codes":  # the table of error codes, checked by test_every_code_is_documented
            continue
        if not stripped.startswith("|"):
            if stripped:
                paragraph.append(stripped)
            continue
        following = lines[index + 1].strip() if index + 1 < len(lines) else ""
        cells = re.split(r"(?<!\\)\|", stripped)[1:-1]
        separator = re.compile(r"\|?[\s:|]*-[\s:|-]*")
        if not cells or separator.fullmatch(stripped) or separator.fullmatch(following):
            continue  # a separator, or the header above one
        for part in re.split(r"<br\s*/?>", cells[0]):
            if part.strip():
                out.append(DocLine(kind, index + 1, normalize(part), True))
    return out


def matches(template: Template, line: str) -> bool:
    at = 0
    for fragment in fragments(template):
        found = line.find(fragment, at)
        if found < 0:
            return False
        at = found + len(fragment)
    return True


def check(messages: Sequence[Message], doc: str, doc_name: str) -> tuple[list[str], list[str]]:
    """(undocumented or uncheckable messages, doc rows no message matches)."""
    lines = doc_lines(doc)
    missing: list[str] = []
    used: set[tuple[int, str]] = set()
    for message in messages:
        if not fragments(message.template):
            missing.append(f"{message.describe()}  <- no literal text of {MIN_FRAGMENT}+ "
                           "characters: nothing to check")
            continue
        hits = [ln for ln in lines
                if ln.kind == message.kind and matches(message.template, ln.text)]
        if not hits:
            first = next((f for f in fragments(message.template)
                          if not any(f in ln.text for ln in lines if ln.kind == message.kind)),
                         None)
            hint = f"  <- not in any {message.kind} line: {first!r}" if first else \
                f"  <- no single {message.kind} line has all of it, in this order"
            missing.append(message.describe() + hint)
        used.update((ln.lineno, ln.text) for ln in hits)
    stale = [f"{doc_name}:{ln.lineno}: [{ln.kind}] {ln.text}" for ln in lines
             if ln.row and (ln.lineno, ln.text) not in used]
    return missing, stale


# -- The package's own source ------------------------------------------------------------------


def package_sources(root: Path = ROOT, package: str = PACKAGE) -> dict[str, tuple[str, str]]:
    sources = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        sources[name] = (path.relative_to(root).as_posix(), path.read_text(encoding="utf-8"))
    return sources


@functools.cache
def extracted() -> Extractor:
    return Extractor(PACKAGE, package_sources(), MESSAGE_PARTS)


def _token_counts(sources: Mapping[str, tuple[str, str]], names: set[str]) -> tuple[int, int]:
    """An independent count, from tokens: calls of `names` (not `class X(`), and calls
    `log(logging.WARNING|ERROR|CRITICAL, ...)`."""
    errors = logs = 0
    for _path, text in sources.values():
        tokens = [t for t in tokenize.generate_tokens(io.StringIO(text).readline)
                  if t.type in (tokenize.NAME, tokenize.OP)]
        for i, tok in enumerate(tokens[:-1]):
            if tokens[i + 1].string != "(" or tok.type != tokenize.NAME:
                continue
            before = tokens[i - 1].string if i else ""
            if tok.string in names and before not in ("class", "def", "."):
                errors += 1
            if (tok.string == "log" and before != "." and i + 4 < len(tokens)
                    and [t.string for t in tokens[i + 2:i + 4]] == ["logging", "."]
                    and tokens[i + 4].string in ("WARNING", "ERROR", "CRITICAL")):
                logs += 1
    return errors, logs


# -- Tests -------------------------------------------------------------------------------------

_SYNTHETIC = {
    "pkg": ("pkg/__init__.py", ""),
    "pkg._errors": ("pkg/_errors.py", (
        "class BaseError(Exception):\n"
        "    pass\n"
        "class ConfigError(BaseError):\n"
        "    pass\n"
    )),
    "pkg._log": ("pkg/_log.py", "def log(level, message, *args):\n    pass\n"),
    "pkg.mod": ("pkg/mod.py", (
        "import logging\n"                                                          # 1
        "from ._errors import ConfigError\n"                                        # 2
        "from ._log import log\n"                                                   # 3
        "LIMIT = 16\n"                                                              # 4
        "def bad(why):\n"                                                           # 5
        "    return ConfigError(f'the table {why}')\n"                             # 6
        "def run(x, path):\n"                                                       # 7
        "    if x:\n"                                                               # 8
        "        raise ConfigError(f'cannot open {path}: permission denied')\n"     # 9
        "    if x > 1:\n"                                                           # 10
        "        raise bad('is missing its header line')\n"                         # 11
        "    if x > 2:\n"                                                           # 12
        "        raise bad('has ' + str(x) + ' rows, more than ' + str(LIMIT))\n"   # 13
        "    if x > 3:\n"                                                           # 14
        "        raise ConfigError(f'more than {LIMIT} entries in the table')\n"    # 15
        "    log(logging.WARNING, 'pkg: ignoring the setting %s for now', x)\n"     # 16
    )),
}
_SYNTHETIC_DOC = """\
# Errors

| message | fix |
|---|---|
| cannot open PATH: permission denied | fix it |
| the table is missing its header line<br>the table has N rows, more than 16 | fix it |

## Warnings

| message | what to do |
|---|---|
| more than 16 entries in the table | wrong section: an error |
| a stale row that no message matches | - |
"""


def test_the_extractor_reports_what_is_not_documented() -> None:
    """The check can fail: a synthetic package, documented in part, is reported exactly."""
    found = Extractor("pkg", _SYNTHETIC)
    assert found.problems == []
    rendered = {(m.kind, m.via, render(m.template)) for m in found.messages}
    assert rendered == {
        ("error", None, "cannot open …: permission denied"),
        ("error", "pkg/mod.py:11", "the table is missing its header line"),
        ("error", "pkg/mod.py:13", "the table has … rows, more than 16"),
        ("error", None, "more than 16 entries in the table"),
        ("warning", None, "pkg: ignoring the setting … for now"),
    }
    missing, stale = check(found.messages, _SYNTHETIC_DOC, "errors.md")
    assert missing == [
        "pkg/mod.py:15: [error] more than 16 entries in the table  <- not in any error line: "
        "'more than 16 entries in the table'",
        "pkg/mod.py:16: [warning] pkg: ignoring the setting … for now  <- not in any warning "
        "line: 'pkg: ignoring the setting'",
    ]
    assert stale == [
        "errors.md:12: [warning] more than 16 entries in the table",
        "errors.md:13: [warning] a stale row that no message matches",
    ]
    # Wording that differs, fragments out of order, or spread over two lines: all fail.
    for doc in ("| cannot open PATH: access denied | x |",
                "| permission denied: cannot open PATH | x |",
                "cannot open PATH\n\n: permission denied"):
        assert not any(matches(m.template, ln.text) for m in found.messages
                       for ln in doc_lines(doc) if "cannot open" in render(m.template))


def test_the_extractor_sees_every_message_of_the_package() -> None:
    found = extracted()
    assert found.problems == []
    sites = {(m.where, m.via) for m in found.messages if m.kind == "error"}
    kinds = {kind: sum(m.kind == kind for m in found.messages)
             for kind in ("error", "warning", "doctor")}
    assert len(sites) >= MIN_ERROR_SITES, f"only {len(sites)} places that raise an error"
    assert len(found.messages) >= MIN_TEMPLATES, f"only {len(found.messages)} templates"
    assert all(kinds.values()), kinds
    # A second, independent count (tokens, not the syntax tree) of the same calls.
    names = {name for _mod, name in found.error_classes}
    assert {"ConfigError", "SelectionError", "DelegationError", "HandoffError", "TrustError",
            "TamperedImport"} <= names
    constructions = [c for c in found.constructions if c.is_error_class]
    logs = [c for c in found.constructions if not c.is_error_class and c.kind != "doctor"]
    assert (len(constructions), len(logs)) == _token_counts(package_sources(), names)
    # Helpers were found and their calls resolved: their arguments are in the templates.
    texts = {render(m.template) for m in found.messages}
    for expected in ("the manifest lists … twice",  # bad(why) in _manifest.py
                     "…: a signed file is missing",  # _Tampered.__call__ in _verify.py
                     "refusing the public key: … is writable by group or others (mode …)",
                     "the signed manifest has the key '…' twice",  # strict_json(raw, what)
                     "cannot read the private key: …",  # _read_small(path, what)
                     "… is not in the verified manifest of …",  # _refuse(message)
                     "its runtime module '…' cannot be imported in this environment"):
        assert expected in texts, expected


def test_every_message_is_documented() -> None:
    found = extracted()
    missing, _stale = check(found.messages, DOC.read_text(encoding="utf-8"), "docs/errors.md")
    assert not missing, (
        f"{len(missing)} message(s) of {len(found.messages)} are not in docs/errors.md "
        "(literal text in order on one message line of a section of that kind; variable "
        "parts shown as …):\n" + "\n".join(missing))


def test_every_documented_message_exists() -> None:
    found = extracted()
    _missing, stale = check(found.messages, DOC.read_text(encoding="utf-8"), "docs/errors.md")
    assert not stale, (
        f"{len(stale)} row(s) of docs/errors.md match no message the package builds (wording "
        "drifted, or a message moved between errors, warnings and doctor findings):\n"
        + "\n".join(stale))


def test_every_code_is_documented() -> None:
    """Each error class's code is in the table of codes, with that class, and no other."""
    from tt_meta_plugin import _errors

    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Codes", 1)[1].split("\n## ", 1)[0]
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `([a-z-]+)` \| (\w+) \|", section,
                                                         re.M)}
    expected = {code: cls.__name__ for code, cls in _errors.ALL.items() if code != "error"}
    assert rows == expected
    assert len(set(expected)) == len(_errors.ALL) - 1, "two classes share a code"
