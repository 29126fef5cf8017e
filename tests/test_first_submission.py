"""What a first submission to Vertex AI hits, checked before anything is staged.

GPUs against machine types (an L4 needs a g2 machine, which comes with a fixed
number), the Dataflow workers' disk and SDK environment, the serving
container's TensorFlow against the training one, image references (a digest
is accepted, a shell payload is refused) and printed commands that survive a
shell, the IAM roles in docs/vertex.md and in a 403's message (`pipelines/vertex/cloud.py`).
"""
import copy
import os
import re
import shlex
import subprocess
import sys

import pytest

from pipelines.config.schema import Config, ConfigError, apply_overrides
from pipelines.vertex import cloud
from pipelines.validate import validate
from tests.conftest import ROOT

DIGEST = "europe-west4-docker.pkg.dev/acme-recs/ml/twotower@sha256:" + "0123456789abcdef" * 4


def vertex_cfg(raw_config, *extra):
    return Config.from_dict(apply_overrides(copy.deepcopy(raw_config), [
        "vertex.project=acme-recs", "vertex.region=europe-west4",
        "vertex.pipeline_root=gs://acme-bucket/twotower"] + list(extra)))


def problems(raw_config, *extra):
    try:
        validate(vertex_cfg(raw_config, *extra), check_data=False)
    except ConfigError as exc:
        return exc.problems
    return []


@pytest.mark.parametrize("training, key, message", [
    ("{machine_type: n1-standard-8, accelerator_type: NVIDIA_L4, accelerator_count: 1}",
     "vertex.training.machine_type", "n1-standard-8 can't take NVIDIA_L4 GPUs: use "
     "g2-standard-12 or g2-standard-16 (a g2 machine)"),
    ("{machine_type: g2-standard-24, accelerator_type: NVIDIA_L4, accelerator_count: 1}",
     "vertex.training.accelerator_count", "g2-standard-24 comes with 2 NVIDIA_L4, not 1"),
    ("{machine_type: g2-standard-8}", "vertex.training.accelerator_count",
     "is 0 but g2-standard-8 comes with GPUs (NVIDIA_L4)"),
    ("{machine_type: a2-highgpu-2g, accelerator_type: NVIDIA_TESLA_T4, accelerator_count: 2}",
     "vertex.training.machine_type", "a2-highgpu-2g can't take NVIDIA_TESLA_T4 GPUs"),
    ("{machine_type: n1-standard-8, accelerator_type: NVIDIA_TESLA_K9, accelerator_count: 1}",
     "vertex.training.accelerator_type", "'NVIDIA_TESLA_K9' is not a GPU Vertex AI Training "
     "offers"),
])
def test_a_gpu_the_machine_cannot_take_is_one_line_at_validation(raw_config, training, key,
                                                                message):
    found = problems(raw_config, f"vertex.training={training}")
    assert len(found) == 1 and found[0][0] == key and message in found[0][1], found
    assert "\n" not in found[0][1]


@pytest.mark.parametrize("training", [
    "{machine_type: n1-standard-8, accelerator_type: NVIDIA_TESLA_T4, accelerator_count: 4}",
    "{machine_type: g2-standard-8, accelerator_type: NVIDIA_L4, accelerator_count: 1}",
    "{machine_type: g2-standard-48, accelerator_type: NVIDIA_L4, accelerator_count: 4}",
    "{machine_type: a2-highgpu-2g, accelerator_type: NVIDIA_TESLA_A100, accelerator_count: 2}",
    "{machine_type: n1-standard-8}",
])
def test_machines_with_the_gpus_they_take_pass(raw_config, training):
    assert problems(raw_config, f"vertex.training={training}") == []


def test_dataflow_workers_get_a_disk_for_the_image_and_the_labels(raw_config):
    from pipelines.build.beam import dataflow_args

    cfg = vertex_cfg(raw_config, "vertex.dataflow={}", "vertex.labels={team: growth}")
    args = dataflow_args(cfg, DIGEST)
    assert "--disk_size_gb=50" in args and "--labels=team=growth" in args
    assert "--disk_size_gb=120" in dataflow_args(
        vertex_cfg(raw_config, "vertex.dataflow={disk_size_gb: 120}"), DIGEST)
    found = problems(raw_config, "vertex.dataflow={disk_size_gb: 25}")
    assert [k for k, _ in found] == ["vertex.dataflow.disk_size_gb"]
    assert "Dataflow's own default, 25, is too small" in found[0][1]


def test_the_image_runs_the_beam_sdk_in_its_own_python_on_dataflow(raw_config):
    from pipelines.vertex.image import dockerfile

    text = dockerfile(Config.from_dict(raw_config))
    assert "\nENV RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT=1\n" in text


def test_the_serving_container_is_one_that_exists_and_serves_the_training_tensorflow(raw_config):
    assert cloud.training_tensorflow().startswith("2.16")
    listed = cloud.prebuilt_images()  # the locked google-cloud-aiplatform's own list
    assert "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest" in listed
    assert not [i for i in listed if "2-16" in i or "2-17" in i]
    old = problems(raw_config, "vertex.model_upload={serving_image: "
                               "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest}")
    assert [k for k, _ in old] == ["vertex.model_upload.serving_image"]
    assert "serves with TensorFlow 2.15 but the model trains with TensorFlow 2.16" in old[0][1]
    assert "use serving_image: twotower" in old[0][1]
    # an image no one publishes (2.16 was the docs' suggestion) and an image of unknown content
    for image in ("us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-16:latest", DIGEST):
        found = problems(raw_config, f"vertex.model_upload={{serving_image: {image}}}")
        assert [k for k, _ in found] == ["vertex.model_upload.serving_image"], image
        assert "is neither a prebuilt prediction image google-cloud-aiplatform lists" in (
            found[0][1])
    assert problems(raw_config, "vertex.model_upload={serving_image: twotower}") == []
    assert problems(raw_config, "vertex.vector_search={serving_image: twotower}") == []


@pytest.mark.parametrize("reference", [
    "europe-west4-docker.pkg.dev/p/r/twotower:1", DIGEST, "localhost:5000/twotower",
    "gcr.io/p/twotower:1@sha256:" + "ab" * 32])
def test_image_references_with_tags_and_digests_are_accepted(reference):
    assert cloud.image_problem(reference) is None


@pytest.mark.parametrize("reference", [
    "x:1; rm -rf ~", "twotower:1", "eu-docker.pkg.dev/p/r/T:1", "eu-docker.pkg.dev/p/r/t:1 x",
    "ml/t:1", "library/python@sha256:" + "0" * 64,  # Docker Hub paths: no registry named
    "eu-docker.pkg.dev/p/r/t@sha256:abc", "eu-docker.pkg.dev/p/r/t:$(id)", "-v/a/b"])
def test_anything_else_is_refused_as_an_image(reference):
    assert "is not a container image reference" in cloud.image_problem(reference)


def test_image_tag_is_validated_and_the_printed_commands_survive_a_shell(tmp_path, raw_config):
    config = tmp_path / "config.json"
    config.write_text(Config.from_dict(raw_config).to_json(), encoding="utf-8")
    bad = subprocess.run([sys.executable, "-m", "pipelines", "image", "--config", str(config),
                          "--out", str(tmp_path / "img"), "--tag", "x:1; rm -rf ~"],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "--tag: 'x:1; rm -rf ~' is not a container image" in bad.stderr
    assert not (tmp_path / "img").exists()  # refused before anything is written
    out = tmp_path / "my images" / "it's here"
    done = subprocess.run([sys.executable, "-m", "pipelines", "image", "--config", str(config),
                           "--out", str(out), "--tag", DIGEST.split("@")[0] + ":1"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    [line] = [l for l in done.stdout.splitlines() if l.strip().startswith("docker build")]
    words = shlex.split(line)
    assert words[:4] == ["docker", "build", "-t", DIGEST.split("@")[0] + ":1"]
    assert words[4] == str(out) and words[5:7] == ["&&", "docker"]


def test_compile_takes_an_image_by_digest_and_refuses_a_bad_one(tmp_path, raw_config):
    import json

    from pipelines.vertex import gcs_on_disk
    from pipelines.runners.compile import compile_vertex

    gcs_on_disk.register(tmp_path / "gcs")
    cfg = vertex_cfg(raw_config)
    with pytest.raises(ConfigError, match=r"--image.*is not a container image reference"):
        compile_vertex(cfg, str(tmp_path / "bad.json"), "img; rm -rf ~", log=lambda *_: None)
    assert not (tmp_path / "bad.json").exists() and not (tmp_path / "gcs").exists()
    compile_vertex(cfg, str(tmp_path / "pipeline.json"), DIGEST, log=lambda *_: None)
    job = json.loads((tmp_path / "pipeline.json").read_text(encoding="utf-8"))
    images = {e["container"]["image"]
              for e in job["pipelineSpec"]["deploymentSpec"]["executors"].values()}
    assert images == {DIGEST}


def test_the_vertex_docs_name_every_role_a_run_needs():
    with open(os.path.join(ROOT, "docs", "vertex.md"), encoding="utf-8") as handle:
        text = handle.read()
    section = text[text.index("## What you need in Google Cloud"):]
    section = section[:section.index("\n## ", 5)]
    for feature, who, role, where, _ in cloud.ROLES:
        line = [l for l in section.splitlines() if role in l and (feature or "") in l]
        assert line, (feature, who, role)


def test_a_403_names_the_roles_this_config_needs(tmp_path, raw_config):
    cfg = vertex_cfg(raw_config, "vertex.dataflow={}", "data.path=null",
                     "data.bigquery=acme-recs.shop.orders", "data.candidates.path=null",
                     "data.candidates.bigquery=acme-recs.shop.products",
                     "vertex.service_account=runner@acme-recs.iam.gserviceaccount.com")
    line = cloud.roles_line(cfg)
    for role in ("roles/aiplatform.user", "roles/iam.serviceAccountUser",
                 "roles/dataflow.worker", "roles/bigquery.user", "roles/bigquery.dataViewer",
                 "roles/storage.objectAdmin", "roles/artifactregistry.reader"):
        assert role in line, role
    assert "runner@acme-recs.iam.gserviceaccount.com needs" in line
    plain = cloud.roles_line(vertex_cfg(raw_config))
    assert "dataflow" not in plain and "bigquery" not in plain
    assert re.search(r"Compute Engine default service account needs .*roles/aiplatform.user",
                     plain)
