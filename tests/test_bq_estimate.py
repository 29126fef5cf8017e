"""The compile-time BigQuery dry run: the real google-cloud-bigquery client against a loopback
stand-in of BigQuery's jobs.insert, which answers a dry run with its statistics (as BigQuery
does: the job is not created) or refuses it."""
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from pipelines.vertex.bq_estimate import NO_CREDENTIALS, estimate, line, size


class DryRuns:
    """Answers POST .../jobs: the bytes a query would process (by its split's name in the
    text), or 404 for a query naming a missing table; records each request's body."""

    def __init__(self, sizes):
        self.sizes, self.bodies = sizes, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.bodies.append(body)
                query = body["configuration"]["query"]["query"]
                found = [n for split, n in outer.sizes.items() if f"-- {split}" in query]
                if not found:
                    self._answer(404, {"error": {"code": 404, "message": "Not found: Table "
                                                 "acme-recs:shop.missing", "status": "NOT_FOUND"}})
                    return
                self._answer(200, {"kind": "bigquery#job", "status": {"state": "DONE"},
                                   "configuration": body["configuration"],
                                   "jobReference": body.get("jobReference", {}),
                                   "statistics": {"query": {
                                       "totalBytesProcessed": str(found[0])}}})

            def _answer(self, code, payload):
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_port}"

    def client(self):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        return bigquery.Client(project="acme-recs", credentials=AnonymousCredentials(),
                               client_options={"api_endpoint": self.endpoint})


@pytest.fixture
def dry_runs():
    server = DryRuns({"train": 3 * 2 ** 30, "eval": 512 * 2 ** 20})
    yield server
    server.server.shutdown()


def test_a_dry_run_prints_each_split_s_bytes_and_their_sum(dry_runs):
    said = []
    got = estimate("acme-recs", {"train": "SELECT 1 -- train", "eval": "SELECT 2 -- eval"},
                   said.append, client=dry_runs.client())
    assert got == {"train": 3 * 2 ** 30, "eval": 512 * 2 ** 20}
    assert said == ["BigQuery dry run: the split queries would process 3.5 GiB per run "
                    "(train 3.0 GiB, eval 512.0 MiB), billed on demand per TiB"]
    assert [b["configuration"]["dryRun"] for b in dry_runs.bodies] == [True, True]
    assert [b["configuration"]["query"]["useQueryCache"] for b in dry_runs.bodies] == [False] * 2


def test_a_refused_dry_run_is_one_line_and_no_failure(dry_runs):
    said = []
    got = estimate("acme-recs", {"train": "SELECT 1 -- train", "eval": "SELECT * FROM missing"},
                   said.append, client=dry_runs.client())
    assert got is None and len(said) == 1
    assert said[0].startswith("BigQuery dry run of the eval query failed (NotFound: 404 ")
    assert said[0].endswith("size not estimated") and "acme-recs:shop.missing" in said[0]


def test_without_credentials_it_says_so_in_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # no ADC file
    said = []
    assert estimate("acme-recs", {"train": "SELECT 1"}, said.append) is None
    assert said == [NO_CREDENTIALS] and NO_CREDENTIALS.endswith("no credentials: size not "
                                                                 "estimated")


def test_sizes_read_in_binary_units():
    assert [size(n) for n in (0, 1023, 1024, 5 * 2 ** 40, 3 * 2 ** 50)] == [
        "0 B", "1023 B", "1.0 KiB", "5.0 TiB", "3072.0 TiB"]
    assert line({"train": 1024}) == ("BigQuery dry run: the split queries would process "
                                     "1.0 KiB per run (train 1.0 KiB), billed on demand per TiB")
