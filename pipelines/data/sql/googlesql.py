"""Which functions a BigQuery query calls, against BigQuery's documented list.

``googlesql_functions.txt`` (beside this file) is data: the function names of
BigQuery's function reference ("All functions"), its conditional expressions
and its reserved keywords, each section with its source address and the date
it was read. :func:`calls` reads a query's text with sqlglot's BigQuery
tokenizer (so string literals, comments and quoted names are never mistaken
for calls) and returns every name written just before ``(``;
:func:`unknown` returns those BigQuery does not document: a function that
exists only in DuckDB (``epoch``, ``isfinite``, ``TIME_TO_UNIX`` ...) cannot
reach BigQuery unnoticed. No TensorFlow, no engine.
"""
from __future__ import annotations

import functools
import os
from typing import Dict, FrozenSet, List

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
    """Every name BigQuery documents before ``(``: functions, conditionals, syntax keywords."""
    s = sections()
    return s["functions"] | s["conditionals"] | s["keywords"]


def calls(text: str) -> List[str]:
    """The names written just before ``(`` in BigQuery SQL ``text``, upper-cased, in order.

    A dotted name (``NET.HOST(``) is one name. Backquoted names, strings and
    comments are tokens of their own, so ``\\`f\\`(`` or ``'f('`` is no call.
    """
    from sqlglot.dialects.dialect import Dialect
    from sqlglot.tokens import TokenType

    tokens = Dialect.get_or_raise("bigquery").tokenize(text)
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
        out.append(name.upper())
    return out


def unknown(text: str) -> List[str]:
    """The names ``text`` calls that BigQuery's documentation does not list, sorted."""
    return sorted(set(calls(text)) - known())
