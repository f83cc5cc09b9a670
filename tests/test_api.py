"""The package's public names and the shape of its import graph."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import voxelbone

PACKAGE_DIR = Path(voxelbone.__file__).parent

#: Private names still imported across files in modules outside this test's scope; remove
#: an entry when its import is made public.
KNOWN_PRIVATE_IMPORTS = {("voxelbone.bench", "voxelbone.backend", "_cpu_model")}


# --------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", voxelbone.__all__)
def test_every_public_name_resolves_to_its_submodule_object(name: str) -> None:
    value = getattr(voxelbone, name)
    if name == "__version__":
        assert value == importlib.import_module("voxelbone._version").__version__
        return
    home = voxelbone._LAZY.get(name) or {"simulate": "simulate", "Result": "simulate"}[name]
    module = importlib.import_module(f"voxelbone.{home}")
    assert value is getattr(module, name)
    # the object is defined (or deliberately re-exported) where the map says
    defined_in = getattr(value, "__module__", None)
    if defined_in is not None and callable(value):
        assert defined_in.startswith("voxelbone."), (name, defined_in)


def test_script_names_are_exported() -> None:
    needed = {"simulate", "Scenario", "Period", "make_phantom", "load_volume", "morphometry", "Remodeler", "BoneVolume"}
    assert needed <= set(voxelbone.__all__)
    assert set(voxelbone.__all__) <= set(dir(voxelbone))
    # every lazily loaded name is listed, and every listed name is loadable
    assert set(voxelbone.__all__) == {*voxelbone._LAZY, "Result", "__version__", "simulate"}


def test_simulate_stays_the_function_after_its_submodule_is_imported() -> None:
    import voxelbone.simulate  # noqa: F401  (the submodule of the same name)

    assert callable(voxelbone.simulate) and voxelbone.simulate.__name__ == "simulate"


def test_unknown_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'simulat'"):
        voxelbone.simulat  # noqa: B018


HEAVY = ("numba", "scipy", "cupy", "pyvista", "vtk", "matplotlib", "skimage", "itk")


def _heavy_after_import(module: str, heavy: tuple[str, ...]) -> list[str]:
    """The libraries of ``heavy`` that ``import module`` loads, in a fresh interpreter."""
    code = f"import sys, {module}; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE_DIR.parent).stdout.strip()
    return [m for m in out.split(",") if m]


def test_import_is_light() -> None:
    """``import voxelbone`` loads none of the heavy libraries (they come with first use)."""
    assert _heavy_after_import("voxelbone", HEAVY) == []


def test_sweep_import_is_light() -> None:
    """A sweep's client (the process that only submits runs to a Dask cluster) imports no Numba:
    the sweep's checks import the preset layer when they run."""
    assert _heavy_after_import("voxelbone.sweep", HEAVY) == []


def test_remodel_import_is_light() -> None:
    """The remodeling engine's module (the GPU path's too) loads Numba only when the CPU twin's
    loops first run."""
    assert _heavy_after_import("voxelbone.remodel", HEAVY) == []


def test_cli_import_is_light() -> None:
    """The CLI answers ``--help`` and argument errors without Numba, SciPy, plotting or Dask."""
    assert _heavy_after_import("voxelbone.cli", HEAVY + ("dask",)) == []


def test_every_command_help_reads_as_plain_text() -> None:
    """argparse %-formats help strings but not descriptions: a '%%' there is printed as it is."""
    from voxelbone.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert {"run", "compare", "stiffness", "calibrate", "bench"} <= set(commands)
    for name, sub in commands.items():
        text = sub.format_help()
        assert "%%" not in text and "%(" not in text, f"voxelbone {name} --help:\n{text}"


# --------------------------------------------------------------------------------------
# import graph
# --------------------------------------------------------------------------------------
def _module_names(root: Path, package: str) -> dict[str, Path]:
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join([package, *parts])] = path
    return out


def _top_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Import statements executed when the module is imported (not those inside functions or classes,
    nor under ``if TYPE_CHECKING``)."""
    found: list[ast.Import | ast.ImportFrom] = []

    def walk(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.append(node)
            elif isinstance(node, ast.If):
                if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                    walk(node.body)
                walk(node.orelse)
            elif isinstance(node, ast.Try):
                for block in (node.body, node.orelse, node.finalbody, *[h.body for h in node.handlers]):
                    walk(block)
            elif isinstance(node, ast.With):
                walk(node.body)

    walk(tree.body)
    return found


def _all_imports(tree: ast.Module) -> list[ast.ImportFrom]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module → the package modules its top-level imports load (``from p import m`` of a submodule
    ``m`` is an edge to ``p.m``; of any other name, to ``p``)."""
    modules = _module_names(root, package)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        is_package = path.name == "__init__.py"
        for node in _top_level_imports(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                src = _resolve(name, is_package, node)
                targets = [f"{src}.{a.name}" if f"{src}.{a.name}" in modules else src for a in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a closed path, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_package_import_graph_is_acyclic() -> None:
    graph = import_graph(PACKAGE_DIR, "voxelbone")
    assert "voxelbone.metrics.gpu" in graph and len(graph) > 30
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_a_planted_cycle_is_found(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import f\n")
    (pkg / "a.py").write_text("import os\nfrom .sub import b\n\ndef f():\n    from . import c\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .. import a\n")
    (pkg / "c.py").write_text("from .a import f\n")
    graph = import_graph(pkg, "pkg")
    assert graph["pkg.a"] == {"pkg.sub.b"}  # deferred and TYPE_CHECKING imports are not edges
    assert find_cycle(graph) is None
    (pkg / "sub" / "b.py").write_text("from ..c import f\n")  # a -> sub.b -> c -> a
    cycle = find_cycle(import_graph(pkg, "pkg"))
    assert cycle is not None and cycle[0] == cycle[-1] and {"pkg.a", "pkg.sub.b", "pkg.c"} <= set(cycle)


def test_no_private_names_imported_across_modules() -> None:
    modules = _module_names(PACKAGE_DIR, "voxelbone")
    found = set()
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in _all_imports(tree):
            src = _resolve(name, path.name == "__init__.py", node)
            if not src.startswith("voxelbone"):
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.add((name, src, alias.name))
    assert found <= KNOWN_PRIVATE_IMPORTS, sorted(found - KNOWN_PRIVATE_IMPORTS)
