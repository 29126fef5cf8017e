"""Dataflow's place in a task run here: Beam's DirectRunner, given the spec's Dataflow options.

A compiled spec with ``vertex.dataflow`` passes ``--runner=DataflowRunner`` and the
job's options (project, region, temp location, machines, workers, disk, the
workers' image, labels, service account) to every Beam component. The executed-spec
test runs those tasks with ``--runner=dataflow_standin.DataflowStandIn`` in place of
``--runner=DataflowRunner`` and every other argument as compiled: Beam builds its
options from them as it would for Dataflow, this runner writes them (all options
Beam parsed, ``PipelineOptions.get_all_options(drop_default=True)``) as one JSON file
per pipeline under ``$DATAFLOW_STANDIN_RECORD``, and the DirectRunner runs the
pipeline. What this does not run: Dataflow's service, its workers and their image.
"""
import json
import os
import uuid

from apache_beam.runners.direct.direct_runner import DirectRunner


class DataflowStandIn(DirectRunner):
    """The DirectRunner, recording the options each pipeline was given."""

    def run_pipeline(self, pipeline, options):
        folder = os.environ["DATAFLOW_STANDIN_RECORD"]
        os.makedirs(folder, exist_ok=True)
        record = {"options": options.get_all_options(drop_default=True, retain_unknown_options=True),
                  "pid": os.getpid()}
        path = os.path.join(folder, f"{uuid.uuid4().hex}.json")
        with open(path + ".partial", "w", encoding="utf-8") as handle:
            json.dump(record, handle, sort_keys=True, default=str)
        os.replace(path + ".partial", path)
        return super().run_pipeline(pipeline, options)
