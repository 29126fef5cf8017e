"""The generated Trainer module runs, for every feature kind and model option.

One Transform run (every feature kind, hostile column names) feeds a few
training steps of the generated ``run_fn`` per option; each must finish,
export a SavedModel that answers, and write ``training_metrics.json``.
"""
import json
import os
import random
import types

import numpy as np
import pytest
import tensorflow as tf

from pipelines.build import codegen
from pipelines.config.schema import Config, apply_overrides
from tft_helpers import load_module, run_preprocessing
from transform import naming

QUOTED = 'seg "ment"'

BASE = {
    "data": {"path": "d.csv", "query_id": "user id", "candidate_id": "item", "timestamp": "ts"},
    "query_tower": {"features": [
        {"name": "user", "column": "user id", "kind": "id", "embedding_dim": 8},
        {"name": "segment", "column": QUOTED, "kind": "categorical", "embedding_dim": 4},
        {"name": "spend", "column": "spend", "kind": "numeric", "transform": "log"},
        {"name": "spend_bucket", "column": "spend", "kind": "numeric",
         "transform": "bucketize", "num_buckets": 3, "embedding_dim": 4},
        {"name": "when", "column": "ts", "kind": "timestamp"},
        {"name": "when_bucket", "column": "ts", "kind": "timestamp", "transform": "bucketize",
         "num_buckets": 3, "embedding_dim": 4},
        {"name": "seg_day", "kind": "cross", "columns": [QUOTED, "weekday"],
         "hash_buckets": 20, "embedding_dim": 4},
        {"name": "recent", "kind": "history", "max_length": 4, "embedding_dim": 8}],
        "layers": [16]},
    "candidate_tower": {"features": [
        {"name": "item", "column": "item", "kind": "id", "embedding_dim": 8},
        {"name": "genres", "column": "genres", "kind": "multi_categorical", "max_length": 3,
         "embedding_dim": 4},
        {"name": "title", "column": "title", "kind": "text", "max_length": 4,
         "embedding_dim": 4},
        {"name": "price", "column": "price", "kind": "numeric", "transform": "minmax"}],
        "layers": [16]},
    # the plain model: no demand prior, no early stopping (the purchase-log defaults a time
    # split would fill in are tested in tests/test_config.py)
    "model": {"embedding_dim": 8, "output_dim": 8, "top_k": [1, 5], "demand_prior": None},
    "training": {"epochs": 1, "batch_size": 8, "early_stopping_patience": None},
    "pipeline": {"serving_k": 3},
}

OPTIONS = [
    [],
    ["query_tower.norm=batch", "candidate_tower.norm=layer", "query_tower.dropout=0.2",
     "candidate_tower.l2=0.001", "model.softmax=in_batch"],
    ["model.l2_normalize=false", "model.temperature=null", "model.logq_correction=false",
     "model.remove_accidental_hits=false"],
    ["training.optimizer=adagrad", "training.learning_rate=0.05", "training.clipping=norm",
     "model.softmax=full_catalog"],
    ["training.optimizer=sgd", "training.clipping=value", "training.clip_value=0.5"],
    ["training.clipping=none", "query_tower.layers=[]", "model.activation=gelu"],
    ["model.candidate_bias=true", "query_tower.features.7.pooling=mean",
     "training.epochs=2", "training.early_stopping_patience=1",
     "training.early_stopping_metric=ndcg_at_5"],
    ["model.candidate_bias=true", "model.softmax=in_batch"],
    ["model.softmax=sampled", "model.sampled_negatives=3"],
    ["model.demand_prior={windows: [1, 2]}", "query_tower.features.7.pooling=attention"],
    ["model.demand_prior={windows: [1], all_time: false}", "model.softmax=sampled",
     "model.sampled_negatives=3", "model.candidate_bias=true"],
]


def interactions(n=48, seed=5):
    rng = random.Random(seed)
    items = {f"i{k}": (rng.choice(["Action|Comedy", "Drama", "Comedy|Drama|War"]),
                       rng.choice(["The Big Lebowski", "Amélie", "Heat", "Up"]),
                       round(rng.uniform(1, 50), 2)) for k in range(7)}
    rows, history = [], {}
    for t in range(n):
        user = f"u{rng.randrange(6)}"
        item = rng.choice(sorted(items))
        past = history.setdefault(user, [])
        rows.append({"user id": user, QUOTED: "smb" if user < "u3" else "ent",
                     "spend": rng.uniform(0, 100), "ts": 1_700_000_000 + 3600 * t,
                     "weekday": str(t % 7), "item": item, "genres": items[item][0],
                     "title": items[item][1], "price": items[item][2],
                     naming.history_column("recent"): "|".join(reversed(past[-4:]))})
        past.append(item)
    return rows


def write_examples(rows, feature_spec, path):
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for row in rows:
            feature = {}
            for key, spec in feature_spec.items():
                value = np.asarray(row[key]).reshape(-1)
                if spec.dtype == tf.int64:
                    feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=value))
                elif spec.dtype == tf.string:
                    feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=value))
                else:
                    feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=value))
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature))
                         .SerializeToString())


QUERY_COLUMNS = ("user id", QUOTED, "spend", "ts", "weekday")
CANDIDATE_COLUMNS = ("item", "genres", "title", "price")


def splits_of(raw, train_rows=36):
    """Catalog rows (one per item) and eval snapshots (each eval user's latest train row,
    with its train items newest first), as the data preparation writes them."""
    catalog = {}
    for row in raw:
        catalog.setdefault(row["item"], {c: row[c] for c in CANDIDATE_COLUMNS})
    snapshots = {}
    for row in raw[train_rows:]:
        user = row["user id"]
        train = [r for r in raw[:train_rows] if r["user id"] == user]
        if train and user not in snapshots:
            state = {c: train[-1][c] for c in QUERY_COLUMNS}
            state[naming.history_column("recent")] = "|".join(r["item"] for r in train[::-1][:4])
            snapshots[user] = state
    return [catalog[k] for k in sorted(catalog)], [snapshots[k] for k in sorted(snapshots)]


def as_example(row, spec):
    example = {}
    for key in spec:
        value = row.get(key)
        if value is None or value == "":
            example[key] = []
        elif isinstance(value, str):
            example[key] = [value.encode()]
        else:
            example[key] = [value]
    return example


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trainer_run")
    cfg = Config.from_dict(BASE)
    path = tmp / "transform_module.py"
    path.write_text(codegen.transform_module(cfg))
    module = load_module(str(path), "generated_transform_for_trainer_test")
    raw = interactions()
    # the curated schema's specs: every column optional, ids strings
    spec = {k: tf.io.VarLenFeature(tf.string) for k in raw[0]}
    spec.update({"spend": tf.io.VarLenFeature(tf.float32),
                 "price": tf.io.VarLenFeature(tf.float32),
                 "ts": tf.io.VarLenFeature(tf.int64)})
    catalog, snapshots = splits_of(raw)
    out, (catalog_out, snapshot_out), output = run_preprocessing(
        module.preprocessing_fn, [as_example(r, spec) for r in raw], spec, str(tmp),
        extra=[[as_example(r, spec) for r in catalog], [as_example(r, spec) for r in snapshots]])
    feature_spec = output.transformed_feature_spec()
    for split, rows in (("train", out[:36]), ("eval", out[36:]), ("catalog", catalog_out),
                        ("eval_queries", snapshot_out)):
        write_examples(rows, feature_spec, str(tmp / f"Split-{split}" / "part-0.gz"))
    return tmp, output


def fn_args_for(tmp, tmp_path):
    return types.SimpleNamespace(
        train_files=[str(tmp / "Split-train" / "*")], eval_files=[str(tmp / "Split-eval" / "*")],
        transform_graph_path=str(tmp / "transform_output"), serving_model_dir=str(tmp_path / "m"),
        model_run_dir=str(tmp_path / "run"), train_steps=3)


@pytest.mark.parametrize("overrides", OPTIONS, ids=lambda o: ",".join(o) or "defaults")
def test_generated_run_fn_trains_a_few_steps(transformed, tmp_path, overrides):
    tmp, output = transformed
    cfg = Config.from_dict(apply_overrides(json.loads(json.dumps(BASE)), overrides))
    path = tmp_path / "trainer_module.py"
    path.write_text(codegen.trainer_module(cfg))
    module = load_module(str(path), f"generated_trainer_{abs(hash(tuple(overrides)))}")
    record = module.run_fn(fn_args_for(tmp, tmp_path))
    assert record["status"] == "completed"
    softmax = [o.split("=")[1] for o in overrides if o.startswith("model.softmax=")]
    assert record["softmax"] == (softmax[0] if softmax else "full_catalog")  # auto: 7 fit
    with open(tmp_path / "run" / "training_metrics.json", encoding="utf-8") as handle:
        assert json.load(handle)["status"] == "completed"
    served = tf.saved_model.load(str(tmp_path / "m"))
    with open(tmp_path / "m" / "assets.extra" / "serving_inputs.json", encoding="utf-8") as f:
        described = json.load(f)
    assert [d["input"] for d in described] == [
        "query_id", "segment", "spend", "when", "seg_day_1", "recent"]
    values = {"query_id": [b"u1"], "segment": [b"smb"], "spend": [12.5],
              "when": [1_700_003_600], "seg_day_1": [b"3"], "recent": [b"i1|i2"]}
    assert [d["default"] for d in described] == [None] * 6
    inputs = {d["input"]: tf.constant(values[d["input"]], dtype=d["dtype"]) for d in described}
    answer = served.signatures["serving_default"](**inputs)
    ids = [v.decode() for v in answer["candidate_ids"].numpy()[0]]
    assert len(ids) == 3 and len(set(ids)) == 3 and all(i.startswith("i") for i in ids)
    # the signatures' other arguments are the names validate reserves (one list)
    from trainer.serving_names import RESERVED_INPUTS, SIGNATURE_ARGUMENTS

    extra = {name: set(served.signatures[name].structured_input_signature[1]) - set(inputs)
             for name in ("serving_default", "query_embedding", "recommend", "buy_again")}
    assert extra == {"serving_default": set(), "query_embedding": set(),
                     "recommend": {"exclude", "k"}, "buy_again": {"had", "k"}}
    assert set().union(*extra.values()) == set(SIGNATURE_ARGUMENTS)
    assert described[0]["input"] in RESERVED_INPUTS


def test_scann_on_a_tiny_catalog_fails_before_training(transformed, tmp_path):
    tmp, _ = transformed
    cfg = Config.from_dict(apply_overrides(json.loads(json.dumps(BASE)),
                                           ["pipeline.serving_index=scann"]))
    path = tmp_path / "trainer_module.py"
    path.write_text(codegen.trainer_module(cfg))
    module = load_module(str(path), "generated_trainer_scann_tiny")
    with pytest.raises(ValueError, match="scann needs at least 16 candidates, the catalog has 7"):
        module.run_fn(fn_args_for(tmp, tmp_path))
    with open(tmp_path / "run" / "training_metrics.json", encoding="utf-8") as handle:
        record = json.load(handle)
    assert record["status"] == "failed" and record["epochs"] == []


def test_the_refit_fits_train_and_eval_for_the_chosen_epochs_and_counts_demand_honestly(
        transformed, tmp_path):
    """Selection: fits on the 36 train rows, chooses on eval, scores eval with a demand prior
    counted over train only. Refit (the RefitTrainer's run_fn): fits train + eval (48 rows)
    for the chosen epochs; the served prior counts all 48. Each is one run_fn call, as TFX
    makes them."""
    tmp, _ = transformed
    cfg = Config.from_dict(apply_overrides(json.loads(json.dumps(BASE)), [
        "model.demand_prior={windows: [1]}", "training.epochs=3",
        "training.early_stopping_patience=3"]))
    path = tmp_path / "trainer_module.py"
    path.write_text(codegen.trainer_module(cfg))
    module = load_module(str(path), "generated_trainer_refit")
    args = fn_args_for(tmp, tmp_path / "selection")
    args.train_steps = None
    selected = module.run_fn(args)
    assert selected["role"] == "selection" and selected["train_rows"] == 36
    assert selected["evaluation"]["demand_prior"]["rows"] == 36  # eval scored without eval rows
    assert selected["demand_prior"]["rows"] == 48  # the served counts: every row read
    # 1_700_000_000 + 3600 * t: t = 0 is on UTC day 19675 (1_700_000_000 // 86400), the last
    # train row (t = 35, 1_700_126_000) on day 19677: the evaluation counts as of day 19678
    assert selected["evaluation"]["demand_prior"]["as_of"] == 19678 * 86400
    best = selected["best_epoch"]
    with open(tmp_path / "selection" / "m" / "assets.extra" / "selection.json") as handle:
        assert json.load(handle)["epochs"] == best

    refit = fn_args_for(tmp, tmp_path / "refit")
    refit.train_files = [str(tmp / "Split-train" / "*"), str(tmp / "Split-eval" / "*")]
    refit.train_steps = None
    refit.base_model = str(tmp_path / "selection" / "m")
    refit.custom_config = {naming.REFIT_KEY: True}
    record = module.run_fn(refit)
    assert record["role"] == "refit" and record["train_rows"] == 48
    assert len(record["epochs"]) == best == record["refit"]["epochs"]
    assert all(not e["eval"] for e in record["epochs"])  # nothing left to evaluate on
    assert record["evaluation"] == json.loads(json.dumps(selected["evaluation"]))
    assert record["demand_prior"]["rows"] == 48
    served = tf.saved_model.load(str(tmp_path / "refit" / "m"))
    assert served.candidate_embeddings.shape == (7, 9)  # output_dim 8 + the prior's offset

    refit.base_model = str(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="the refit needs the selection Trainer's model"):
        module.run_fn(refit)


def test_a_refit_without_a_candidate_table_adds_the_candidates_its_catalog_split_lacks(
        transformed, tmp_path):
    """Without ``data.candidates`` the catalog split is train's candidates, so a refit (fitting
    train + eval) takes those first seen in eval from their rows: the catalog it builds equals
    the one that lists them all; the selection model refuses such rows, as before."""
    import shutil

    from trainer.inputs import load_inputs, split_files

    tmp, output = transformed
    feature_spec = output.transformed_feature_spec()
    catalog = [r for r in tf.data.TFRecordDataset(
        str(tmp / "Split-catalog" / "part-0.gz"), compression_type="GZIP").as_numpy_iterator()]
    lacking = tmp_path / "lacking"  # the same splits, the catalog without its first item
    for split in ("train", "eval", "eval_queries"):
        shutil.copytree(tmp / f"Split-{split}", lacking / f"Split-{split}")
    (lacking / "Split-catalog").mkdir()
    with tf.io.TFRecordWriter(str(lacking / "Split-catalog" / "part-0.gz"), "GZIP") as writer:
        for record in catalog[1:]:
            writer.write(record)
    shutil.copytree(tmp / "transform_output", lacking / "transform_output")
    cfg = Config.from_dict(json.loads(json.dumps(BASE)))
    spec = json.loads(cfg.to_json())
    refit_files = {"train": [str(lacking / "Split-train" / "*"), str(lacking / "Split-eval" / "*")],
                   "eval": [str(lacking / "Split-eval" / "*")]}
    grown = load_inputs(spec, output, split_files(spec, refit_files["train"],
                                                  refit_files["eval"], refit=True), refit=True)
    whole = load_inputs(spec, output, split_files(spec, [str(tmp / "Split-train" / "*")],
                                                  [str(tmp / "Split-eval" / "*")]))
    assert grown["catalog_from_rows"] == 1 and whole["catalog_from_rows"] == 0
    assert sorted(grown["catalog"]) == sorted(whole["catalog"])
    for key, value in whole["catalog"].items():
        np.testing.assert_array_equal(grown["catalog"][key], value, err_msg=key)
    assert len(feature_spec) > len(grown["catalog"])  # the candidate tower's keys only
    with pytest.raises(ValueError, match="name candidates outside the catalog"):
        load_inputs(spec, output, split_files(spec, [str(lacking / "Split-train" / "*")],
                                              [str(lacking / "Split-eval" / "*")]))

    path = tmp_path / "trainer_module.py"
    path.write_text(codegen.trainer_module(cfg))
    module = load_module(str(path), "generated_trainer_refit_grown")
    selection = fn_args_for(tmp, tmp_path / "selection")
    module.run_fn(selection)
    refit = fn_args_for(lacking, tmp_path / "refit")
    refit.train_files = refit_files["train"]
    refit.base_model = str(tmp_path / "selection" / "m")
    refit.custom_config = {naming.REFIT_KEY: True}
    record = module.run_fn(refit)
    assert record["role"] == "refit" and record["catalog_from_eval_rows"] == 1
    assert record["candidates"] == 7
    served = tf.saved_model.load(str(tmp_path / "refit" / "m"))
    assert served.candidate_embeddings.shape[0] == 7
