"""Property-based tests: any valid config yields working modules; any invalid one is named.

Column names are arbitrary unicode (quotes, braces, backslashes, newlines...),
feature names arbitrary identifiers that aren't keywords.
"""
import copy
import dataclasses
import keyword
import re

import pyflakes.api
import pyflakes.reporter
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.build import codegen
from pipelines.config.schema import Config, ConfigError, VertexConfig
from pipelines.validate import validate
from trainer.serving_names import RESERVED_INPUTS

NAMES = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,12}", fullmatch=True).filter(
    lambda n: not keyword.iskeyword(n) and not keyword.issoftkeyword(n)
    and n not in RESERVED_INPUTS  # the serving signatures' names
    and not re.search(r"_\d+\Z", n))  # a cross's inputs are named <name>_0, <name>_1...
COLUMNS = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=12).filter(
    lambda c: not c.startswith("__twotower"))


@st.composite
def features(draw, tower, names, columns):
    kinds = ["categorical", "multi_categorical", "numeric", "text", "cross"]
    kinds += ["timestamp", "history"] if tower == "query_tower" else []
    kind = draw(st.sampled_from(kinds))
    feature = {"name": draw(names), "kind": kind}
    if kind == "cross":
        feature["columns"] = draw(st.lists(st.sampled_from(columns), min_size=2, max_size=3,
                                           unique=True))
        feature["hash_buckets"] = draw(st.integers(2, 5000))
    elif kind != "history":
        feature["column"] = draw(st.sampled_from(columns))
    if kind == "numeric":
        feature["transform"] = draw(st.sampled_from(["zscore", "minmax", "log", "bucketize"]))
    if kind == "timestamp":
        feature["transform"] = draw(st.sampled_from(["cyclical", "bucketize"]))
    if kind in ("multi_categorical", "text"):
        feature["max_length"] = draw(st.integers(1, 32))
        feature["max_vocab_size"] = draw(st.none() | st.integers(1, 10_000))
    if kind == "multi_categorical":
        feature["separator"] = draw(COLUMNS)
    if kind in ("categorical",) and draw(st.booleans()):
        feature["default"] = draw(COLUMNS)
    return feature


@st.composite
def valid_configs(draw):
    ids = draw(st.lists(COLUMNS, min_size=2, max_size=2, unique=True))
    query_cols = draw(st.lists(COLUMNS.filter(lambda c: c not in ids), min_size=2, max_size=4,
                               unique=True))
    cand_cols = draw(st.lists(COLUMNS.filter(lambda c: c not in ids + query_cols), min_size=2,
                              max_size=4, unique=True))
    names = draw(st.lists(NAMES, min_size=8, max_size=8, unique=True))
    name_iter = iter(names)
    query = [{"name": next(name_iter), "column": ids[0], "kind": "id"}]
    candidate = [{"name": next(name_iter), "column": ids[1], "kind": "id"}]
    read_as = {}  # column -> "number" or "string": one column has one type
    for tower, columns, out in (("query_tower", query_cols, query),
                                ("candidate_tower", cand_cols, candidate)):
        for _ in range(draw(st.integers(0, 3))):
            feature = draw(features(tower, st.just(next(name_iter)), columns))
            if feature["kind"] == "history" and any(f["kind"] == "history" for f in out):
                continue
            if feature["kind"] not in ("cross", "history"):
                kind = "number" if feature["kind"] in ("numeric", "timestamp") else "string"
                if read_as.setdefault(feature["column"], kind) != kind:
                    continue
            signature = [(f.get("column"), f.get("columns"), f["kind"], f.get("transform"),
                          f.get("max_length")) for f in out]
            if (feature.get("column"), feature.get("columns"), feature["kind"],
                    feature.get("transform"), feature.get("max_length")) not in signature:
                out.append(feature)
    data = {"path": "x.csv", "query_id": ids[0], "candidate_id": ids[1]}
    if any(f["kind"] == "history" for f in query):  # a history needs a timestamp
        data["timestamp"] = draw(COLUMNS.filter(lambda c: c not in ids + query_cols + cand_cols))
    return {
        "data": data,
        "query_tower": {"features": query, "layers": draw(st.lists(st.integers(1, 64),
                                                                    max_size=3)),
                        "norm": draw(st.sampled_from(["none", "batch", "layer"]))},
        "candidate_tower": {"features": candidate, "dropout": draw(st.sampled_from([0.0, 0.3]))},
        "model": {"l2_normalize": draw(st.booleans()),
                  "temperature": draw(st.none() | st.floats(0.01, 10.0))},
        "training": {"optimizer": draw(st.sampled_from(["adam", "adagrad", "sgd"])),
                     "learning_rate": draw(st.floats(1e-5, 0.01)),
                     "clipping": draw(st.sampled_from(["global_norm", "norm", "value", "none"]))},
    }


def flakes(text):
    class Collect(pyflakes.reporter.Reporter):
        def __init__(self):
            self.messages = []

        def unexpectedError(self, filename, msg):
            self.messages.append(msg)

        def syntaxError(self, filename, msg, lineno, offset, text):
            self.messages.append(msg)

        def flake(self, message):
            self.messages.append(str(message))

    reporter = Collect()
    pyflakes.api.check(text, "generated.py", reporter)
    return reporter.messages


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(valid_configs())
def test_any_valid_config_yields_modules_that_import_and_freeze_it(raw):
    cfg = Config.from_dict(raw)
    validate(cfg, check_data=False)
    for kind, text, spec in (("transform", codegen.transform_module(cfg),
                              codegen.transform_spec(cfg)),
                             ("trainer", codegen.trainer_module(cfg), codegen.frozen_spec(cfg))):
        assert flakes(text) == []
        namespace = {"__name__": "generated"}
        exec(compile(text, "generated.py", "exec"), namespace)
        assert namespace["SPEC"] == spec
        assert "vertex" not in namespace["SPEC"]
        if kind == "transform":  # only what the Transform reads
            assert set(spec) == {"data", "query_tower", "candidate_tower"}
            continue
        # the config survives the trip through code: what applies to each kind, all but the
        # section the runtime never reads
        assert Config.from_dict(namespace["SPEC"]).to_dict() == dict(
            cfg.to_dict(), vertex=dataclasses.asdict(VertexConfig()))
    assert codegen.trainer_module(Config.from_dict(copy.deepcopy(raw))) == text


MUTATIONS = [  # (mutation, the key that must be named)
    (lambda r: r["query_tower"]["features"][0].update(kind="image"), "query_tower.features.0.kind"),
    (lambda r: r["query_tower"]["features"][0].update(name="has space"),
     "query_tower.features.0.name"),
    (lambda r: r["query_tower"]["features"][0].update(name="lambda"),
     "query_tower.features.0.name"),
    (lambda r: r["candidate_tower"]["features"][0].update(embedding_dim=0),
     "candidate_tower.features.0.embedding_dim"),
    (lambda r: r["candidate_tower"]["features"][0].update(embedding_dim="8"),
     "candidate_tower.features.0.embedding_dim"),
    (lambda r: r["candidate_tower"]["features"][0].update(colour="red"),
     "candidate_tower.features.0.colour"),
    (lambda r: r["candidate_tower"]["features"][0].update(
        name=r["query_tower"]["features"][0]["name"]), "candidate_tower.features.0.name"),
    (lambda r: r["training"].update(learning_rate=-1.0), "training.learning_rate"),
    (lambda r: r["training"].update(batch_size=1), "training.batch_size"),
    (lambda r: r["model"].update(top_k=[]), "model.top_k"),
    (lambda r: r["query_tower"].update(layers=[0]), "query_tower.layers.0"),
    (lambda r: r["query_tower"].update(norm="group"), "query_tower.norm"),
    (lambda r: r["data"].pop("candidate_id"), "data.candidate_id"),
    (lambda r: r["query_tower"]["features"].append(
        {"name": "zz_leak", "column": r["data"]["candidate_id"], "kind": "categorical"}),
     "query_tower.features.{last}.column"),
]


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(valid_configs(), st.sampled_from(MUTATIONS))
def test_any_invalid_config_raises_naming_the_key(raw, mutation):
    mutate, key = mutation
    mutate(raw)
    key = key.replace("{last}", str(len(raw["query_tower"]["features"]) - 1))
    with pytest.raises(ConfigError) as exc:
        validate(Config.from_dict(raw), check_data=False)
    assert key in [k for k, _ in exc.value.problems]
