"""Vertex AI Pipelines: submitting a compiled spec (`twotower submit`).

The `vertex` section is checked by :mod:`pipelines.vertex.checks` (with the
rest of validation); the pipeline's Vertex AI parts (Vertex AI Training, the
pipeline folder) are the builder's, the Beam arguments :mod:`pipelines.build.beam`'s.

`twotower submit --config C --spec pipeline.json` creates a
``google.cloud.aiplatform.PipelineJob`` from the compiled PipelineSpec with the
config's project, region, pipeline root, service account, labels and caching,
and prints the job's resource name and console link (``--wait`` follows its
state). The client library is imported only here, and only when submitting.
"""
from __future__ import annotations

import json
import os
import time
from typing import Dict, List, Optional

from pipelines.build.builder import pipeline_folder
from pipelines.config.schema import Config, ConfigError
from pipelines.config.learning_rate import learning_rate_ceiling
from pipelines.vertex import cloud
from pipelines.vertex.checks import problems
from trainer.parameters import RUNTIME_PARAMETERS, check_parameters

CONSOLE = ("https://console.cloud.google.com/vertex-ai/locations/{region}/pipelines/runs/{job}"
           "?project={project}")
DONE = ("PIPELINE_STATE_SUCCEEDED", "PIPELINE_STATE_FAILED", "PIPELINE_STATE_CANCELLED")


def read_spec(path: str) -> dict:
    """The compiled PipelineSpec JSON; raises ConfigError naming what is wrong."""
    try:
        with open(path, encoding="utf-8") as handle:
            spec = json.load(handle)
    except (OSError, ValueError) as exc:
        raise ConfigError([("--spec", f"{path}: not a readable JSON file ({exc})")]) from None
    if "components" not in spec.get("pipelineSpec", spec):
        raise ConfigError([("--spec", f"{path}: no pipelineSpec.components; compile it with "
                            "`twotower compile --target vertex`")])
    return spec


def parse_params(cfg: Config, items: List[str]) -> Dict[str, object]:
    """``--param NAME=VALUE`` items as typed pipeline parameter values, checked.

    The rows of the runtime parameters' table (:mod:`trainer.parameters`), as
    validation and the Trainer check them: what one refuses, all refuse.

    Raises:
      ConfigError: an unknown name, a value of the wrong type or range, a
        learning rate above what the config's towers take, or any ``--param`` for
        a config with ``tuning:`` (its spec has no pipeline parameters).
    """
    out, found = {}, []
    if items and cfg.tuning is not None:
        raise ConfigError([("--param", "this config's pipeline has a Tuner step (tuning:), whose "
                            "search picks the training values: set them in tuning.space, or "
                            "drop tuning: to set them per run")])
    for item in items:
        name, _, text = item.partition("=")
        if name not in RUNTIME_PARAMETERS:
            found.append(("--param", f"{item!r}: the parameters are "
                          f"{', '.join(f'{n}=VALUE' for n in RUNTIME_PARAMETERS)}"))
            continue
        typed, refused = check_parameters({name: text}, learning_rate_ceiling(cfg))
        found += [("--param", f"{name}: {problem}") for name, problem in refused]
        out.update(typed)
    if found:
        raise ConfigError(found)
    return out


def submit(cfg: Config, spec_path: str, wait: bool = False, log=print,
           params: Optional[Dict[str, object]] = None) -> dict:
    """Submits the compiled spec; returns ``{'name', 'link', 'state'}``.

    ``params``: pipeline parameter values for this run (:func:`parse_params`),
    over the ones the spec was compiled with.

    Raises:
      ConfigError: a missing or bad ``vertex`` value, or an unreadable spec.
      RuntimeError: Vertex AI refused the job (the message says why and what to check).
    """
    found = problems(cfg, submitting=True)
    if found:
        raise ConfigError(found)
    read_spec(spec_path)
    os.environ.setdefault("GOOGLE_CLOUD_DISABLE_TELEMETRY", "true")
    from google.api_core import exceptions  # the Google Cloud client: off the CLI's fast path
    from google.cloud import aiplatform  # the Google Cloud client: off the CLI's fast path

    v = cfg.vertex
    options = {"project": v.project, "location": v.region}
    if v.api_endpoint:
        options["api_endpoint"] = v.api_endpoint
    if v.api_endpoint and v.api_endpoint.startswith("http://"):
        # the Google Cloud client: off the CLI's fast path
        from google.auth.credentials import AnonymousCredentials

        options.update(credentials=AnonymousCredentials(), api_transport="rest")
    aiplatform.init(**options)
    job = aiplatform.PipelineJob(display_name=cfg.pipeline.name, template_path=spec_path,
                                 pipeline_root=f"{pipeline_folder(cfg)}/tfx",
                                 # None keeps each task's compiled cache setting (on, but off for
                                 # the BigQuery read); True would turn that one back on
                                 enable_caching=None if v.enable_caching else False,
                                 labels=dict(v.labels) or None,
                                 parameter_values=dict(params or {}) or None)
    try:
        job.submit(service_account=v.service_account)
    except exceptions.GoogleAPICallError as exc:
        hint = {403: "check that the APIs are enabled and the roles granted: "
                     + cloud.roles_line(cfg),
                404: "check vertex.project and vertex.region"}.get(exc.code or 0,
                                                                  "retry; if it persists, see "
                                                                  "the Vertex AI status page")
        raise RuntimeError(f"Vertex AI refused the pipeline job ({exc.code} "
                           f"{type(exc).__name__}: {exc.message}); {hint}") from None
    name = job.resource_name
    link = CONSOLE.format(region=v.region, job=name.rsplit("/", 1)[-1], project=v.project)
    log(f"submitted {name}\n{link}")
    state = None
    while wait and state not in DONE:
        state = job.state.name  # a GET of the job
        log(f"{time.strftime('%H:%M:%S')} {state}")
        if state not in DONE:
            time.sleep(30)
    return {"name": name, "link": link, "state": state}
