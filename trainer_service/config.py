"""Trainer service settings: flags override environment variables, which override defaults.

Security settings read the same variables as the queue service (LABELGRID_AUTH,
LABELGRID_TLS_CERT, ...), so one environment secures both; the trainer's own address and
metrics address have their own (LABELGRID_TRAINER_ADDRESS, LABELGRID_TRAINER_METRICS_ADDRESS),
since both servers may run on one machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from labelgrid_serving.settings import parse_env
from trainer_service import scoring
from trainer_service.scoring import Scorer

ENV = {
    "address": "LABELGRID_TRAINER_ADDRESS",
    "queue_address": "LABELGRID_SERVER",
    "auth": "LABELGRID_AUTH",
    "auth_cache_seconds": "LABELGRID_AUTH_CACHE_SECONDS",
    "insecure_no_auth": "LABELGRID_INSECURE_NO_AUTH",
    "tls_cert": "LABELGRID_TLS_CERT",
    "tls_key": "LABELGRID_TLS_KEY",
    "tls_client_ca": "LABELGRID_TLS_CLIENT_CA",
    "token": "LABELGRID_TOKEN",
    "queue_tls_ca": "LABELGRID_QUEUE_TLS_CA",
    "queue_tls_cert": "LABELGRID_QUEUE_TLS_CERT",
    "queue_tls_key": "LABELGRID_QUEUE_TLS_KEY",
    "metrics_address": "LABELGRID_TRAINER_METRICS_ADDRESS",
    "cache_dir": "LABELGRID_TRAINER_CACHE_DIR",
    "workers": "LABELGRID_TRAINER_WORKERS",
    "score_budget": "LABELGRID_TRAINER_SCORE_BUDGET",
    "dask_scheduler": "LABELGRID_TRAINER_DASK_SCHEDULER",
}


@dataclass(frozen=True)
class TrainerSettings:
    address: str = "127.0.0.1:50052"
    #: The queue service the jobs read labels from and push priorities to.
    queue_address: str = "127.0.0.1:50051"
    #: Require API tokens; they are checked with the queue service (WhoAmI).
    auth: bool = False
    #: Seconds a token check is cached (a revoked token works here at most this long).
    auth_cache_seconds: float = 5.0
    insecure_no_auth: bool = False
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    #: The trainer's own token, sent on its calls to the queue service (role trainer).
    token: str = ""
    #: TLS towards the queue service: its CA, and a client certificate if it asks for one.
    queue_tls_ca: str = ""
    queue_tls_cert: str = ""
    queue_tls_key: str = ""
    #: HOST:PORT to serve Prometheus metrics on; empty: none.
    metrics_address: str = ""
    #: Where the jobs keep their projects' features between runs and restarts; empty:
    #: $XDG_CACHE_HOME/labelgrid/features (~/.cache/labelgrid/features).
    cache_dir: str = ""
    #: Processes that score the pool; 0: one per core; 1: on the job's own thread.
    workers: int = 0
    #: Most items scored per run (a candidate pool beyond it, see loop.candidates); 0: all.
    score_budget: int = 0
    #: A Dask scheduler (tcp://host:8786) to score on instead of local processes
    #: (labelgrid[dask]); empty: local.
    dask_scheduler: str = ""

    @classmethod
    def from_env(cls, **overrides: object) -> TrainerSettings:
        values: dict[str, object] = {}
        for f in fields(cls):
            text = os.environ.get(ENV[f.name])
            if text is not None:
                values[f.name] = parse_env(text, f.default, ENV[f.name])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    def learner_options(self) -> dict[str, object]:
        """Keyword arguments for the jobs' ActiveLearners (the scorer is made once, shared)."""
        from trainer_service.cache import default_dir

        if self.workers < 0 or self.score_budget < 0:
            raise ValueError("LABELGRID_TRAINER_WORKERS and _SCORE_BUDGET must be >= 0")
        return {
            "cache_dir": self.cache_dir or default_dir(),
            "score_budget": self.score_budget,
        }

    def make_scorer(self) -> Scorer:
        """Dask when a scheduler is given, else processes (or this thread, for 1 worker)."""
        if self.dask_scheduler:
            return scoring.DaskScorer(self.dask_scheduler)
        workers = self.workers or os.cpu_count() or 1
        return scoring.Processes(workers) if workers > 1 else scoring.InProcess()

    def queue_client_options(self) -> dict[str, str | None]:
        """Keyword arguments for a QueueClient of this trainer (token and TLS)."""
        return {
            "token": self.token or None,
            "tls_ca": self.queue_tls_ca or None,
            "tls_cert": self.queue_tls_cert or None,
            "tls_key": self.queue_tls_key or None,
        }
