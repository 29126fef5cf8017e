"""The compiled spec executes: every task of a submitted pipeline run here as Vertex AI runs it.

`twotower compile --target vertex` (files as input, no Vertex AI Training, no
Dataflow) stages to ``gs://`` and writes the spec; `twotower submit --param
epochs=2` sends it to the REST stand-in; the PipelineJob it received is then
run task by task by `tests/vertex_local.py`: each task's own container command
from the spec (TFX's ``kubeflow_v2_run_executor`` and ExampleGen's driver),
the ExecutorInput Vertex AI would pass, KFP's placeholder resolution, the
custom components and the runtime imported from the image's copy (`twotower
image`), the
module wheels installed from their staged ``gs://`` location, and ``gs://``
served from a local folder to TensorFlow, Beam and TFX alike
(`tests/gcs_standin.py`). Then the pushed model is loaded from the serving
location and queried, and the ModelUpload step's request to the Vertex AI
stand-in names it. What this does not prove: Vertex AI's own validation of
the job, IAM, quotas, image pulls, machines.
"""
import json
import os
import subprocess
import sys

import pytest

from pipelines.config.schema import Config
from tests.conftest import ROOT, demo_raw
from vertex_standin import StandIn as VertexStandIn

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
IMAGE = "europe-west4-docker.pkg.dev/acme-recs/ml/twotower:1"
SERVING = "twotower"  # the training image, serving with pipelines/vertex/serve.py
HERE = os.path.dirname(os.path.abspath(__file__))


def _image_env(storage, image_code):
    """A task process's environment: the image's PYTHONPATH and ENV, gs:// to the stand-in."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GOOGLE_", "CLOUDSDK_", "STORAGE_EMULATOR"))}
    env.update(storage.env())
    env.update(PYTHONPATH=os.pathsep.join([os.path.join(HERE, "image_site"), image_code]),
               PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""),
               TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2",
               PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


@pytest.mark.timeout(2400)
def test_the_submitted_pipeline_runs_every_task_and_serves_the_pushed_model(
        tmp_path, small_data, monkeypatch):
    from gcs_standin import StandIn as StorageStandIn
    from vertex_local import run_job

    from pipelines.vertex import image
    from pipelines.cli.main import main

    gcs = tmp_path / "gcs"
    (gcs / "acme-bucket").mkdir(parents=True)
    storage, vertex = StorageStandIn(gcs), VertexStandIn()
    try:
        raw = demo_raw(small_data)
        raw["training"].update(epochs=3)
        raw["model"].update(top_k=[10, 50])  # the small catalog has 60 products
        raw["pipeline"].update(min_lift_over_popularity=None)  # the mechanics, not the model
        raw["vertex"] = {"project": "acme-recs", "region": "europe-west4",
                         "pipeline_root": "gs://acme-bucket/twotower",
                         "service_account": "runner@acme-recs.iam.gserviceaccount.com",
                         "labels": {"team": "growth"}, "api_endpoint": vertex.endpoint,
                         "model_upload": {"serving_image": SERVING}}
        cfg = Config.from_dict(raw)
        config = tmp_path / "config.json"
        config.write_text(cfg.to_json(), encoding="utf-8")
        spec = tmp_path / "pipeline.json"
        done = subprocess.run(
            [sys.executable, "-m", "pipelines", "compile", "--config", str(config), "--target",
             "vertex", "--image", IMAGE, "--out", str(spec), "--stage-dir", str(gcs)],
            capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]

        monkeypatch.setenv("STORAGE_EMULATOR_HOST", vertex.endpoint)  # the client's bucket check
        assert main(["submit", "--config", str(config), "--spec", str(spec),
                     "--param", "epochs=2"]) == 0
        [create] = [r for r in vertex.requests if r["path"].endswith("/pipelineJobs")]
        job = create["body"]  # what Vertex AI received
        # schema 2.0.0 (TFX's): typed values, the submitted epochs over the compiled 3
        assert job["runtimeConfig"]["parameters"]["epochs"] == {"intValue": "2"}

        image.write(cfg, str(tmp_path / "image"))  # the image's build context
        env = _image_env(storage, str(tmp_path / "image" / "twotower"))
        probe = subprocess.run([sys.executable, "-c", (
            "import pipelines.build.components.parquet_example_gen as m; print(m.__file__)\n"
            "import importlib.util as u; print(u.find_spec('trainer').origin, "
            "u.find_spec('pipelines.validate'))")], env=env, capture_output=True, text=True,
            cwd=str(tmp_path))
        # the components and the runtime (which the thin modules import) from the image's
        # copy, and nothing outside the components' import closure (validation is not there)
        assert probe.stdout.split() == [
            str(tmp_path / "image" / "twotower" / "pipelines" / "build" / "components" /
                "parquet_example_gen.py"),
            str(tmp_path / "image" / "twotower" / "trainer" / "__init__.py"), "None"], \
            probe.stderr[-2000:]

        def read(uri):
            assert uri.startswith("gs://"), uri
            return (gcs / uri[len("gs://"):]).read_bytes()

        results = run_job(job, env, str(tmp_path / "tasks"), read, log=lambda *_: None)
        _check_the_run(job, results, read, gcs, vertex, storage)
    finally:
        storage.close()
        vertex.close()


def _check_the_run(job, results, read, gcs, vertex, storage):
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    assert set(results) == set(tasks) == {
        "ParquetExampleGen", "StatisticsGen", "ImportSchemaGen", "Transform",
        "RuntimeParameters", "Trainer", "PopularityGate", "RefitTransform", "RefitTrainer",
        "Pusher", "ModelUpload"}  # training.refit (the default) adds the refit pair
    # artifacts flowed: each input is its producer's output, written under the job's root
    root = job["runtimeConfig"]["gcsOutputDirectory"]
    for name, task in tasks.items():
        for key, source in task.get("inputs", {}).get("artifacts", {}).items():
            producer = source["taskOutputArtifact"]
            given = results[name]["input"].inputs.artifacts[key].artifacts[0]
            made = results[producer["producerTask"]]["outputs"][
                producer["outputArtifactKey"]].artifacts[0]
            assert given.uri == made.uri and given.uri.startswith(root + "/"), (name, key)
            assert (gcs / given.uri[len("gs://"):]).exists(), given.uri
    # the runtime parameter reached the Trainer: 2 epochs, not the compiled 3
    hyper = results["RuntimeParameters"]["outputs"]["hyperparameters"].artifacts[0].uri
    assert json.loads(read(hyper + "/best_hyperparameters.txt"))["epochs"] == 2
    run = results["Trainer"]["outputs"]["model_run"].artifacts[0].uri
    metrics = json.loads(read(run + "/training_metrics.json"))
    assert metrics["status"] == "completed" and len(metrics["epochs"]) == 2, metrics["status"]
    # the module wheels were installed from their staged gs:// location
    trainer_log = open(results["Trainer"]["logs"][-1], encoding="utf-8").read()
    wheel = [a for a in tasks["Trainer"]["inputs"]["parameters"]["module_path"][
        "runtimeValue"]["constantValue"]["stringValue"].split("@")][1]
    assert wheel.startswith(root + "/_wheels/") and "Successfully installed" in trainer_log
    # pushed under the gs:// serving location, loadable and answering queries
    pushed = results["Pusher"]["outputs"]["pushed_model"].artifacts[0]
    metadata = dict(pushed.metadata)
    destination = metadata["pushed_destination"]
    assert metadata["pushed"] == 1
    assert destination.startswith("gs://acme-bucket/twotower/b2b-demo/serving/"), destination
    _query(gcs / destination[len("gs://"):])
    # ModelUpload asked Vertex AI to register exactly that model with the serving image
    [upload] = [r for r in vertex.requests if r["path"].endswith("/models:upload")]
    assert upload["body"]["model"]["artifactUri"] == destination
    assert upload["body"]["model"]["containerSpec"]["imageUri"] == IMAGE
    assert upload["body"]["model"]["containerSpec"]["command"] == ["python", "-m",
                                                                   "pipelines.vertex.serve"]
    result = results["ModelUpload"]["outputs"]["result"].artifacts[0].uri
    assert json.loads(read(result + "/model_upload.json"))["uploaded"] is True
    assert storage.refused == []  # no other host was asked for


def _query(model_dir):
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import tensorflow as tf

    model = tf.saved_model.load(str(model_dir))
    out = model.signatures["serving_default"](query_id=tf.constant(["C00001", "nobody"]),
                                               segment=tf.constant(["smb", ""]),
                                               region=tf.constant(["east", ""]))
    ids = out["candidate_ids"].numpy()
    assert ids.shape[0] == 2 and ids.shape[1] >= 1
    assert all(i.decode().startswith("P") for i in ids[0]), ids[0]
