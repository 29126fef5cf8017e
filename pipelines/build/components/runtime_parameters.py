"""The RuntimeParameters component: epochs, learning rate and batch size chosen at submission.

A compiled Vertex AI pipeline takes ``epochs``, ``learning_rate`` and
``batch_size`` as pipeline parameters (``twotower submit --param epochs=10``):
they feed this component, which writes them as a HyperParameters artifact, the
Trainer's ``hyperparameters`` input; the generated ``run_fn`` reads them from
``fn_args.hyperparameters`` and checks them (:mod:`trainer.runtime`). Typed
parameters of a custom component are the form of TFX runtime parameter that
KubeflowV2DagRunner compiles with their types (a float stays a float).
"""
import json
import os

from tfx.dsl.component.experimental.annotations import OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.dsl.io import fileio
from tfx.types import standard_artifacts

# The file TFX's Trainer reads a HyperParameters artifact from (tfx.components.tuner).
HYPERPARAMETERS_FILE = "best_hyperparameters.txt"


@component
def RuntimeParameters(hyperparameters: OutputArtifact[standard_artifacts.HyperParameters],  # noqa: N802
                      epochs: Parameter[int], learning_rate: Parameter[float],
                      batch_size: Parameter[int]):
    """Writes ``{epochs, learning_rate, batch_size}`` for the Trainer."""
    fileio.makedirs(hyperparameters.uri)
    with fileio.open(os.path.join(hyperparameters.uri, HYPERPARAMETERS_FILE), "w") as handle:
        handle.write(json.dumps({"epochs": epochs, "learning_rate": learning_rate,
                                 "batch_size": batch_size}, sort_keys=True))
