"""The Vector Search export: the catalog's vectors as JSON lines, ids exactly as written,
restricts from categorical candidate features, and a query-tower SavedModel; searched
exactly with numpy, they give the serving model's own top k."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from pipelines.build import codegen
from pipelines.config.schema import Config, ConfigError, apply_overrides
from pipelines.validate import validate
from test_trainer_run import BASE, fn_args_for, interactions, transformed  # noqa: F401
from tft_helpers import load_module
from trainer.serving import scann_parameters
from trainer.vector_export import read_vectors, write_vectors


def test_ids_are_written_exactly_and_floats_read_back_bit_for_bit(tmp_path):
    ids = ["007", "7", "a b", "é\"x", "0x10"]
    vectors = np.random.default_rng(1).standard_normal((5, 3)).astype(np.float32)
    vectors[1] = [1e-30, -0.0, 3.4e38]
    tags = [[{"namespace": "category", "allow": ["tools"]}], [], [], [], []]
    names = write_vectors(str(tmp_path), ids, vectors, tags, rows_per_file=2)
    assert names == ["embeddings-00000.json", "embeddings-00001.json", "embeddings-00002.json"]
    assert sorted(os.listdir(tmp_path)) == names  # nothing .partial left
    lines = [json.loads(line) for n in names for line in (tmp_path / n).read_text().splitlines()]
    assert [r["id"] for r in lines] == ids
    assert lines[0] == {"id": "007", "embedding": lines[0]["embedding"],
                        "restricts": [{"namespace": "category", "allow": ["tools"]}]}
    assert "restricts" not in lines[1]
    got_ids, got, got_tags = read_vectors(str(tmp_path))
    assert got_ids == ids and got.dtype == np.float32
    assert np.array_equal(got.view(np.uint32), vectors.view(np.uint32))
    assert got_tags == tags


def test_scann_parameters_rule_and_overrides():
    # by hand: sqrt(1e6) = 1000 leaves, min(1000 // 3, 30) searched, max(4 * 10, 250) re-ranked
    assert scann_parameters(1_000_000, 10) == {"num_leaves": 1000, "leaves_to_search": 30,
                                               "reorder": 250}
    assert scann_parameters(1_000_000, 100) == {"num_leaves": 1000, "leaves_to_search": 30,
                                                "reorder": 400}
    # 16 candidates: 4 leaves, 4 // 3 = 1 searched, everything re-ranked
    assert scann_parameters(16, 10) == {"num_leaves": 4, "leaves_to_search": 1, "reorder": 16}
    assert scann_parameters(10_000, 10, 50, 60, 5) == {"num_leaves": 50, "leaves_to_search": 50,
                                                       "reorder": 10}


@pytest.mark.parametrize("override,key", [
    ("pipeline.scann={num_leaves: 10, leaves_to_search: 11}", "pipeline.scann.leaves_to_search"),
    ("pipeline.scann={reorder: 2}", "pipeline.scann.reorder"),
    ("pipeline.scann={num_leaves: 0}", "pipeline.scann.num_leaves"),
])
def test_scann_options_are_validated(override, key):
    cfg = Config.from_dict(apply_overrides(json.loads(json.dumps(BASE)), [override]))
    with pytest.raises(ConfigError) as raised:
        validate(cfg, check_data=False)
    assert key in [k for k, _ in raised.value.problems]


def trained(transformed, tmp_path, overrides):  # noqa: F811
    tmp, _ = transformed
    cfg = Config.from_dict(apply_overrides(json.loads(json.dumps(BASE)), overrides))
    path = tmp_path / "trainer_module.py"
    path.write_text(codegen.trainer_module(cfg))
    module = load_module(str(path), f"generated_trainer_vx_{abs(hash(tuple(overrides)))}")
    record = module.run_fn(fn_args_for(tmp, tmp_path))
    assert record["status"] == "completed"
    return str(tmp_path / "m"), record


def queries(described):
    users = ["u0", "u1", "u2", "u3", "u4", "u5", "nobody"]
    values = {"query_id": users, "segment": ["smb", "ent", "smb", "ent", "", "ent", "smb"],
              "spend": [12.5, 0.0, 99.0, float("nan"), 3.0, 50.0, 1.0],
              "when": [1_700_003_600 + 7200 * i for i in range(7)],
              "seg_day_1": ["3", "0", "6", "", "1", "2", "5"],
              "recent": ["i1|i2", "", "i3", "i0|i4|i5", "i6", "i2", "zz"]}
    return {d["input"]: tf.constant(values[d["input"]], dtype=d["dtype"]) for d in described}


@pytest.mark.parametrize("overrides", [[], ["model.candidate_bias=true"]],
                         ids=["defaults", "candidate_bias"])
def test_exported_vectors_searched_exactly_give_the_models_top_k(
        transformed, tmp_path, overrides):  # noqa: F811
    serving, record = trained(transformed, tmp_path, overrides + ["pipeline.serving_k=5"])
    with open(os.path.join(serving, "assets.extra", "vector_search.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    ids, vectors, tags = read_vectors(os.path.join(serving, "vector_search"))
    assert manifest == record["vector_search"]
    assert manifest["count"] == len(ids) == 7 and manifest["namespaces"] == ["genres"]
    assert manifest["dimensions"] == vectors.shape[1] == (9 if overrides else 8)
    # restricts by hand: each item's genres as the data wrote them ("Comedy|Drama|War", ...)
    genres = {r["item"]: r["genres"].split("|") for r in interactions()}
    assert ids == sorted(genres)
    assert tags == [[{"namespace": "genres", "allow": genres[i]}] for i in ids]

    full = tf.saved_model.load(serving)
    tower = tf.saved_model.load(os.path.join(serving, "query_tower"))
    assert list(tower.signatures) == ["serving_default"]
    with open(os.path.join(serving, "query_tower", "assets.extra", "serving_inputs.json"),
              encoding="utf-8") as handle:
        described = json.load(handle)
    inputs = queries(described)
    embedding = tower.signatures["serving_default"](**inputs)
    assert list(embedding) == ["embedding"]
    embedding = embedding["embedding"].numpy()
    assert np.array_equal(embedding, full.signatures["query_embedding"](**inputs)
                          ["embedding"].numpy())
    scores = embedding @ vectors.T  # [7 queries, 7 candidates]
    exact = [[ids[j] for j in np.argsort(-row, kind="stable")[:5]] for row in scores]
    served = full.signatures["serving_default"](**inputs)
    assert [[v.decode() for v in row] for row in served["candidate_ids"].numpy()] == exact
    np.testing.assert_allclose(np.sort(scores, axis=1)[:, ::-1][:, :5],
                               served["scores"].numpy(), rtol=1e-5, atol=1e-6)
