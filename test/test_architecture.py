"""The package's import structure, read from the source with ``ast`` (nothing is imported):

* the import graph of ``utptrack_ros`` has no cycle (every import counts, also the ones inside
  functions: they are edges too);
* no module imports another module's private name (``from x import _y``) or reaches for one
  through a module it imported (``x._y``).
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator, Optional

PACKAGE = Path(__file__).resolve().parents[1] / "utptrack_ros"

# Modules owned elsewhere that do not follow the rules yet: {module: why}. Empty today.
ALLOWED_PRIVATE_IMPORTS: dict[str, str] = {}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _absolute(module: str, is_package: bool, level: int, target: Optional[str]) -> str:
    """``from <level dots><target> import ...`` in ``module`` as an absolute module name."""
    if level == 0:
        return target or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


class _Imports:
    """The project imports of one module: the modules it depends on, and its private-name uses."""

    def __init__(self, module: str, path: Path) -> None:
        self.module = module
        self.tree = ast.parse(path.read_text(), filename=str(path))
        self.is_package = path.name == "__init__.py"
        self.depends: set[str] = set()
        self.private: list[str] = []
        self._aliases: dict[str, str] = {}  # local name -> project module it is bound to
        for node in ast.walk(self.tree):
            if isinstance(node, ast.ImportFrom):
                self._from(node)
            elif isinstance(node, ast.Import):
                self._import(node)
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Attribute) and _private(node.attr):
                owner = self._dotted(node.value)
                if owner in MODULES and owner != module:
                    self.private.append(f"line {node.lineno}: {owner}.{node.attr}")

    def _from(self, node: ast.ImportFrom) -> None:
        target = _absolute(self.module, self.is_package, node.level, node.module)
        if target != "utptrack_ros" and not target.startswith("utptrack_ros."):
            return
        for alias in node.names:
            submodule = f"{target}.{alias.name}"
            if submodule in MODULES:  # from package import module
                self.depends.add(submodule)
                self._aliases[alias.asname or alias.name] = submodule
                continue
            self.depends.add(target)
            if _private(alias.name) and target != self.module:
                self.private.append(f"line {node.lineno}: from {target} import {alias.name}")

    def _import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name == "utptrack_ros" or alias.name.startswith("utptrack_ros."):
                self.depends.add(alias.name)
                if alias.asname:
                    self._aliases[alias.asname] = alias.name
                else:  # ``import utptrack_ros.x`` binds ``utptrack_ros``
                    self._aliases[alias.name.split(".")[0]] = alias.name.split(".")[0]

    def _dotted(self, node: ast.expr) -> Optional[str]:
        """The project module an expression names (an alias, or ``utptrack_ros.x.y``), else None."""
        if isinstance(node, ast.Name):
            return self._aliases.get(node.id)
        if isinstance(node, ast.Attribute):
            base = self._dotted(node.value)
            if base is not None and f"{base}.{node.attr}" in MODULES:
                return f"{base}.{node.attr}"
        return None


IMPORTS = {name: _Imports(name, path) for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> Iterator[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()

    def visit(v: str) -> Iterator[list[str]]:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                yield from visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                yield sorted(component)

    for v in sorted(graph):
        if v not in index:
            yield from visit(v)


def test_the_walk_sees_the_package():
    assert {"utptrack_ros.tracker", "utptrack_ros.eval.offline", "utptrack_ros.replay.player",
            "utptrack_ros.ros.node"} <= set(MODULES)
    assert "utptrack_ros.eval.results" in IMPORTS["utptrack_ros.eval.report"].depends


def test_the_import_graph_has_no_cycle():
    graph = {m: {d for d in imp.depends if d in MODULES and d != m} for m, imp in IMPORTS.items()}
    cycles = list(_cycles(graph))
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_no_module_uses_another_modules_private_names():
    found = {m: imp.private for m, imp in IMPORTS.items() if imp.private and m not in ALLOWED_PRIVATE_IMPORTS}
    assert not found, "private names used across modules:\n" + "\n".join(
        f"  {m}: {', '.join(uses)}" for m, uses in sorted(found.items()))
    fixed = [m for m in ALLOWED_PRIVATE_IMPORTS if m in IMPORTS and not IMPORTS[m].private]
    assert not fixed, f"these follow the rule now: drop them from ALLOWED_PRIVATE_IMPORTS: {fixed}"


def test_the_checks_catch_what_they_look_for(tmp_path):
    """The walker on a hand-made module: both kinds of private use, and a cycle, are found."""
    source = ("from utptrack_ros.eval.results import _nanmean\n"
              "from utptrack_ros.eval import results as R\n"
              "import utptrack_ros.eval.results\n"
              "def f():\n"
              "    return R._nanmean, utptrack_ros.eval.results._nanmean, R.safe_name\n")
    path = tmp_path / "probe.py"
    path.write_text(source)
    probe = _Imports("utptrack_ros.probe", path)
    assert probe.private == ["line 1: from utptrack_ros.eval.results import _nanmean",
                             "line 5: utptrack_ros.eval.results._nanmean", "line 5: utptrack_ros.eval.results._nanmean"]
    assert list(_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})) == [["a", "b", "c"]]
