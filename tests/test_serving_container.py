"""The serving container (`serving_image: twotower`): `python -m pipelines.vertex.serve` from the
image's build folder alone, on Vertex AI's custom-container contract (AIP_HTTP_PORT,
AIP_HEALTH_ROUTE, AIP_PREDICT_ROUTE, AIP_STORAGE_URI), answering what the SavedModel answers."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from conftest import ROOT
from pipelines.config.schema import Config

HIDE = os.path.join(ROOT, "tests", "image_site")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory, raw_config_module):
    from pipelines.vertex.image import write

    out = tmp_path_factory.mktemp("img")
    write(raw_config_module, str(out))
    return str(out / "twotower")


@pytest.fixture(scope="module")
def raw_config_module(small_data):
    from conftest import demo_raw

    return Config.from_dict(demo_raw(small_data))


def start(model_dir, image_folder, cwd, health="/v1/health", predict="/v1/predict"):
    """The server as Vertex AI starts the container; returns (process, base URL)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=os.pathsep.join([HIDE, image_folder]), AIP_HTTP_PORT=str(port),
               AIP_HEALTH_ROUTE=health, AIP_PREDICT_ROUTE=predict,
               AIP_STORAGE_URI=str(model_dir), TF_CPP_MIN_LOG_LEVEL="2")
    process = subprocess.Popen([sys.executable, "-m", "pipelines.vertex.serve"], cwd=str(cwd), env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if process.poll() is not None:
            raise AssertionError(process.stderr.read()[-3000:])
        try:
            with urllib.request.urlopen(url + health, timeout=2) as answer:
                assert answer.status == 200
                return process, url
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.5)
    process.kill()
    raise AssertionError("the server did not answer its health route in 120 s")


def post(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode("utf-8"),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def small_model(path):
    """A SavedModel with a serving signature of the serving model's form: [batch] raw inputs
    -> candidate_ids [batch, 2] strings and scores [batch, 2]."""
    import tensorflow as tf

    class Scorer(tf.Module):
        @tf.function(input_signature=[{"query_id": tf.TensorSpec([None], tf.string,
                                                                 name="query_id"),
                                       "age": tf.TensorSpec([None], tf.float32, name="age")}])
        def serve(self, features):
            ids = tf.stack([features["query_id"] + "-a", features["query_id"] + "-b"], axis=1)
            scores = tf.stack([features["age"], features["age"] * 2.0], axis=1)
            return {"candidate_ids": ids, "scores": scores}

    module = Scorer()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})


def test_the_server_answers_vertex_ais_contract_from_the_image_folder(tmp_path, image_folder):
    small_model(tmp_path / "model")
    (tmp_path / "cwd").mkdir()
    process, url = start(tmp_path / "model", image_folder, tmp_path / "cwd")
    try:
        code, body = post(url + "/v1/predict", {"instances": [
            {"query_id": "c1", "age": 1.5}, {"query_id": "ü", "age": -2.0}]})
        assert code == 200, body
        assert body == {"predictions": [
            {"candidate_ids": ["c1-a", "c1-b"], "scores": [1.5, 3.0]},
            {"candidate_ids": ["ü-a", "ü-b"], "scores": [-2.0, -4.0]}]}
        code, body = post(url + "/v1/predict", {"instances": [{"query_id": "c1"}]})
        assert code == 400 and body == {"error": "instance 0: missing inputs ['age'] (the "
                                                 "model takes age, query_id)"}
        code, body = post(url + "/v1/predict", {"instances": [{"query_id": "c", "age": "x"}]})
        assert code == 400 and body["error"].startswith("input 'age': not float32 values")
        code, body = post(url + "/v1/predict", {"rows": []})
        assert code == 400 and body == {"error": 'the body must be {"instances": [...]}'}
        code, body = post(url + "/predict", {"instances": []})  # not the route Vertex AI set
        assert code == 404
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_server_refuses_to_start_without_a_model(tmp_path, image_folder):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AIP_STORAGE_URI")}
    env["PYTHONPATH"] = os.pathsep.join([HIDE, image_folder])
    done = subprocess.run([sys.executable, "-m", "pipelines.vertex.serve"], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: AIP_STORAGE_URI is not set")


@pytest.mark.e2e
def test_the_server_answers_as_the_pushed_serving_model(e2e_run, tmp_path, image_folder):
    """The real serving model (and its query tower, which Vector Search's endpoint serves):
    the server's answers are the signature's, ids as written."""
    import tensorflow as tf

    from e2e_helpers import ODD_CUSTOMERS, query_inputs
    from pipelines.runners.local import results

    serving = results(e2e_run["root"])["serving_model"]
    with open(os.path.join(serving, "assets.extra", "serving_inputs.json"),
              encoding="utf-8") as handle:
        described = json.load(handle)
    loaded = tf.saved_model.load(serving).signatures["serving_default"]
    columns = query_inputs(e2e_run, described, list(ODD_CUSTOMERS.values()) + ["never-seen"])
    instances = [dict(zip(columns, values)) for values in zip(*columns.values())]
    specs = loaded.structured_input_signature[1]
    want = loaded(**{k: tf.constant(v, dtype=specs[k].dtype) for k, v in columns.items()})
    (tmp_path / "cwd").mkdir()
    process, url = start(serving, image_folder, tmp_path / "cwd")
    try:
        code, body = post(url + "/v1/predict", {"instances": instances})
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert code == 200, body
    got = body["predictions"]
    assert [p["candidate_ids"] for p in got] == [
        [i.decode("utf-8") for i in row] for row in want["candidate_ids"].numpy()]
    assert [p["scores"] for p in got] == want["scores"].numpy().tolist()
