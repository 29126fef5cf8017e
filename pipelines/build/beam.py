"""The Beam components' ``beam_pipeline_args``: local DirectRunner, or on Vertex AI.

ExampleGen, StatisticsGen and Transform run on Beam. Locally that is the
DirectRunner (:func:`direct_args`); in a pipeline compiled for Vertex AI it is
Dataflow with ``vertex.dataflow`` (:func:`dataflow_args`), else the
DirectRunner in the component's container (:func:`vertex_args`).
"""
from __future__ import annotations

from typing import List, Optional

from pipelines.config.schema import Config


def direct_args(cfg: Config) -> List[str]:
    """DirectRunner options: in memory with one worker, or N worker processes."""
    workers = cfg.pipeline.beam_workers
    mode = "in_memory" if workers == 1 else "multi_processing"
    return [f"--direct_running_mode={mode}", f"--direct_num_workers={workers}"]


def dataflow_args(cfg: Config, image: str) -> List[str]:
    """``beam_pipeline_args`` that run the Beam components on Dataflow.

    The workers use the training image (``--sdk_container_image``): it holds the
    custom ExampleGen's executor, which runs on them, and the runtime the
    Transform module imports, and sets ``RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT=1``
    (:mod:`pipelines.vertex.image`). Their disks hold that ~12 GB image
    (``--disk_size_gb``, 50 by default); the jobs carry ``vertex.labels``.
    """
    v, f = cfg.vertex, cfg.vertex.dataflow
    root = (v.pipeline_root or "").rstrip("/")
    args = ["--runner=DataflowRunner", f"--project={v.project}", f"--region={v.region}",
            f"--temp_location={f.temp_location or root + '/beam-temp'}",
            f"--machine_type={f.machine_type}", f"--max_num_workers={f.max_workers}",
            f"--disk_size_gb={f.disk_size_gb}", f"--sdk_container_image={image}",
            "--experiments=use_runner_v2"]
    args += [f"--labels={key}={value}" for key, value in sorted(v.labels.items())]
    account = f.service_account or v.service_account
    if account:
        args.append(f"--service_account_email={account}")
    for key in ("network", "subnetwork"):
        if getattr(f, key):
            args.append(f"--{key}={getattr(f, key)}")
    return args


def vertex_args(cfg: Config, image: str) -> Optional[List[str]]:
    """The Beam components' arguments on Vertex AI: Dataflow's, or the DirectRunner's in the
    component's container (plus the project and a gs:// temp location that reading
    BigQuery needs); None: the local default (:func:`direct_args`)."""
    if cfg.vertex.dataflow is not None:
        return dataflow_args(cfg, image)
    if not cfg.data.bigquery:
        return None
    root = cfg.vertex.pipeline_root.rstrip("/")
    return direct_args(cfg) + [f"--project={cfg.vertex.project}",
                               f"--temp_location={root}/beam-temp"]
