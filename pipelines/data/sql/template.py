"""SQL built as syntax trees: fixed templates whose parameters are trees, never text.

A template is SQL written in this package (never by a user) in DuckDB's
dialect, where each parameter is a bare name starting with ``P_``. :func:`fill`
parses the template with sqlglot and replaces each parameter node by a tree:
an identifier quoted by sqlglot (:func:`ident`), a literal (:func:`lit`), or
another filled expression. So a config value reaches SQL only as a quoted
identifier or a literal: a column named ``a"; DROP TABLE x; --`` is a column.

No TensorFlow, no engine: rendering a tree for DuckDB or BigQuery is
``tree.sql(dialect=...)``.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List

import sqlglot
from sqlglot import exp

PREFIX = "P_"


def ident(name: str) -> exp.Identifier:
    """A quoted identifier (a column, alias or table name from the config)."""
    return exp.to_identifier(name, quoted=True)


def lit(value: Any) -> exp.Expression:
    """A literal: a string, a finite number, a boolean or NULL."""
    if isinstance(value, float) and value != value:
        raise ValueError("NaN cannot be a SQL literal")
    return exp.convert(value)


def _replacement(node: exp.Expression, params: Dict[str, exp.Expression]):
    name = None
    if isinstance(node, exp.Column) and not node.table and node.name.startswith(PREFIX):
        name = node.name
    elif isinstance(node, exp.Identifier) and node.name.startswith(PREFIX):
        name = node.name
    elif isinstance(node, exp.Table) and node.name.startswith(PREFIX) and not node.args.get("db"):
        name = node.name
    if name is None:
        return node
    if name not in params:
        raise KeyError(f"template parameter {name} has no value")
    value = params[name]
    if isinstance(node, exp.Identifier):
        if isinstance(value, exp.Column) and not value.table:
            value = value.this
        if not isinstance(value, exp.Identifier):
            raise TypeError(f"{name} stands for a name here: give ident(...)")
        return value.copy()
    if isinstance(node, exp.Table):
        table = exp.Table(this=value.copy() if isinstance(value, exp.Identifier) else value)
        if node.alias:
            table.set("alias", node.args["alias"].copy())
        return table
    if isinstance(value, exp.Identifier):
        return exp.Column(this=value.copy())
    return value.copy()


def fill(template: str, **params: Any) -> exp.Expression:
    """The template's tree with every ``P_name`` replaced by ``params['P_name']``.

    A list value is spliced into the SELECT list (or ORDER BY / GROUP BY) that
    names the parameter as one item; other values that are not trees become
    literals (:func:`lit`).
    """
    lists = {k: v for k, v in params.items() if isinstance(v, list)}
    trees = {k: v if isinstance(v, exp.Expression) else lit(v) for k, v in params.items()
             if k not in lists}
    tree = sqlglot.parse_one(template, read="duckdb")
    def listed(item):
        inner = item.this if isinstance(item, exp.Ordered) else item
        if isinstance(inner, exp.Column) and not inner.table and inner.name in lists:
            return lists[inner.name]
        return None

    for node in list(tree.find_all(exp.Select, exp.Order, exp.Group, exp.Window)):
        key = "partition_by" if isinstance(node, exp.Window) else "expressions"
        items = node.args.get(key) or []
        if not any(listed(i) is not None for i in items):
            continue
        spliced = []
        for item in items:
            values = listed(item)
            if values is None:
                spliced.append(item)
            elif isinstance(item, exp.Ordered):
                spliced.extend(item.__class__(this=v.copy(), desc=item.args.get("desc"),
                                              nulls_first=item.args.get("nulls_first"))
                               for v in values)
            else:
                spliced.extend(v.copy() for v in values)
        node.set(key, spliced)
    return tree.transform(lambda node: _replacement(node, trees))


def columns(names: Iterable[str], table: str = "") -> List[exp.Column]:
    """Quoted column references, optionally qualified by ``table`` (a template name)."""
    return [exp.Column(this=ident(n), table=exp.to_identifier(table) if table else None)
            for n in names]


def _bigquery(node: exp.Expression) -> exp.Expression:
    """DuckDB functions whose BigQuery spelling differs in meaning, not just in name."""
    if isinstance(node, exp.SHA2):  # BigQuery's SHA256 is BYTES: hex it like DuckDB's
        return exp.LowerHex(this=node.copy())
    if isinstance(node, exp.TimeToUnix):  # epoch seconds with the microseconds
        return exp.Div(this=exp.Anonymous(this="UNIX_MICROS", expressions=[node.this.copy()]),
                       expression=exp.Literal.number("1000000.0"))
    if isinstance(node, exp.Anonymous) and node.name.lower() == "to_json":  # a row as text
        return exp.Anonymous(this="TO_JSON_STRING", expressions=[e.copy() for e in node.expressions])
    if isinstance(node, exp.Anonymous) and node.name.lower() == "isfinite":
        value = node.expressions[0]
        return exp.paren(exp.and_(exp.not_(exp.Anonymous(this="IS_INF", expressions=[value.copy()])),
                                  exp.not_(exp.Anonymous(this="IS_NAN", expressions=[value.copy()]))))
    return node


def rewrite(tree: exp.Expression, fun) -> exp.Expression:
    """A copy of ``tree`` with ``fun`` applied to every node, children before parents.

    Unlike sqlglot's ``transform`` (which does not descend into a node it has
    just replaced), every node is visited however deep, and a node is rewritten
    after its children: ``isfinite(epoch(t))`` has its ``epoch`` rewritten
    before ``isfinite`` copies it into ``IS_INF(...)`` and ``IS_NAN(...)``.
    (Nodes ``fun`` creates are not visited again.)
    """
    tree = tree.copy()
    for node in reversed(list(tree.walk(bfs=False))):  # pre-order reversed: children first
        new = fun(node)
        if new is node:
            continue
        if node is tree:
            tree = new
        else:
            node.replace(new)
    return tree


def render(tree: exp.Expression, dialect: str = "duckdb", pretty: bool = False) -> str:
    """The tree as SQL text for ``dialect`` (``duckdb`` or ``bigquery``)."""
    if dialect == "bigquery":
        tree = rewrite(tree, _bigquery)
        dotted = sorted({n.name for n in tree.find_all(exp.Identifier) if "." in n.name})
        if dotted:  # validation refuses these first, for BigQuery sources
            raise ValueError(f"{dotted[0]!r}: BigQuery reads a quoted name with a dot as a "
                             "path (`a.b` is column b of a), so it can't name one column")
    return tree.sql(dialect=dialect, pretty=pretty)
