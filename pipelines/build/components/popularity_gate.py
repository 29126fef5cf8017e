"""The PopularityGate component: a ModelBlessing the Pusher consumes.

It reads the Trainer's ``training_metrics.json`` (from the ModelRun artifact)
and blesses the model only if :func:`pipelines.build.gate.decide` says it beats
popularity on the held-out split by the configured margin. The decision and
its one-line reason are written as ``gate.json`` (and the BLESSED or
NOT_BLESSED marker file TFX's Evaluator uses) into the blessing artifact, and
set as its ``blessed`` custom property, which the Pusher checks.
"""
import json
import os

from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.dsl.io import fileio
from tfx.types import standard_artifacts

from pipelines.build.gate import GATE_FILE, decide

METRICS_FILE = "training_metrics.json"


@component
def PopularityGate(model_run: InputArtifact[standard_artifacts.ModelRun],  # noqa: N802
                   blessing: OutputArtifact[standard_artifacts.ModelBlessing],
                   min_lift: Parameter[float] = 1.0, enabled: Parameter[int] = 1,
                   cutoffs: Parameter[str] = "[]", against: Parameter[str] = "popularity"):
    """Blesses the model iff its held-out recall beats ``min_lift`` x its baseline's
    (``against``: popularity, or the best baseline) at every cut-off of ``cutoffs``
    (a JSON list; empty: the first ``model.top_k``)."""
    with fileio.open(os.path.join(model_run.uri, METRICS_FILE)) as handle:
        metrics = json.loads(handle.read())
    decision = decide(metrics, min_lift if enabled else None, json.loads(cutoffs) or None,
                      against=against)
    fileio.makedirs(blessing.uri)
    with fileio.open(os.path.join(blessing.uri, GATE_FILE), "w") as handle:
        handle.write(json.dumps(decision, indent=2, sort_keys=True))
    marker = "BLESSED" if decision["blessed"] else "NOT_BLESSED"
    with fileio.open(os.path.join(blessing.uri, marker), "w") as handle:
        handle.write("")
    blessing.set_int_custom_property("blessed", int(decision["blessed"]))
    blessing.set_string_custom_property("reason", decision["reason"])
