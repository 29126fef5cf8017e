"""The full Vertex AI config's compiled spec executes: BigQuery, Dataflow, Vertex AI Training on
a T4, model upload and Vector Search, each task from the image's copy.

The config: the demo's with ``data.bigquery`` (and its candidates table),
``vertex.dataflow``, ``vertex.training`` (n1-standard-8, one NVIDIA_TESLA_T4),
``vertex.model_upload`` and ``vertex.vector_search`` with ``serving_image: twotower``
(tests/test_image_executors.py's FULL). It is compiled by `twotower compile` and
sent by `twotower submit`; the PipelineJob the REST stand-in received runs task by
task as in tests/test_vertex_executed.py (TFX's container entrypoint, the image's
code alone, ``gs://`` on a local folder), and:

- BigQueryExampleGen runs TFX's executor and Beam's own ``ReadFromBigQuery``
  (EXPORT: query into a temporary table, Avro export to ``--temp_location``)
  against the BigQuery stand-in (tests/bigquery_standin.py), which runs each
  query in DuckDB only after the GoogleSQL check passed it;
- every Beam task runs the spec's Dataflow arguments on the DirectRunner: only
  ``--runner`` is swapped (tests/task_site/dataflow_standin.py records the options
  Beam parsed);
- both Trainers create a CustomJob on the Vertex AI Training stand-in (gRPC,
  tests/training_standin.py), which runs its command here; this machine has no T4,
  so the job's command is run with the GPU count 0 in its custom_config, the one
  change, recorded and asserted (the job as sent asks for 1);
- the Tuner (``tuning.parallel: 2``) is TFX's Google Cloud Tuner: one CustomJob of two
  replicas (workerpool0 and one workerpool1) run at once by the stand-in with Vertex AI's
  ``CLUSTER_SPEC``; workerpool0 serves keras-tuner's oracle, both replicas run trials
  (each trial once) in the search's folder on the bucket, and the best values the oracle
  chose are the Trainer's ``hyperparameters`` input and what it trained;
- ModelUpload and VectorSearchDeploy run against the Vertex AI REST stand-in with
  every long-running operation pending for two polls.

``training.refit: false`` here: the refit pair (a second Transform and CustomJob)
adds ~4 minutes and nothing this test checks. What this does not prove: Vertex AI's,
BigQuery's and Dataflow's own validation, IAM, quotas, image pulls, machines, GPUs.
"""
import glob
import json
import os
import subprocess
import sys

import pytest

from pipelines.config.schema import Config, apply_overrides
from tests.conftest import ROOT, demo_raw
from vertex_standin import StandIn as VertexStandIn

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
IMAGE = "europe-west4-docker.pkg.dev/acme-recs/ml/twotower@sha256:" + "1" * 64
HERE = os.path.dirname(os.path.abspath(__file__))
PENDING = 2  # polls each Vertex AI operation stays pending
DATAFLOW = "--runner=DataflowRunner"
STANDIN_RUNNER = "--runner=dataflow_standin.DataflowStandIn"


def _full_config(small_data, vertex_endpoint):
    from test_image_executors import FULL

    raw = apply_overrides(demo_raw(small_data), FULL + [
        "training.epochs=2", "training.refit=false", "model.top_k=[10, 50]",
        "pipeline.min_lift_over_popularity=null",
        "tuning.parallel=2", "tuning.trials=2", "tuning.algorithm=random",
        "tuning.max_epochs=1", "tuning.seed=5",
        "tuning.space={model.embedding_dim: {values: [16, 24, 32, 48]}}"])
    raw["vertex"].update(service_account="runner@acme-recs.iam.gserviceaccount.com",
                         labels={"team": "growth"}, api_endpoint=vertex_endpoint)
    return Config.from_dict(raw)


def _one_gpu_less(command):
    """The CustomJob's command with GPUs requested 0 (this machine has none): the change."""
    from trainer.runtime import GPUS_KEY

    command = list(command)
    at = command.index("--exec-properties") + 1
    props = json.loads(command[at])
    custom = json.loads(props["custom_config"])
    if GPUS_KEY not in custom:  # the Tuner's trials: no GPU count is read
        return command, None
    asked, custom[GPUS_KEY] = custom[GPUS_KEY], 0
    props["custom_config"] = json.dumps(custom, sort_keys=True)
    command[at] = json.dumps(props, sort_keys=True)
    return command, f"{GPUS_KEY}: {asked} -> 0"


@pytest.mark.timeout(2400)
def test_the_full_config_runs_bigquery_dataflow_training_upload_and_vector_search(
        tmp_path, small_data, monkeypatch):
    from bigquery_standin import HOST, BigQuery
    from gcs_standin import StandIn as StorageStandIn
    from gcs_store import Store
    from test_vertex_executed import _image_env
    from training_standin import TrainingStandIn
    from vertex_local import run_job

    from pipelines.vertex import image
    from pipelines.cli.main import main

    gcs = tmp_path / "gcs"
    (gcs / "acme-bucket").mkdir(parents=True)
    bigquery = BigQuery({"acme-recs.shop.orders": os.path.join(small_data, "purchases.csv"),
                         "acme-recs.shop.products": os.path.join(small_data, "products.csv")},
                        Store(str(gcs)))
    task_env = {}  # filled below; the CustomJobs run with the same image environment
    training = TrainingStandIn("europe-west4", task_env, str(tmp_path / "jobs"),
                               pending_polls=1, adapt=_one_gpu_less)
    storage = StorageStandIn(gcs, also={HOST: bigquery.answer}, tunnels=training.tunnels())
    vertex = VertexStandIn(pending_polls=PENDING)
    try:
        cfg = _full_config(small_data, vertex.endpoint)
        config = tmp_path / "config.json"
        config.write_text(cfg.to_json(), encoding="utf-8")
        spec = tmp_path / "pipeline.json"
        done = subprocess.run(
            [sys.executable, "-m", "pipelines", "compile", "--config", str(config), "--target",
             "vertex", "--image", IMAGE, "--out", str(spec), "--stage-dir", str(gcs)],
            capture_output=True, text=True, cwd=ROOT,
            env={k: v for k, v in os.environ.items() if not k.startswith("GOOGLE_")})
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", vertex.endpoint)
        assert main(["submit", "--config", str(config), "--spec", str(spec)]) == 0
        [create] = [r for r in vertex.requests if r["path"].endswith("/pipelineJobs")]
        job = create["body"]

        image.write(cfg, str(tmp_path / "image"))
        env = _image_env(storage, str(tmp_path / "image" / "twotower"))
        env["PYTHONPATH"] += os.pathsep + os.path.join(HERE, "task_site")
        env["DATAFLOW_STANDIN_RECORD"] = str(tmp_path / "dataflow")
        env.update(training.env_vars())
        task_env.update(env)

        def read(uri):
            assert uri.startswith("gs://"), uri
            return (gcs / uri[len("gs://"):]).read_bytes()

        swapped = []

        def on_the_direct_runner(task, argv):
            if DATAFLOW in argv:
                swapped.append(task)
            return [STANDIN_RUNNER if a == DATAFLOW else a for a in argv]

        results = run_job(job, env, str(tmp_path / "tasks"), read, log=lambda *_: None,
                          rewrite=on_the_direct_runner)
        tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
        assert set(results) == set(tasks) == {
            "BigQueryExampleGen", "StatisticsGen", "ImportSchemaGen", "Transform",
            "Tuner", "Trainer", "PopularityGate", "Pusher", "ModelUpload",
            "VectorSearchDeploy"}
        assert sorted(swapped) == sorted(tasks)  # every container had Dataflow's arguments
        _check_bigquery(job, results, bigquery, gcs)
        _check_dataflow(job, tmp_path / "dataflow")
        _check_training(training, cfg)
        _check_tuning(training, results, gcs)
        _check_serving(results, vertex, read)
        assert storage.refused == []  # no host but the stand-ins' was asked for
    finally:
        storage.close()
        vertex.close()
        training.close()


def _split_queries(job):
    task = job["pipelineSpec"]["root"]["dag"]["tasks"]["BigQueryExampleGen"]
    value = task["inputs"]["parameters"]["input_config"]["runtimeValue"]["constantValue"]
    return {s["name"]: s["pattern"] for s in json.loads(value["stringValue"])["splits"]}


def _check_bigquery(job, results, bigquery, gcs):
    import tensorflow as tf

    queries = _split_queries(job)
    assert sorted(queries) == ["catalog", "eval", "eval_queries", "train"]
    assert bigquery.refused == []  # each text passed the GoogleSQL check
    # Beam ran each split's text as the spec has it, TFX's converter read its schema
    assert sorted(t for t in bigquery.queries if t in queries.values()) == sorted(
        queries.values())
    assert {f"SELECT * FROM ({q}) LIMIT 0" for q in queries.values()} <= {
        j["configuration"]["query"]["query"] for j in bigquery.jobs.values()
        if "query" in j["configuration"]}
    exports = [j["configuration"]["extract"] for j in bigquery.jobs.values()
               if "extract" in j["configuration"]]
    assert len(exports) == 4 and {e["destinationFormat"] for e in exports} == {"AVRO"}
    assert all(e["destinationUris"][0].startswith("gs://acme-bucket/full/beam-temp/")
               for e in exports)  # the spec's --temp_location reached Beam
    # each split's examples are the rows DuckDB gave for its query
    examples = results["BigQueryExampleGen"]["outputs"]["examples"].artifacts[0].uri
    for split, text in queries.items():
        files = glob.glob(str(gcs / examples[len("gs://"):] / f"Split-{split}" / "*.gz"))
        count = sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))
        assert count == len(bigquery.run(text)[1]) > 0, split
    # the temporary datasets were deleted: nothing left of the run but the source tables
    assert bigquery.datasets == {("acme-recs", "shop")}


def _check_dataflow(job, folder):
    args = job["pipelineSpec"]["deploymentSpec"]["executors"]["Transform_executor"][
        "container"]["args"]
    wanted = [tuple(a[2:].split("=", 1)) for a in args
              if a.startswith("--") and "=" in a and a != DATAFLOW]
    records = [json.load(open(p, encoding="utf-8"))["options"]
               for p in sorted(glob.glob(str(folder / "*.json")))]
    assert len(records) >= 3  # ExampleGen, StatisticsGen, Transform: one Beam pipeline each
    for options in records:
        assert options["runner"] == "dataflow_standin.DataflowStandIn"
        for key, value in wanted:  # a list option (labels, experiments) holds the value
            got = options.get(key)
            assert (value in got) if isinstance(got, list) else str(got) == value, (key, got)
    wanted = dict(wanted)
    assert ("labels", "team=growth") in wanted.items() or wanted.get("labels") == "team=growth"
    assert wanted["project"] == "acme-recs" and wanted["sdk_container_image"] == IMAGE
    assert wanted["temp_location"] == "gs://acme-bucket/full/beam-temp"
    assert wanted["service_account_email"] == "runner@acme-recs.iam.gserviceaccount.com"


def _check_training(training, cfg):
    from google.cloud.aiplatform_v1.types import custom_job

    [sent] = [custom_job.CustomJob(j) for j in training.jobs
              if "tuner" not in j["display_name"]]
    as_dict = custom_job.CustomJob.to_dict(sent, use_integers_for_enums=False)
    [pool] = as_dict["job_spec"]["worker_pool_specs"]
    assert pool["machine_spec"]["machine_type"] == "n1-standard-8"
    assert pool["machine_spec"]["accelerator_type"] == "NVIDIA_TESLA_T4"
    assert pool["machine_spec"]["accelerator_count"] == 1
    assert pool["replica_count"] == "1" and pool["container_spec"]["image_uri"] == IMAGE
    command = pool["container_spec"]["command"]
    assert command[:5] == ["python", "-m", "tfx.scripts.run_executor", "--executor_class_path",
                           "tfx.components.trainer.executor.GenericExecutor"]
    props = json.loads(command[command.index("--exec-properties") + 1])
    assert json.loads(props["custom_config"])["twotower_gpus_requested"] == 1
    assert props["module_path"].startswith("trainer_module@gs://acme-bucket/full/")
    assert as_dict["job_spec"]["service_account"] == cfg.vertex.service_account
    assert as_dict["labels"]["team"] == "growth"
    assert training.adapted == ["twotower_gpus_requested: 1 -> 0"]
    # TFX polled the job: pending once, then running or done (30 s between polls)
    assert all(n >= 2 for n in training.polls.values()), training.polls


def _check_tuning(training, results, gcs):
    from google.cloud.aiplatform_v1.types import custom_job

    from trainer.tuning_space import TRIALS_FOLDER

    [(index, sent)] = [(i, custom_job.CustomJob.to_dict(custom_job.CustomJob(j)))
                       for i, j in enumerate(training.jobs) if "tuner" in j["display_name"]]
    pools = sent["job_spec"]["worker_pool_specs"]
    assert [p["replica_count"] for p in pools] == ["1", "1"]  # tuning.parallel 2
    assert {p["container_spec"]["image_uri"] for p in pools} == {IMAGE}
    command = pools[0]["container_spec"]["command"]
    assert "tfx.extensions.google_cloud_ai_platform.tuner.executor._WorkerExecutor" in command
    logs = training.logs[training.names[index]]  # workerpool0's, then workerpool1's
    texts = [open(p, encoding="utf-8", errors="replace").read() for p in logs]
    assert len(texts) == 2 and "Binding chief oracle server" in texts[0]
    # both replicas ran trials, in one project on the bucket; no trial ran twice
    ran = [[line.split(":")[0] for line in text.splitlines() if line.startswith("trial ")]
           for text in texts]
    assert all(ran) and len(sum(ran, [])) == len(set(sum(ran, []))) == 2, ran
    ran = sum(ran, [])
    [project] = glob.glob(str(gcs / "acme-bucket" / "full" / "*" / "tuner-trials" / "search-*"))
    records = [json.load(open(p, encoding="utf-8"))
               for p in glob.glob(os.path.join(project, TRIALS_FOLDER, "*.json"))]
    assert sorted(r["trial"] for r in records) == sorted(r.split()[1] for r in ran)
    best = max(records, key=lambda r: (r["objective"], -int(r["trial"])))
    # the oracle's best values are the Tuner's output, the Trainer's input, what it trained
    tuned = results["Tuner"]["outputs"]["best_hyperparameters"].artifacts[0].uri
    fed = results["Trainer"]["input"].inputs.artifacts["hyperparameters"].artifacts[0].uri
    assert fed == tuned
    values = json.loads((gcs / tuned[len("gs://"):] / "best_hyperparameters.txt").read_text())
    assert values["values"]["model.embedding_dim"] == best["values"]["model.embedding_dim"]
    run = results["Trainer"]["outputs"]["model_run"].artifacts[0].uri
    record = json.loads((gcs / run[len("gs://"):] / "training_metrics.json").read_text())
    assert record["tuned"] == best["values"], record["tuned"]


def _check_serving(results, vertex, read):
    pushed = dict(results["Pusher"]["outputs"]["pushed_model"].artifacts[0].metadata)
    assert pushed["pushed"] == 1
    destination = pushed["pushed_destination"]
    ups = [r["body"]["model"] for r in vertex.requests if r["path"].endswith("/models:upload")]
    assert ups[0]["artifactUri"] == destination and ups[0]["containerSpec"]["imageUri"] == IMAGE
    assert ups[0]["containerSpec"]["command"] == ["python", "-m", "pipelines.vertex.serve"]
    [index] = [r["body"] for r in vertex.requests
               if r["method"] == "POST" and r["path"].endswith("/indexes")]
    assert index["metadata"]["config"]["shardSize"] == "SHARD_SIZE_SMALL"
    assert index["metadata"]["contentsDeltaUri"].startswith(destination)
    [deploy] = [r["body"]["deployedIndex"] for r in vertex.requests
                if r["path"].endswith(":deployIndex")]
    assert deploy["dedicatedResources"]["machineSpec"]["machineType"] == "e2-standard-2"
    assert any(r["path"].endswith(":deployModel") for r in vertex.requests)
    # every long-running operation was pending for PENDING polls and polled to its end
    assert vertex.operations and all(left < 0 for left, _ in vertex.operations.values()), \
        vertex.operations
    result = results["VectorSearchDeploy"]["outputs"]
    out = {k: v.artifacts[0].uri for k, v in result.items()}
    assert out, "VectorSearchDeploy wrote no output artifact"
