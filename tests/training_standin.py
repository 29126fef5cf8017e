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

``CreateCustomJob`` records the job (``jobs``, as dicts) and runs its one worker
pool's container command as a process on this machine with the caller's ``env``
(the image's code on PYTHONPATH), as Vertex AI runs it in the image on the
machine asked for. ``adapt(command) -> (command, note)`` may change the command for
what this machine is not (no GPU here): the note is recorded in ``adapted``.
``GetCustomJob`` answers ``JOB_STATE_PENDING`` for the first ``pending_polls`` polls
(counted in ``polls``), then ``JOB_STATE_RUNNING`` while the process runs, then
``JOB_STATE_SUCCEEDED`` or ``JOB_STATE_FAILED`` with the log's tail.
"""
import os
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
        self.jobs, self.adapted, self.polls, self.logs = [], [], {}, {}
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
            self.polls[job.name] = 0
            self._messages[job.name] = job
        [pool] = job.job_spec.worker_pool_specs  # one machine (vertex.training's replica_count 1)
        command, note = self.adapt(list(pool.container_spec.command) +
                                   list(pool.container_spec.args))
        if note:
            self.adapted.append(note)
        thread = threading.Thread(target=self._run, args=(job.name, number, command), daemon=True)
        self._runs[job.name] = thread
        thread.start()
        return job

    def _run(self, name, number, command):
        from google.cloud.aiplatform_v1.types import job_state

        folder = os.path.join(self.workdir, f"custom-job-{number}")
        os.makedirs(folder)
        log = os.path.join(folder, "job.log")
        self.logs[name] = log
        with open(log, "w", encoding="utf-8") as handle:
            done = subprocess.run(command, cwd=folder, env=self.env, stdout=handle,
                                  stderr=subprocess.STDOUT, timeout=1800)
        with self.lock:
            job = self._messages[name]
            if done.returncode:
                with open(log, encoding="utf-8", errors="replace") as handle:
                    tail = handle.read()[-3000:]
                job.state = job_state.JobState.JOB_STATE_FAILED
                job.error.code, job.error.message = 13, f"exit {done.returncode}: {tail}"
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
