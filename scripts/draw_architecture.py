"""Draws docs/architecture.svg: the packages of pipelines/, trainer/ and transform/ and
their imports, read from the code by the import-graph test's own reader.

    .venv/bin/python scripts/draw_architecture.py            # writes docs/architecture.svg
    .venv/bin/python scripts/draw_architecture.py --check    # exit 1 if it is out of date

A box is one floor of ``pipelines`` (a subpackage or a loose module, in the order
tests/test_import_graph.py's ``PIPELINES_FLOORS`` keeps), ``trainer`` or
``transform`` (its ``kinds/`` included). An arrow ``a -> b``: some module of
``a`` imports one of ``b`` (at its top, in a function or for types), drawn only where no
longer chain of arrows already leads from ``a`` to ``b`` (the transitive reduction), so
the picture stays readable; every arrow points down. No TensorFlow: it only reads files.
"""
import argparse
import html
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from test_import_graph import PIPELINES_FLOORS, floor, graph, modules  # noqa: E402

OUT = os.path.join(ROOT, "docs", "architecture.svg")
BOX_W, BOX_H, GAP_X, GAP_Y, MARGIN = 170, 34, 22, 46, 24
COLOURS = {"pipelines": "#e8f0fe", "trainer": "#fdecea", "transform": "#e6f4ea"}


def node_of(module):
    """The box a module belongs to."""
    if module.startswith("pipelines"):
        return floor(module)
    return module.split(".")[0]


def package_edges():
    """``{box: {box it imports}}`` over the whole import graph."""
    edges = {}
    for module, targets in graph(modules()).items():
        if module == "pipelines":  # the package's docstring: what each floor owns
            continue
        source = node_of(module)
        edges.setdefault(source, set())
        for target in targets:
            if node_of(target) not in (source, "pipelines"):
                edges[source].add(node_of(target))
    return edges


def reachable(edges, start, skip_edge):
    seen, stack = set(), [t for t in edges.get(start, ()) if (start, t) != skip_edge]
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(edges.get(node, ()))
    return seen


def reduction(edges):
    """The arrows no longer chain implies."""
    return {a: {b for b in targets if b not in reachable(edges, a, (a, b))}
            for a, targets in edges.items()}


def layers(edges):
    """``{box: row}``: 0 for boxes nothing imports; a box sits below everything importing it."""
    row = {}

    def depth(node, stack=()):
        if node not in row:
            parents = [a for a, ts in edges.items() if node in ts and a not in stack]
            row[node] = 1 + max((depth(p, stack + (node,)) for p in parents), default=-1)
        return row[node]

    for node in edges:
        depth(node)
    return row


def svg(edges):
    arrows = reduction(edges)
    row = layers(edges)
    rank = {name: i for i, name in enumerate(PIPELINES_FLOORS)}
    order = {n: (-rank.get(n, -1), n) for n in row}
    rows = {}
    for node in sorted(row, key=lambda n: order[n]):
        rows.setdefault(row[node], []).append(node)
    width = MARGIN * 2 + max(len(r) for r in rows.values()) * (BOX_W + GAP_X) - GAP_X
    height = MARGIN * 2 + len(rows) * (BOX_H + GAP_Y) - GAP_Y + 44
    where = {}
    for r, nodes in rows.items():
        span = len(nodes) * (BOX_W + GAP_X) - GAP_X
        for i, node in enumerate(nodes):
            where[node] = ((width - span) / 2 + i * (BOX_W + GAP_X), MARGIN + r * (BOX_H + GAP_Y))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
           f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="Helvetica,Arial,sans-serif" '
           'font-size="12">',
           '<defs><marker id="a" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
           'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#5f6368"/>'
           '</marker></defs>', '<rect width="100%" height="100%" fill="white"/>']
    for a in sorted(arrows):
        for b in sorted(arrows[a]):
            (x1, y1), (x2, y2) = where[a], where[b]
            out.append(f'<path d="M{x1 + BOX_W / 2:.0f},{y1 + BOX_H:.0f} C{x1 + BOX_W / 2:.0f},'
                       f'{y1 + BOX_H + GAP_Y:.0f} {x2 + BOX_W / 2:.0f},{y2 - GAP_Y:.0f} '
                       f'{x2 + BOX_W / 2:.0f},{y2:.0f}" fill="none" stroke="#5f6368" '
                       'stroke-opacity="0.7" marker-end="url(#a)"/>')
    for node, (x, y) in sorted(where.items()):
        path = node.replace(".", "/")
        label = {"transform": "transform/ (kinds/)"}.get(
            node, path + ("/" if os.path.isdir(os.path.join(ROOT, path)) else ".py"))
        colour = COLOURS[node.split(".")[0]]
        out.append(f'<rect x="{x:.0f}" y="{y:.0f}" width="{BOX_W}" height="{BOX_H}" rx="5" '
                   f'fill="{colour}" stroke="#3c4043"/>')
        out.append(f'<text x="{x + BOX_W / 2:.0f}" y="{y + BOX_H / 2 + 4:.0f}" '
                   f'text-anchor="middle">{html.escape(label)}</text>')
    for i, line in enumerate(("blue: pipelines/, red: trainer/, green: transform/;",
                              "an arrow: imports (the transitive reduction),",
                              "drawn by scripts/draw_architecture.py")):
        out.append(f'<text x="{MARGIN}" y="{height - 34 + 14 * i:.0f}" fill="#5f6368">'
                   f'{line}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the picture is stale")
    args = parser.parse_args(argv)
    text = svg(package_edges())
    if args.check:
        current = open(OUT, encoding="utf-8").read() if os.path.exists(OUT) else ""
        if current != text:
            print(f"error: {OUT} is out of date: run scripts/draw_architecture.py", file=sys.stderr)
            return 1
        return 0
    partial = OUT + ".partial"
    with open(partial, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(partial, OUT)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
