# SPDX-License-Identifier: Apache-2.0
"""The import graph of ``hw``, ``sw``, ``sim``, ``boards`` and ``bench``, read from the source.

Every import counts: module level, inside functions (lazy imports are where cycles hide), and
``importlib.import_module("literal")``. Checked: no cycle; ``hw`` is the bottom layer (imports
nothing from ``sw``, ``sim``, ``boards``, ``bench``); ``sw`` takes from ``hw`` only its pure-spec
modules; the NumPy-only host modules never reach torch, directly or through other modules.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("hw", "sw", "sim", "boards", "bench")
#: What ``sw`` may import from ``hw``: pure specification, no gateware.
HW_SPEC = {"hw", "hw.params", "hw.numerics", "hw.checks", "hw.isa", "hw.link",
           "hw.link.protocol"}
#: Host modules that must run without torch (the NumPy-only demo, eval and driver paths).
TORCH_FREE = ("sw.ref", "sw.quant", "sw.artifact", "sw.evaluate", "sw.driver")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            found[_module_name(path)] = path
    return found


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> Iterable[tuple[str, int]]:
    """(dotted name, line) of every import in ``tree``; ``from a import b`` gives ``a.b``."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                yield f"{base}.{alias.name}", node.lineno
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            yield node.args[0].value, node.lineno


def _resolve(name: str, modules: set[str]) -> str | None:
    """The longest known module that ``name`` starts with (``hw.params.preset`` ->
    ``hw.params``); ``None`` for a third-party name."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        candidate = ".".join(parts[:i])
        if candidate in modules:
            return candidate
    return None


def _graph() -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """(module -> {project module: line}, module -> {third-party top-level name: line})."""
    sources = _sources()
    modules = set(sources)
    edges: dict[str, dict[str, int]] = {m: {} for m in modules}
    external: dict[str, dict[str, int]] = {m: {} for m in modules}
    for module, path in sources.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for name, line in _imported_names(tree, module, path.name == "__init__.py"):
            target = _resolve(name, modules)
            if target is None:
                external[module].setdefault(name.split(".")[0], line)
            elif target != module:
                edges[module].setdefault(target, line)
    return edges, external


EDGES, EXTERNAL = _graph()


def _where(a: str, b: str) -> str:
    return f"{a} -> {b} (line {EDGES[a][b]})"


def _find_cycle(edges: dict[str, dict[str, int]]) -> list[str] | None:
    """One cycle as a closed path ``[a, b, ..., a]``, or ``None``."""
    state: dict[str, int] = {}                 # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(edges[m]):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_imports_graph_covers_every_package():
    for pkg in PACKAGES:
        assert any(m == pkg or m.startswith(pkg + ".") for m in EDGES), pkg
    # Lazy imports are seen: sim.runner imports sim.streams inside build().
    assert "sim.streams" in EDGES["sim.runner"]


def test_imports_find_cycle_reports_the_path():
    edges = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3}, "d": {"a": 4}}
    assert _find_cycle(edges) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b": 1}, "b": {}}) is None


def test_imports_have_no_cycle():
    cycle = _find_cycle(EDGES)
    if cycle:
        steps = "; ".join(_where(a, b) for a, b in zip(cycle, cycle[1:]))
        pytest.fail(f"import cycle {' -> '.join(cycle)}: {steps}")


def test_imports_hw_is_the_bottom_layer():
    bad = [_where(m, n) for m in sorted(EDGES) if m.split(".")[0] == "hw"
           for n in sorted(EDGES[m]) if n.split(".")[0] != "hw"]
    assert not bad, "hw must not import sw, sim, boards or bench: " + "; ".join(bad)


def test_imports_sw_takes_only_the_pure_spec_modules_of_hw():
    bad = [_where(m, n) for m in sorted(EDGES) if m.split(".")[0] == "sw"
           for n in sorted(EDGES[m]) if n.split(".")[0] == "hw" and n not in HW_SPEC]
    assert not bad, (f"sw may import only {', '.join(sorted(HW_SPEC))} from hw: "
                     + "; ".join(bad))


def _path_to(start: str, wanted: str) -> list[str] | None:
    """Modules from ``start`` to one that imports the third-party ``wanted``."""
    seen = {start}
    queue = [[start]]
    while queue:
        route = queue.pop(0)
        if wanted in EXTERNAL[route[-1]]:
            return route
        for n in sorted(EDGES[route[-1]]):
            if n not in seen:
                seen.add(n)
                queue.append([*route, n])
    return None


def test_imports_torch_check_sees_torch_where_it_is():
    route = _path_to("sw.train", "torch")        # the training code does use torch
    assert route is not None and route[0] == "sw.train"


@pytest.mark.parametrize("root", TORCH_FREE)
def test_imports_numpy_only_host_modules_never_reach_torch(root):
    starts = [m for m in sorted(EDGES) if m == root or m.startswith(root + ".")]
    assert starts, f"{root} not found"
    for start in starts:
        route = _path_to(start, "torch")
        if route:
            line = EXTERNAL[route[-1]]["torch"]
            pytest.fail(f"{start} reaches torch: {' -> '.join(route)} imports torch "
                        f"(line {line})")
