"""Assigning prepared interaction rows to the train, eval and test splits.

Methods (``data.split.method``):
  ``time``: global cuts by time. The latest ``test_fraction`` of interactions
    are test, the ``eval_fraction`` before them eval (rows tied with a cut
    go to the later split; if a cut falls on the earliest time, its ties stay
    in the earlier split).
  ``user_time``: per query, in time order: its latest ``int(n * test_fraction)``
    interactions (at least one when test_fraction > 0) are test and the
    latest ``int(n * (eval_fraction + test_fraction))`` (at least one) are
    held out; a query with one interaction stays in train, and at least one
    row per query stays in train.
  ``hash``: a seeded hash of each row's content (and, for repeated identical
    rows, of which repeat it is) picks the split: appending rows moves no old row.
  ``auto``: ``time`` when ``data.timestamp`` is set, else ``hash``.
"""
from __future__ import annotations

import hashlib
import json
from typing import Dict, List, Tuple

from pipelines.config import Config

SPLITS = ("train", "eval", "test")


def split_method(cfg: Config) -> str:
    method = cfg.data.split.method
    if method == "auto":
        return "time" if cfg.data.timestamp else "hash"
    return method


def time_cut(times: List[float], fraction: float) -> Tuple[float, List[bool]]:
    """``(cut, later)``: rows at or after the ``1 - fraction`` time quantile."""
    ordered = sorted(times)
    cut = ordered[min(len(ordered) - 1, int(len(ordered) * (1.0 - fraction)))]
    later = [t >= cut for t in times]
    if all(later):  # the cut fell on the earliest time: ties
        later = [t > cut for t in times]
    return cut, later


def user_time_split(rows: List[list], query_position: int, times: List[float],
                    fraction: float, at_least_one: bool = True) -> List[bool]:
    """Per query, marks its latest ``int(n * fraction)`` interactions.

    With ``at_least_one``, a query with n >= 2 interactions marks at least
    one; at most n - 1 are marked. Ordered by time, then by row.
    """
    by_query: Dict[str, List[int]] = {}
    for i, row in enumerate(rows):
        by_query.setdefault(row[query_position], []).append(i)
    marked = [False] * len(rows)
    for indices in by_query.values():
        n = len(indices)
        if n < 2:
            continue
        held = min(n - 1, max(1 if at_least_one else 0, int(n * fraction)))
        for i in sorted(indices, key=lambda j: (times[j], j))[n - held:]:
            marked[i] = True
    return marked


def assign_splits(cfg: Config, rows: List[list], query_position: int,
                  times: List[float]) -> Tuple[List[str], dict]:
    """``(labels, info)``: 'train', 'eval' or 'test' per row, and report entries."""
    split = cfg.data.split
    method = split_method(cfg)
    held_fraction = split.eval_fraction + split.test_fraction
    info: dict = {"split_method": method, "eval_fraction": split.eval_fraction}
    if split.test_fraction > 0:
        info["test_fraction"] = split.test_fraction
    if method == "time":
        cut, held = time_cut(times, held_fraction)
        test = [False] * len(rows)
        info["time_cut"] = cut
        if split.test_fraction > 0:
            info["test_cut"], test = time_cut(times, split.test_fraction)
    elif method == "user_time":
        held = user_time_split(rows, query_position, times, held_fraction)
        test = (user_time_split(rows, query_position, times, split.test_fraction)
                if split.test_fraction > 0 else [False] * len(rows))
    else:
        salt, seen = str(split.seed), {}
        held, test = [], []
        for row in rows:
            content = json.dumps(row)
            seen[content] = seen.get(content, 0) + 1
            digest = hashlib.sha256(f"{salt}:{seen[content]}:{content}".encode()).hexdigest()
            u = int(digest[:8], 16) / 0x100000000
            held.append(u < held_fraction)
            test.append(split.eval_fraction <= u < held_fraction)
    labels = ["test" if t else "eval" if h else "train" for h, t in zip(held, test)]
    return labels, info
