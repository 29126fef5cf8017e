"""The feature-kind registry: one object per kind, and a new kind is one module.

``Flag`` below is the example of docs/architecture.md ("Adding a feature
kind"), registered the way a file in ``transform/kinds/`` is: every part of
the library that knows about kinds finds it, with nothing else edited.
"""
import ast
import dataclasses
import os

import pytest

from conftest import ROOT
from pipelines.config.schema import FEATURE_KINDS, Config, ConfigError, FeatureConfig
from transform import kinds
from transform.kinds.base import STRING, FeatureKind


class Flag(FeatureKind):
    name, order = "flag", 90
    value_type = STRING

    def table_rows(self, feature):
        return 2

    def transform(self, inputs, feature, context):
        import tensorflow as tf

        from transform import features as tf_parts

        text = tf.strings.lower(tf_parts.string_column(inputs[feature["column"]],
                                                       feature["default"]))
        return tf.cast(tf.reduce_any(tf.stack([tf.equal(text, "1"), tf.equal(text, "true")]),
                                     axis=0), tf.int64)


@pytest.fixture
def flag(monkeypatch):
    monkeypatch.setitem(kinds.KINDS, "flag", Flag())


def raw(extra=None):
    feature = dict({"name": "vip", "column": "vip", "kind": "flag"}, **(extra or {}))
    return {"data": {"path": "d.csv", "query_id": "u", "candidate_id": "i"},
            "query_tower": {"features": [{"name": "u", "column": "u", "kind": "id"}, feature]},
            "candidate_tower": {"features": [{"name": "i", "column": "i", "kind": "id"}]}}


def test_every_kind_is_one_module_in_the_config_order():
    assert FEATURE_KINDS == ("id", "categorical", "multi_categorical", "numeric", "text",
                             "timestamp", "cross", "history")
    assert all(kinds.KINDS[k].name == k for k in FEATURE_KINDS)


def test_every_option_applies_to_some_kind_and_the_table_matches_the_config():
    options = {f.name for f in dataclasses.fields(FeatureConfig)}
    covered = {o for k in kinds.KINDS.values() for o in options if k.applies(o)}
    assert covered == options
    assert kinds.KINDS["cross"].applies("columns") and not kinds.KINDS["cross"].applies("column")
    assert not kinds.KINDS["numeric"].applies("oov_buckets")
    assert kinds.KINDS["history"].applies("pooling") and not kinds.KINDS["text"].applies("pooling")


def test_a_new_kind_parses_validates_and_is_refused_options_that_do_not_apply(flag):
    from pipelines.validate import validate

    validate(Config.from_dict(raw()), check_data=False)
    with pytest.raises(ConfigError) as exc:
        validate(Config.from_dict(raw({"max_length": 3})), check_data=False)
    assert exc.value.problems == [("query_tower.features.1.max_length",
                                   "does not apply to kind 'flag'")]


def test_a_new_kind_gets_its_column_type_summary_and_frozen_options(flag):
    from pipelines.build.codegen import frozen_spec
    from pipelines.data.columns import column_types
    from pipelines.inspect.summary import tower_summary

    cfg = Config.from_dict(raw({"embedding_dim": 4}))
    assert column_types(cfg) == {"u": "string", "i": "string", "vip": "string"}
    sizes = {"_query_id": 10, "_candidate_id": 5}
    # u: (10 + 1) rows x 32, vip: 2 rows x 4; input 32 + 4, one 64 layer, 32 out
    assert tower_summary(cfg, "query_tower", sizes.get)["embedding_parameters"] == 11 * 32 + 8
    assert tower_summary(cfg, "query_tower", sizes.get)["input_width"] == 36
    assert frozen_spec(cfg)["query_tower"]["features"][1] == {
        "name": "vip", "kind": "flag", "column": "vip", "embedding_dim": 4, "default": None}


def test_a_new_kind_is_transformed_and_embedded(flag, tmp_path):
    import tensorflow as tf

    from pipelines.build.codegen import frozen_spec
    from tft_helpers import run_preprocessing
    from trainer.towers import tower_inputs
    from transform.preprocess import transform_all

    spec = frozen_spec(Config.from_dict(raw()))
    rows = [{"u": [b"a"], "i": [b"x"], "vip": [b"True"]},
            {"u": [b"b"], "i": [b"y"], "vip": []},
            {"u": [b"a"], "i": [b"y"], "vip": [b"0"]}]
    feature_spec = {"u": tf.io.FixedLenFeature([1], tf.string),
                    "i": tf.io.FixedLenFeature([1], tf.string),
                    "vip": tf.io.VarLenFeature(tf.string)}
    out, _ = run_preprocessing(lambda inputs: transform_all(inputs, spec), rows, feature_spec,
                               str(tmp_path))
    assert [int(r["vip_xf"]) for r in out] == [1, 0, 0]
    [_, vip] = tower_inputs(spec, "query_tower")
    assert (vip["key"], vip["vocabulary"], vip["embedded"], vip["rows"]) == (
        "vip_xf", None, True, 2)


def _kind_branches(root, names):
    """``[(path, line, code)]`` outside ``transform/kinds/`` that test a value against a kind
    name: a comparison with one (``f["kind"] == "numeric"``, ``in ("id", ...)``), a
    ``kinds.get("id")`` lookup, or a tuple of kind names bound to a variable."""
    def named(node, every=False):
        if isinstance(node, ast.Constant):
            return node.value in names
        return isinstance(node, (ast.Tuple, ast.List, ast.Set)) and bool(node.elts) and (
            all if every else any)(isinstance(e, ast.Constant) and e.value in names
                                   for e in node.elts)

    found = []
    for package in ("pipelines", "trainer", "transform"):
        for base, dirs, files in os.walk(os.path.join(root, package)):
            if os.path.relpath(base, root).startswith(os.path.join("transform", "kinds")):
                continue
            for name in (n for n in files if n.endswith(".py")):
                path = os.path.join(base, name)
                for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
                    hit = (isinstance(node, ast.Compare)
                           and any(named(n) for n in [node.left] + node.comparators)) or (
                        isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr == "get" and "kind" in ast.unparse(node.func.value)
                        and node.args and named(node.args[0])) or (
                        isinstance(node, ast.Assign) and named(node.value, every=True))
                    if hit:
                        found.append((os.path.relpath(path, root), node.lineno,
                                      ast.unparse(node)[:80]))
    return found


def test_no_code_outside_the_kind_files_branches_on_a_kind_name(tmp_path):
    """Every per-kind choice is the kind's (an attribute or a method, docs/architecture.md);
    the scan finds a branch on a kind's name, as the ones it replaced."""
    (tmp_path / "trainer").mkdir()
    (tmp_path / "trainer" / "x.py").write_text(
        'R = ("categorical", "multi_categorical")\n'
        'def f(feature, kinds):\n'
        '    return feature["kind"] != "id" or kinds.get("numeric") or feature in R\n')
    assert [line for _, line, _ in _kind_branches(str(tmp_path), set(kinds.KINDS))] == [1, 3, 3]
    assert _kind_branches(ROOT, set(kinds.KINDS)) == []
