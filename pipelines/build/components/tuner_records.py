"""The Tuner step that keeps its trials: TFX's Tuner, its executor copying the search's records.

TFX's Tuner runs the search in a temporary folder it deletes afterwards, and keeps only the
best hyperparameters and a list of ``(trial, score, values)``. This component runs the very
same search (:func:`tfx.components.tuner.executor.search` over the generated ``tuner_fn``)
and then copies what :mod:`trainer.tuning` recorded of it into the ``tuner_results``
output, beside TFX's ``tuner_results.json``::

    <tuner_results>/search/trial_records/<trial>.json   values, objective, epochs, seconds,
                                                        stopped-because (one per trial)
    <tuner_results>/search/slice.json                   the validation slice, its baselines
    <tuner_results>/search/tensorboard/<trial>/...      each trial's TensorBoard run, with
                                                        the HParams plugin's data

so the run's report shows the trial table (``twotower inspect``) and TensorBoard's HParams
view lists the trials (``twotower tensorboard``). Written under a ``.partial`` name and
renamed: a copy cut short never looks complete.
"""
from __future__ import annotations

import os

from tfx.components import Tuner
from tfx.components.tuner import executor as tfx_tuner
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.types import artifact_utils

from trainer.tuning_space import KEPT_SEARCH, SLICE_FILE, TENSORBOARD_FOLDER, TRIALS_FOLDER

KEPT = (TRIALS_FOLDER, TENSORBOARD_FOLDER, SLICE_FILE)  # of the keras-tuner project folder


def copy_tree(source: str, target: str) -> None:
    """Copies the file or folder ``source`` to ``target`` (local or gs://), recursively."""
    if not fileio.isdir(source):
        fileio.copy(source, target, overwrite=True)
        return
    fileio.makedirs(target)
    for name in fileio.listdir(source):
        copy_tree(os.path.join(source, name.rstrip("/")), os.path.join(target, name.rstrip("/")))


def keep_search(project_dir: str, results_dir: str) -> str:
    """Copies :data:`KEPT` of the search's project folder to ``results_dir/search``
    (:data:`trainer.tuning_space.KEPT_SEARCH`); returns that folder."""
    target = os.path.join(results_dir, KEPT_SEARCH)
    partial = target + ".partial"
    if fileio.exists(partial):
        fileio.rmtree(partial)
    fileio.makedirs(partial)
    for name in KEPT:
        if fileio.exists(os.path.join(project_dir, name)):
            copy_tree(os.path.join(project_dir, name), os.path.join(partial, name))
    fileio.rename(partial, target, overwrite=True)
    return target


class TrialRecordsExecutor(tfx_tuner.Executor):
    """TFX's Tuner executor (one search in this process), then :func:`keep_search`."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:  # noqa: N802 (TFX's name)
        if tfx_tuner.get_tune_args(exec_properties):
            raise ValueError("TuneArgs is not supported by this Tuner's executor: parallel "
                             "trials run in the Google Cloud Tuner (tuning.parallel > 1)")
        tuner = tfx_tuner.search(input_dict, exec_properties, self._get_tmp_dir())
        tfx_tuner.write_best_hyperparameters(tuner, output_dict)
        keep_search(tuner.project_dir, artifact_utils.get_single_uri(output_dict["tuner_results"]))


class RecordedTuner(Tuner):
    """TFX's Tuner component with :class:`TrialRecordsExecutor` (same inputs and outputs)."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(TrialRecordsExecutor)
