"""A stand-in for Vertex AI Training's JobService (gRPC): records each CustomJob, runs it here.

TFX's Vertex AI Trainer (``tfx.extensions.google_cloud_ai_platform``) creates a
CustomJob with ``aiplatform.gapic.JobServiceClient``, whose transport is gRPC and
whose address is ``<region>-aiplatform.googleapis.com:443``, fixed by TFX (the
config's ``vertex.api_endpoint`` does not reach it). So this stand-in is a real gRPC
server (``grpcio``, the service's own request and response messages from
``google.cloud.aiplatform_v1``) with TLS and a certificate for that host, and the
HTTPS proxy of the Cloud Storage stand-in passes the client's ``CONNECT`` tunnel for
that host through to it (``gcs_standin.StandIn(..., tunnels=stand_in.tunnels())``);
the client finds the proxy by ``grpc_proxy`` and trusts the certificate by
``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH`` (:meth:`TrainingStandIn.env`).

``CreateCustomJob`` records the job (``jobs``, as dicts; ``names``, the names given) and runs every replica of
every worker pool at once, each its pool's container command as a process on this
machine with the caller's ``env`` (the image's code on PYTHONPATH), as Vertex AI runs
them in the image on the machines asked for. A job of more than one replica gets
Vertex AI's ``CLUSTER_SPEC`` in each replica (the documented form: ``cluster``
``{"workerpool0": ["host:port"], "workerpool1": [...]}``, ``task`` ``{"type":
"workerpool<i>", "index": <j>}``, ``environment`` ``"cloud"``), every address on
127.0.0.1 at a free port (TFX's parallel Tuner serves its oracle at workerpool0's);
the job has succeeded when every replica exited 0, and failed with the first
failing replica's log tail. ``adapt(command) -> (command, note)`` may change the command for
what this machine is not (no GPU here): the note is recorded in ``adapted``.
``GetCustomJob`` answers ``JOB_STATE_PENDING`` for the first ``pending_polls`` polls
(counted in ``polls``), then ``JOB_STATE_RUNNING`` while the process runs, then
``JOB_STATE_SUCCEEDED`` or ``JOB_STATE_FAILED`` with the log's tail.
"""
import json
import os
import socket
import subprocess
import tempfile
import threading
from concurrent import futures

SERVICE = "google.cloud.aiplatform.v1.JobService"


class TrainingStandIn:
    def __init__(self, region, env, workdir, pending_polls=1, adapt=None):
        import grpc
        from google.cloud.aiplatform_v1.types import custom_job, job_service

        from https_proxy import make_certificates

        self.host = f"{region}-aiplatform.googleapis.com"
        self.env, self.workdir, self.pending_polls = env, workdir, pending_polls
        self.adapt = adapt or (lambda command: (command, None))
        self.jobs, self.names, self.adapted, self.polls, self.logs = [], [], [], {}, {}
        self._messages, self._runs, self.lock = {}, {}, threading.Lock()
        self.folder = tempfile.mkdtemp(prefix="training-standin-")
        self.ca, cert, key = make_certificates(self.folder, [self.host])
        with open(cert, "rb") as c, open(key, "rb") as k:
            credentials = grpc.ssl_server_credentials([(k.read(), c.read())])
        handlers = grpc.method_handlers_generic_handler(SERVICE, {
            "CreateCustomJob": grpc.unary_unary_rpc_method_handler(
                self._create, request_deserializer=job_service.CreateCustomJobRequest.deserialize,
                response_serializer=custom_job.CustomJob.serialize),
            "GetCustomJob": grpc.unary_unary_rpc_method_handler(
                self._get, request_deserializer=job_service.GetCustomJobRequest.deserialize,
                response_serializer=custom_job.CustomJob.serialize)})
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers((handlers,))
        self.port = self.server.add_secure_port("127.0.0.1:0", credentials)
        self.server.start()

    def tunnels(self):
        """The proxy's pass-through for this stand-in's host."""
        return {self.host: self.port}

    def env_vars(self):
        """What a client process needs beside the proxy's variables: trust this certificate."""
        return {"GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": self.ca}

    def _create(self, request, context):
        from google.cloud.aiplatform_v1.types import custom_job, job_state

        job = custom_job.CustomJob(request.custom_job)
        with self.lock:
            number = len(self.jobs) + 1
            job.name = f"{request.parent}/customJobs/{number}"
            job.state = job_state.JobState.JOB_STATE_PENDING
            self.jobs.append(custom_job.CustomJob.to_dict(request.custom_job))
            self.names.append(job.name)
            self.polls[job.name] = 0
            self._messages[job.name] = job
        replicas = []  # (pool index, replica index, command)
        for i, pool in enumerate(job.job_spec.worker_pool_specs):
            command, note = self.adapt(list(pool.container_spec.command) +
                                       list(pool.container_spec.args))
            if note:
                self.adapted.append(note)
            replicas += [(i, j, command) for j in range(int(pool.replica_count or 1))]
        thread = threading.Thread(target=self._run, args=(job.name, number, replicas),
                                  daemon=True)
        self._runs[job.name] = thread
        thread.start()
        return job

    def _run(self, name, number, replicas):
        from google.cloud.aiplatform_v1.types import job_state

        folder = os.path.join(self.workdir, f"custom-job-{number}")
        os.makedirs(folder)
        specs = cluster_specs(replicas)
        runs = []
        for (i, j, command), spec in zip(replicas, specs):
            log = os.path.join(folder, "job.log" if len(replicas) == 1 else
                               f"workerpool{i}-{j}.log")
            env = dict(self.env, **({"CLUSTER_SPEC": json.dumps(spec)} if spec else {}))
            handle = open(log, "w", encoding="utf-8")
            runs.append((log, handle, subprocess.Popen(
                command, cwd=folder, env=env, stdout=handle, stderr=subprocess.STDOUT)))
        self.logs[name] = [log for log, _, _ in runs]
        failed = None
        for log, handle, process in runs:
            try:
                code = process.wait(timeout=1800)
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait()
            handle.close()
            if code and failed is None:
                with open(log, encoding="utf-8", errors="replace") as read:
                    failed = f"exit {code} ({os.path.basename(log)}): {read.read()[-3000:]}"
        with self.lock:
            job = self._messages[name]
            if failed:
                job.state = job_state.JobState.JOB_STATE_FAILED
                job.error.code, job.error.message = 13, failed
            else:
                job.state = job_state.JobState.JOB_STATE_SUCCEEDED

    def _get(self, request, context):
        import grpc
        from google.cloud.aiplatform_v1.types import custom_job, job_state

        with self.lock:
            if request.name not in self._messages:
                context.abort(grpc.StatusCode.NOT_FOUND, f"no CustomJob {request.name}")
            self.polls[request.name] += 1
            job = custom_job.CustomJob(self._messages[request.name])
        if self.polls[request.name] <= self.pending_polls:
            job.state = job_state.JobState.JOB_STATE_PENDING
        elif job.state == job_state.JobState.JOB_STATE_PENDING:
            job.state = job_state.JobState.JOB_STATE_RUNNING
        return job

    def close(self):
        self.server.stop(grace=None)


def cluster_specs(replicas):
    """Each replica's ``CLUSTER_SPEC`` (None for a job of one replica), Vertex AI's form."""
    if len(replicas) == 1:
        return [None]
    cluster = {}
    for i, _, _ in replicas:
        cluster.setdefault(f"workerpool{i}", []).append(f"127.0.0.1:{free_port()}")
    return [{"cluster": cluster, "environment": "cloud",
             "task": {"type": f"workerpool{i}", "index": j}} for i, j, _ in replicas]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
