"""Static import graph of the project's own modules (function-level imports included)."""
from __future__ import annotations

import ast
from pathlib import Path

from support import REPO
PACKAGES = ("certification", "pipeline")


def module_file(name: str) -> Path | None:
    """The file of a project module or package, or None when ``name`` is not one (e.g. a class)."""
    path = REPO.joinpath(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Project modules ``path`` imports anywhere in its body (``from a import b`` counts a.b when b is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {m for m in found if m.split(".")[0] in PACKAGES and module_file(m) is not None}


def import_closure(module: str) -> set[Path]:
    """Every project file loaded by importing ``module`` (and running any function in it), packages included."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        parts = todo.pop().split(".")
        for end in range(1, len(parts) + 1):
            path = module_file(".".join(parts[:end]))
            if path is not None and path not in seen:
                seen.add(path)
                todo.extend(imported_modules(path))
    return seen


def import_graph(package: str) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports (package __init__ files count as modules)."""
    graph = {}
    for path in sorted((REPO / package).rglob("*.py")):
        graph[module_name(path)] = {m for m in imported_modules(path) if m.split(".")[0] == package}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found
