"""`twotower compile --target vertex`: the pipeline as a Vertex AI PipelineSpec, offline.

The data is prepared here (the DuckDB SQL program), then the prepared splits,
the generated modules, the schema and the SQL are staged under
``vertex.pipeline_root`` through TFX's filesystem layer (``tfx.dsl.io``), and
the same pipeline ``twotower run`` runs (:func:`pipelines.builder.build_pipeline`)
is compiled by ``KubeflowV2DagRunner`` with the training image. Nothing here
talks to Google Cloud but the filesystem writes, so a test can register a
filesystem for ``gs://`` backed by a local folder and keep the real paths.
"""
from __future__ import annotations

import os
import tempfile

from pipelines.config import Config, ConfigError
from pipelines.runners import vertex


def stage(local_dir: str, remote_dir: str) -> int:
    """Copies a local folder to ``remote_dir`` (any tfx.dsl.io scheme); returns file count."""
    from tfx.dsl.io import fileio

    count = 0
    for folder, _, files in os.walk(local_dir):
        target = remote_dir + folder[len(local_dir):].replace(os.sep, "/")
        fileio.makedirs(target)
        for name in files:
            fileio.copy(os.path.join(folder, name), f"{target}/{name}", overwrite=True)
            count += 1
    return count


def compile_vertex(cfg: Config, out: str, image: str, log=print) -> dict:
    """Writes the PipelineSpec JSON to ``out``; returns ``{'spec', 'input', 'modules'}``.

    Raises:
      ConfigError: missing ``vertex`` values or image.
    """
    found = vertex.problems(cfg, submitting=True)
    if not image:
        found.append(("--image", "the training image is needed (see `twotower image`)"))
    if found:
        raise ConfigError(found)
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    from tfx import v1 as tfx

    from pipelines.codegen import write_modules
    from pipelines.data.sql import bigquery
    from pipelines.data.prepare import SQL_FILE, prepare
    from pipelines.builder import build_pipeline, parameter_values, write_schema

    root = cfg.vertex.pipeline_root.rstrip("/")
    staged = {"input": f"{root}/input", "modules": f"{root}/modules"}
    with tempfile.TemporaryDirectory(prefix="twotower-compile-") as tmp:
        modules_dir = os.path.join(tmp, "modules")
        write_modules(cfg, modules_dir)
        write_schema(cfg, modules_dir)
        if cfg.data.bigquery:  # BigQueryExampleGen runs the program, one query per split
            source = {split: bigquery.to_bigquery(tree)
                      for split, tree in bigquery.split_queries(cfg).items()}
            program = bigquery.program_text(cfg)
            log(f"BigQueryExampleGen reads {cfg.data.bigquery}; staging to {root}")
        else:
            report = prepare(cfg, os.path.join(tmp, "input"))
            with open(os.path.join(tmp, "input", SQL_FILE), encoding="utf-8") as handle:
                program = handle.read()
            source = staged["input"]
            log(f"prepared {report['rows']} interactions; staging to {root}")
            stage(os.path.join(tmp, "input"), staged["input"])
        with open(os.path.join(modules_dir, SQL_FILE), "w", encoding="utf-8") as handle:
            handle.write(program)
        stage(modules_dir, staged["modules"])
    modules = {"transform": f"{staged['modules']}/transform_module.py",
               "trainer": f"{staged['modules']}/trainer_module.py",
               "schema": f"{staged['modules']}/schema.pbtxt"}
    pipeline = build_pipeline(cfg, source, modules, root, beam=vertex.beam_args(cfg, image),
                              image=image)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
        output_filename=out)
    runner.run(pipeline, parameter_values=parameter_values(cfg), write_out=True)
    log(f"wrote {out}: submit it with `twotower submit --config ... --spec {out}`")
    return {"spec": out, **staged}
