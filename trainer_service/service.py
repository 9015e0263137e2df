"""`labelgrid.v1.TrainerService`: one active-learning job per project, run on threads.

Fitting is CPU-bound and the loop uses the synchronous queue client, so each job runs its
loop (`trainer_service.loop.ActiveLearner.run`) on its own thread; the RPC handlers stay on
the event loop and only read job state. One learner per project, and the learner's own lock,
mean a project is never fitted twice at once.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from labelgrid.client import QueueClient
from labelgrid_proto.v1 import trainer_pb2, trainer_pb2_grpc
from trainer_service import acquisition, models
from trainer_service.auth import Refused, TokenChecker
from trainer_service.loop import RELABEL_OR_NEW, ActiveLearner, RunResult
from trainer_service.scoring import InProcess, Scorer

log = logging.getLogger("labelgrid.trainer")

RUNNING, STOPPED, FAILED = "running", "stopped", "failed"
#: statuses from the queue service that a repeating job waits out
TRANSIENT = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
)
#: longest wait between tries while the queue service is away
MAX_WAIT = 30.0


# JobSpec.consensus -> ActiveLearner(consensus=...)
CONSENSUS = {
    "": "auto",
    "auto": "auto",
    "majority": "majority",
    "dawid_skene": "dawid_skene",
    "none": None,
}


class JobError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def _hook(path: str):
    try:
        return models.resolve(path)
    except ValueError as exc:
        raise JobError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None


@dataclass
class Job:
    spec: trainer_pb2.JobSpec
    learner: ActiveLearner
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    state: str = RUNNING
    last: RunResult | None = None
    runs: int = 0

    def status(self) -> trainer_pb2.JobStatus:
        msg = trainer_pb2.JobStatus(spec=self.spec, state=self.state, runs=self.runs)
        if self.last is not None:
            msg.last_run.CopyFrom(self.last.to_proto(self.learner.trainer_name))
        return msg


class TrainerService(trainer_pb2_grpc.TrainerServiceServicer):
    def __init__(
        self,
        queue_address: str,
        poll_seconds: float = 1.0,
        *,
        checker: TokenChecker | None = None,
        client_options: dict[str, Any] | None = None,
        on_run: Callable[[str, RunResult], None] | None = None,
        learner_options: dict[str, Any] | None = None,
        scorer: Scorer | None = None,
    ) -> None:
        """`checker` checks callers' tokens (none: no auth); `client_options` (token, TLS)
        go to the jobs' QueueClients; `on_run` sees every run (metrics); `learner_options`
        (feature cache, score budget) go to every job's learner, which all score with
        `scorer` (one pool of processes, or one Dask client, for the trainer)."""
        self.queue_address = queue_address
        self.poll_seconds = poll_seconds
        self.checker = checker or TokenChecker(queue_address, enabled=False)
        self.client_options = client_options or {}
        self.on_run = on_run
        self.learner_options = learner_options or {}
        self.scorer = scorer or InProcess()
        self.jobs: dict[str, Job] = {}
        self.name = f"trainer@{socket.gethostname()}"
        self._changed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- jobs ---------------------------------------------------------------------------

    def _build(self, spec: trainer_pb2.JobSpec) -> Job:
        if not spec.project:
            raise JobError(grpc.StatusCode.INVALID_ARGUMENT, "spec.project is empty")
        try:
            model = models.load(spec.model, spec.model_params_json or None)
        except (ValueError, TypeError) as exc:
            raise JobError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        name = spec.acquisition or "margin"
        known = [*acquisition.FUNCTIONS, *acquisition.BATCH_AWARE, RELABEL_OR_NEW]
        if name not in known:
            choices = sorted(known)
            raise JobError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"unknown acquisition {name!r}; use one of {choices}",
            )
        if not 0.0 <= spec.shuffle_prop <= 1.0:
            raise JobError(grpc.StatusCode.INVALID_ARGUMENT, "shuffle_prop must be in [0, 1]")
        if spec.consensus not in CONSENSUS:
            raise JobError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"unknown consensus {spec.consensus!r}; use one of {sorted(CONSENSUS)}",
            )
        if spec.interval_seconds < 0 or spec.interval_n_labels < 0:
            raise JobError(grpc.StatusCode.INVALID_ARGUMENT, "intervals must be >= 0")
        client = QueueClient(self.queue_address, **self.client_options)
        try:
            client.get_project(spec.project)
        except grpc.RpcError as exc:
            client.close()
            raise JobError(exc.code(), f"queue service: {exc.details()}") from None
        learner = ActiveLearner(
            client,
            spec.project,
            model,
            acquisition_function=name,
            shuffle_prop=spec.shuffle_prop,
            model_preprocess=_hook(spec.model_preprocess) if spec.model_preprocess else None,
            trainer_name=self.name,
            consensus=CONSENSUS[spec.consensus],
            scorer=self.scorer,
            **self.learner_options,
        )
        return Job(spec=spec, learner=learner)

    def _on_result(self, job: Job, result: RunResult) -> None:
        job.last = result
        job.runs += 1
        if self.on_run is not None:
            self.on_run(job.spec.project, result)
        self._signal()

    def _signal(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _run_job(self, job: Job) -> None:
        """Run the job's loop until it is stopped. A queue service that is away for longer
        than the client's retries (restarting, its database restarting) does not end a
        repeating job: it waits, with backoff up to MAX_WAIT seconds, and carries on."""
        one_shot = job.spec.interval_seconds == 0 and job.spec.interval_n_labels == 0
        wait = [1.0]

        def on_result(result: RunResult) -> None:
            wait[0] = 1.0
            self._on_result(job, result)

        try:
            while True:
                try:
                    job.learner.run(
                        interval_seconds=None if one_shot else job.spec.interval_seconds,
                        interval_n_labels=job.spec.interval_n_labels,
                        on_result=on_result,
                        stop=job.stop,
                        poll_seconds=self.poll_seconds,
                    )
                    break
                except grpc.RpcError as exc:
                    if one_shot or exc.code() not in TRANSIENT:
                        raise
                    log.warning(
                        "queue service unavailable; the job waits and carries on",
                        extra={"project": job.spec.project, "code": exc.code().name},
                    )
                    if job.stop.wait(wait[0]):
                        break
                    wait[0] = min(wait[0] * 2, MAX_WAIT)
            job.state = STOPPED
        except Exception as exc:  # the queue went away for good, or a bug: say so in status
            log.exception("job failed", extra={"project": job.spec.project})
            job.state = FAILED
            job.last = RunResult("model_failed", f"job failed: {exc}")
        finally:
            self._signal()

    async def stop_all(self) -> None:
        for project in list(self.jobs):
            await self._stop(project)
        await asyncio.to_thread(self.scorer.close)

    async def _stop(self, project: str) -> None:
        job = self.jobs.get(project)
        if job is None:
            return
        job.stop.set()
        if job.thread is not None:
            await asyncio.to_thread(job.thread.join)
        await asyncio.to_thread(job.learner.close)  # after a RetrainNow under way
        job.state = STOPPED if job.state == RUNNING else job.state
        self._wake()

    def _job(self, project: str) -> Job:
        job = self.jobs.get(project)
        if job is None:
            raise JobError(
                grpc.StatusCode.NOT_FOUND,
                f"no job for project {project!r}; start one with StartJob",
            )
        return job

    # -- RPCs ---------------------------------------------------------------------------

    async def _guard(self, context: grpc.aio.ServicerContext, coro):
        try:
            return await coro
        except (JobError, Refused) as exc:
            await context.abort(exc.code, str(exc))

    async def start(self, spec: trainer_pb2.JobSpec) -> Job:
        """Start (or replace) the job of spec.project; raises JobError."""
        self._loop = asyncio.get_running_loop()
        job = await asyncio.to_thread(self._build, spec)
        await self._stop(spec.project)
        self.jobs[spec.project] = job
        job.thread = threading.Thread(
            target=self._run_job, args=(job,), daemon=True, name=f"job-{spec.project}"
        )
        job.thread.start()
        log.info("job started", extra={"project": spec.project, "model": spec.model})
        self._wake()
        return job

    async def start_when_ready(self, spec: trainer_pb2.JobSpec, retry_seconds: float = 2.0) -> None:
        """Start a job given at startup, waiting for the queue service and the project to
        exist (in a deployment they may come up later than the trainer)."""
        while True:
            try:
                await self.start(spec)
                return
            except JobError as exc:
                if exc.code not in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.NOT_FOUND,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                ):
                    log.error(
                        "startup job refused", extra={"project": spec.project, "why": str(exc)}
                    )
                    return
                log.info(
                    "waiting for the queue before starting a job",
                    extra={"project": spec.project, "why": str(exc)},
                )
                await asyncio.sleep(retry_seconds)

    async def StartJob(self, request, context):
        async def start() -> trainer_pb2.StartJobResponse:
            await self.checker.check(context, "StartJob", request.spec.project)
            job = await self.start(request.spec)
            return trainer_pb2.StartJobResponse(status=job.status())

        return await self._guard(context, start())

    async def StopJob(self, request, context):
        async def stop() -> trainer_pb2.StopJobResponse:
            await self.checker.check(context, "StopJob", request.project)
            self._job(request.project)
            await self._stop(request.project)
            return trainer_pb2.StopJobResponse()

        return await self._guard(context, stop())

    async def ListJobs(self, request, context):
        async def jobs() -> trainer_pb2.ListJobsResponse:
            caller = await self.checker.check(context, "ListJobs")
            visible = [
                j.status()
                for j in self.jobs.values()
                if caller is None or caller.may_see(j.spec.project)
            ]
            return trainer_pb2.ListJobsResponse(jobs=visible)

        return await self._guard(context, jobs())

    async def RetrainNow(self, request, context):
        async def retrain() -> trainer_pb2.RetrainNowResponse:
            await self.checker.check(context, "RetrainNow", request.project)
            job = self._job(request.project)
            try:
                result = await asyncio.to_thread(job.learner.run_once)
            except grpc.RpcError as exc:
                raise JobError(exc.code(), f"queue service: {exc.details()}") from None
            self._on_result(job, result)
            return trainer_pb2.RetrainNowResponse(run=result.to_proto(job.learner.trainer_name))

        return await self._guard(context, retrain())

    async def GetStatus(self, request, context):
        async def status() -> trainer_pb2.GetStatusResponse:
            await self.checker.check(context, "GetStatus", request.project)
            return trainer_pb2.GetStatusResponse(status=self._job(request.project).status())

        return await self._guard(context, status())

    async def WatchStatus(self, request, context):
        self._loop = asyncio.get_running_loop()
        try:
            await self.checker.check(context, "WatchStatus", request.project)
        except Refused as exc:
            await context.abort(exc.code, str(exc))
        last = None
        while True:
            job = self.jobs.get(request.project)
            if job is None:
                await context.abort(
                    grpc.StatusCode.NOT_FOUND, f"no job for project {request.project!r}"
                )
            current = job.status()
            if current != last:
                yield trainer_pb2.WatchStatusResponse(status=current)
                last = current
            if current.state != RUNNING:
                return
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), self.poll_seconds)
            except TimeoutError:
                pass
