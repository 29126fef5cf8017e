"""`twotower validate`'s tower sizes equal the built Keras towers'; vocabulary estimates."""
import json

import numpy as np
import pytest
import tensorflow as tf

from pipelines.config.schema import Config, apply_overrides
from pipelines.inspect.summary import estimate_vocabularies, tower_summary
from test_trainer_run import BASE
from trainer.towers import build_towers, tower_inputs

VOCAB = {"_query_id": 11, "_candidate_id": 7, "vocab_segment": 2, "vocab_genres": 5,
         "vocab_title": 9}


def dummy_inputs(spec, tower):
    inputs = {}
    for info, feature in zip(tower_inputs(spec, tower), spec[tower]["features"]):
        if info["multi"]:
            inputs[info["key"]] = tf.zeros([2, feature["max_length"]], tf.int64)
        elif info["embedded"]:
            inputs[info["key"]] = tf.zeros([2], tf.int64)
        else:
            inputs[info["key"]] = tf.zeros([2, info["width"]])
    return inputs


@pytest.mark.parametrize("overrides", [[], ["query_tower.norm=batch", "query_tower.layers=[8, 4]"],
                                       ["candidate_tower.norm=layer", "candidate_tower.layers=[]"],
                                       ["query_tower.features.7.pooling=mean"],
                                       ["query_tower.features.7.pooling=attention"]])
def test_summary_counts_equal_the_keras_towers(overrides):
    cfg = Config.from_dict(apply_overrides(json.loads(json.dumps(BASE)), overrides))
    spec = cfg.to_dict()
    towers = dict(zip(("query_tower", "candidate_tower"),
                      build_towers(spec, VOCAB.__getitem__)))
    for name, tower in towers.items():
        tower(dummy_inputs(spec, name))
        got = tower_summary(cfg, name, VOCAB.__getitem__)
        keras = sum(int(np.prod(v.shape)) for v in tower.trainable_variables)
        assert got["parameters"] == keras, name
        assert got["input_width"] == tower.encode_inputs(dummy_inputs(spec, name)).shape[1]


def test_vocabulary_estimates_follow_the_transform_rules(tmp_path):
    (tmp_path / "i.csv").write_text(
        "user,item,segment,title\nu1,a,smb,The Big-Lebowski\nu2,b,,the big\nu1,a,ent,Amélie 2\n")
    (tmp_path / "c.csv").write_text("item,genres\na,Action|Comedy\nb, Comedy |\nc,Drama\n")
    cfg = Config.from_dict({
        "data": {"path": str(tmp_path / "i.csv"), "query_id": "user", "candidate_id": "item",
                 "candidates": {"path": str(tmp_path / "c.csv"), "id": "item"}},
        "query_tower": {"features": [
            {"name": "user", "column": "user", "kind": "id"},
            {"name": "segment", "column": "segment", "kind": "categorical", "default": "none"},
            {"name": "title", "column": "title", "kind": "text"}]},
        "candidate_tower": {"features": [
            {"name": "item", "column": "item", "kind": "id"},
            {"name": "genres", "column": "genres", "kind": "multi_categorical",
             "max_vocab_size": 2}]}})
    assert estimate_vocabularies(cfg) == {
        "_query_id": 2, "_candidate_id": 2, "vocab_segment": 3,  # smb, none, ent
        "vocab_title": 5,  # the, big, lebowski, amélie, 2
        "vocab_genres": 2}  # Action, Comedy, Drama capped at 2
