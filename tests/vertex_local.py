"""Runs a submitted PipelineJob here, task by task, the way Vertex AI Pipelines runs it.

Input: the PipelineJob that `twotower submit` sent (its ``pipelineSpec`` and
``runtimeConfig``, as the REST stand-in received it). For each task of the
root DAG, in dependency order:

1. the ExecutorInput Vertex AI would hand the container: the task's constant
   parameters and the pipeline parameters (``componentInputParameter``) as
   typed values (``inputs.parameters``: the spec's schema 2.0.0 form, which
   TFX's entrypoint reads), the input artifacts as the producer's executor
   wrote them (URI and metadata from its ``executor_output.json``, type from
   the producer's output definitions), new output artifacts under
   ``<gcsOutputDirectory>/<project number>/<job id>/<task>_<id>/<key>`` and
   ``outputs.output_file`` beside them. The output artifact lists are made by
   KFP's local-execution module (``kfp.local.executor_input_utils``); its
   ``construct_executor_input`` itself refuses input artifacts in the locked
   kfp 2.5 ("not yet supported for local execution"), so the inputs are
   filled here with the same ``pipeline_spec_pb2`` messages;
2. the container's own command and arguments from the spec's
   ``deploymentSpec``, with every placeholder (``{{$}}``: the ExecutorInput as
   JSON) resolved by KFP's ``kfp.local.placeholder_utils``; a
   ``lifecycle.preCacheCheck`` (TFX's ExampleGen driver) runs first with the
   same input, and the executor reads what it wrote, as on Vertex AI;
3. run as a process on this machine: ``python`` is the environment's (the
   image has the same locked versions), the working directory is empty, and
   the caller's ``env`` says where ``gs://`` goes and what the image's
   ``PYTHONPATH`` holds.

Not emulated: Vertex AI's validation of the job, its cache, IAM, quotas,
image pulls and machines (every task runs on this machine, one at a time).
"""
import os
import subprocess
import time
import uuid
from typing import Callable, Dict, List, Optional

from google.protobuf import json_format
from kfp.local import executor_input_utils, placeholder_utils
from kfp.pipeline_spec import pipeline_spec_pb2 as pb

PROJECT_NUMBER = "123456789012"
TYPE_FIELD = {"INT": "intValue", "DOUBLE": "doubleValue", "STRING": "stringValue"}


class TaskFailed(RuntimeError):
    """A task's process exited with an error; the message ends with its log."""


def order(tasks: Dict[str, dict]) -> List[str]:
    """Task names in dependency order (ties by name), as the DAG allows."""
    needs = {}
    for name, task in tasks.items():
        found = set(task.get("dependentTasks", []))
        for spec in task.get("inputs", {}).get("artifacts", {}).values():
            if "taskOutputArtifact" in spec:
                found.add(spec["taskOutputArtifact"]["producerTask"])
        needs[name] = found
    done: List[str] = []
    while len(done) < len(tasks):
        ready = sorted(n for n in tasks if n not in done and needs[n] <= set(done))
        if not ready:
            raise ValueError(f"the DAG has a cycle among {sorted(set(tasks) - set(done))}")
        done.append(ready[0])
    return done


def pipeline_parameters(job: dict) -> Dict[str, pb.Value]:
    """The job's parameters as typed values: the compiled defaults, then the submitted values."""
    spec, runtime = job["pipelineSpec"], job.get("runtimeConfig", {})
    types = {k: v["type"] for k, v in
             spec["root"].get("inputDefinitions", {}).get("parameters", {}).items()}
    out = {}
    for name, value in runtime.get("parameters", {}).items():
        out[name] = json_format.ParseDict(value, pb.Value())
    for name, value in runtime.get("parameterValues", {}).items():
        field = TYPE_FIELD[types[name]]
        if field == "intValue":
            if float(value) != int(value):
                raise ValueError(f"parameter {name}: {value!r} is not an integer")
            value = str(int(value))
        out[name] = json_format.ParseDict({field: value}, pb.Value())
    missing = sorted(set(types) - set(out))
    if missing:
        raise ValueError(f"no value for pipeline parameter(s) {missing}")
    return out


def _artifact_type(definition: dict) -> pb.ArtifactTypeSchema:
    return json_format.ParseDict(definition["artifactType"], pb.ArtifactTypeSchema())


def executor_input(job: dict, name: str, task_root: str, params: Dict[str, pb.Value],
                   produced: Dict[str, Dict[str, pb.ArtifactList]]) -> pb.ExecutorInput:
    """The ExecutorInput of task ``name`` (see the module docstring, step 1)."""
    spec = job["pipelineSpec"]
    task = spec["root"]["dag"]["tasks"][name]
    component = spec["components"][task["componentRef"]["name"]]
    message = pb.ExecutorInput()
    for key, value in task.get("inputs", {}).get("parameters", {}).items():
        if "runtimeValue" in value:
            message.inputs.parameters[key].CopyFrom(
                json_format.ParseDict(value["runtimeValue"]["constantValue"], pb.Value()))
        elif "componentInputParameter" in value:
            message.inputs.parameters[key].CopyFrom(params[value["componentInputParameter"]])
        else:
            raise ValueError(f"{name}.{key}: unsupported parameter source {sorted(value)}")
    for key, value in task.get("inputs", {}).get("artifacts", {}).items():
        source = value["taskOutputArtifact"]
        message.inputs.artifacts[key].CopyFrom(
            produced[source["producerTask"]][source["outputArtifactKey"]])
    region = job.get("_region", "europe-west4")
    for key, definition in component.get("outputDefinitions", {}).get("artifacts", {}).items():
        listed = executor_input_utils.make_artifact_list(
            name=key, artifact_type=_artifact_type(definition), task_root=task_root)
        listed.artifacts[0].uri = f"{task_root}/{key}"  # a gs:// URI, not an OS path
        listed.artifacts[0].name = (f"projects/{PROJECT_NUMBER}/locations/{region}/"
                                    f"metadataStores/default/artifacts/{uuid.uuid4().int >> 64}")
        message.outputs.artifacts[key].CopyFrom(listed)
    message.outputs.output_file = f"{task_root}/executor_output.json"
    return message


def command(container: dict, message: pb.ExecutorInput, job_name: str, task: str,
            root: str) -> List[str]:
    """The container's command and arguments with every placeholder resolved by KFP."""
    full = list(container.get("command", [])) + list(container.get("args", []))
    as_dict = json_format.MessageToDict(message)
    return placeholder_utils.replace_placeholders(
        full_command=full, executor_input_dict=as_dict, pipeline_resource_name=job_name,
        task_resource_name=task, pipeline_root=root)


def outputs_of(job: dict, name: str, message: pb.ExecutorInput,
               read: Callable[[str], bytes]) -> Dict[str, pb.ArtifactList]:
    """The task's output artifacts as its executor reported them (``executor_output.json``)."""
    spec = job["pipelineSpec"]
    component = spec["components"][spec["root"]["dag"]["tasks"][name]["componentRef"]["name"]]
    written = pb.ExecutorOutput()
    json_format.Parse(read(message.outputs.output_file), written, ignore_unknown_fields=True)
    out = {}
    for key, definition in component.get("outputDefinitions", {}).get("artifacts", {}).items():
        listed = pb.ArtifactList()
        listed.CopyFrom(written.artifacts[key] if key in written.artifacts
                        else message.outputs.artifacts[key])
        for item, given in zip(listed.artifacts, message.outputs.artifacts[key].artifacts):
            item.type.CopyFrom(_artifact_type(definition))
            item.name = item.name or given.name
        out[key] = listed
    return out


def run_job(job: dict, env: Dict[str, str], workdir: str, read: Callable[[str], bytes],
            log: Callable[[str], None] = print, timeout: int = 1800,
            rewrite: Optional[Callable[[str, List[str]], List[str]]] = None,
            until: Optional[str] = None) -> Dict[str, dict]:
    """Runs every task of ``job``; returns ``{task: {'input', 'outputs', 'seconds', 'log'}}``.

    ``read(gs_uri)`` reads a file the tasks wrote (the test's view of the bucket).
    ``rewrite(task, argv)``: the command a task runs instead of the spec's (the caller
    says what it changed and why: Dataflow's runner swapped for a DirectRunner, say).
    ``until``: the last task run (default: all).

    Raises:
      TaskFailed: a task's process failed (the rest are not run, as on Vertex AI).
    """
    spec, runtime = job["pipelineSpec"], job["runtimeConfig"]
    root = runtime["gcsOutputDirectory"].rstrip("/")
    job_name = f"{spec['pipelineInfo']['name']}-{time.strftime('%Y%m%d%H%M%S')}"
    params = pipeline_parameters(job)
    tasks = spec["root"]["dag"]["tasks"]
    produced: Dict[str, Dict[str, pb.ArtifactList]] = {}
    results = {}
    for number, name in enumerate(order(tasks), start=1):
        task_root = f"{root}/{PROJECT_NUMBER}/{job_name}/{name}_{number}"
        message = executor_input(job, name, task_root, params, produced)
        component = spec["components"][tasks[name]["componentRef"]["name"]]
        container = spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]
        steps = []
        driver = container.get("lifecycle", {}).get("preCacheCheck")
        if driver:
            steps.append(("driver", command(driver, message, job_name, name, root)))
        steps.append(("executor", command(container, message, job_name, name, root)))
        if rewrite is not None:
            steps = [(step, rewrite(name, argv)) for step, argv in steps]
        started = time.time()
        folder = os.path.join(workdir, f"{number:02d}-{name}")
        os.makedirs(folder)
        logs = []
        for step, argv in steps:
            path = os.path.join(folder, f"{step}.log")
            logs.append(path)
            log(f"[{number}/{len(tasks)}] {name} ({step}) ...")
            with open(path, "w", encoding="utf-8") as handle:
                done = subprocess.run(argv, cwd=folder, env=env, stdout=handle,
                                      stderr=subprocess.STDOUT, timeout=timeout)
            if done.returncode:
                with open(path, encoding="utf-8", errors="replace") as handle:
                    tail = handle.read()[-6000:]
                raise TaskFailed(f"task {name} ({step}) exited with {done.returncode}; "
                                 f"log {path}:\n{tail}")
        produced[name] = outputs_of(job, name, message, read)
        results[name] = {"input": message, "outputs": produced[name], "logs": logs,
                         "seconds": time.time() - started, "argv": steps[-1][1]}
        log(f"[{number}/{len(tasks)}] {name} done in {results[name]['seconds']:.0f} s")
        if name == until:
            break
    return results
