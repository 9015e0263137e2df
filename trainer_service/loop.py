"""The active-learning loop, the one implementation shared by the trainer service and the
notebook widget's `orchestrate()` / `retrain()`.

One run: read the labels that are new since the last run (StreamLabelled from a cursor),
fit and score the model, score every unlabelled item in chunks through `predict_proba`
(memory flat in the number of items), rank them with the acquisition function and push the
priorities with UpdatePriorities under a new model version. It never leases an item, so the
items it ranks first stay available to labellers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.model_selection import cross_val_score
from sklearn.preprocessing import MultiLabelBinarizer

from labelgrid import payloads
from labelgrid.client import QueueClient
from labelgrid_proto.v1 import queue_pb2
from trainer_service import acquisition, models

log = logging.getLogger("labelgrid.trainer")

EvalMethod = Callable[[Any, Any, Any], Any]
Preprocess = Callable[[Any, Any], tuple[Any, Any]]

# Status values of a run, shared with the TrainerService contract.
OK = "ok"
ALL_LABELLED = "all_labelled"
NOT_ENOUGH_LABELS = "not_enough_labels"
MODEL_FAILED = "model_failed"


@dataclass
class RunResult:
    """What one run did; `status` says whether priorities were pushed and, if not, why."""

    status: str
    message: str
    score: float | None = None
    score_std: float | None = None
    n_labels: int = 0
    n_scored: int = 0
    model_version: int | None = None
    seconds: float = 0.0
    started_at: float = field(default_factory=time.time)

    @property
    def ok(self) -> bool:
        return self.status in (OK, ALL_LABELLED)

    def to_proto(self, trainer: str) -> queue_pb2.TrainingRun:
        msg = queue_pb2.TrainingRun(
            status=self.status,
            message=self.message,
            n_labels=self.n_labels,
            n_scored=self.n_scored,
            model_version=self.model_version or 0,
            seconds=self.seconds,
            trainer=trainer,
        )
        msg.started_at.FromNanoseconds(round(self.started_at * 1e9))
        if self.score is not None:
            msg.score = self.score
        if self.score_std is not None:
            msg.score_std = self.score_std
        return msg


def default_preprocess(x: list[Any], y: Any) -> tuple[Any, Any]:
    """Arrays become one flat row each; anything else is passed on as a list."""
    if x and all(isinstance(v, np.ndarray) for v in x):
        return np.stack([np.asarray(v).reshape(-1) for v in x]), y
    return x, y


def default_eval(model: Any, X: Any, y: Any) -> np.ndarray:
    """3-fold cross-validation, fewer folds when the rarest class has fewer than 3 labels."""
    y_arr = np.asarray(y)
    if y_arr.ndim == 1:
        _, counts = np.unique(y_arr, return_counts=True)
        folds = min(3, int(counts.min()))
    else:
        folds = min(3, len(y_arr))
    if folds < 2:
        raise ValueError("too few labels per class for cross-validation")
    return cross_val_score(model, X, y, cv=folds)


class ActiveLearner:
    """Active learning for one project, against a queue service.

    Parameters follow superintendent: `eval_method(model, X, y)` returns scores,
    `acquisition` ('entropy', 'margin', 'certainty', 'random' or a callable from
    probabilities to one score per item, higher first), `shuffle_prop` the share of the
    ranking shuffled for exploration, `model_preprocess(x, y) -> (X, y)`.
    `consensus` says which labels to train on: "majority" or "dawid_skene" (one label per
    completed item), None (every annotation, the newest winning), or "auto": majority when
    the project asks for several labels per item, else every annotation.
    """

    def __init__(
        self,
        client: QueueClient,
        project: str,
        model: Any,
        *,
        eval_method: EvalMethod | None = None,
        acquisition_function: str | acquisition.Acquisition | None = "margin",
        shuffle_prop: float = 0.1,
        model_preprocess: Preprocess | None = None,
        chunk_size: int = 2000,
        seed: int | None = None,
        diverse_pool: int = 200,
        trainer_name: str = "notebook",
        record: bool = True,
        consensus: str | None = "auto",
    ) -> None:
        self.client = client
        self._consensus = consensus
        self.project = project
        self.model = model
        self.eval_method = eval_method or default_eval
        self.batch_aware = acquisition_function in acquisition.BATCH_AWARE
        self.acquire = (
            acquisition.BATCH_AWARE[acquisition_function]
            if self.batch_aware
            else acquisition.resolve(acquisition_function)
        )
        self.diverse_pool = diverse_pool
        self.trainer_name = trainer_name
        self.record = record
        self.shuffle_prop = shuffle_prop
        self.preprocess = model_preprocess or default_preprocess
        self.chunk_size = chunk_size
        self.rng = np.random.default_rng(seed)
        self.cursor = 0
        self.labelled: dict[int, tuple[Any, list[str]]] = {}
        self.history: list[RunResult] = []
        self._fit_lock = threading.Lock()
        self._settings: queue_pb2.Project | None = None

    # -- data ---------------------------------------------------------------------------

    @property
    def settings(self) -> queue_pb2.Project:
        """The project's settings, read once (they never change; the model version does,
        and is read fresh where it is needed)."""
        if self._settings is None:
            self._settings = self.client.get_project(self.project)
        return self._settings

    @property
    def consensus(self) -> str | None:
        if self._consensus == "auto":
            return "majority" if self.settings.overlap > 1 else None
        return self._consensus

    def fetch_labels(self) -> int:
        """Read only what is newer than the cursor (annotations, or items completed or
        changed since); returns how many arrived."""
        method = self.consensus
        new = 0
        for chunk in self.client.stream_labelled(self.project, after=self.cursor, consensus=method):
            for item in chunk.items:
                self.labelled[item.item_id] = (payloads.from_payload(item.input), list(item.labels))
                new += 1
            self.cursor = max(self.cursor, chunk.cursor)
        if method == "dawid_skene" and new:
            # new labels re-weigh every worker, so older items' consensus can change too
            for chunk in self.client.stream_labelled(
                self.project, consensus=method, labels_only=True
            ):
                for item in chunk.items:
                    if item.item_id in self.labelled:
                        self.labelled[item.item_id] = (
                            self.labelled[item.item_id][0],
                            list(item.labels),
                        )
        return new

    def _training_set(self) -> tuple[Any, Any]:
        xs = [x for x, _ in self.labelled.values()]
        if self.settings.multi_label:
            self._binarizer = MultiLabelBinarizer()
            y = self._binarizer.fit_transform([labels for _, labels in self.labelled.values()])
        else:
            y = np.asarray([labels[0] for _, labels in self.labelled.values()])
        return self.preprocess(xs, y)

    # -- one run ------------------------------------------------------------------------

    def run_once(self) -> RunResult:
        """Fit, score and re-rank once. Never raises for a data problem: the result's status
        and message say what happened."""
        with self._fit_lock:
            start = time.perf_counter()
            result = self._run()
            result.seconds = time.perf_counter() - start
            self.history.append(result)
            if self.record:
                try:
                    self.client.record_training_run(
                        self.project, result.to_proto(self.trainer_name)
                    )
                except Exception as exc:  # history is informative; the run itself stands
                    log.warning("could not record the run", extra={"error": str(exc)})
            log.info(
                "training run",
                extra={
                    "project": self.project,
                    "status": result.status,
                    "score": result.score,
                    "labels": result.n_labels,
                },
            )
            return result

    def _run(self) -> RunResult:
        self.fetch_labels()
        n = len(self.labelled)
        if n == 0:
            return RunResult(NOT_ENOUGH_LABELS, "no labels yet: label some items first")
        X, y = self._training_set()
        classes = len(np.unique(y)) if np.ndim(y) == 1 else np.asarray(y).shape[1]
        if classes < 2:
            return RunResult(
                NOT_ENOUGH_LABELS,
                f"{n} labels but only one class so far: a classifier needs two or more",
                n_labels=n,
            )
        score = std = None
        note = ""
        try:
            scores = np.asarray(self.eval_method(models.fresh(self.model), X, y), dtype=float)
            score, std = float(np.mean(scores)), float(np.std(scores))
        except Exception as exc:  # a scoring failure must not stop the ranking
            note = f" (not scored: {exc})"
        try:
            self.model.fit(X, y)
        except Exception as exc:
            return RunResult(MODEL_FAILED, f"the model failed to fit: {exc}", score, std, n)
        if self.acquire is None:
            return RunResult(OK, f"fitted on {n} labels; no reorder set{note}", score, std, n)
        ids, values, pool = self._score_unlabelled()
        if len(ids) == 0:
            return RunResult(
                ALL_LABELLED, f"fitted on {n} labels; nothing left to rank{note}", score, std, n
            )
        order = np.argsort(-values, kind="stable")
        if pool is not None:
            order = self._diversify(ids, order, *pool)
        priorities = acquisition.priorities_from_order(order, self.shuffle_prop, self.rng)
        version = self.client.get_project(self.project).model_version + 1
        self.client.update_priorities(self.project, ids, priorities, model_version=version)
        return RunResult(
            OK,
            f"fitted on {n} labels, ranked {len(ids)} items{note}",
            score,
            std,
            n,
            len(ids),
            version,
        )

    @staticmethod
    def _diversify(
        ids: np.ndarray, order: np.ndarray, pool_ids: np.ndarray, pool_x: np.ndarray
    ) -> np.ndarray:
        """Serve the most uncertain items farthest-first, ahead of the rest (still by
        uncertainty), so concurrent labellers get diverse uncertain items."""
        position = {int(i): k for k, i in enumerate(ids)}
        head = np.asarray([position[int(i)] for i in pool_ids], dtype=np.int64)
        head = head[acquisition.diverse_order(pool_x)]
        rest = order[~np.isin(order, head)]
        return np.concatenate([head, rest])

    def _score_unlabelled(
        self,
    ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
        ids: list[np.ndarray] = []
        values: list[np.ndarray] = []
        batch_ids: list[int] = []
        batch_x: list[Any] = []
        # batch-aware: the most uncertain items so far, with their feature rows (bounded)
        pool_ids = np.empty(0, np.int64)
        pool_scores = np.empty(0)
        pool_x: np.ndarray | None = None

        def flush() -> None:
            nonlocal pool_ids, pool_scores, pool_x
            X, _ = self.preprocess(batch_x, None)
            probs = self.model.predict_proba(X)
            if isinstance(probs, list):  # multi-output estimators: one array per label
                probs = np.stack([p[:, -1] for p in probs], axis=1)
            probs = np.asarray(probs, dtype=float)
            if self.settings.multi_label:
                # mean binary uncertainty across labels
                per_label = np.stack([probs, 1 - probs], axis=2)
                scores = np.mean(
                    [self.acquire(per_label[:, j]) for j in range(probs.shape[1])], axis=0
                )
            else:
                scores = self.acquire(probs)
            chunk_ids = np.asarray(batch_ids, dtype=np.int64)
            chunk_scores = np.asarray(scores, dtype=np.float64)
            ids.append(chunk_ids)
            values.append(chunk_scores)
            if self.batch_aware:
                rows = np.asarray(X, dtype=np.float64).reshape(len(chunk_ids), -1)
                all_ids = np.concatenate([pool_ids, chunk_ids])
                all_scores = np.concatenate([pool_scores, chunk_scores])
                all_x = rows if pool_x is None else np.concatenate([pool_x, rows])
                # most uncertain first; ties in insertion order
                keep = np.lexsort((all_ids, -all_scores))[: self.diverse_pool]
                pool_ids, pool_scores, pool_x = all_ids[keep], all_scores[keep], all_x[keep]
            batch_ids.clear()
            batch_x.clear()

        for chunk in self.client.stream_unlabelled(self.project, chunk_size=self.chunk_size):
            for item in chunk.items:
                batch_ids.append(item.id)
                batch_x.append(payloads.from_payload(item.input))
            if len(batch_ids) >= self.chunk_size:
                flush()
        if batch_ids:
            flush()
        if not ids:
            return np.empty(0, np.int64), np.empty(0), None
        pool = (pool_ids, pool_x) if self.batch_aware and pool_x is not None else None
        return np.concatenate(ids), np.concatenate(values), pool

    # -- scheduling ---------------------------------------------------------------------

    def run(
        self,
        interval_seconds: float | None = None,
        interval_n_labels: int = 0,
        max_runs: float = float("inf"),
        on_result: Callable[[RunResult], None] | None = None,
        stop: threading.Event | None = None,
        poll_seconds: float = 1.0,
    ) -> list[RunResult]:
        """Run once (interval_seconds None), or repeatedly: each run waits until
        `interval_seconds` have passed since the last and `interval_n_labels` new labels
        have arrived, until `max_runs` runs or `stop` is set."""
        stop = stop or threading.Event()
        results: list[RunResult] = []
        if interval_seconds is None:
            results.append(self.run_once())
            if on_result:
                on_result(results[-1])
            return results
        last_run = float("-inf")
        labelled_at_last = -1
        while len(results) < max_runs and not stop.is_set():
            labelled = self.client.progress(self.project).labelled
            due = time.monotonic() - last_run >= interval_seconds
            enough = labelled_at_last < 0 or labelled - labelled_at_last >= interval_n_labels
            if due and enough:
                last_run, labelled_at_last = time.monotonic(), labelled
                results.append(self.run_once())
                if on_result:
                    on_result(results[-1])
                continue
            stop.wait(min(poll_seconds, max(interval_seconds, 0.05)))
        return results
