"""The serving signatures' input names: one list, read by the signatures and by ``validate``.

``serving_default`` and ``query_embedding`` take one input per raw query column
(:func:`serving_inputs`); ``recommend`` and ``buy_again`` take those plus
:data:`SIGNATURE_ARGUMENTS` (``exclude``, ``had``, ``k``). A caller passes them all as
keyword arguments of one call, so a query input named like one of them (a feature named
``k``) would make a model every request to fails on ("got multiple values for keyword
argument 'k'"); the query id's input is :data:`QUERY_ID_INPUT`. So these names are reserved:
``validate`` refuses a query feature that would take one (:func:`serving_name_problems`),
before anything trains.

No TensorFlow here (``pipelines.validate`` imports it).
"""
from __future__ import annotations

from typing import List, Tuple

from transform.kinds import raw_columns

QUERY_ID_INPUT = "query_id"  # the raw data.query_id column's input
EXCLUDE_INPUT = "exclude"    # recommend: [batch, n] raw candidate ids never to return
HAD_INPUT = "had"            # buy_again: [batch, n] raw candidate ids the query had
K_INPUT = "k"                # recommend, buy_again: int32 scalar, how many to return
SIGNATURE_ARGUMENTS = (EXCLUDE_INPUT, HAD_INPUT, K_INPUT)
RESERVED_INPUTS = (QUERY_ID_INPUT,) + SIGNATURE_ARGUMENTS


def _named_inputs(spec: dict) -> List[Tuple[str, str, int]]:
    """``[(input name, raw column, index of the query feature)]`` (index -1: the query id)."""
    data = spec["data"]
    inputs, columns = [(QUERY_ID_INPUT, data["query_id"], -1)], {data["query_id"]}
    for index, feature in enumerate(spec["query_tower"]["features"]):
        raw = raw_columns(feature)
        for i, column in enumerate(raw):
            if column in columns:
                continue
            name = feature["name"] if len(raw) == 1 else f"{feature['name']}_{i}"
            inputs.append((name, column, index))
            columns.add(column)
    return inputs


def serving_name_problems(spec: dict) -> List[Tuple[str, str]]:
    """``(dotted key, message)`` for each query feature whose serving input would take a
    reserved name (:data:`RESERVED_INPUTS`) or another input's name."""
    problems, taken = [], {}
    for name, _, index in _named_inputs(spec):
        key = f"query_tower.features.{index}.name"
        if index >= 0 and name in RESERVED_INPUTS:
            problems.append((key, f"{spec['query_tower']['features'][index]['name']!r} gives "
                             f"the serving input {name!r}, a name the serving signatures "
                             f"reserve ({', '.join(RESERVED_INPUTS)}): rename the feature "
                             "(its raw column may keep its name: set 'column')"))
        elif name in taken:
            problems.append((key, f"the serving input {name!r} is also another feature's "
                             f"({taken[name]}): rename one of them"))
        taken.setdefault(name, f"query_tower.features.{index}" if index >= 0
                         else "data.query_id")
    return problems


def serving_inputs(spec: dict) -> List[Tuple[str, str]]:
    """``[(input_name, raw_column)]`` the serving signature takes, query id first.

    Inputs are named by feature (``name_0``, ``name_1``... for a cross's
    columns); a history feature takes the query's earlier candidate ids,
    newest first, joined by its separator.

    Raises:
      ValueError: a name is reserved or taken (``validate`` refuses such a config first).
    """
    problems = serving_name_problems(spec)
    if problems:
        raise ValueError(f"{problems[0][0]}: {problems[0][1]}")
    return [(name, column) for name, column, _ in _named_inputs(spec)]
