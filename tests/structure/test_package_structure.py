"""The architecture, checked: imports flow one way, no private reach-ins, no cycles, STYLE's signatures.

Read from the source (``ast``), so a violation fails here whatever the code does at run time.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("schemas", "indexer", "annotator", "cellvec")
#: Who may import whom (top-level packages): the flow schemas <- indexer <- annotator <- cellvec.
ALLOWED = {
    "schemas": set(),
    "indexer": {"schemas"},
    "annotator": {"schemas", "indexer"},
    "cellvec": {"schemas", "indexer", "annotator"},
}
#: The one place the product reaches into benchmarks/: the `cellvec bench` commands, on first use.
BENCH_ENTRY = {"cellvec/cli/_bench.py", "cellvec/cli/_scale.py"}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PRODUCT:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def _imports(path: Path, *, top_level_only: bool) -> list[tuple[str, int]]:
    """Absolute module names imported by a file (relative imports resolved), with their line."""
    tree = ast.parse(path.read_text())
    rel = path.relative_to(ROOT).with_suffix("").parts
    package = rel[:-1]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # also imports under `if TYPE_CHECKING:` do not run; keep plain module-level ones
        nodes = [n for n in nodes if isinstance(n, ast.Import | ast.ImportFrom)]
    out = []
    for node in nodes:
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level + 1], *([base] if base else [])])
            out.append((base, node.lineno))
            out += [(f"{base}.{a.name}", node.lineno) for a in node.names]
    return out


def test_imports_flow_one_way_and_never_reach_into_another_package_private_modules() -> None:
    bad = []
    for name, path in _modules().items():
        own = name.split(".")[0]
        rel = path.relative_to(ROOT).as_posix()
        for target, line in _imports(path, top_level_only=False):
            top = target.split(".")[0]
            if top == "benchmarks" and rel in BENCH_ENTRY:
                continue
            if top == own or top not in (*PRODUCT, "benchmarks"):
                continue
            if top not in ALLOWED[own]:
                bad.append(f"{rel}:{line} {own} imports {target}")
            elif any(p.startswith("_") for p in target.split(".")[1:]):
                bad.append(f"{rel}:{line} private import {target}")
    assert not bad, "\n".join(bad)


def test_no_import_cycle_among_module_level_imports() -> None:
    mods = _modules()
    graph = {
        name: {t for t, _ in _imports(path, top_level_only=True) if t in mods and t != name}
        for name, path in mods.items()
    }
    # A package's __init__ re-exports its children, so "pkg -> pkg.child" is not a cycle edge back.
    for name, deps in graph.items():
        graph[name] = {d for d in deps if not d.startswith(name + ".")}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append([*stack[stack.index(dep) :], dep])
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not [c for c in cycles if not _is_reexport_loop(c)], cycles


def _is_reexport_loop(cycle: list[str]) -> bool:
    """A child importing its parent package's face while the parent re-exports the child."""
    return any(b.startswith(a + ".") or a.startswith(b + ".") for a, b in itertools.pairwise(cycle))


def _isort_key(name: str) -> tuple[int, str]:
    kind = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    return kind, name


PUBLIC_FACES = [
    "cellvec",
    "schemas",
    "indexer",
    "indexer.store",
    "indexer.encoders",
    "indexer.genes",
    "indexer.cells",
    "indexer.cells.supcon",
    "indexer.reference",
    "annotator",
]


@pytest.mark.parametrize("module", PUBLIC_FACES)
def test_public_faces_export_a_sorted_all_that_resolves(module: str) -> None:
    mod = importlib.import_module(module)
    names = list(mod.__all__)
    assert names == sorted(names, key=_isort_key)
    assert len(names) == len(set(names))
    for name in names:
        assert getattr(mod, name) is not None


def test_cellvec_all_is_small_and_importing_it_has_no_side_effects(tmp_path: Path) -> None:
    import cellvec

    assert 10 <= len(cellvec.__all__) <= 40
    code = (
        "import json, logging, os, sys, warnings; before = (list(warnings.filters), logging.getLogger().handlers[:]);"
        "import cellvec;"
        "heavy = ('anndata', 'torch', 'scanpy', 'annotator', 'indexer', 'qdrant_edge');"
        "print(json.dumps({'heavy': sorted(m for m in heavy if m in sys.modules),"
        " 'filters': list(warnings.filters) == before[0],"
        " 'handlers': logging.getLogger().handlers == before[1], 'files': os.listdir('.')}))"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    )
    seen = json.loads(out.stdout)
    assert seen == {"heavy": [], "filters": True, "handlers": True, "files": []}


def _public_callables() -> list[tuple[str, object]]:
    out = []
    for module in PUBLIC_FACES:
        mod = importlib.import_module(module)
        for name in mod.__all__:
            obj = getattr(mod, name)
            if inspect.isfunction(obj):
                out.append((f"{module}.{name}", obj))
            elif inspect.isclass(obj) and obj.__module__.split(".")[0] in PRODUCT:
                for attr, member in vars(obj).items():
                    func = member.__func__ if isinstance(member, classmethod | staticmethod) else member
                    if not attr.startswith("_") and inspect.isfunction(func):
                        out.append((f"{module}.{name}.{attr}", func))
    return sorted(set(out), key=lambda x: x[0])


def test_public_signatures_follow_the_convention() -> None:
    """``adata`` first, at most three positional parameters, keyword-only after ``*``, no positional booleans."""
    bad = []
    for qualname, func in _public_callables():
        params = list(inspect.signature(func).parameters.values())
        if params and params[0].name in ("self", "cls"):
            params = params[1:]
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        names = [p.name for p in params]
        if "adata" in names and names[0] != "adata":
            bad.append(f"{qualname}: adata is not first")
        if len(positional) > 3:
            bad.append(f"{qualname}: {len(positional)} positional parameters")
        for p in positional:
            if isinstance(p.default, bool) or p.annotation in (bool, "bool"):
                bad.append(f"{qualname}: positional boolean {p.name}")
    assert len(_public_callables()) > 50  # the walk found the API
    assert not bad, "\n".join(bad)
