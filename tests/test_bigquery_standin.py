"""The BigQuery stand-in refuses what BigQuery would before DuckDB runs anything (seconds)."""
import json

from bigquery_standin import BigQuery
from gcs_store import Store


def _insert(bq, text):
    body = json.dumps({"configuration": {"query": {"query": text, "useLegacySql": False}}})
    return bq.answer("POST", "bigquery.googleapis.com", "/bigquery/v2/projects/p/jobs", {}, {},
                     body.encode())


def test_duckdb_syntax_and_functions_are_refused_and_never_run(tmp_path):
    (tmp_path / "t.csv").write_text("a,b\n1,x\n2,y\n", encoding="utf-8")
    bq = BigQuery({"p.d.t": str(tmp_path / "t.csv")}, Store(str(tmp_path / "gcs")))
    for text in ("SELECT a::INT64 FROM `p`.`d`.`t`", "SELECT * EXCLUDE (b) FROM `p`.`d`.`t`",
                 "SELECT EPOCH(CURRENT_TIMESTAMP()) FROM `p`.`d`.`t`"):
        status, _, data = _insert(bq, text)
        assert status == 400 and json.loads(data)["error"]["errors"][0]["reason"] == (
            "invalidQuery"), text
    assert [t for t, _ in bq.refused] == [
        "SELECT a::INT64 FROM `p`.`d`.`t`", "SELECT * EXCLUDE (b) FROM `p`.`d`.`t`",
        "SELECT EPOCH(CURRENT_TIMESTAMP()) FROM `p`.`d`.`t`"]
    assert bq.queries == [] and bq.jobs == {}  # DuckDB ran none of them
    status, _, data = _insert(bq, "SELECT CAST(a AS INT64) AS a, b FROM `p`.`d`.`t` ORDER BY a")
    job = json.loads(data)
    assert status == 200 and job["status"]["state"] == "DONE"
    status, _, data = bq.answer(
        "GET", "bigquery.googleapis.com",
        f"/bigquery/v2/projects/p/queries/{job['jobReference']['jobId']}", {}, {}, b"")
    got = json.loads(data)
    assert [f["type"] for f in got["schema"]["fields"]] == ["INTEGER", "STRING"]
    assert got["rows"] == [{"f": [{"v": "1"}, {"v": "x"}]}, {"f": [{"v": "2"}, {"v": "y"}]}]
