"""The package's layers: every import points down, and no two modules import each other, even lazily.

Imports are read from the source (module level, inside functions and under TYPE_CHECKING alike), so a
function-level import that would tie two layers together is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "promptmix_dspy"
# Lower imports nothing above it; peers (same rank) do not import each other.
RANKS = {"testing": 0, "store": 0, "data": 1, "llm": 2, "method": 2, "pipeline": 3, "compile": 3, "student": 3,
         "experiments": 4, "cli": 5}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """promptmix_dspy modules imported anywhere in the file (``from X import name`` resolves to X.name when
    X.name is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("promptmix_dspy")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("promptmix_dspy"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in MODULES else node.module)
    return found


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
EDGES = {name: _imports(path) - {name} for name, path in MODULES.items()}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_module_belongs_to_a_known_layer():
    unknown = sorted({_layer(m) for m in MODULES if _layer(m) is not None} - set(RANKS))
    assert unknown == [], f"add these folders to RANKS (and to the layer map in promptmix_dspy/__init__.py): {unknown}"


def test_imports_point_down_only():
    upward = []
    for module, targets in EDGES.items():
        here = _layer(module)
        for target in targets:
            there = _layer(target)
            if here is None or there is None or here == there:
                continue
            if RANKS[there] >= RANKS[here]:
                upward.append(f"{module} -> {target}")
    assert upward == [], "imports that point up or sideways:\n" + "\n".join(sorted(upward))


def _cycles() -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan)."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in EDGES.get(node, ()):
            if nxt not in MODULES:
                continue
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for module in sorted(MODULES):
        if module not in index:
            visit(module)
    return groups


def test_no_import_circles():
    assert _cycles() == []


def test_the_checker_sees_a_circle_and_an_upward_import():
    """The checks above must be able to fail: run them on a made-up graph."""
    saved = dict(EDGES)
    try:
        EDGES["promptmix_dspy.data.types"] = {"promptmix_dspy.experiments.spec"}
        EDGES["promptmix_dspy.experiments.spec"] = {"promptmix_dspy.data.types"}
        assert _cycles() == [["promptmix_dspy.data.types", "promptmix_dspy.experiments.spec"]]
        with pytest.raises(AssertionError, match="data.types -> promptmix_dspy.experiments.spec"):
            test_imports_point_down_only()
    finally:
        EDGES.clear()
        EDGES.update(saved)


def test_every_module_declares_its_public_names():
    missing = [m for m, p in MODULES.items() if not m.endswith("__main__")
               and "__all__" not in p.read_text(encoding="utf-8") and not p.name == "__init__.py"]
    assert missing == []
