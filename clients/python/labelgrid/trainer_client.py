"""`TrainerClient`: start, stop and watch active-learning jobs on a trainer service."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from labelgrid import channels
from labelgrid_proto.v1 import trainer_pb2, trainer_pb2_grpc


class TrainerClient:
    def __init__(
        self,
        address: str = "127.0.0.1:50052",
        *,
        timeout: float = 30.0,
        token: str | None = None,
        tls: bool = False,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
    ) -> None:
        """As QueueClient: `token` (default: env LABELGRID_TOKEN) is sent on every call (an
        admin token controls jobs, a trainer token reads their status); `tls_ca` is the CA
        of the server's certificate, `tls_cert`/`tls_key` a client certificate."""
        self.address = address
        self.timeout = timeout
        self.channel = channels.channel(
            address, token=token, tls=tls, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key
        )
        self.stub = trainer_pb2_grpc.TrainerServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> TrainerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start_job(
        self,
        project: str,
        model: str,
        params: dict[str, Any] | None = None,
        *,
        acquisition: str = "margin",
        shuffle_prop: float = 0.1,
        interval_seconds: float = 0.0,
        interval_n_labels: int = 0,
        model_preprocess: str = "",
        consensus: str = "auto",
    ) -> trainer_pb2.JobStatus:
        """Start (or replace) a project's job; both intervals 0 means one run, then stop."""
        spec = trainer_pb2.JobSpec(
            project=project,
            model=model,
            model_params_json=json.dumps(params or {}),
            acquisition=acquisition,
            shuffle_prop=shuffle_prop,
            interval_seconds=interval_seconds,
            interval_n_labels=interval_n_labels,
            model_preprocess=model_preprocess,
            consensus=consensus,
        )
        reply = self.stub.StartJob(trainer_pb2.StartJobRequest(spec=spec), timeout=self.timeout)
        return reply.status

    def stop_job(self, project: str) -> None:
        self.stub.StopJob(trainer_pb2.StopJobRequest(project=project), timeout=self.timeout)

    def list_jobs(self) -> list[trainer_pb2.JobStatus]:
        return list(self.stub.ListJobs(trainer_pb2.ListJobsRequest(), timeout=self.timeout).jobs)

    def retrain_now(self, project: str, timeout: float = 600) -> Any:
        return self.stub.RetrainNow(
            trainer_pb2.RetrainNowRequest(project=project), timeout=timeout
        ).run

    def status(self, project: str) -> trainer_pb2.JobStatus:
        request = trainer_pb2.GetStatusRequest(project=project)
        return self.stub.GetStatus(request, timeout=self.timeout).status

    def watch(self, project: str) -> Iterator[trainer_pb2.JobStatus]:
        for reply in self.stub.WatchStatus(trainer_pb2.WatchStatusRequest(project=project)):
            yield reply.status
