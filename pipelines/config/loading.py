"""Reading a config: hardened YAML/JSON loading and ``--set`` overrides.

:func:`read_raw` reads a file into a mapping (YAML with dates kept as text,
duplicate keys and alias bombs refused; JSON with duplicate keys refused);
:func:`apply_overrides` applies ``key.path=value`` items to it. Parsing the
mapping into the typed config is :mod:`pipelines.config.schema`'s.
"""
from __future__ import annotations

import json
import os
from typing import Any

import yaml

from pipelines.config.parse import ConfigError
from transform.kinds import KINDS, reads_history
from transform.kinds.base import shared_key
from transform.naming import CANDIDATE_KEY

# The demo's config (`twotower demo` runs it; its data paths are where that command writes
# the synthetic data, relative to the working directory).
DEMO_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "examples", "b2b_demo.yaml")


def apply_overrides(raw: dict, overrides) -> dict:
    """Applies ``key.path=value`` overrides to a raw config mapping, in place.

    The value is read as YAML, so ``0.01`` is a number, ``true`` a bool,
    ``[64, 32]`` a list and ``abc`` a string. List items are addressed by
    index: ``query_tower.features.0.embedding_dim=16``; the index one past the
    end appends: ``query_tower.features.3={name: x, column: x, kind: categorical}``.
    """
    for item in overrides:
        if "=" not in item:
            raise ConfigError([("--set", f"expected KEY=VALUE, got {item!r}")])
        dotted, text = item.split("=", 1)
        keys = dotted.strip().split(".")
        if not all(keys):
            raise ConfigError([("--set", f"malformed key {dotted!r}")])
        try:
            value = load_yaml(text) if text.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError([(dotted, f"cannot read value {text!r}: {yaml_problem(exc)}")]) \
                from None
        node: Any = raw
        for depth, key in enumerate(keys[:-1]):
            here = ".".join(keys[: depth + 1])
            if isinstance(node, list):
                if not key.isdigit() or int(key) >= len(node):
                    raise ConfigError([(here, f"no list item {key!r} (the list has {len(node)})")])
                node = node[int(key)]
            elif isinstance(node, dict):
                node = node.setdefault(key, {})
            else:
                raise ConfigError([(here, "is not a mapping or a list")])
        last = keys[-1]
        if isinstance(node, list):
            if not last.isdigit() or int(last) > len(node):
                raise ConfigError([(dotted, f"no list item {last!r} (the list has {len(node)}; "
                                    f"index {len(node)} appends)")])
            if int(last) == len(node):
                node.append(value)
            else:
                node[int(last)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError([(dotted, "its parent is not a mapping or a list")])
    return raw


MAX_VALUES = 100_000  # a config is a few hundred values; more is a mistake or an attack


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` with three guards: dates stay text, a key may appear once per
    mapping, and aliases may not expand the config past :data:`MAX_VALUES` values.

    PyYAML turns an unquoted ``2024-03-01`` into a date (and raises a bare
    ValueError on ``2024-02-30``); the config's dates are strings validation
    reads. It keeps the last of two equal keys silently, and an alias bomb (a
    few lines whose aliases nest into billions of values) would make walking
    the config take forever. Tags that construct objects (``!!python/object``)
    are refused by the safe loader itself.

    Raises:
      yaml.YAMLError: not YAML, a duplicate key, a tag, or too many values.
    """
    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first at line "
                        f"{seen[key].line + 1})", key_node.start_mark)
                seen[key] = key_node.start_mark
            return super().construct_mapping(node, deep=deep)

    Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers
                if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    value = yaml.load(text, Loader=Loader)  # noqa: S506 (a SafeLoader)
    count_values(value, lambda: yaml.YAMLError(
        f"the config expands to more than {MAX_VALUES:,} values (nested YAML aliases?)"))
    return value


def yaml_problem(exc) -> str:
    """A YAML error in one line: what, and the line it is on."""
    mark = getattr(exc, "problem_mark", None)
    what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{what} (line {mark.line + 1})" if mark is not None else what


def count_values(value: Any, error) -> int:
    """Counts values, shared ones each time they are reached, up to :data:`MAX_VALUES`."""
    stack, count = [value], 0
    while stack:
        item = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise error()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def read_raw(path: str) -> dict:
    """Reads a YAML or JSON config file into a mapping (ConfigError naming ``--config`` if
    it can't be read)."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError([("--config", f"{path}: cannot read: {exc.strerror}")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([("--config", f"{path}: not UTF-8 text ({exc.reason}); save it "
                            "as UTF-8")]) from None
    if path.endswith(".json"):
        def unique(pairs):
            keys = [k for k, _ in pairs]
            twice = sorted({k for k in keys if keys.count(k) > 1})
            if twice:
                raise ValueError(f"duplicate key(s) {twice} in one object")
            return dict(pairs)

        try:
            raw = json.loads(text, object_pairs_hook=unique)
        except ValueError as exc:  # JSONDecodeError is a ValueError
            raise ConfigError([("", f"{path}: not valid JSON: {exc}")]) from None
    else:
        try:
            raw = load_yaml(text)
        except yaml.YAMLError as exc:
            raise ConfigError([("", f"{path}: not valid YAML: {yaml_problem(exc)}")]) from None
    if not isinstance(raw, dict):
        raise ConfigError([("", f"{path}: the top level must be a mapping")])
    return raw


# The purchase-log choices, as data: applied to a config with ``data.timestamp`` and a global
# time split (``data.split.method`` auto, time, days or dates: a purchase log judged on its
# future) that does not set the key itself, even to null. Each was chosen on eval windows only
# (``twotower backtest``; BENCHMARKS.md, "Ta-Feng rolling windows"). A per-user split
# (user_time: ratings, users active at different times) gets none of them.
PURCHASE_LOG_DEFAULTS = (
    ("model.demand_prior", {},
     "purchase logs reward what sells now: a learned prior from each candidate's demand in the "
     "1-28 days before (Ta-Feng eval windows: 0.0757 vs popularity's 0.0449 recall@20)"),
    ("training.early_stopping_patience", 2,
     "purchase logs overfit in 1-3 epochs (Ta-Feng eval recall@20 0.073, 0.069, 0.069, "
     "0.057): the best epoch is kept, and the refit trains that many"),
    ("training.epochs", 10, "an upper bound once early stopping chooses the epoch count"),
)
GLOBAL_TIME_SPLITS = ("auto", "time", "days", "dates")


PURCHASE_LOG_WHEN = "for a purchase log (data.timestamp and a time split)"
PURCHASE_LOG_OTHERWISE = "set the key to choose otherwise"

# A query tower without a history feature, on a log with data.timestamp, gets one: the query's
# newest candidates, pooled from the candidate id embeddings (the kind's defaults: 20 long,
# recency pooling). Chosen on eval splits only (BENCHMARKS.md, "A history by default").
HISTORY_DEFAULT = (
    "query_tower.features", {"name": "history", "kind": "history"},
    "the query's newest candidates carry its taste: on the eval split of the README's minimal "
    "config, MovieLens recall@10 0.104 with it against 0.067 without (EASE 0.094), Ta-Feng "
    "window 1 even (0.0448 against 0.0453; recall@100 0.160 against 0.158)",
    "with data.timestamp and no history feature listed",
    "set query_tower.auto_history: false for none")


def history_default(raw: Any) -> list:
    """Adds :data:`HISTORY_DEFAULT`'s feature to ``raw``'s query tower (in place) where it
    applies: ``data.timestamp`` set, no ``history`` feature listed, ``auto_history`` not false.
    Its name is the first of history, history_2, ... no feature uses, its ``embedding_dim``
    the candidate id feature's when that sets one (they share a table). Returns
    ``[(key, value, why, when, otherwise)]`` (empty where it does not apply)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("data"), dict):
        return []
    query, candidate = raw.get("query_tower"), raw.get("candidate_tower")
    if not raw["data"].get("timestamp") or not isinstance(query, dict) \
            or query.get("auto_history", True) is not True \
            or not isinstance(query.get("features"), list):
        return []
    features = [f for f in query["features"] if isinstance(f, dict)]
    if not features or len(features) != len(query["features"]) or any(
            reads_history(f) for f in features):
        return []  # an empty or malformed list is validation's to report, as written
    names = {f.get("name") for f in features}
    if isinstance(candidate, dict) and isinstance(candidate.get("features"), list):
        names |= {f.get("name") for f in candidate["features"] if isinstance(f, dict)}
    key, feature, why, when, otherwise = HISTORY_DEFAULT
    feature = dict(feature, name=next(n for n in ["history"] + [f"history_{i}" for i in
                                                                range(2, 100)]
                                      if n not in names))
    data = raw["data"]
    ids = [f for f in (candidate or {}).get("features") or [] if isinstance(f, dict)
           and f.get("kind") in KINDS and isinstance(f.get("column"), str)
           and isinstance(data.get("query_id"), str) and isinstance(data.get("candidate_id"), str)
           and shared_key(f, data) == CANDIDATE_KEY]
    if ids and ids[0].get("embedding_dim") is not None:
        feature["embedding_dim"] = ids[0]["embedding_dim"]
    query["features"].append(feature)
    return [(key, feature, why, when, otherwise)]


def purchase_log_defaults(raw: Any) -> list:
    """Fills :data:`PURCHASE_LOG_DEFAULTS` into ``raw`` (in place) where they apply; returns
    ``[(key, value, why, when, otherwise)]`` of those it filled (empty for any other config)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("data"), dict):
        return []
    data = raw["data"]
    split = data.get("split") if isinstance(data.get("split"), dict) else {}
    if not data.get("timestamp") or split.get("method", "auto") not in GLOBAL_TIME_SPLITS:
        return []
    applied = []
    model = raw.get("model") if isinstance(raw.get("model"), dict) else {}
    for dotted, value, why in PURCHASE_LOG_DEFAULTS:
        if dotted == "model.demand_prior" and model.get("softmax") == "in_batch":
            continue  # the prior needs catalog negatives: in_batch has none (trainer/build.py)
        *parents, last = dotted.split(".")
        node = raw
        for key in parents:
            node = node.setdefault(key, {}) if isinstance(node, dict) else None
        if isinstance(node, dict) and last not in node:
            node[last] = json.loads(json.dumps(value))  # a fresh copy
            applied.append((dotted, value, why, PURCHASE_LOG_WHEN, PURCHASE_LOG_OTHERWISE))
    return applied

