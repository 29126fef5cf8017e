"""`twotower compile --target vertex`: a PipelineSpec with real gs:// paths, built offline."""
import glob
import json
import os
import pathlib

import pytest

from pipelines.config.schema import Config, ConfigError, apply_overrides
from pipelines.runners import vertex
from pipelines.runners.compile import compile_vertex

IMAGE = "europe-west4-docker.pkg.dev/acme-recs/ml/twotower:1"


def test_compile_stages_to_gcs_and_writes_every_component(tmp_path, raw_config):
    from pipelines.vertex import gcs_on_disk

    gcs_on_disk.register(tmp_path / "gcs")
    cfg = Config.from_dict(apply_overrides(raw_config, [
        "vertex.project=acme-recs", "vertex.region=europe-west4",
        "vertex.pipeline_root=gs://acme-bucket/twotower"]))
    out = tmp_path / "pipeline.json"
    done = compile_vertex(cfg, str(out), IMAGE, log=lambda *_: None)
    job = json.loads(out.read_text(encoding="utf-8"))
    spec = job["pipelineSpec"]
    tasks = spec["root"]["dag"]["tasks"]
    names = set(tasks)
    assert names == {"ParquetExampleGen", "StatisticsGen", "ImportSchemaGen", "Transform",
                     "RuntimeParameters", "Trainer", "PopularityGate", "RefitTransform",
                     "RefitTrainer", "Pusher"}
    # the refit starts after the gate judged the chosen model, from that model's choice
    assert "PopularityGate" in tasks["RefitTransform"]["dependentTasks"]
    base = tasks["RefitTrainer"]["inputs"]["artifacts"]["base_model"]["taskOutputArtifact"]
    assert base["producerTask"] == "Trainer"
    pushed = tasks["Pusher"]["inputs"]["artifacts"]["model"]["taskOutputArtifact"]
    assert pushed["producerTask"] == "RefitTrainer"
    # epochs, learning rate and batch size are pipeline parameters, typed, set from the config
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert {k: v["type"] for k, v in params.items()} == {
        "epochs": "INT", "learning_rate": "DOUBLE", "batch_size": "INT"}
    assert job["runtimeConfig"]["parameters"] == {
        "epochs": {"intValue": str(cfg.training.epochs)},
        "learning_rate": {"doubleValue": cfg.training.learning_rate},
        "batch_size": {"intValue": str(cfg.training.batch_size)}}
    assert tasks["RuntimeParameters"]["inputs"]["parameters"]["epochs"] == {
        "componentInputParameter": "epochs"}
    assert tasks["Trainer"]["inputs"]["artifacts"]["hyperparameters"]["taskOutputArtifact"][
        "producerTask"] == "RuntimeParameters"
    executors = spec["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {IMAGE}
    text = json.dumps(job)
    # this pipeline's folder under the shared root; its input and modules staged by content
    folder = "gs://acme-bucket/twotower/b2b-demo"
    assert done["input"].startswith(folder + "/staged/")
    assert done["modules"] == done["input"][:-len("input")] + "modules"
    assert done["input"] in text  # ExampleGen reads the staged splits
    assert job["runtimeConfig"]["gcsOutputDirectory"] == folder + "/tfx"
    staged = tmp_path / "gcs" / done["input"][len("gs://"):-len("/input")]
    for name in ("transform/transform_module.py", "trainer/trainer_module.py", "prepare.sql"):
        assert (staged / "modules" / name).exists(), name
    schemas = [p.name for p in (staged / "modules").glob("schema-*.pbtxt")]
    assert len(schemas) == 1, schemas  # named by its content: ImportSchemaGen's cache key
    for split in ("train", "eval", "catalog", "eval_queries"):
        assert (staged / "input" / split / "data.parquet").exists(), split
    assert f'{done["modules"]}/{schemas[0]}' in text
    assert folder + "/serving" in text  # the Pusher's destination
    # the generated modules travel as user-code wheels, written under the gs:// root
    for task, module in (("Trainer", "trainer_module"), ("Transform", "transform_module")):
        value = tasks[task]["inputs"]["parameters"]["module_path"]["runtimeValue"][
            "constantValue"]["stringValue"]
        name, wheel = value.split("@")
        assert name == module and wheel.startswith(folder + "/tfx/_wheels/")
        assert (tmp_path / "gcs" / wheel[len("gs://"):]).exists(), wheel
    assert not glob.glob(str(tmp_path / "gcs" / "**" / "metadata.sqlite"), recursive=True)


def test_compile_cli_works_with_the_network_off(tmp_path, raw_config):
    import shutil
    import subprocess
    import sys

    import pytest

    if not shutil.which("unshare") or subprocess.run(["unshare", "-rn", "true"]).returncode:
        pytest.skip("unshare -n (a network namespace) is not available here")
    config = tmp_path / "config.json"
    config.write_text(Config.from_dict(apply_overrides(raw_config, [
        "vertex.project=acme-recs", "vertex.region=europe-west4",
        "vertex.pipeline_root=gs://acme-bucket/offline"])).to_json(), encoding="utf-8")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(
        ["unshare", "-rn", sys.executable, "-m", "pipelines", "compile", "--config", str(config),
         "--target", "vertex", "--image", IMAGE, "--out", str(tmp_path / "offline.json"),
         "--stage-dir", str(tmp_path / "gcs")], capture_output=True, text=True, cwd=root)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    job = json.loads((tmp_path / "offline.json").read_text(encoding="utf-8"))
    assert job["runtimeConfig"]["gcsOutputDirectory"] == "gs://acme-bucket/offline/b2b-demo/tfx"
    assert glob.glob(str(tmp_path / "gcs" / "acme-bucket" / "offline" / "b2b-demo" / "staged" / "*"
                         / "modules" / "trainer" / "trainer_module.py"))
    assert f"gsutil -m rsync -r {tmp_path / 'gcs' / 'acme-bucket'} gs://acme-bucket" in done.stdout


def test_dataflow_runs_the_beam_components_in_the_training_image(tmp_path, raw_config):
    from pipelines.vertex import gcs_on_disk

    from pipelines.validate import validate

    gcs_on_disk.register(tmp_path / "gcs")
    cfg = Config.from_dict(apply_overrides(raw_config, [
        "vertex.project=acme-recs", "vertex.region=europe-west4",
        "vertex.pipeline_root=gs://acme-bucket/flow",
        "vertex.service_account=runner@acme-recs.iam.gserviceaccount.com",
        "vertex.dataflow={max_workers: 25, subnetwork: regions/europe-west4/subnetworks/ml}",
        "vertex.labels={team: growth, cost-center: b2b-01}",
        "vertex.model_upload={serving_image: twotower}"]))
    validate(cfg)
    out = tmp_path / "pipeline.json"
    compile_vertex(cfg, str(out), IMAGE, log=lambda *_: None)
    job = json.loads(out.read_text(encoding="utf-8"))
    # after the Pusher, the pushed model is uploaded to the Model Registry
    upload = job["pipelineSpec"]["root"]["dag"]["tasks"]["ModelUpload"]
    assert upload["inputs"]["artifacts"]["pushed_model"]["taskOutputArtifact"] == {
        "outputArtifactKey": "pushed_model", "producerTask": "Pusher"}
    # served from the training image by its own server (no prebuilt image has TF 2.16)
    assert upload["inputs"]["parameters"]["serving_image"]["runtimeValue"]["constantValue"][
        "stringValue"] == IMAGE
    assert json.loads(upload["inputs"]["parameters"]["serving_container"]["runtimeValue"][
        "constantValue"]["stringValue"]) == {
        "serving_container_command": ["python", "-m", "pipelines.vertex.serve"],
        "serving_container_health_route": "/health",
        "serving_container_predict_route": "/predict", "serving_container_ports": [8080]}
    executors = job["pipelineSpec"]["deploymentSpec"]["executors"]
    expected = ["--runner=DataflowRunner", "--project=acme-recs", "--region=europe-west4",
                "--temp_location=gs://acme-bucket/flow/beam-temp", "--max_num_workers=25",
                f"--sdk_container_image={IMAGE}", "--disk_size_gb=50",
                "--labels=cost-center=b2b-01", "--labels=team=growth",
                "--service_account_email=runner@acme-recs.iam.gserviceaccount.com",
                "--subnetwork=regions/europe-west4/subnetworks/ml"]
    for name in ("ParquetExampleGen", "StatisticsGen", "Transform"):
        args = json.dumps(executors[f"{name}_executor"]["container"])
        assert all(a in args for a in expected), (name, args[:2000])
    bad = Config.from_dict(apply_overrides(raw_config, [
        "vertex.dataflow={temp_location: /tmp/x, max_workers: 0}"]))
    import pytest

    from pipelines.config.schema import ConfigError

    with pytest.raises(ConfigError) as exc:
        validate(bad, check_data=False)
    assert {k for k, _ in exc.value.problems} == {"vertex.dataflow.temp_location",
                                                  "vertex.dataflow.max_workers"}


def test_a_bigquery_source_compiles_to_one_query_per_split(tmp_path, raw_config, monkeypatch):
    """BigQueryExampleGen gets the program rendered for BigQuery; nothing is prepared here.
    Its cache is off (its cache key is the query text, not the table), every other task's
    on; without credentials the dry-run estimate is one line and the compile goes on."""
    from pipelines.vertex import gcs_on_disk

    from pipelines.data.sql.bigquery import split_queries, to_bigquery
    from pipelines.validate import validate

    gcs_on_disk.register(tmp_path / "gcs")
    cfg = Config.from_dict(apply_overrides(raw_config, [
        "vertex.project=acme-recs", "vertex.region=europe-west4",
        "vertex.pipeline_root=gs://acme-bucket/bq", "data.path=null",
        "data.bigquery=acme-recs.shop.orders", "data.candidates.path=null",
        "data.candidates.bigquery=acme-recs.shop.products",
        "vertex.training={machine_type: n1-standard-16, accelerator_type: NVIDIA_TESLA_T4, "
        "accelerator_count: 2}", "vertex.labels={team: growth}"]))
    validate(cfg)
    out = tmp_path / "pipeline.json"
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))  # no ADC file here
    said = []
    compile_vertex(cfg, str(out), IMAGE, log=said.append)
    assert [s for s in said if "size not estimated" in s] == [
        "BigQuery: no credentials: size not estimated"]
    assert not os.path.exists(f"{out}.partial")
    spec = json.loads(out.read_text(encoding="utf-8"))["pipelineSpec"]
    tasks = spec["root"]["dag"]["tasks"]
    caching = {name: task.get("cachingOptions") for name, task in tasks.items()}
    assert caching.pop("BigQueryExampleGen") == {"enableCache": False}
    assert set(map(json.dumps, caching.values())) == {json.dumps({"enableCache": True})}
    container = json.dumps(spec["deploymentSpec"]["executors"]["BigQueryExampleGen_executor"])
    assert "--project=acme-recs" in container
    assert "--temp_location=gs://acme-bucket/bq/beam-temp" in container
    assert set(tasks) == {"BigQueryExampleGen", "StatisticsGen", "ImportSchemaGen", "Transform",
                          "RuntimeParameters", "Trainer", "PopularityGate", "RefitTransform",
                          "RefitTrainer", "Pusher"}
    # the Trainer is a Vertex AI Training job on a 2-GPU machine, in the training image
    trainer = spec["deploymentSpec"]["executors"]["Trainer_executor"]["container"]
    assert "google_cloud_ai_platform.trainer.executor.GenericExecutor" in json.dumps(trainer)
    custom = json.loads(tasks["Trainer"]["inputs"]["parameters"]["custom_config"]["runtimeValue"]
                        ["constantValue"]["stringValue"])
    assert custom["ai_platform_enable_vertex"] is True
    assert custom["ai_platform_vertex_region"] == "europe-west4"
    assert custom["twotower_gpus_requested"] == 2
    assert custom["ai_platform_training_args"] == {"project": "acme-recs", "job_spec": {
        "worker_pool_specs": [{"machine_spec": {"machine_type": "n1-standard-16",
                                                "accelerator_type": "NVIDIA_TESLA_T4",
                                                "accelerator_count": 2},
                               "replica_count": 1, "container_spec": {"image_uri": IMAGE}}]},
        "labels": {"team": "growth"}}  # the CustomJob's labels
    params = tasks["BigQueryExampleGen"]["inputs"]["parameters"]
    splits = json.loads(params["input_config"]["runtimeValue"]["constantValue"]["stringValue"])
    got = {s["name"]: s["pattern"] for s in splits["splits"]}
    assert got == {split: to_bigquery(tree) for split, tree in split_queries(cfg).items()}
    assert set(got) == {"train", "eval", "catalog", "eval_queries"}
    assert all("FROM `acme-recs`.`shop`.`orders`" in q for q in got.values())
    from pipelines.data.sql import googlesql  # the spec calls only what BigQuery documents

    assert all(googlesql.unknown(q) == [] and "IS_INF(" in q for q in got.values())
    assert "TIME_TO_UNIX" not in json.dumps(spec) and "to_json(" not in json.dumps(spec)
    [staged] = glob.glob(str(tmp_path / "gcs" / "acme-bucket" / "bq" / "b2b-demo" / "staged" / "*"))
    staged = pathlib.Path(staged)
    assert not (staged / "input").exists()  # nothing was prepared here
    sql = (staged / "modules" / "prepare.sql").read_text(encoding="utf-8")
    assert sql.count("-- split: ") == 4 and "`acme-recs`.`shop`.`products`" in sql


def test_vertex_training_values_are_checked_by_key(raw_config):
    import pytest

    from pipelines.config.schema import ConfigError
    from pipelines.validate import validate

    bad = Config.from_dict(apply_overrides(raw_config, [
        "vertex.training={machine_type: 'N1 big', accelerator_count: 3, replica_count: 2}"]))
    with pytest.raises(ConfigError) as exc:
        validate(bad, check_data=False)
    assert {k for k, _ in exc.value.problems} == {
        "vertex.training.machine_type", "vertex.training.accelerator_count",
        "vertex.training.accelerator_type", "vertex.training.replica_count"}
    assert "multi-worker training is not supported" in str(exc.value)
    typed = Config.from_dict(apply_overrides(raw_config, [
        "vertex.training={accelerator_type: NVIDIA_L4}"]))
    with pytest.raises(ConfigError, match="accelerator_count: is 0 but accelerator_type"):
        validate(typed, check_data=False)


def test_a_shared_bucket_keeps_pipelines_and_compiles_apart(tmp_path, raw_config):
    """Two people, one ``vertex.pipeline_root``: another pipeline, or a changed config of the
    same one, never overwrites what an earlier compile staged (its job may be reading it);
    the same config stages to the same paths, so Vertex AI's cache still hits."""
    from pipelines.vertex import gcs_on_disk

    gcs_on_disk.register(tmp_path / "gcs")
    shared = ["vertex.project=acme-recs", "vertex.region=europe-west4",
              "vertex.pipeline_root=gs://acme-bucket/shared"]

    def compiled(name, *more):
        cfg = Config.from_dict(apply_overrides(raw_config, shared + [f"pipeline.name={name}"]
                                               + list(more)))
        done = compile_vertex(cfg, str(tmp_path / f"{name}-{len(more)}.json"), IMAGE,
                              log=lambda *_: None)
        return {k: done[k] for k in ("input", "modules")}

    def contents(staged):
        out = {}
        for where in staged.values():
            local = tmp_path / "gcs" / where[len("gs://"):]
            for path in sorted(local.rglob("*")):
                if path.is_file():
                    out[str(path)] = path.read_bytes()
        return out

    first = compiled("alice")
    assert first["input"].startswith("gs://acme-bucket/shared/alice/staged/")
    before = contents(first)
    assert len(before) > 8
    assert compiled("alice") == first  # the same content, the same paths
    changed = compiled("alice", "training.epochs=3")
    assert changed["modules"] != first["modules"]
    other = compiled("bob")
    assert other["input"].startswith("gs://acme-bucket/shared/bob/staged/")
    assert contents(first) == before  # neither touched alice's first staged files
    assert b"'epochs': 3" in (tmp_path / "gcs" / changed["modules"][len("gs://"):]
                              / "trainer" / "trainer_module.py").read_bytes()


def test_a_config_with_tuning_compiles_a_tuner_step_feeding_the_trainer(tmp_path, raw_config):
    from pipelines.vertex import gcs_on_disk

    gcs_on_disk.register(tmp_path / "gcs")
    base = ["vertex.project=acme-recs", "vertex.region=europe-west4",
            "vertex.pipeline_root=gs://acme-bucket/twotower", "tuning.trials=4"]
    # parallel 1: TFX's search in this library's executor, which keeps the trials' records
    for parallel, executor in ((1, "pipelines.build.components.tuner_records."
                                   "TrialRecordsExecutor"),
                               (3, "tfx.extensions.google_cloud_ai_platform.tuner.executor."
                                   "Executor")):
        cfg = Config.from_dict(apply_overrides(json.loads(json.dumps(raw_config)),
                                               base + [f"tuning.parallel={parallel}"]))
        out = tmp_path / f"pipeline-{parallel}.json"
        compile_vertex(cfg, str(out), IMAGE, log=lambda *_: None)
        job = json.loads(out.read_text(encoding="utf-8"))
        spec = job["pipelineSpec"]
        tasks = spec["root"]["dag"]["tasks"]
        assert "Tuner" in tasks and "RuntimeParameters" not in tasks
        # no pipeline parameters (the search picks the values): none to send, none taken
        assert not job["runtimeConfig"].get("parameterValues")
        assert not spec["root"].get("inputDefinitions", {}).get("parameters")
        with pytest.raises(ConfigError, match="Tuner step"):
            vertex.parse_params(cfg, ["epochs=2"])
        for trainer in ("Trainer", "RefitTrainer"):  # both train the search's best values
            source = tasks[trainer]["inputs"]["artifacts"]["hyperparameters"]["taskOutputArtifact"]
            assert source == {"producerTask": "Tuner",
                              "outputArtifactKey": "best_hyperparameters"}
        fed = tasks["Tuner"]["inputs"]["artifacts"]["examples"]["taskOutputArtifact"]
        assert fed["producerTask"] == "Transform"
        assert executor in json.dumps(spec["deploymentSpec"]["executors"]["Tuner_executor"])
        task = json.dumps(tasks["Tuner"])
        assert "twotower_objective" in task and "recall_at_10" in task
        if parallel > 1:  # the trials as Vertex AI Training jobs in the image, 3 at once,
            # in one search folder on the bucket (each replica's own disk is not shared)
            assert "num_parallel_trials" in task and IMAGE in task
            assert f"gs://acme-bucket/twotower/{cfg.pipeline.name}/tuner-trials" in task
