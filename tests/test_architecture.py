"""The import graph of theia_eval: no circles, and every arrow points down the declared layers.

Every module under theia_eval is parsed with `ast`; every `import` and `from ... import` counts, at
module level and inside functions alike (a lazy import hides a circle from Python, not from this test).

How package `__init__` files count: an import of `a.b.c` is an edge to `a.b.c` only, not to the packages
`a` and `a.b` whose `__init__` Python runs first. A package `__init__` re-exports its children, so
counting those implicit edges would turn every import between two siblings into a circle through their
parent. An explicit `from a.b import name` is an edge to the submodule `a.b.name` when that is a module,
else to the package `a.b` itself (its `__init__`, with the edges it has of its own).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "theia_eval"
# files that are not modules of the package: the modeling code copied into every Theia export
NOT_MODULES = ("assets",)
# packages of data, not code: the repository's configs/ folder is installed as theia_eval.configs (pyproject.toml)
DATA_PACKAGES = (f"{PACKAGE.name}.configs",)

# Layers, lowest first: a module may import modules of its own layer and of layers below it, never above.
# - base: leaf modules every package uses (errors, io, config, schema and settings, the registry and verb
#   helpers, provenance and hashing, the encoder-entry parser shared by sweeps and analysis)
# - encoders: the frozen-encoder registry; envs: simulated suites, rendering, demos (envs needs no encoder)
# - policies: heads trained on encoders and evaluated in envs
# - distill: Theia students (teachers are encoders; frame sets are rendered from envs)
# - decoding: a student's predictions decoded back into teacher outputs
# - analysis: results store, leaderboards, entropy (reads rows, never plans: it does not know sweeps)
# - sweeps: plans and runs grids over all of the above, appends to the analysis store, publishes
# - quickstart, cli and the `theia_eval` package facade (lazy re-export of the encoder API): the top
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "io", "schema", "config", "version", "provenance", "hashing", "encoder_entry", "registry", "settings",
     "verbs"),
    ("encoders",),
    ("envs",),
    ("policies",),
    ("distill",),
    ("decoding",),
    ("analysis",),
    ("sweeps",),
    ("quickstart",),
    ("cli", ""),  # "": the package __init__ (theia_eval itself)
)


def module_files(root: Path = PACKAGE) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package __init__)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        if rel.parts[1:2] and rel.parts[1] in NOT_MODULES:
            continue
        parts = list(rel.parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def imported_names(module: str, path: Path, is_pkg: bool) -> set[str]:
    """Every theia_eval name `module` imports (absolute, relative resolved), with the imported attribute."""
    package = module if is_pkg else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            names |= {f"{source}:{alias.name}" for alias in node.names}
    return {n for n in names if n.split(":")[0].split(".")[0] == PACKAGE.name}


def resolve(name: str, modules: dict) -> str | None:
    """'a.b:c' -> 'a.b.c' when that is a module, else 'a.b'; 'a.b' -> 'a.b'; a data folder -> None."""
    source, _, attr = name.partition(":")
    if source in DATA_PACKAGES:
        return None
    if attr and f"{source}.{attr}" in modules:
        return f"{source}.{attr}"
    if source not in modules:
        raise AssertionError(f"import of {source}, which is not a module of {PACKAGE.name}")
    return source


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the theia_eval modules it imports (itself excluded)."""
    modules = module_files(root)
    return {m: {resolve(n, modules) for n in imported_names(m, p, is_pkg)} - {m, None}
            for m, (p, is_pkg) in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path [a, b, ..., a], or None (iterative depth-first search)."""
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


def layer_of(module: str) -> int:
    """Index in LAYERS of the top-level name of a module (theia_eval.envs.dmc -> envs)."""
    top = module.split(".")[1] if "." in module else ""
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module}: '{top}' is in no layer of tests/test_architecture.py: add it to LAYERS")


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """'a -> b' for every import of a higher layer."""
    return sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets if layer_of(b) > layer_of(a))


def test_graph_sees_module_and_function_level_imports():
    graph = import_graph()
    assert "theia_eval.errors" in graph["theia_eval.config"]  # module level
    assert "theia_eval.encoders" in graph["theia_eval.sweeps.stages"]  # inside a function
    assert "theia_eval.encoders.theia_student" in graph["theia_eval"]  # from package import submodule


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle) + (
        ". Move what both sides need into a module both import downward.")


def test_every_module_has_a_layer():
    for module in import_graph():
        layer_of(module)


def test_imports_point_down_the_layers():
    bad = upward_imports(import_graph())
    assert not bad, "imports running back up the layers " + " < ".join("|".join(n) or "theia_eval" for n in LAYERS) + ":\n" + "\n".join(bad)


def write_package(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root / PACKAGE.name


def test_a_lazy_circle_is_found(tmp_path):
    pkg = write_package(tmp_path, {
        f"{PACKAGE.name}/__init__.py": "",
        f"{PACKAGE.name}/envs/__init__.py": f"from {PACKAGE.name}.envs import a\n",
        f"{PACKAGE.name}/envs/a.py": f"from {PACKAGE.name}.envs.b import thing\n",
        f"{PACKAGE.name}/envs/b.py": f"def f():\n    from {PACKAGE.name}.envs import a\n",
    })
    cycle = find_cycle(import_graph(pkg))
    assert cycle is not None and set(cycle) == {f"{PACKAGE.name}.envs.a", f"{PACKAGE.name}.envs.b"}


def test_parent_packages_do_not_make_circles(tmp_path):
    pkg = write_package(tmp_path, {
        f"{PACKAGE.name}/__init__.py": "",
        f"{PACKAGE.name}/envs/__init__.py": f"from {PACKAGE.name}.envs.a import x\nfrom .b import y\n",
        f"{PACKAGE.name}/envs/a.py": "x = 1\n",
        f"{PACKAGE.name}/envs/b.py": f"from {PACKAGE.name}.envs.a import x\ny = 2\n",
    })
    graph = import_graph(pkg)
    assert find_cycle(graph) is None
    assert graph[f"{PACKAGE.name}.envs"] == {f"{PACKAGE.name}.envs.a", f"{PACKAGE.name}.envs.b"}


def test_an_upward_import_is_found(tmp_path):
    pkg = write_package(tmp_path, {
        f"{PACKAGE.name}/__init__.py": "",
        f"{PACKAGE.name}/analysis/__init__.py": "",
        f"{PACKAGE.name}/analysis/x.py": f"def f():\n    from {PACKAGE.name}.sweeps.plan import build_plan\n",
        f"{PACKAGE.name}/sweeps/__init__.py": "",
        f"{PACKAGE.name}/sweeps/plan.py": f"from {PACKAGE.name}.analysis import x\n",
    })
    assert upward_imports(import_graph(pkg)) == [f"{PACKAGE.name}.analysis.x -> {PACKAGE.name}.sweeps.plan"]


def test_an_unknown_top_level_name_is_refused():
    with pytest.raises(AssertionError, match="no layer"):
        layer_of(f"{PACKAGE.name}.newpackage.mod")
