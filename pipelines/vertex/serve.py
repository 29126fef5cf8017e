"""The serving container's server: a SavedModel behind Vertex AI's custom-container contract.

Vertex AI's prebuilt TensorFlow prediction images (the ones the locked
google-cloud-aiplatform lists) stop at TensorFlow 2.15, older than the 2.16 the
model trains with; so the model is served from the image ``twotower image``
builds (the training image, whose TensorFlow is the training one), with this
server as its command (``python -m pipelines.vertex.serve``). Vertex AI's contract
(https://cloud.google.com/vertex-ai/docs/predictions/custom-container-requirements):

- listen on ``AIP_HTTP_PORT`` (8080);
- ``GET AIP_HEALTH_ROUTE``: 200 once the model is loaded;
- ``POST AIP_PREDICT_ROUTE`` with ``{"instances": [{input: value, ...}, ...]}``: 200 with
  ``{"predictions": [...]}``, one per instance, in order: the ``serving_default``
  signature's outputs for that row (a dict of them; the one value when there is one
  output), as TF Serving's row format answers;
- the model is read from ``AIP_STORAGE_URI`` (a ``gs://`` copy of the uploaded
  artifact; TensorFlow reads ``gs://`` itself).

A bad request is a 400 with ``{"error": one line naming the instance and input}``.
:data:`ROUTES` is what the model upload declares (:mod:`pipelines.build.components.model_upload`),
so the routes the upload names are the ones this server answers.
"""
from __future__ import annotations

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List

PORT = 8080
ROUTES = {"health": "/health", "predict": "/predict"}
COMMAND = ["python", "-m", "pipelines.vertex.serve"]
# What a Model upload serving with this server declares (aiplatform.Model.upload's arguments).
UPLOAD = {"serving_container_command": COMMAND,
          "serving_container_health_route": ROUTES["health"],
          "serving_container_predict_route": ROUTES["predict"],
          "serving_container_ports": [PORT]}


class Model:
    """A SavedModel's ``serving_default`` signature, called on Vertex AI's row format."""

    def __init__(self, path: str):
        import tensorflow as tf  # TensorFlow: off the CLI's fast path

        try:  # a ScaNN serving model needs ScaNN's ops registered (the image has ScaNN then)
            import scann  # noqa: F401
        except ImportError:
            pass
        self.tf = tf
        self.loaded = tf.saved_model.load(path)
        self.signature = self.loaded.signatures["serving_default"]
        self.inputs = self.signature.structured_input_signature[1]  # {name: TensorSpec}

    def predict(self, instances: List[dict]) -> List[object]:
        """One prediction per instance; raises ValueError naming a bad instance or input."""
        if not isinstance(instances, list) or not instances:
            raise ValueError('"instances" must be a non-empty list of {input: value} objects')
        columns: Dict[str, list] = {name: [] for name in self.inputs}
        for i, row in enumerate(instances):
            if not isinstance(row, dict):
                raise ValueError(f"instance {i} is not an object of inputs "
                                 f"({', '.join(sorted(self.inputs))})")
            unknown = sorted(set(row) - set(self.inputs))
            missing = sorted(set(self.inputs) - set(row))
            if unknown or missing:
                raise ValueError(f"instance {i}: " + "; ".join(
                    part for part in (f"unknown inputs {unknown}" if unknown else "",
                                      f"missing inputs {missing}" if missing else "") if part)
                    + f" (the model takes {', '.join(sorted(self.inputs))})")
            for name in self.inputs:
                columns[name].append(row[name])
        tensors = {}
        for name, spec in self.inputs.items():
            try:
                tensors[name] = self.tf.constant(columns[name], dtype=spec.dtype)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"input {name!r}: not {spec.dtype.name} values ({exc})") from None
        outputs = {k: v.numpy() for k, v in self.signature(**tensors).items()}
        rows = []
        for i in range(len(instances)):
            row = {k: _plain(v[i]) for k, v in outputs.items()}
            rows.append(next(iter(row.values())) if len(row) == 1 else row)
        return rows


def _plain(value):
    """A numpy value as JSON: bytes as UTF-8 text, arrays as lists."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def handler(model: Model, health: str, predict: str):
    """The request handler class for ``model`` on those routes."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, code: int, body: dict):
            data = json.dumps(body).encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802 (http.server's name)
            if self.path == health:
                self._answer(200, {"status": "ready"})
            else:
                self._answer(404, {"error": f"no route {self.path}: GET {health}"})

        def do_POST(self):  # noqa: N802
            if self.path != predict:
                self._answer(404, {"error": f"no route {self.path}: POST {predict}"})
                return
            try:
                size = int(self.headers.get("Content-Length") or 0)
                request = json.loads(self.rfile.read(size) or b"null")
                if not isinstance(request, dict) or "instances" not in request:
                    raise ValueError('the body must be {"instances": [...]}')
                self._answer(200, {"predictions": model.predict(request["instances"])})
            except ValueError as exc:  # json.JSONDecodeError is one
                self._answer(400, {"error": str(exc).splitlines()[0]})

        def log_message(self, *args):  # one line per request on stderr, as the default
            sys.stderr.write("%s - %s\n" % (self.address_string(), args[0] % args[1:]))

    return Handler


def main() -> int:
    """Serves ``AIP_STORAGE_URI``'s model on ``AIP_HTTP_PORT`` until stopped."""
    path = os.environ.get("AIP_STORAGE_URI")
    if not path:
        sys.stderr.write("error: AIP_STORAGE_URI is not set: Vertex AI sets it to the uploaded "
                         "model's copy; set it to a SavedModel folder to run this here\n")
        return 2
    model = Model(path)
    port = int(os.environ.get("AIP_HTTP_PORT", PORT))
    routes = (os.environ.get("AIP_HEALTH_ROUTE", ROUTES["health"]),
              os.environ.get("AIP_PREDICT_ROUTE", ROUTES["predict"]))
    server = ThreadingHTTPServer(("", port), handler(model, *routes))
    sys.stderr.write(f"serving {path} on port {port}: GET {routes[0]}, POST {routes[1]}\n")
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
