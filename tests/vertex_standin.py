"""A loopback stand-in for the Vertex AI REST API: records requests, answers like the service.

Only what `twotower submit` uses: create a PipelineJob (POST
``/v1/projects/P/locations/L/pipelineJobs?pipelineJobId=ID``) and read it back
(GET ``.../pipelineJobs/ID``); and what the ModelUpload step uses: upload a
Model (POST ``.../models:upload``, answered with a finished operation) and read
it back (GET ``.../models/ID``); and what the VectorSearchDeploy step uses: create, list
(by display name), read and update Vector Search indexes, index endpoints and endpoints,
deploy an index or a model to them, predict on an endpoint and find neighbours on an index
endpoint (whose public domain is the stand-in itself); ``predict`` and ``find`` answer those
two, functions of the resource's name and the request body. ``fail`` makes every Vertex AI
call answer that HTTP status with a Google API error body.

It also answers the Cloud Storage JSON API calls the client library makes
before submitting (is the pipeline root's bucket there? create it, grant the
service account access), when ``STORAGE_EMULATOR_HOST`` points at it: the
bucket is "not found", then created.
"""
import json
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATUS = {403: "PERMISSION_DENIED", 404: "NOT_FOUND", 500: "INTERNAL"}


TYPE_URL = "type.googleapis.com/google.cloud.aiplatform.v1"
KINDS = {"indexes": "Index", "indexEndpoints": "IndexEndpoint", "endpoints": "Endpoint"}


class StandIn:
    def __init__(self, fail=None, final_state="PIPELINE_STATE_SUCCEEDED", pending_polls=0):
        """``pending_polls``: how many GETs of a long-running operation answer ``done:
        false`` before it is done (as the service: the client must poll)."""
        self.requests, self.fail, self.final_state, self.jobs = [], fail, final_state, {}
        self.pending_polls, self.operations = pending_polls, {}  # name -> [polls left, done]
        self.models = {}
        self.resources = {}  # Vector Search indexes, index endpoints, endpoints by name
        self.predict = lambda name, body: {"predictions": []}
        self.find = lambda name, body: {"nearestNeighbors": []}  # an index endpoint's match
        self.buckets = set()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, code, body):
                data = json.dumps(body).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client hung up first (a test that stops polling): not an error

            def _handle(self, method):
                url = urllib.parse.urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                owner.requests.append({"method": method, "path": url.path,
                                       "query": urllib.parse.parse_qs(url.query), "body": body})
                if url.path.startswith("/storage/v1/b"):
                    return self._storage(method, url.path, body)
                if owner.fail:
                    return self._answer(owner.fail, {"error": {
                        "code": owner.fail, "message": "stand-in refused the call",
                        "status": STATUS.get(owner.fail, "UNKNOWN")}})
                if method == "POST" and url.path.endswith("/pipelineJobs"):
                    job_id = urllib.parse.parse_qs(url.query)["pipelineJobId"][0]
                    name = url.path[len("/v1/"):] + "/" + job_id
                    owner.jobs[name] = dict(body, name=name, state="PIPELINE_STATE_PENDING")
                    return self._answer(200, owner.jobs[name])
                if method == "POST" and url.path.endswith("/models:upload"):
                    parent = url.path[len("/v1/"):-len("/models:upload")]
                    name = f"{parent}/models/{len(owner.models) + 1}"
                    owner.models[name] = dict(body["model"], name=name,  # as the service
                                              supportedDeploymentResourcesTypes=[1])  # dedicated
                    return self._operation("UploadModelResponse", {"model": name})
                name = url.path[len("/v1/"):]
                served = self._serving(method, url.path.split("/", 2)[2],  # v1 or v1beta1
                                       urllib.parse.parse_qs(url.query), body)
                if served is not None:
                    return served
                if method == "GET" and name in owner.operations:
                    left, done = owner.operations[name]
                    owner.operations[name][0] = left - 1
                    return self._answer(200, done if left <= 0 else {"name": name,
                                                                     "done": False})
                if method == "GET" and name in owner.models:
                    return self._answer(200, owner.models[name])
                if method == "GET" and name in owner.jobs:
                    owner.jobs[name]["state"] = owner.final_state
                    return self._answer(200, owner.jobs[name])
                return self._answer(404, {"error": {"code": 404, "message": "no such job",
                                                    "status": "NOT_FOUND"}})

            def _operation(self, kind, response):
                where = re.search(r"projects/[^/]+/locations/[^/]+", self.path)
                name = owner.next_name("operations")  # the client polls it by this name
                name = f"{where.group(0)}/{name}" if where else name
                done = {"name": name, "done": True,
                        "response": dict(response, **{"@type": f"{TYPE_URL}.{kind}"})}
                if not owner.pending_polls:
                    return self._answer(200, done)
                owner.operations[name] = [owner.pending_polls, done]
                return self._answer(200, {"name": name, "done": False})

            def _serving(self, method, name, query, body):
                """Vector Search indexes and index endpoints, endpoints: create, list, get,
                update, deploy, predict (``None``: not one of these calls)."""
                parent, _, collection = name.rpartition("/")
                if collection in KINDS and method == "POST":
                    created = f"{name}/{len(owner.resources) + 1}"
                    owner.resources[created] = dict(body, name=created,
                                                    createTime="2026-01-01T00:00:00Z")
                    if collection == "indexEndpoints":
                        owner.resources[created]["publicEndpointDomainName"] = owner.endpoint
                    return self._operation(KINDS[collection], owner.resources[created])
                if collection in KINDS and method == "GET":
                    wanted = (query.get("filter") or [""])[0]
                    found = [r for n, r in sorted(owner.resources.items())
                             if n.startswith(name + "/") and (
                                 not wanted or wanted == f'display_name="{r["displayName"]}"')]
                    return self._answer(200, {collection: found})
                base, _, verb = name.partition(":")
                kind = KINDS.get(base.rsplit("/", 2)[-2] if base.count("/") >= 2 else "")
                if base not in owner.resources:
                    return None
                resource = owner.resources[base]
                if method == "GET":
                    return self._answer(200, resource)
                if method == "PATCH":
                    resource.update(body)
                    return self._operation(kind, resource)
                if verb == "deployIndex":
                    resource.setdefault("deployedIndexes", []).append(body["deployedIndex"])
                    return self._operation("DeployIndexResponse",
                                           {"deployedIndex": body["deployedIndex"]})
                if verb == "deployModel":
                    deployed = dict(body["deployedModel"], id=str(len(owner.requests)))
                    resource.setdefault("deployedModels", []).append(deployed)
                    return self._operation("DeployModelResponse", {"deployedModel": deployed})
                if verb == "predict":
                    return self._answer(200, owner.predict(base, body))
                if verb == "findNeighbors":
                    return self._answer(200, owner.find(base, body))
                return None

            def do_PATCH(self):
                self._handle("PATCH")

            def _storage(self, method, path, body):
                parts = path[len("/storage/v1/b"):].strip("/").split("/")
                if method == "POST" and parts == [""]:  # create a bucket
                    owner.buckets.add(body["name"])
                    return self._answer(200, dict(body, projectNumber="123"))
                if parts[0] not in owner.buckets:
                    return self._answer(404, {"error": {"code": 404, "message": "no bucket"}})
                if parts[1:] == ["iam"]:
                    return self._answer(200, body or {"bindings": [], "etag": "CAE="})
                return self._answer(200, {"name": parts[0], "projectNumber": "123"})

            def do_PUT(self):
                self._handle("PUT")

            def do_POST(self):
                self._handle("POST")

            def do_GET(self):
                self._handle("GET")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def next_name(self, what):
        self.counter = getattr(self, "counter", 0) + 1
        return f"{what}/{self.counter}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()
