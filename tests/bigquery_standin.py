"""A stand-in for BigQuery's REST API (v2): the query's rows, computed by DuckDB after the
GoogleSQL check passed.

Two clients read BigQuery in a BigQueryExampleGen task, and neither can be given
another address from the spec: TFX's executor builds ``google.cloud.bigquery.Client``
with no ``client_options`` (to read the query's schema), and Beam 2.59's
``ReadFromBigQuery`` uses its own apitools client whose address is fixed
(``https://bigquery.googleapis.com/bigquery/v2/``; no pipeline option changes it).
So this stand-in answers the host ``bigquery.googleapis.com`` behind the same HTTPS
proxy as the Cloud Storage stand-in (``gcs_standin.StandIn(root, also=...)``), for
both clients alike.

Beam's read is its default, ``method=EXPORT`` (TFX passes no method): a dry run
(the query's referenced tables, whose location names the temporary dataset),
the temporary dataset created, the query run into a table of it, that table
exported as Avro to ``--temp_location`` on ``gs://`` (written here into the
Cloud Storage stand-in's folder, where Beam's ``fastavro`` reader reads it),
the table's schema read, the dataset deleted. ``DIRECT_READ`` would need the
Storage Read API (gRPC, Arrow/Avro streams): not what TFX runs.

Every query text is checked first as BigQuery would refuse it: a function
BigQuery's reference does not list, or syntax only DuckDB reads
(:mod:`pipelines.data.sql.googlesql`): such a job is answered with BigQuery's
``400 invalidQuery`` and recorded in ``refused``. Only a query that passed is read
back into DuckDB's dialect by sqlglot and run over the tables given (CSV files,
every cell text; BigQuery's ``FARM_FINGERPRINT`` and ``RANGE_BUCKET`` defined as in
``tests/test_bigquery_sql.py``). ``queries`` records each query text run.

API subset (``/bigquery/v2/projects/P/...``): ``jobs`` insert (query, dry run,
extract) and get, ``queries/ID`` (getQueryResults), ``datasets`` get, insert,
delete, ``datasets/D/tables/T`` get and ``.../data`` (tabledata.list).
"""
import io
import json
import threading
import time
import urllib.parse
import uuid

HOST = "bigquery.googleapis.com"
PREFIX = "/bigquery/v2/projects/"
# DuckDB result types -> BigQuery's legacy type names (the REST schema's), and Avro's
TYPES = {"VARCHAR": "STRING", "BIGINT": "INTEGER", "INTEGER": "INTEGER", "HUGEINT": "INTEGER",
         "SMALLINT": "INTEGER", "DOUBLE": "FLOAT", "FLOAT": "FLOAT", "BOOLEAN": "BOOLEAN"}
AVRO = {"STRING": "string", "INTEGER": "long", "FLOAT": "double", "BOOLEAN": "boolean"}


class BigQuery:
    """BigQuery over ``tables`` (``{"project.dataset.table": csv_path}``), in ``location``;
    exports write through ``store`` (the Cloud Storage stand-in's :class:`gcs_store.Store`).

    ``answer`` is the proxy's callback. Recorded: ``requests`` (method, path), ``jobs`` (by
    id, as answered), ``queries`` (each text run), ``refused`` (texts refused, with why).
    """

    def __init__(self, tables, store, location="EU"):
        import duckdb

        from test_bigquery_sql import RANGE_BUCKET, farm_fingerprint

        self.store, self.location = store, location
        self.requests, self.jobs, self.queries, self.refused = [], {}, [], []
        self.datasets, self.results = set(), {}  # results: (p, d, t) -> (schema, rows)
        self.lock = threading.Lock()
        self.con = duckdb.connect()
        self.con.create_function("farm_fingerprint", farm_fingerprint, ["VARCHAR"], "BIGINT")
        self.con.execute(RANGE_BUCKET)
        self.con.execute("SET TimeZone = 'UTC'")
        self.sizes = {}
        for name, path in sorted(tables.items()):
            project, dataset, table = name.split(".")
            if project not in {p for p, _ in self.datasets}:
                self.con.execute(f'ATTACH \':memory:\' AS "{project}"')
            if (project, dataset) not in self.datasets:
                self.con.execute(f'CREATE SCHEMA "{project}"."{dataset}"')
                self.datasets.add((project, dataset))
            self.con.execute(f'CREATE TABLE "{project}"."{dataset}"."{table}" AS SELECT * FROM '
                             "read_csv(?, header = true, all_varchar = true)", [str(path)])
            with open(path, "rb") as handle:
                self.sizes[(project, dataset, table)] = len(handle.read())
        self.sources = set(self.sizes)

    # ---- the proxy's callback ---------------------------------------------------------

    def answer(self, method, host, path, query, headers, body):
        self.requests.append({"method": method, "path": path, "query": query})
        if not path.startswith(PREFIX):
            return _error(404, f"no such API: {path}", "notFound")
        parts = [urllib.parse.unquote(p) for p in path[len(PREFIX):].split("/")]
        project, rest = parts[0], parts[1:]
        data = json.loads(body) if body else {}
        with self.lock:
            if rest == ["jobs"] and method == "POST":
                return self.insert(project, data)
            if len(rest) == 2 and rest[0] == "jobs" and method == "GET":
                return self.job(rest[1])
            if len(rest) == 2 and rest[0] == "queries" and method == "GET":
                return self.query_results(rest[1], query)
            if rest == ["datasets"] and method == "POST":
                ref = data["datasetReference"]
                self.datasets.add((ref["projectId"], ref["datasetId"]))
                return _json(dict(data, id=f"{ref['projectId']}:{ref['datasetId']}",
                                  location=data.get("location") or self.location))
            if len(rest) == 2 and rest[0] == "datasets":
                return self.dataset(method, project, rest[1], query)
            if len(rest) in (4, 5) and rest[0] == "datasets" and rest[2] == "tables":
                return self.table(method, project, rest[1], rest[3], rest[4:], query)
        return _error(404, f"the stand-in does not answer {method} {path}", "notFound")

    # ---- jobs ---------------------------------------------------------------------------

    def insert(self, project, job):
        """jobs.insert: a query (maybe a dry run) or an extract, run at once (state DONE)."""
        config = job.get("configuration", {})
        ref = dict(job.get("jobReference") or {}, projectId=project)
        ref.setdefault("jobId", "job_" + uuid.uuid4().hex)
        ref.setdefault("location", self.location)
        now = str(int(time.time() * 1000))
        stats = {"creationTime": now, "startTime": now, "endTime": now}
        if "query" in config:
            text = config["query"]["query"]
            if config["query"].get("useLegacySql"):
                return _error(400, "the stand-in reads GoogleSQL only (useLegacySql)",
                              "invalidQuery")
            problems = self.googlesql_problems(text)
            if problems:
                self.refused.append((text, problems))
                return _error(400, "Query refused: " + "; ".join(problems), "invalidQuery")
            referenced = self.referenced(text)
            missing = [r for r in referenced if r not in self.sources]
            if missing:
                return _error(404, "Not found: Table {}:{}.{}".format(*missing[0]), "notFound")
            scanned = str(sum(self.sizes[r] for r in referenced))
            stats.update(totalBytesProcessed=scanned, query={
                "totalBytesProcessed": scanned, "statementType": "SELECT",
                "referencedTables": [{"projectId": p, "datasetId": d, "tableId": t}
                                     for p, d, t in referenced]})
            if config.get("dryRun"):  # checked and priced; no job is created
                schema, _ = self.run(text, limit=0)
                stats["query"]["schema"] = schema
                return _json({"kind": "bigquery#job", "jobReference": ref,
                              "configuration": config, "status": {"state": "DONE"},
                              "statistics": stats})
            schema, rows = self.run(text)
            destination = config["query"].get("destinationTable") or {
                "projectId": project, "datasetId": "_anonymous", "tableId": "anon_" + ref["jobId"]}
            config["query"]["destinationTable"] = destination
            self.results[(destination["projectId"], destination["datasetId"],
                          destination["tableId"])] = (schema, rows)
            stats["query"]["schema"] = schema
        elif "extract" in config:
            source = config["extract"]["sourceTable"]
            key = (source["projectId"], source["datasetId"], source["tableId"])
            if key not in self.results:
                return _error(404, "Not found: Table {}:{}.{}".format(*key), "notFound")
            counts = [self.export(key, uri, config["extract"]) for uri in
                      config["extract"]["destinationUris"]]
            stats["extract"] = {"destinationUriFileCounts": [str(c) for c in counts]}
        else:
            return _error(400, f"the stand-in runs query and extract jobs, not {sorted(config)}",
                          "invalid")
        answered = {"kind": "bigquery#job", "id": f"{project}:{ref['location']}.{ref['jobId']}",
                    "jobReference": ref, "configuration": config, "status": {"state": "DONE"},
                    "statistics": stats}
        self.jobs[ref["jobId"]] = answered
        return _json(answered)

    def job(self, job_id):
        if job_id not in self.jobs:
            return _error(404, f"Not found: Job {job_id}", "notFound")
        return _json(self.jobs[job_id])

    def query_results(self, job_id, query):
        """getQueryResults: the job's schema and rows, a page at a time."""
        job = self.jobs.get(job_id)
        if job is None or "query" not in job["configuration"]:
            return _error(404, f"Not found: Job {job_id}", "notFound")
        d = job["configuration"]["query"]["destinationTable"]
        schema, rows = self.results[(d["projectId"], d["datasetId"], d["tableId"])]
        out = {"kind": "bigquery#getQueryResultsResponse", "jobReference": job["jobReference"],
               "jobComplete": True, "schema": schema, "totalRows": str(len(rows)),
               "totalBytesProcessed": job["statistics"]["totalBytesProcessed"]}
        return _json(dict(out, **_page(schema, rows, query)))

    # ---- datasets and tables ------------------------------------------------------------

    def dataset(self, method, project, dataset, query):
        if (project, dataset) not in self.datasets:
            return _error(404, f"Not found: Dataset {project}:{dataset}", "notFound")
        if method == "DELETE":
            if query.get("deleteContents", "").lower() != "true" and any(
                    k[:2] == (project, dataset) for k in self.results):
                return _error(400, f"Dataset {project}:{dataset} is still in use", "resourceInUse")
            self.datasets.discard((project, dataset))
            for key in [k for k in self.results if k[:2] == (project, dataset)]:
                del self.results[key]
            return 204, {}, b""
        return _json({"kind": "bigquery#dataset", "id": f"{project}:{dataset}",
                      "datasetReference": {"projectId": project, "datasetId": dataset},
                      "location": self.location})

    def table(self, method, project, dataset, table, rest, query):
        key = (project, dataset, table)
        if key in self.sources:
            schema, _ = self.run(f"SELECT * FROM `{project}`.`{dataset}`.`{table}`", limit=0)
            rows = None
        elif key in self.results:
            schema, rows = self.results[key]
        else:
            return _error(404, f"Not found: Table {project}:{dataset}.{table}", "notFound")
        if method == "DELETE":
            self.results.pop(key, None)
            return 204, {}, b""
        if rest == ["data"]:
            if rows is None:
                _, rows = self.run(f"SELECT * FROM `{project}`.`{dataset}`.`{table}`")
            return _json(dict({"kind": "bigquery#tableDataList", "totalRows": str(len(rows))},
                              **_page(schema, rows, query)))
        size = self.sizes.get(key, 0)
        return _json({"kind": "bigquery#table", "id": f"{project}:{dataset}.{table}",
                      "tableReference": {"projectId": project, "datasetId": dataset,
                                         "tableId": table},
                      "schema": schema, "location": self.location, "type": "TABLE",
                      "numBytes": str(size), "numRows": str(len(rows or []))})

    def export(self, key, uri, extract):
        """Writes the table to ``uri`` (``gs://b/prefix*``) as one Avro file; returns 1."""
        import fastavro

        if extract.get("destinationFormat", "CSV") != "AVRO":
            raise ValueError(f"the stand-in exports AVRO only, not {extract['destinationFormat']}")
        schema, rows = self.results[key]
        avro = {"type": "record", "name": "Root", "fields": [
            {"name": f["name"], "type": ["null", AVRO[f["type"]]]} for f in schema["fields"]]}
        names = [f["name"] for f in schema["fields"]]
        buffer = io.BytesIO()
        fastavro.writer(buffer, fastavro.parse_schema(avro),
                        [dict(zip(names, row)) for row in rows])
        bucket, _, name = uri[len("gs://"):].partition("/")
        self.store.write(bucket, name.replace("*", "000000000000"), buffer.getvalue())
        return 1

    # ---- GoogleSQL, then DuckDB ---------------------------------------------------------

    @staticmethod
    def googlesql_problems(text):
        """Why BigQuery would refuse ``text``: functions it does not have, DuckDB syntax."""
        from pipelines.data.sql import googlesql

        found = [f"function not found: {name}" for name in googlesql.unknown(text)]
        return found + googlesql.syntax_problems(text)

    @staticmethod
    def referenced(text):
        """``(project, dataset, table)`` of each table ``text`` reads, sorted."""
        import sqlglot
        from sqlglot import exp

        found = set()
        for tree in sqlglot.parse(text, read="bigquery"):
            for table in tree.find_all(exp.Table):
                if table.args.get("catalog") and table.args.get("db"):
                    found.add((table.catalog, table.db, table.name))
        return sorted(found)

    def run(self, text, limit=None):
        """``(schema, rows)`` of GoogleSQL ``text`` run on DuckDB; rows as Python values."""
        import sqlglot

        back = sqlglot.transpile(text, read="bigquery", write="duckdb")[0]
        if limit is not None:
            back = f"SELECT * FROM ({back}) LIMIT {int(limit)}"
        relation = self.con.sql(back)  # one connection: its functions are its own
        kinds = [str(t).split("(")[0] for t in relation.types]
        unknown = [k for k in kinds if k not in TYPES]
        if unknown:
            raise ValueError(f"the stand-in has no BigQuery type for DuckDB's {unknown}")
        schema = {"fields": [{"name": n, "type": TYPES[k], "mode": "NULLABLE"}
                             for n, k in zip(relation.columns, kinds)]}
        rows = relation.fetchall()
        if limit is None:
            self.queries.append(text)
        return schema, rows


def _page(schema, rows, query):
    """``rows`` and ``pageToken`` of one page (``maxResults``, ``pageToken``/``startIndex``)
    in the REST form: ``{"f": [{"v": "text"}]}``, numbers as text, NULL as null."""
    start = int(query.get("pageToken") or query.get("startIndex") or 0)
    size = int(query.get("maxResults") or 10000)
    page = rows[start:start + size]
    out = {"rows": [{"f": [{"v": _cell(v)} for v in row]} for row in page]}
    if start + size < len(rows):
        out["pageToken"] = str(start + size)
    return out


def _cell(value):
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _json(value, status=200):
    return status, {"Content-Type": "application/json; charset=UTF-8"}, json.dumps(value).encode()


def _error(status, message, reason):
    names = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND"}
    return _json({"error": {"code": status, "message": message, "status": names.get(status, ""),
                            "errors": [{"message": message, "reason": reason,
                                        "domain": "global"}]}}, status)
