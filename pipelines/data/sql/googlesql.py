"""Whether a query is BigQuery's own SQL: its calls against BigQuery's documented list, and
no syntax only DuckDB has.

``googlesql_functions.txt`` (beside this file) is data: the function names of
BigQuery's function reference ("All functions"), its conditional expressions,
its reserved keywords and which of those stand before ``(`` as grammar
(``IN (``, ``OVER (``), each section with its source address and the date it was
read. :func:`calls` reads a query's text with sqlglot's BigQuery tokenizer (so
string literals, comments and quoted names are never mistaken for calls) and
returns every name written just before ``(`` that is not such grammar;
:func:`unknown` returns those that are neither a documented function nor a
conditional: a function that exists only in DuckDB (``epoch``, ``isfinite``,
``TIME_TO_UNIX``, and ``HASH``, ``CONTAINS``, which are BigQuery keywords but not
functions) cannot reach BigQuery unnoticed. (``RANGE`` is a BigQuery function, its
RANGE-value constructor: a name check can't tell it from DuckDB's ``range``.)

:func:`syntax_problems` refuses what BigQuery's parser would: the text is parsed
and written back in sqlglot's BigQuery dialect with errors and unsupported
constructs raised, and its tokens are read for DuckDB syntax (:data:`DUCKDB_ONLY`),
most of which sqlglot reads in its BigQuery dialect too: ``::`` casts,
``* EXCLUDE (...)``, ``USING SAMPLE``, ``{...}`` struct literals, ``l[1]``
subscripts, ``a // b`` and ``a ** b`` (BigQuery's own ``[...]`` array literals and
``x[OFFSET(i)]`` pass). No TensorFlow, no engine.
"""
from __future__ import annotations

import functools
import os
from typing import Dict, FrozenSet, List

import sqlglot
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ErrorLevel, SqlglotError
from sqlglot.tokens import TokenType

LIST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "googlesql_functions.txt")


@functools.lru_cache(maxsize=1)
def sections() -> Dict[str, FrozenSet[str]]:
    """``{section: names}`` of the committed list (``functions``, ``conditionals``, ``keywords``)."""
    out: Dict[str, set] = {}
    current = None
    with open(LIST, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("[") and line.endswith("]"):
                current = out.setdefault(line[1:-1], set())
            elif current is None:
                raise ValueError(f"{LIST}: {line!r} comes before any [section]")
            else:
                current.add(line.upper())
    return {name: frozenset(names) for name, names in out.items()}


def known() -> FrozenSet[str]:
    """Every name BigQuery documents as callable: its functions and conditional expressions
    (reserved keywords are not: ``HASH(x)`` is DuckDB's)."""
    s = sections()
    return s["functions"] | s["conditionals"]


def grammar() -> FrozenSet[str]:
    """The reserved keywords that stand before ``(`` as syntax (``IN (``, ``OVER (``)."""
    s = sections()
    wrong = s["syntax"] - s["keywords"]
    if wrong:
        raise ValueError(f"{LIST}: [syntax] names {sorted(wrong)}, not reserved keywords")
    return s["syntax"]


def calls(text: str) -> List[str]:
    """The names written just before ``(`` in BigQuery SQL ``text``, upper-cased, in order.

    A dotted name (``NET.HOST(``) is one name. Backquoted names, strings and
    comments are tokens of their own, so ``\\`f\\`(`` or ``'f('`` is no call.
    """
    tokens = Dialect.get_or_raise("bigquery").tokenize(text)
    syntax = grammar()
    skip = {TokenType.STRING, TokenType.NUMBER, TokenType.IDENTIFIER, TokenType.L_PAREN,
            TokenType.R_PAREN, TokenType.COMMA, TokenType.DOT}
    out = []
    for i, token in enumerate(tokens[:-1]):
        if tokens[i + 1].token_type != TokenType.L_PAREN or token.token_type in skip:
            continue
        if not token.text[:1].isalpha() and token.text[:1] != "_":
            continue  # an operator such as `+ (`, `= (`
        name = token.text
        j = i
        while j >= 2 and tokens[j - 1].token_type == TokenType.DOT and \
                tokens[j - 2].token_type not in skip:
            name = f"{tokens[j - 2].text}.{name}"
            j -= 2
        if name.upper() not in syntax:
            out.append(name.upper())
    return out


def unknown(text: str) -> List[str]:
    """The names ``text`` calls that BigQuery's documentation does not list, sorted."""
    return sorted(set(calls(text)) - known())


# DuckDB syntax that sqlglot reads in its BigQuery dialect too: (tokens, what BigQuery writes)
DUCKDB_ONLY = {
    "::": "a `::` cast: BigQuery writes CAST(x AS type)",
    "EXCLUDE": "`* EXCLUDE (...)`: BigQuery writes * EXCEPT (...)",
    "USING SAMPLE": "USING SAMPLE: BigQuery writes TABLESAMPLE SYSTEM (n PERCENT)",
    "{": "a `{...}` struct literal: BigQuery writes STRUCT(...)",
    "//": "`a // b` (integer division): BigQuery writes DIV(a, b)",
    "**": "`a ** b` (a power): BigQuery writes POW(a, b)",
    "[i]": "a `x[i]` subscript: BigQuery writes x[OFFSET(i)] or x[ORDINAL(i)]",
}
_POSITIONS = ("OFFSET", "ORDINAL", "SAFE_OFFSET", "SAFE_ORDINAL")


def syntax_problems(text: str) -> List[str]:
    """Why ``text`` is not BigQuery's syntax, one line each (empty: it is)."""
    out = []
    tokens = Dialect.get_or_raise("bigquery").tokenize(text)
    value = (TokenType.VAR, TokenType.IDENTIFIER, TokenType.R_PAREN, TokenType.R_BRACKET)
    for i, token in enumerate(tokens):
        before = tokens[i - 1] if i else None
        after = tokens[i + 1] if i + 1 < len(tokens) else None
        found = None
        if token.token_type == TokenType.DCOLON:
            found = "::"
        elif (token.text.upper() == "EXCLUDE" and before is not None
              and before.token_type == TokenType.STAR):
            found = "EXCLUDE"
        elif (token.token_type == TokenType.USING and after is not None
              and after.text.upper() == "SAMPLE"):
            found = "USING SAMPLE"
        elif token.token_type == TokenType.L_BRACE:
            found = "{"
        elif (token.token_type in (TokenType.SLASH, TokenType.STAR) and after is not None
              and after.token_type == token.token_type and after.start == token.end + 1):
            found = token.text * 2  # two operators written as one: DuckDB's // or **
        elif (token.token_type == TokenType.L_BRACKET and before is not None
              and before.token_type in value and (after is None or after.text.upper()
                                                  not in _POSITIONS)):
            found = "[i]"
        if found:
            out.append(f"{DUCKDB_ONLY[found]} (line {token.line}, column {token.col})")
    try:
        for tree in sqlglot.parse(text, read="bigquery", error_level=ErrorLevel.RAISE):
            if tree is not None:
                tree.sql("bigquery", unsupported_level=ErrorLevel.RAISE)
    except SqlglotError as exc:
        out.append("sqlglot's BigQuery dialect refuses it: " + str(exc).splitlines()[0])
    return out
