"""Which config keys the library's code reads, by full dotted path (for ``test_config_coverage.py``).

A key ``a.b.c`` is a field ``c`` of the dataclass found at ``a.b`` of the schema. The code's reads are found
statically: every ``expr.field`` (and ``getattr(expr, "field")``) whose ``expr`` is known to hold an instance of a
schema class. What an expression holds is inferred the simple way, per function: parameters and ``self``
attributes annotated with a schema class, ``x.section`` of a known ``x`` (the section's dataclass),
``dataclasses.replace(x, ...)``, ``Cls(...)`` / ``from_mapping(Cls, ...)``, calls of functions annotated to
return a schema class, local or ``self.`` assignments of
such expressions, and ``x.section`` of an untyped ``x`` when that section name holds one class wherever it appears
in the schema (``reward_model``, ``algorithm``; not ``rollout``, which is two different sections). A read of a field on a base class (``RolloutConfig``) counts for each subclass section
(``WorkerRolloutConfig``) that inherits it. Field names alone are not enough: ``reward_model.rollout.dtype`` is
read only if code reads ``dtype`` from a ``RewardRolloutConfig``.
"""

from __future__ import annotations

import ast
import dataclasses
import typing
from collections import defaultdict
from functools import cache
from pathlib import Path


@cache
def schema_classes(root: type) -> dict[str, set[type]]:
    """``{dotted section path: {class}}`` for every dataclass section of ``root`` ("" is the root)."""
    out: dict[str, set[type]] = defaultdict(set)

    def walk(cls: type, path: str) -> None:
        out[path].add(cls)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            t = hints.get(f.name)
            for arg in typing.get_args(t) or (t,):
                if dataclasses.is_dataclass(arg):
                    walk(arg, f"{path}.{f.name}" if path else f.name)

    walk(root, "")
    return out


class _Reads(ast.NodeVisitor):
    def __init__(self, by_name: dict[str, set[type]], unique_sections: dict[str, type]):
        self.by_name = by_name
        self.unique_sections = unique_sections  # section names that hold one class wherever they appear
        self.returns: dict[str, set[type]] = defaultdict(set)  # function name -> classes it is annotated to return
        self.reads: set[tuple[type, str]] = set()
        self.self_attrs: dict[str, set[type]] = defaultdict(set)
        self.env: dict[str, set[type]] = {}

    # ---------------------------------------------------------------- types
    def annotation(self, node: ast.AST | None) -> set[type]:
        if node is None:
            return set()
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            try:
                node = ast.parse(node.value, mode="eval").body
            except SyntaxError:
                return set()
        names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        names |= {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
        return set().union(*(self.by_name.get(n, set()) for n in names))

    def classes(self, node: ast.AST) -> set[type]:
        if isinstance(node, ast.Name):
            return set(self.env.get(node.id, set()))
        if isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id == "self" and node.attr in self.self_attrs:
                return set(self.self_attrs[node.attr])
            parents = self.classes(node.value)
            if not parents and node.attr in self.unique_sections:  # config.reward_model on an untyped config
                return {self.unique_sections[node.attr]}
            out = set()
            for cls in parents:
                hints = _hints(cls)
                t = hints.get(node.attr)
                for arg in typing.get_args(t) or (t,):
                    if dataclasses.is_dataclass(arg):
                        out.add(arg)
            return out
        if isinstance(node, ast.Call):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
            if name == "replace" and node.args:
                return self.classes(node.args[0])
            if name in ("from_mapping", "from_any", "cast") and node.args:
                return self.annotation(node.args[0])
            if name in self.by_name:
                return set(self.by_name[name])
            if name in self.returns:  # a function annotated to return a schema class
                return set(self.returns[name])
        if isinstance(node, ast.IfExp):
            return self.classes(node.body) | self.classes(node.orelse)
        if isinstance(node, ast.BoolOp):
            return set().union(*(self.classes(v) for v in node.values))
        return set()

    # ---------------------------------------------------------------- scopes
    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        saved = self.self_attrs
        self.self_attrs = defaultdict(set)
        for stmt in node.body:  # annotated class attributes
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                self.self_attrs[stmt.target.id] |= self.annotation(stmt.annotation)
        for _ in range(2):  # self.x = <typed> anywhere in the class (twice: assignments that use other self.x)
            for fn in node.body:
                if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    self.scan_function(fn, record=False)
        self.generic_visit(node)
        self.self_attrs = saved

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.scan_function(node, record=True)

    visit_AsyncFunctionDef = visit_FunctionDef

    def scan_function(self, node: ast.FunctionDef, record: bool) -> None:
        saved = self.env
        self.env = dict(saved)
        args = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
        for a in args:
            self.env[a.arg] = self.annotation(a.annotation)
        for stmt in node.body:
            self.scan(stmt, record)
        self.env = saved

    def scan(self, node: ast.AST, record: bool) -> None:
        """Statements in order: assignments update the environment, reads are recorded."""
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if record:
                self.scan_function(node, record)
            return
        if isinstance(node, ast.ClassDef):
            if record:
                self.visit_ClassDef(node)
            return
        if record:
            for sub in ast.walk(node):
                if isinstance(sub, ast.Attribute) and isinstance(sub.ctx, ast.Load):
                    for cls in self.classes(sub.value):
                        self.reads.add((cls, sub.attr))
                elif (isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and sub.func.id == "getattr"
                      and len(sub.args) >= 2 and isinstance(sub.args[1], ast.Constant)):
                    for cls in self.classes(sub.args[0]):
                        self.reads.add((cls, sub.args[1].value))
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            value = node.value
            typed = self.classes(value) if value is not None else set()
            if isinstance(node, ast.AnnAssign):
                typed |= self.annotation(node.annotation)
            for t in targets:
                if isinstance(t, ast.Name) and typed:
                    self.env[t.id] = typed
                elif (isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"
                      and typed):
                    self.self_attrs[t.attr] |= typed
                elif isinstance(t, ast.Tuple) and isinstance(value, ast.Tuple):
                    for tt, vv in zip(t.elts, value.elts, strict=False):
                        if isinstance(tt, ast.Name) and self.classes(vv):
                            self.env[tt.id] = self.classes(vv)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                self.scan(child, record)


_HINTS: dict[type, dict] = {}


def _hints(cls: type) -> dict:
    if cls not in _HINTS:
        try:
            _HINTS[cls] = typing.get_type_hints(cls)
        except Exception:
            _HINTS[cls] = {}
    return _HINTS[cls]


def read_fields(root: type, files: list[Path]) -> set[tuple[type, str]]:
    """``{(class, field)}`` read by the code of ``files``."""
    sections = schema_classes(root)
    by_name: dict[str, set[type]] = defaultdict(set)
    for classes in sections.values():
        for cls in classes:
            for base in cls.__mro__:
                if dataclasses.is_dataclass(base):
                    by_name[base.__name__].add(base)
    per_name: dict[str, set[type]] = defaultdict(set)
    for path, classes in sections.items():
        if path:
            per_name[path.rsplit(".", 1)[-1]] |= classes
    unique = {name: next(iter(c)) for name, c in per_name.items() if len(c) == 1}
    visitor = _Reads(by_name, unique)
    trees = [ast.parse(file.read_text()) for file in files]
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
                visitor.returns[node.name] |= visitor.annotation(node.returns)
    for tree in trees:
        for stmt in tree.body:
            visitor.scan(stmt, record=True)
    return visitor.reads


def is_read_path(key: str, root: type, reads: set[tuple[type, str]]) -> bool:
    """Whether the field at dotted ``key`` is read (on its section's class or a base class that declares it)."""
    section, _, name = key.rpartition(".")
    for cls in schema_classes(root).get(section, ()):
        for base in cls.__mro__:
            if (base, name) in reads:
                return True
    return False
