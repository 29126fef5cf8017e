"""Every feature kind together, through the real local pipeline (ExampleGen to Pusher)."""
import importlib
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from e2e_helpers import query_inputs, recommend_cli, run_pipeline
from pipelines.build.builder import COMPONENTS, paths
from pipelines.runners.local import completed_components, results

pytestmark = pytest.mark.e2e

ALL_KINDS = [
    "query_tower.features.3={name: segment_region, kind: cross, "
    "columns: [segment, region], hash_buckets: 64, embedding_dim: 8}",
    "query_tower.features.4={name: when, column: timestamp, kind: timestamp}",
    "query_tower.features.5={name: recent, kind: history, max_length: 10}",
    "query_tower.features.6={name: quantity, column: quantity, kind: numeric, "
    "transform: bucketize, num_buckets: 4, embedding_dim: 4}",
    "candidate_tower.features.3={name: title, column: name, kind: text, max_length: 4, "
    "embedding_dim: 8}",
    "candidate_tower.features.4={name: price_band, column: price, kind: numeric, "
    "transform: bucketize, num_buckets: 5, embedding_dim: 4}",
    "candidate_tower.norm=layer", "query_tower.dropout=0.1", "training.epochs=6",
    "pipeline.serving_index=scann", "data.split.test_fraction=0.1",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return run_pipeline(tmp_path_factory.mktemp("e2e_all"), "e2e-all-kinds", ALL_KINDS)


def test_every_component_completed(run):
    assert completed_components(paths(run["root"])["metadata"], run["name"]) == sorted(COMPONENTS)


def test_the_model_learned_and_beats_popularity(run):
    metrics = results(run["root"])["metrics"]
    assert metrics["status"] == "completed"
    # evaluated on the held-out test split, with eval's figures kept beside it
    assert metrics["evaluation"]["split"] == "test" and metrics["evaluation_eval"]["split"] == "eval"
    assert metrics["evaluation"]["queries"] > 50
    assert metrics["epochs"][-1]["loss"] < metrics["epochs"][0]["loss"]
    evaluation = metrics["evaluation"]
    assert evaluation["model"]["recall_at_10"] > 1.2 * evaluation["popularity"]["recall_at_10"]


def test_serving_takes_every_query_input_and_matches_brute_force(run):
    serving = results(run["root"])["serving_model"]
    with open(os.path.join(serving, "assets.extra", "serving_inputs.json"), encoding="utf-8") as f:
        described = json.load(f)
    assert [(d["input"], d["column"]) for d in described] == [
        ("query_id", "customer_id"), ("segment", "segment"), ("region", "region"),
        ("when", "timestamp"), ("recent", "__twotower_history_recent"),
        ("quantity", "quantity")]
    inputs = query_inputs(run, described, ["C00001", "C00002"])
    cast = {"string": str, "int64": lambda v: int(float(v)), "float32": float}
    tensors = {d["input"]: tf.constant([cast[d["dtype"]](v) for v in inputs[d["input"]]],
                                       dtype=d["dtype"]) for d in described}
    importlib.import_module("scann")  # registers the ScaNN ops serving_default uses
    model = tf.saved_model.load(serving)
    answer = model.signatures["serving_default"](**tensors)
    exact = model.signatures["recommend"](**tensors, exclude=tf.constant([[""], [""]]),
                                          k=tf.constant(10))
    embedding = model.signatures["query_embedding"](**tensors)["embedding"].numpy()
    brute = embedding @ model.candidate_embeddings.numpy().T
    catalog = np.asarray([v.decode() for v in model.candidate_ids.numpy()])
    for row in range(2):
        best = catalog[np.argsort(-brute[row])[:10]].tolist()
        # the recommend signature is exact; serving_default is ScaNN here: approximate
        assert [v.decode() for v in exact["candidate_ids"].numpy()[row]] == best
        approximate = [v.decode() for v in answer["candidate_ids"].numpy()[row]]
        assert len(set(approximate)) == 10 and set(approximate) <= set(catalog)
        assert len(set(approximate) & set(best)) >= 7, (approximate, best)


def test_batch_recommend_builds_history_time_and_numeric_inputs(run, tmp_path):
    """`twotower recommend` on a model with history, timestamp and numeric query inputs."""
    import csv

    from pipelines.recommend import query_histories, serving_values

    recs = recommend_cli(run, tmp_path, ["C00003", "C00001"], 5)
    assert [(r["user_id"], r["rank"]) for r in recs] == [
        (u, str(k)) for u in ("C00003", "C00001") for k in range(1, 6)]

    # the inputs it built: the newest purchases first, the latest row's time and quantity
    cfg = run["config"]
    with open(os.path.join(run["data"], "purchases.csv"), encoding="utf-8") as handle:
        rows = sorted((r for r in csv.DictReader(handle) if r["customer_id"] == "C00001"),
                      key=lambda r: float(r["timestamp"]))
    serving = results(run["root"])["serving_model"]
    with open(os.path.join(serving, "assets.extra", "serving_inputs.json"), encoding="utf-8") as f:
        described = json.load(f)
    seen = query_histories(cfg, cfg.data.path, {"C00001"})
    values = serving_values(cfg, described, "C00001", seen["C00001"])
    newest = [r["product_id"] for r in reversed(rows)][:10]
    assert values["recent"] == "|".join(newest)
    assert values["when"] == int(float(rows[-1]["timestamp"]))
    assert values["quantity"] == float(rows[-1]["quantity"])
    assert not {r["item_id"] for r in recs if r["user_id"] == "C00001"} & {
        r["product_id"] for r in rows}
