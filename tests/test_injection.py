"""Every string a config holds, set to an injection payload (FAULTS.md, security).

For each string field of a full config (files and BigQuery, every tower feature, the
whole ``vertex:`` section), each payload is either refused by validation, naming that field, or
reaches the generated modules and the SQL only as a literal or a quoted identifier: the
modules' syntax trees and the SQL programs' parse trees are the same as with a plain value,
once literals and identifiers are blanked. Paths stay inside the pipeline's folder.
"""
import ast
import copy
import os

import pytest
import sqlglot
from sqlglot import exp

from conftest import ROOT
from pipelines.build import codegen
from pipelines.config.schema import Config, ConfigError, apply_overrides, read_raw
from pipelines.vertex import checks as vertex_checks
from pipelines.build.builder import pipeline_folder
from pipelines.validate import validate

PAYLOADS = ["x'); __import__('os'); ('#",  # Python: close the literal, call, comment
            'x"; DROP TABLE t; --\n` UNION ALL SELECT 1 --',  # SQL: both quotes, a newline
            "../../etc/passwd"]  # a path out of the folder (and a dot, for BigQuery)
PLAIN = "plain_value"


def full_raw(bigquery):
    raw = read_raw(os.path.join(ROOT, "examples", "b2b_demo.yaml"))
    extra = ["vertex.project=acme-recs", "vertex.region=europe-west4",
             "vertex.pipeline_root=gs://acme-bucket/twotower",
             "vertex.service_account=p@acme-recs.iam.gserviceaccount.com",
             "vertex.labels={team: growth}",
             "vertex.dataflow={temp_location: gs://acme-bucket/tmp, network: default, "
             "subnetwork: regions/europe-west4/subnetworks/default, "
             "service_account: df@acme-recs.iam.gserviceaccount.com}",
             "vertex.training={machine_type: n1-standard-8, accelerator_type: NVIDIA_TESLA_T4, "
             "accelerator_count: 1}",
             "vertex.model_upload={serving_image: twotower, display_name: acme recs}",
             "data.filter=[{column: region, op: '!=', value: west}, "
             "{column: channel, op: not_in, value: [web, x]}, {column: channel, op: not_null}]",
             "data.weight=quantity", "data.candidates.missing=drop"]
    if bigquery:
        extra += ["data.path=null", "data.bigquery=acme-recs.shop.orders",
                  "data.candidates.path=null", "data.candidates.bigquery=acme-recs.shop.products"]
    return apply_overrides(raw, extra)


def string_fields(node, path=()):
    """Every string leaf of a raw config: ``[(path, value)]``."""
    if isinstance(node, str):
        return [(path, node)]
    if isinstance(node, dict):
        return [f for key, value in node.items() for f in string_fields(value, path + (key,))]
    if isinstance(node, list):
        return [f for i, value in enumerate(node) for f in string_fields(value, path + (i,))]
    return []


def with_value(raw, path, value):
    raw = copy.deepcopy(raw)
    node = raw
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return raw


def refusal(raw):
    """The keys validation names, or [] when the config is accepted."""
    try:
        cfg = Config.from_dict(raw)
        validate(cfg, check_data=False)
    except ConfigError as exc:
        return [key for key, _ in exc.problems]
    return [key for key, _ in vertex_checks.problems(cfg, submitting=True)]


def module_shape(text):
    """The module's syntax tree with every string constant blanked."""
    tree = ast.parse(text)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            node.value = ""
    return ast.dump(tree)


def sql_shape(text, dialect):
    """The SQL program's parse trees with every identifier and literal blanked."""
    trees = sqlglot.parse(text, read=dialect)
    for tree in trees:
        for node in tree.walk():
            node.comments = None
            if isinstance(node, (exp.Identifier, exp.Literal)):
                node.set("this", "")
    return [repr(tree) for tree in trees]


def sql_programs(cfg):
    """The SQL each engine would run; a name BigQuery can't quote as one column (a dot) is
    refused by the BigQuery rendering itself (validation refuses it for BigQuery sources)."""
    if cfg.data.bigquery:  # each split's query holds the whole program: the train one
        from pipelines.data.sql import bigquery

        return {"bigquery": bigquery.to_bigquery(bigquery.split_queries(cfg)["train"])}
    from pipelines.data.sql import duck

    out = {"duckdb": duck.program_text(cfg)}
    try:
        out["bigquery"] = duck.program_text(cfg, "bigquery")
    except ValueError as exc:
        assert "BigQuery reads a quoted name with a dot as a path" in str(exc)
        out["bigquery"] = "SELECT 'refused'"
    return out


GENERATORS = (codegen.transform_module, codegen.trainer_module)
CASES = [(bq, path) for bq in (False, True) for path, _ in string_fields(full_raw(bq))]


@pytest.mark.parametrize("bigquery, path", CASES,
                         ids=[f"{'bq' if bq else 'files'}:{'.'.join(map(str, p))}"
                              for bq, p in CASES])
def test_every_string_field_is_refused_or_only_ever_a_literal(bigquery, path):
    raw = full_raw(bigquery)
    key = ".".join(map(str, path))
    plain = with_value(raw, path, PLAIN)
    plain_refused, shapes = refusal(plain), {}
    for payload in PAYLOADS:
        hostile = with_value(raw, path, payload)
        refused = refusal(hostile)
        if refused:  # refused: validation names the field (or, for a label, its map)
            assert any(k == key or key.startswith(k + ".") for k in refused), (payload, refused)
            continue
        assert not plain_refused, f"{key}: {payload!r} accepted, the plain value refused"
        cfg = Config.from_dict(hostile)
        if not shapes:  # the plain value's, once
            base = Config.from_dict(plain)
            shapes.update(modules=[module_shape(g(base)) for g in GENERATORS],
                          sql={d: sql_shape(t, d) for d, t in sql_programs(base).items()})
        assert [module_shape(g(cfg)) for g in GENERATORS] == shapes["modules"], (key, payload)
        for dialect, text in sql_programs(cfg).items():
            if text == "SELECT 'refused'":
                assert "." in payload
                continue
            assert sql_shape(text, dialect) == shapes["sql"][dialect], (key, payload, dialect)
        from pipelines.runners.local import pipeline_dir

        folder = pipeline_dir(cfg)
        assert os.path.dirname(folder) == os.path.abspath(cfg.pipeline.root or "runs")
        assert pipeline_folder(cfg) == (cfg.vertex.pipeline_root.rstrip("/") + "/"
                                               + cfg.pipeline.name)


def test_the_payloads_reach_the_outputs_when_accepted():
    """The check above would pass vacuously if no payload were accepted: several are (they are
    data: column names, paths, a service account's text), and each is in the modules, but
    for the ``vertex`` section, which the runtime never reads and the modules don't carry."""
    raw = full_raw(False)
    accepted = []
    for path, _ in string_fields(raw):
        hostile = with_value(raw, path, PAYLOADS[0])
        if not refusal(hostile):
            accepted.append(".".join(map(str, path)))
            literals = {n.value for n in ast.walk(ast.parse(
                codegen.trainer_module(Config.from_dict(hostile))))
                if isinstance(n, ast.Constant) and isinstance(n.value, str)}
            found = any(PAYLOADS[0] in value for value in literals)
            assert found == (path[0] != "vertex"), path
    assert {"data.query_id", "data.candidate_id", "data.path"} <= set(accepted), accepted
