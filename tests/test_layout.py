"""The package's layout: no import circles, and no module imports from a layer above its own.

Imports are read with ``ast`` from every module (function-level imports included, since a lazy
import is still a dependency). ``python -m pytest tests/test_layout.py`` checks it anywhere.
"""
from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "distiltune"

# Bottom to top: a module may import from its own layer and the layers below it.
LAYERS = [
    {"errors", "constants", "registry", "schedules", "assets", "gguf"},
    {"models"},
    {"losses"},
    {"data"},
    {"training"},
    {"export"},
    {"report"},
    {"config"},
    {"tasks"},
    {"pipeline"},
    {"commands", "cli", "__init__"},
]


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: pathlib.Path) -> set[str]:
    """The distiltune modules ``path`` imports (relative imports resolved, ``from pkg import mod`` as pkg.mod)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "distiltune"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "distiltune":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if (PACKAGE.parent / sub.replace(".", "/")).with_suffix(".py").exists()
                          or (PACKAGE.parent / sub.replace(".", "/")).is_dir() else target)
    return found - {name}


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in PACKAGE.rglob("*.py")}


def layer(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module} is in no layer: add '{top}' to LAYERS in tests/test_layout.py")


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in g:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    assert cycles(graph()) == []


def test_no_module_imports_from_a_layer_above_it():
    g = graph()
    upward = sorted(f"{m} (layer {layer(m)}) imports {d} (layer {layer(d)})"
                    for m, deps in g.items() for d in deps if d in g and layer(d) > layer(m))
    assert upward == []


def test_the_checks_see_a_circle_and_an_upward_import():
    """The two checks above can fail: on a made-up graph with both faults they report them."""
    g = {"distiltune.models.a": {"distiltune.pipeline.b"}, "distiltune.pipeline.b": {"distiltune.models.a"}}
    assert cycles(g) == [["distiltune.models.a", "distiltune.pipeline.b"]]
    assert layer("distiltune.pipeline.b") > layer("distiltune.models.a")


@pytest.mark.parametrize("limit_lines", [300])
def test_files_stay_small(limit_lines):
    big = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
           if (n := p.read_text().count("\n")) > limit_lines}
    assert big == {}, f"files over {limit_lines} lines: {big}"
