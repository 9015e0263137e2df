"""Scoring the pool: predict_proba and the acquisition function over chunks of cached rows,
in this process, over the machine's cores (processes), or on a Dask cluster.

Every way cuts the rows into the same chunks and scores each with the same function
(`score_chunk`), so they give the same scores: the choice is only where the work runs.
Process workers read their chunk from the feature cache's memory-mapped file, so only the
model and the row numbers travel; Dask workers may be on other machines, so their chunks
travel as arrays (the model is scattered to them once per run).
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing as mp
import os
import pickle
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

log = logging.getLogger("labelgrid.trainer")

Preprocess = Callable[[Any, Any], tuple[Any, Any]]


@dataclass(frozen=True)
class Task:
    """What scoring a chunk needs besides its rows: picklable, sent once per chunk."""

    model: Any
    acquire: Callable[[np.ndarray], np.ndarray]
    multi_label: bool
    #: None: rows are flattened to one row each (the default preprocess, without a copy)
    preprocess: Preprocess | None


def features(rows: np.ndarray, preprocess: Preprocess | None) -> Any:
    """The model's input for a block of cached rows (n, *shape)."""
    if preprocess is None:
        return np.asarray(rows).reshape(len(rows), -1)
    X, _ = preprocess(list(rows), None)
    return X


def score_chunk(task: Task, rows: np.ndarray) -> np.ndarray:
    """Acquisition scores of one chunk of rows (higher: label sooner)."""
    probs = task.model.predict_proba(features(rows, task.preprocess))
    if isinstance(probs, list):  # multi-output estimators: one array per label
        probs = np.stack([p[:, -1] for p in probs], axis=1)
    probs = np.asarray(probs, dtype=float)
    if task.multi_label:
        # mean binary uncertainty across labels
        per_label = np.stack([probs, 1 - probs], axis=2)
        return np.mean([task.acquire(per_label[:, j]) for j in range(probs.shape[1])], axis=0)
    return np.asarray(task.acquire(probs), dtype=np.float64)


def chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(n, start + size)) for start in range(0, n, size)]


class Scorer(Protocol):
    def score(
        self,
        task: Task,
        rows: np.ndarray,
        positions: np.ndarray,
        chunk: int,
        path: Path | None = None,
    ) -> np.ndarray:
        """Scores of rows[positions], in that order, computed chunk by chunk (`path`: the
        file `rows` is mapped from, for workers that can read it themselves)."""
        ...

    def close(self) -> None: ...


class InProcess:
    """One chunk after another on the calling thread."""

    def score(
        self,
        task: Task,
        rows: np.ndarray,
        positions: np.ndarray,
        chunk: int,
        path: Path | None = None,
    ) -> np.ndarray:
        parts = [score_chunk(task, rows[positions[a:b]]) for a, b in chunks(len(positions), chunk)]
        return np.concatenate(parts) if parts else np.empty(0)

    def close(self) -> None:
        pass


# -- processes ----------------------------------------------------------------------------

_task_cache: tuple[bytes, Task] | None = None


def _exit_with_parent(parent: int) -> None:
    """In a worker process: exit once the trainer that started it is gone. A trainer killed
    outright (SIGKILL, OOM) cannot shut its pool down, and spawned workers would otherwise
    wait on their queue forever."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _process_chunk(
    task_bytes: bytes, path: str, dtype: str, shape: tuple[int, ...], count: int, pos: np.ndarray
) -> np.ndarray:
    """In a worker process: unpickle the task (once per run, kept for the next chunk) and
    score rows read from the cache's file."""
    global _task_cache
    if _task_cache is None or _task_cache[0] != task_bytes:
        _task_cache = (task_bytes, pickle.loads(task_bytes))
    rows = np.memmap(path, dtype=dtype, mode="r", shape=(count, *shape))
    return score_chunk(_task_cache[1], rows[pos])


class Processes:
    """Chunks scored by a pool of worker processes (spawned, not forked: the trainer holds
    gRPC channels and threads, which a fork would copy in an undefined state). The pool is
    started on first use and kept for the next runs."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self._pool: cf.ProcessPoolExecutor | None = None
        self._lock = threading.Lock()  # the trainer's jobs share one pool

    def score(
        self,
        task: Task,
        rows: np.ndarray,
        positions: np.ndarray,
        chunk: int,
        path: Path | None = None,
    ) -> np.ndarray:
        spans = chunks(len(positions), chunk)
        if self.workers <= 1 or len(spans) <= 1 or path is None:
            return InProcess().score(task, rows, positions, chunk)
        try:
            task_bytes = pickle.dumps(task)
        except Exception as exc:  # a lambda from a notebook, say: score here instead
            log.info("scoring in process: the model or hooks do not pickle (%s)", exc)
            return InProcess().score(task, rows, positions, chunk)
        with self._lock:
            if self._pool is None:
                self._pool = cf.ProcessPoolExecutor(
                    self.workers,
                    mp_context=mp.get_context("spawn"),
                    initializer=_exit_with_parent,
                    initargs=(os.getpid(),),
                )
            pool = self._pool
        shape = tuple(rows.shape[1:])
        try:
            futures = [
                pool.submit(
                    _process_chunk,
                    task_bytes,
                    str(path),
                    rows.dtype.str,
                    shape,
                    len(rows),
                    positions[a:b],
                )
                for a, b in spans
            ]
            return np.concatenate([f.result() for f in futures])
        except cf.process.BrokenProcessPool as exc:
            # A worker died (OOM, a segfault in the model): the pool is broken for good.
            # Drop it, so the next run (of any project) starts a new one, and score this run
            # here, where a model that kills its process cannot break the pool again.
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)
            log.warning("a scoring worker died (%s): scoring this run in process", exc)
            return InProcess().score(task, rows, positions, chunk)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(cancel_futures=True)


# -- Dask -----------------------------------------------------------------------------------


class DaskScorer:
    """Chunks scored on a Dask distributed cluster (`pip install 'labelgrid[dask]'`): give a
    `distributed.Client`, or a scheduler address to connect one."""

    def __init__(self, client: Any) -> None:
        if isinstance(client, str):
            from labelgrid.extras import require

            require("dask", "scoring on a Dask cluster")
            from distributed import Client

            client = Client(client)
            self._own = True
        else:
            self._own = False
        self.client = client

    def score(
        self,
        task: Task,
        rows: np.ndarray,
        positions: np.ndarray,
        chunk: int,
        path: Path | None = None,
    ) -> np.ndarray:
        spans = chunks(len(positions), chunk)
        if not spans:
            return np.empty(0)
        remote_task = self.client.scatter(task, broadcast=True)
        futures = [
            self.client.submit(
                score_chunk, remote_task, np.ascontiguousarray(rows[positions[a:b]]), pure=False
            )
            for a, b in spans
        ]
        return np.concatenate(self.client.gather(futures))

    def close(self) -> None:
        if self._own:
            self.client.close()
