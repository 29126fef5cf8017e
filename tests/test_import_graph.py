"""The import graph of ``pipelines/``, ``trainer/`` and ``transform/`` has no circle.

Every import counts, at a module's top, inside a function or under ``if
TYPE_CHECKING:``: an import moved into a function to dodge a circle still makes
one, and so does a type-only one (the two modules still need each other's
names: a reader, or a type checker, cannot take one without the other).
Dependencies point one way: pipelines -> trainer -> transform.
"""
import ast
import os

from conftest import ROOT

PACKAGES = ("pipelines", "trainer", "transform")
LAYER = {"transform": 0, "trainer": 1, "pipelines": 2}
# pipelines' own floors, bottom up: a subpackage or loose module imports only its own floor
# and those before it (pipelines/__init__.py says what each one owns)
PIPELINES_FLOORS = ("pipelines", "pipelines.version", "pipelines.csvsafe", "pipelines.config",
                    "pipelines.data", "pipelines.vertex", "pipelines.build", "pipelines.runners",
                    "pipelines.inspect", "pipelines.terminal", "pipelines.local_paths",
                    "pipelines.validate", "pipelines.recommend", "pipelines.tuning", "pipelines.api",
                    "pipelines.cli", "pipelines.__main__")
MAX_LOOSE = 10  # modules directly in pipelines/ (__init__ and __main__ included)


def modules(root=ROOT, packages=PACKAGES):
    """``{dotted module name: path}`` of every ``.py`` file of the packages."""
    found = {}
    for package in packages:
        for base, dirs, files in os.walk(os.path.join(root, package)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                if name.endswith(".py"):
                    relative = os.path.relpath(os.path.join(base, name), root)[:-3]
                    dotted = relative.replace(os.sep, ".")
                    found[dotted[:-len(".__init__")] if dotted.endswith(".__init__")
                          else dotted] = os.path.join(base, name)
    return found


def _target(name, known):
    """The project module ``name`` refers to: itself, or its nearest known parent."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def graph(known):
    """``{module: {module it imports}}`` over every import statement: nested and type-only
    (``if TYPE_CHECKING:``) ones included."""
    edges = {}
    for module, path in known.items():
        tree = ast.parse(open(path, encoding="utf-8").read(), path)
        package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets |= {_target(a.name, known) for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package, up level - 1
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
                for alias in node.names:  # `from a import b` may import the module a.b
                    targets.add(_target(f"{base}.{alias.name}", known) if
                                f"{base}.{alias.name}" in known else _target(base, known))
        edges[module] = {t for t in targets if t and t != module}
    return edges


def cycles(edges):
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_circles_hidden_in_a_function_or_for_types(tmp_path):
    """The check can fail: b imports a inside a function, c imports d for types only."""
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "__init__.py").write_text("")
    (tmp_path / "pipelines" / "a.py").write_text("from pipelines.b import f\n")
    (tmp_path / "pipelines" / "b.py").write_text(
        "def f():\n    from pipelines import a\n    return a\n")
    (tmp_path / "pipelines" / "c.py").write_text(
        "from typing import TYPE_CHECKING\nfrom . import a\nif TYPE_CHECKING:\n"
        "    from pipelines.d import T\n")
    (tmp_path / "pipelines" / "d.py").write_text("from pipelines.c import a\nT = int\n")
    edges = graph(modules(str(tmp_path), ("pipelines",)))
    assert edges["pipelines.a"] == {"pipelines.b"}
    assert edges["pipelines.c"] == {"pipelines.a", "pipelines.d"}
    assert cycles(edges) == [["pipelines.a", "pipelines.b"], ["pipelines.c", "pipelines.d"]]


def test_the_import_graph_has_no_circle():
    found = cycles(graph(modules()))
    assert found == [], "import circles (each a set of modules that import each other): " + \
        "; ".join(" <-> ".join(c) for c in found)


def test_dependencies_point_one_way():
    """transform imports neither trainer nor pipelines; trainer never imports pipelines."""
    wrong = sorted((m, t) for m, ts in graph(modules()).items() for t in ts
                   if LAYER[t.split(".")[0]] > LAYER[m.split(".")[0]])
    assert wrong == [], f"imports against the layering: {wrong}"


def floor(module):
    """The floor of a ``pipelines`` module: its subpackage, or itself when loose."""
    return ".".join(module.split(".")[:2])


def test_pipelines_floors_point_down():
    """A module of pipelines imports only its own floor and those below it."""
    known = modules()
    unplaced = sorted({floor(m) for m in known if m.startswith("pipelines")}
                      - set(PIPELINES_FLOORS))
    assert unplaced == [], f"place these in PIPELINES_FLOORS (and pipelines/__init__.py): " \
        f"{unplaced}"
    rank = {name: i for i, name in enumerate(PIPELINES_FLOORS)}
    wrong = sorted((m, t) for m, ts in graph(known).items() for t in ts
                   if m.startswith("pipelines") and t.startswith("pipelines")
                   and rank[floor(t)] > rank[floor(m)])
    assert wrong == [], f"imports up the floors of pipelines: {wrong}"


def test_pipelines_holds_few_loose_modules_and_each_package_says_what_it_owns():
    loose = sorted(n for n in os.listdir(os.path.join(ROOT, "pipelines")) if n.endswith(".py"))
    assert len(loose) <= MAX_LOOSE, f"{len(loose)} loose modules in pipelines/: {loose}"
    silent = sorted(p for m, p in modules(packages=("pipelines",)).items()
                    if p.endswith("__init__.py")
                    and not ast.get_docstring(ast.parse(open(p, encoding="utf-8").read())))
    assert silent == [], f"packages without a docstring saying what they own: {silent}"


def test_the_architecture_picture_is_drawn_from_todays_imports():
    """docs/architecture.svg is what scripts/draw_architecture.py draws from this graph (run
    it after an import between packages changes)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "draw_architecture", os.path.join(ROOT, "scripts", "draw_architecture.py"))
    draw = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(draw)
    with open(draw.OUT, encoding="utf-8") as handle:
        assert handle.read() == draw.svg(draw.package_edges()), \
            "docs/architecture.svg is stale: run .venv/bin/python scripts/draw_architecture.py"
