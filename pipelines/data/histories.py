"""Histories and query states, computed after the split so nothing leaks across it.

A row's history is the query's candidates from strictly earlier interactions
(``time < the row's time``) that the row's split may see, newest first: a
train row sees train interactions only, an eval row train and eval ones, a
test row all three. So no history ever holds an interaction of a later split,
whatever the split method, and interactions at the same moment (one basket)
never see each other.

A query's *state* before a cutoff is what evaluation and serving embed: the
columns of its latest known row before the cutoff, and the candidates of its
known rows before the cutoff, newest first. For a held-out split the cutoff is
the query's first held-out interaction and "known" means an earlier split;
for serving (``twotower recommend``) the cutoff is now and every row is known.

Pure Python, no TensorFlow: rows are addressed by index into parallel lists.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

RANKS = {"train": 0, "eval": 1, "test": 2}


def _by_query(queries: Sequence[str], times: Sequence[float]) -> Dict[str, List[int]]:
    """Row indices per query, in (time, file order)."""
    groups: Dict[str, List[int]] = {}
    for i, query in enumerate(queries):
        groups.setdefault(query, []).append(i)
    for rows in groups.values():
        rows.sort(key=lambda i: (times[i], i))
    return groups


def row_histories(queries: Sequence[str], times: Sequence[float], ranks: Sequence[int],
                  items: Sequence[str], cap: int) -> List[List[str]]:
    """Each row's history: at most ``cap`` candidates, newest first.

    Args:
      queries, times, items: per row, the query id, its time and its candidate id.
      ranks: per row, the split rank (train 0, eval 1, test 2).
      cap: the longest history any feature keeps.
    """
    out: List[List[str]] = [[] for _ in queries]
    for rows in _by_query(queries, times).values():
        visible: List[List[str]] = [[] for _ in RANKS]  # visible[r]: what rank r sees, in order
        start = 0
        while start < len(rows):
            end = start
            while end < len(rows) and times[rows[end]] == times[rows[start]]:
                end += 1
            moment = rows[start:end]  # rows at one time see none of each other
            for i in moment:
                out[i] = visible[ranks[i]][-cap:][::-1]
            for i in moment:
                for rank in range(ranks[i], len(RANKS)):
                    visible[rank].append(items[i])
            start = end
    return out


def query_states(queries: Sequence[str], times: Sequence[float], items: Sequence[str],
                 known: Sequence[bool], cutoffs: Dict[str, float], cap: int) -> Dict[str, dict]:
    """The state of each query of ``cutoffs`` before its cutoff time.

    Args:
      known: per row, whether the row may be used (e.g. it is in an earlier split).
      cutoffs: ``{query: time}``; rows strictly before the time count
        (``math.inf``: all known rows).
      cap: the longest history any feature keeps.

    Returns:
      ``{query: {'row': index of the latest known row before the cutoff,
      'items': its known candidates before the cutoff, newest first, at most
      cap}}`` for the queries with such a row; a query without one is cold
      and absent.
    """
    states = {}
    for query, rows in _by_query(queries, times).items():
        if query not in cutoffs:
            continue
        cutoff = cutoffs[query]
        before = [i for i in rows if known[i] and times[i] < cutoff]
        if before:
            states[query] = {"row": before[-1], "items": [items[i] for i in before][-cap:][::-1]}
    return states


def first_times(queries: Sequence[str], times: Sequence[float],
                chosen: Sequence[bool]) -> Dict[str, float]:
    """``{query: earliest time among its chosen rows}`` (its first held-out interaction)."""
    first: Dict[str, float] = {}
    for query, time, pick in zip(queries, times, chosen):
        if pick and time < first.get(query, math.inf):
            first[query] = time
    return first


def joined(items: List[str], separator: str, max_length: int) -> Optional[str]:
    """A history cell: the newest ``max_length`` items joined, None when empty."""
    return separator.join(items[:max_length]) or None


def repeats(queries: Sequence[str], times: Sequence[float], ranks: Sequence[int],
            items: Sequence[str]) -> List[bool]:
    """Per row: whether its query had its candidate in an earlier row its split may see.

    "Earlier" is (time, file order), so the second of two identical rows in one
    basket is a repeat; visibility is the histories' (train sees train, eval
    train and eval, test all), so a train row is never marked because of a
    held-out one.
    """
    out = [False] * len(queries)
    for rows in _by_query(queries, times).values():
        had: List[set] = [set() for _ in RANKS]  # had[r]: candidates rank r has seen
        for i in rows:
            out[i] = items[i] in had[ranks[i]]
            for rank in range(ranks[i], len(RANKS)):
                had[rank].add(items[i])
    return out

