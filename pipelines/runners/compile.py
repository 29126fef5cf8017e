"""`twotower compile --target vertex`: the pipeline as a Vertex AI PipelineSpec, offline.

The data is prepared here (the DuckDB SQL program), then the prepared splits,
the generated modules, the schema and the SQL are staged under
``<vertex.pipeline_root>/<pipeline.name>/staged/<content digest>/`` through
TFX's filesystem layer (``tfx.dsl.io``): pipelines and people sharing a bucket
never overwrite each other's files, nor a later compile a running job's. Then
the same pipeline ``twotower run`` runs (:func:`pipelines.build.builder.build_pipeline`)
is compiled by ``KubeflowV2DagRunner`` with the training image. Nothing here
talks to Google Cloud but the filesystem writes, so a test can register a
filesystem for ``gs://`` backed by a local folder and keep the real paths.
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import tempfile

from pipelines.build.beam import vertex_args
from pipelines.build.builder import build_pipeline, parameter_values, pipeline_folder, write_schema
from pipelines.build.codegen import MODULE_FILES, write_modules
from pipelines.config.schema import Config, ConfigError
from pipelines.data.output import SQL_FILE
from pipelines.data.prepare import dropped_text, prepare
from pipelines.data.sql import bigquery
from pipelines.vertex.bq_estimate import estimate
from pipelines.vertex.cloud import image_problem
from pipelines.vertex.checks import problems


def stage(local_dir: str, remote_dir: str) -> int:
    """Copies a local folder to ``remote_dir`` (any tfx.dsl.io scheme); returns file count."""
    from tfx.dsl.io import fileio  # TFX: off the CLI's fast path

    count = 0
    for folder, _, files in os.walk(local_dir):
        target = remote_dir + folder[len(local_dir):].replace(os.sep, "/")
        fileio.makedirs(target)
        for name in files:
            fileio.copy(os.path.join(folder, name), f"{target}/{name}", overwrite=True)
            count += 1
    return count


def content_digest(folder: str) -> str:
    """16 hex digits of SHA-256 over every file's relative path and bytes under ``folder``.

    Staged files live under ``staged/<digest>/``: a compile never overwrites
    what an earlier compile's job is reading (a running job reads its modules
    when each component starts), and the same content gets the same paths, so
    Vertex AI's cache still hits.
    """
    digest = hashlib.sha256()
    for where, dirs, files in sorted(os.walk(folder)):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(where, name)
            digest.update(os.path.relpath(path, folder).encode("utf-8") + b"\0")
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            digest.update(b"\0")
    return digest.hexdigest()[:16]


# The tasks whose cache is off in the compiled spec: BigQueryExampleGen's cache key is its
# query text, not the tables' contents, so a cached rerun after the table changed would
# train on the old rows. (A snapshot, FOR SYSTEM_TIME AS OF, would not work on views.)
UNCACHED = ("BigQueryExampleGen",)


def uncache(job: dict, tasks) -> None:
    """Turns Vertex AI's cache off for ``tasks`` of a compiled PipelineJob dict.

    Raises:
      ValueError: a task is not in the spec (the list above names a component that
        the pipeline no longer has).
    """
    dag = job["pipelineSpec"]["root"]["dag"]["tasks"]
    for task in tasks:
        if task not in dag:
            raise ValueError(f"compile: no task {task!r} in the spec (tasks: {sorted(dag)}); "
                             "pipelines/runners/compile.py UNCACHED names it")
        dag[task]["cachingOptions"] = {"enableCache": False}


def compile_vertex(cfg: Config, out: str, image: str, log=print) -> dict:
    """Writes the PipelineSpec JSON to ``out``; returns ``{'spec', 'input', 'modules'}``
    (the staged folders; ``input`` is not written when BigQuery is the source).

    Raises:
      ConfigError: missing ``vertex`` values or image.
    """
    found = problems(cfg, submitting=True)
    if not image:
        found.append(("--image", "the training image is needed (see `twotower image`)"))
    elif image_problem(image):  # a tag or, better, a digest: NAME@sha256:...
        found.append(("--image", image_problem(image)))
    if found:
        raise ConfigError(found)
    if "@sha256:" not in image:  # a tag can move: a rebuilt image would hit Vertex AI's cache
        log(f"note: --image {shlex.quote(image)} is a tag; pin it by digest (...@sha256:...) so "
            "every step of every run uses the image you tested (docs/vertex.md, section 2)")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    from tfx import v1 as tfx  # heavy (~20 s): only when compiling

    folder = pipeline_folder(cfg)
    with tempfile.TemporaryDirectory(prefix="twotower-compile-") as tmp:
        modules_dir = os.path.join(tmp, "modules")
        write_modules(cfg, modules_dir)
        schema = os.path.basename(write_schema(cfg, modules_dir))
        if cfg.data.bigquery:  # BigQueryExampleGen runs the program, one query per split
            source = {split: bigquery.to_bigquery(tree)
                      for split, tree in bigquery.split_queries(cfg).items()}
            program = bigquery.program_text(cfg)
            log(f"BigQueryExampleGen reads {cfg.data.bigquery} (not cached: each run reads "
                "the tables as they are then)")
            estimate(cfg.vertex.project, source, log)
        else:
            report = prepare(cfg, os.path.join(tmp, "input"))
            with open(os.path.join(tmp, "input", SQL_FILE), encoding="utf-8") as handle:
                program = handle.read()
            log(f"prepared {report['rows']} interactions{dropped_text(report)}")
        with open(os.path.join(modules_dir, SQL_FILE), "w", encoding="utf-8") as handle:
            handle.write(program)
        where = f"{folder}/staged/{content_digest(tmp)}"
        staged = {"input": f"{where}/input", "modules": f"{where}/modules"}
        log(f"staging to {where}")
        if not cfg.data.bigquery:
            source = staged["input"]
            stage(os.path.join(tmp, "input"), staged["input"])
        stage(modules_dir, staged["modules"])
    modules = {key: f"{staged['modules']}/{relative}" for key, relative in MODULE_FILES.items()}
    modules["schema"] = f"{staged['modules']}/{schema}"
    pipeline = build_pipeline(cfg, source, modules, folder, beam=vertex_args(cfg, image),
                              image=image)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image))
    # the pipeline parameters are the RuntimeParameters step's; a Tuner step replaces it (its
    # search picks the values), and a value for a parameter the spec lacks fails the submit
    job = runner.run(pipeline, parameter_values=None if cfg.tuning else parameter_values(cfg),
                     write_out=False)
    if cfg.data.bigquery:
        uncache(job, UNCACHED)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    partial = f"{out}.partial"  # written whole, then renamed: never a half-written spec
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump(job, handle, sort_keys=True)  # as KubeflowV2DagRunner writes it
    os.replace(partial, out)
    log(f"wrote {out}: submit it with `twotower submit --config ... --spec {shlex.quote(out)}`")
    return {"spec": out, **staged}
