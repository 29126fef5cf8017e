"""`twotower submit`: the real aiplatform client against a loopback stand-in of the REST API."""
import json

import pytest

from pipelines.config.schema import Config, ConfigError, apply_overrides
from pipelines.runners import vertex
from pipelines.validate import validate
from vertex_standin import StandIn

SPEC = {"displayName": "b2b-demo",
        "pipelineSpec": {"pipelineInfo": {"name": "b2b-demo"}, "schemaVersion": "2.1.0",
                         "sdkVersion": "tfx-1.16.0",
                         "root": {"dag": {"tasks": {}}, "inputDefinitions": {"parameters": {
                             "epochs": {"type": "INT"}, "learning_rate": {"type": "DOUBLE"},
                             "batch_size": {"type": "INT"}}}},
                         "components": {}, "deploymentSpec": {"executors": {}}},
        "runtimeConfig": {"parameters": {"epochs": {"intValue": "5"},
                                         "learning_rate": {"doubleValue": 0.01},
                                         "batch_size": {"intValue": "512"}}}}


@pytest.fixture
def standin(monkeypatch):
    server = StandIn()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.endpoint)  # the bucket check, too
    yield server
    server.close()


def vertex_calls(server):
    return [r for r in server.requests if not r["path"].startswith("/storage/")]


def vertex_config(raw_config, endpoint, *extra):
    return Config.from_dict(apply_overrides(raw_config, [
        "vertex.project=acme-recs", "vertex.region=europe-west4",
        "vertex.pipeline_root=gs://acme-bucket/twotower",
        "vertex.service_account=runner@acme-recs.iam.gserviceaccount.com",
        "vertex.labels={team: growth, cost-center: b2b-01}", "vertex.enable_caching=true",
        f"vertex.api_endpoint={endpoint}"] + list(extra)))


def spec_file(tmp_path):
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(SPEC), encoding="utf-8")
    return str(path)


def test_submit_sends_the_job_vertex_ai_expects(tmp_path, raw_config, standin):
    cfg = vertex_config(raw_config, standin.endpoint)
    validate(cfg)
    done = vertex.submit(cfg, spec_file(tmp_path), wait=True, log=lambda *_: None)
    create = vertex_calls(standin)[0]
    assert create["method"] == "POST"
    assert create["path"] == "/v1/projects/acme-recs/locations/europe-west4/pipelineJobs"
    body = create["body"]
    assert body["displayName"] == "b2b-demo"
    assert body["labels"] == {"team": "growth", "cost-center": "b2b-01"}
    assert body["serviceAccount"] == "runner@acme-recs.iam.gserviceaccount.com"
    # the same folder the compiled spec names: this pipeline's part of the shared root
    assert body["runtimeConfig"]["gcsOutputDirectory"] == "gs://acme-bucket/twotower/b2b-demo/tfx"
    assert body["pipelineSpec"]["pipelineInfo"] == {"name": "b2b-demo"}
    assert "components" in body["pipelineSpec"]
    job_id = create["query"]["pipelineJobId"][0]
    assert done["name"] == f"projects/acme-recs/locations/europe-west4/pipelineJobs/{job_id}"
    assert done["link"].startswith("https://console.cloud.google.com/vertex-ai/locations/"
                                   f"europe-west4/pipelines/runs/{job_id}?project=acme-recs")
    assert done["state"] == "PIPELINE_STATE_SUCCEEDED"
    assert vertex_calls(standin)[-1]["method"] == "GET"
    # the client library checked the pipeline root's bucket and created it
    assert any(r["method"] == "POST" and r["path"] == "/storage/v1/b"
               and r["body"]["name"] == "acme-bucket" for r in standin.requests)


@pytest.mark.parametrize("enabled, want", [("true", {"ExampleGen": False, "Trainer": True}),
                                           ("false", {"ExampleGen": False, "Trainer": False})])
def test_submit_keeps_the_compiled_cache_off_for_the_bigquery_read(tmp_path, raw_config,
                                                                  standin, enabled, want):
    """vertex.enable_caching true keeps each task's compiled setting (the BigQuery read's is
    off: a rerun reads the changed table); false turns every task's off. (PipelineJob's
    enable_caching=True would have set the BigQuery read's back on.)"""
    spec = json.loads(json.dumps(SPEC))
    spec["pipelineSpec"]["root"]["dag"]["tasks"] = {
        "BigQueryExampleGen": {"cachingOptions": {"enableCache": False}},
        "Trainer": {"cachingOptions": {"enableCache": True}}}
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    cfg = vertex_config(raw_config, standin.endpoint, f"vertex.enable_caching={enabled}")
    vertex.submit(cfg, str(path), log=lambda *_: None)
    tasks = vertex_calls(standin)[0]["body"]["pipelineSpec"]["root"]["dag"]["tasks"]
    got = {name: tasks[name].get("cachingOptions", {}).get("enableCache", False)
           for name in tasks}
    assert got == {"BigQueryExampleGen": want["ExampleGen"], "Trainer": want["Trainer"]}


@pytest.mark.parametrize("code, hint", [(403, "roles/aiplatform.user"), (500, "retry")])
def test_a_refusal_is_one_clear_error(tmp_path, raw_config, code, hint, monkeypatch):
    server = StandIn(fail=code)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.endpoint)
    try:
        cfg = vertex_config(raw_config, server.endpoint)
        with pytest.raises(RuntimeError, match=rf"refused the pipeline job \({code} .*{hint}"):
            vertex.submit(cfg, spec_file(tmp_path), log=lambda *_: None)
    finally:
        server.close()


def test_missing_and_bad_vertex_values_are_named(tmp_path, raw_config):
    cfg = Config.from_dict(raw_config)
    with pytest.raises(ConfigError) as exc:
        vertex.submit(cfg, spec_file(tmp_path))
    assert [k for k, _ in exc.value.problems] == ["vertex.project", "vertex.region",
                                                  "vertex.pipeline_root"]
    bad = Config.from_dict(apply_overrides(raw_config, [
        "vertex.project=Acme", "vertex.region=europe", "vertex.pipeline_root=/tmp/x",
        "vertex.labels={Team: x}", "pipeline.name=B2B_demo"]))
    with pytest.raises(ConfigError) as exc:
        validate(bad, check_data=False)
    assert {k for k, _ in exc.value.problems} == {
        "vertex.project", "vertex.region", "vertex.pipeline_root", "vertex.labels.Team",
        "pipeline.name"}


def test_a_spec_that_is_not_compiled_is_refused(tmp_path, raw_config, standin):
    path = tmp_path / "pipeline.json"
    path.write_text("{}", encoding="utf-8")
    with pytest.raises(ConfigError, match="no pipelineSpec.components"):
        vertex.submit(vertex_config(raw_config, standin.endpoint), str(path))
    assert vertex_calls(standin) == []


def test_runtime_parameters_rerun_a_compiled_spec_with_new_values(tmp_path, raw_config, standin):
    """`--param` values reach the job's runtimeConfig; the others keep the compiled ones."""
    from pipelines.cli.main import main

    cfg = vertex_config(raw_config, standin.endpoint)
    config = tmp_path / "config.json"
    config.write_text(cfg.to_json(), encoding="utf-8")
    code = main(["submit", "--config", str(config), "--spec", spec_file(tmp_path),
                 "--param", "epochs=12", "--param", "learning_rate=0.005"])
    assert code == 0
    runtime = vertex_calls(standin)[0]["body"]["runtimeConfig"]
    # the client sends JSON numbers (12.0 for an INT parameter, as Vertex AI reads them)
    assert runtime["parameterValues"] == {"epochs": 12, "learning_rate": 0.005,
                                          "batch_size": 512}, runtime


@pytest.mark.parametrize("param, message", [
    ("epochs=0", "epochs: 0 is out of range: use 1..1000"),
    ("epochs=5000", "epochs: 5000 is out of range: use 1..1000"),
    ("batch_size=1", "batch_size: 1 is out of range: use 2..65536"),
    ("epochs=many", "epochs: 'many' is not a whole number"),
    ("momentum=0.9", "the parameters are epochs=VALUE"),
    ("learning_rate=0.1", "learning_rate: 0.1 is above 0.01"),
])
def test_a_bad_runtime_parameter_is_refused_before_submitting(tmp_path, raw_config, standin,
                                                               param, message, capsys):
    from pipelines.cli.main import main

    config = tmp_path / "config.json"
    config.write_text(vertex_config(raw_config, standin.endpoint).to_json(), encoding="utf-8")
    assert main(["submit", "--config", str(config), "--spec", spec_file(tmp_path),
                 "--param", param]) == 2
    assert message in capsys.readouterr().err
    assert not vertex_calls(standin)


def test_the_model_upload_registers_the_pushed_model(tmp_path, standin):
    """The ModelUpload step's upload, with the real client, against the stand-in."""
    from pipelines.vertex import serve
    from pipelines.build.components.model_upload import upload

    name = upload("acme-recs", "europe-west4", "gs://acme-bucket/twotower/serving/1700000000",
                  "b2b-demo", "europe-west4-docker.pkg.dev/acme-recs/ml/twotower:1",
                  {"team": "growth"}, api_endpoint=standin.endpoint,
                  container=serve.UPLOAD)
    assert name == "projects/acme-recs/locations/europe-west4/models/1"
    call = vertex_calls(standin)[0]
    assert (call["method"], call["path"]) == (
        "POST", "/v1/projects/acme-recs/locations/europe-west4/models:upload")
    model = call["body"]["model"]
    assert model["displayName"] == "b2b-demo"
    assert model["artifactUri"] == "gs://acme-bucket/twotower/serving/1700000000"
    spec = model["containerSpec"]
    assert spec["imageUri"] == "europe-west4-docker.pkg.dev/acme-recs/ml/twotower:1"
    # the routes and port Vertex AI's custom-container contract asks for, as pipelines/vertex/serve.py
    assert (spec["command"], spec["healthRoute"], spec["predictRoute"], spec["ports"]) == (
        ["python", "-m", "pipelines.vertex.serve"], "/health", "/predict", [{"containerPort": 8080}])
    assert model["labels"] == {"team": "growth"}
    assert not [c for c in vertex_calls(standin) if "endpoints" in c["path"]]  # no deployment


def test_model_upload_settings_are_checked(raw_config):
    bad = Config.from_dict(apply_overrides(raw_config, [
        "vertex.model_upload={serving_image: 'not an image'}", "pipeline.serving_index=scann"]))
    with pytest.raises(ConfigError) as exc:
        validate(bad, check_data=False)
    assert {k for k, _ in exc.value.problems} >= {"vertex.model_upload.serving_image",
                                                  "vertex.model_upload"}
