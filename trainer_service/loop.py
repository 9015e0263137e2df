"""The active-learning loop, the one implementation shared by the trainer service and the
notebook widget's `orchestrate()` / `retrain()`.

One run, in phases (recorded with the run, so users see where its time goes):

- pull: the labels that are new since the last run (StreamLabelled from a cursor), the ids
  still in the pool (StreamUnlabelled, ids only), and the features of items added since the
  last run (StreamUnlabelled from the feature cache's cursor): features never change, so
  every one seen before is read from the local cache (trainer_service/cache.py);
- fit: evaluate and fit the model;
- score: `predict_proba` and the acquisition function over the pool in chunks, in this
  process, over the cores or on a Dask cluster (trainer_service/scoring.py); with a score
  budget smaller than the pool, over a candidate pool only (`candidates`);
- push: the priorities, with UpdatePriorities under a new model version.

It never leases an item, so the items it ranks first stay available to labellers. Projects
whose inputs are not arrays of one dtype and shape are read the uncached way each run.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import cross_val_predict, cross_val_score
from sklearn.preprocessing import MultiLabelBinarizer

from labelgrid import payloads
from labelgrid.client import QueueClient
from labelgrid_proto.exportfile import several_labels
from labelgrid_proto.v1 import queue_pb2
from trainer_service import acquisition, models, relabel, scoring
from trainer_service.cache import CacheBusy, FeatureCache, Uncacheable, project_key
from trainer_service.relabel_or_new import RelabelOrNew

log = logging.getLogger("labelgrid.trainer")

EvalMethod = Callable[[Any, Any, Any], Any]
Preprocess = Callable[[Any, Any], tuple[Any, Any]]

#: the crowd acquisition's name (trainer_service/relabel_or_new.py)
RELABEL_OR_NEW = "relabel-or-new"

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
    #: [(phase, seconds)] in order: pull, fit, score, push (those the run reached)
    phases: list[tuple[str, float]] = field(default_factory=list)

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
            phases=[queue_pb2.RunPhase(name=n, seconds=s) for n, s in self.phases],
        )
        msg.started_at.FromNanoseconds(round(self.started_at * 1e9))
        if self.score is not None:
            msg.score = self.score
        if self.score_std is not None:
            msg.score_std = self.score_std
        return msg


#: ids per reply of the pool's ids (16 bytes each), and items per query of new features
#: (the queue service's default LABELGRID_MAX_CHUNK_ITEMS is 10,000)
POOL_CHUNK = 10000
FEATURE_CHUNK = 5000


def candidates(priorities: np.ndarray, budget: int, rng: np.random.Generator) -> np.ndarray:
    """The positions of a run's candidate pool when the pool is larger than its budget: the
    half of the budget ranked highest by the last run (finite priorities, highest first),
    then a uniform random sample of the rest to fill the budget, so every item is scored
    again now and then and new, never-ranked items get their chance. The candidates'
    new priorities go above every other item's, which keep their last ranking."""
    ranked = np.flatnonzero(np.isfinite(priorities))
    top = ranked[np.argsort(-priorities[ranked], kind="stable")][: budget // 2]
    others = np.setdiff1d(np.arange(len(priorities)), top, assume_unique=True)
    sample = rng.choice(others, size=min(len(others), budget - len(top)), replace=False)
    return np.sort(np.concatenate([top, sample]))


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
    `acquisition` ('entropy', 'margin', 'certainty', 'random', 'batch-margin',
    'cluster-margin', 'relabel-or-new' or a callable from probabilities to one score per
    item, higher first; one with `relabel_scores` also asks labelled items again in projects
    with max_overlap > overlap, those ranking among the next `relabel_top` items: see
    trainer_service/relabel.py and relabel_or_new.py), `shuffle_prop` the share of the
    ranking shuffled for exploration, `model_preprocess(x, y) -> (X, y)`.
    `consensus` says which labels to train on: "majority" or "dawid_skene" (one label per
    completed item), None (every annotation, the newest winning), or "auto": majority when
    the project may give an item several labels (overlap or max_overlap above 1), else
    every annotation.

    Scale: `cache_dir` keeps the project's features between runs and restarts (None: a
    temporary directory for this learner's life); `scorer` says where scoring runs
    (default: `workers` processes, 1 meaning this process: a script without a
    `__main__` guard must not be re-imported by spawned workers); `score_budget` (0: no
    limit) caps the items scored per run, see `candidates`.
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
        cache_dir: str | Path | None = None,
        workers: int = 1,
        scorer: scoring.Scorer | None = None,
        score_budget: int = 0,
        relabel_top: int = 200,
    ) -> None:
        self.client = client
        self._consensus = consensus
        self.project = project
        self.model = model
        self.eval_method = eval_method or default_eval
        self.batch_aware = acquisition_function in acquisition.BATCH_AWARE
        if acquisition_function == RELABEL_OR_NEW:  # stateful: one per learner
            self.acquire: Any = RelabelOrNew()
        else:
            self.acquire = (
                acquisition.BATCH_AWARE[acquisition_function]
                if self.batch_aware
                else acquisition.resolve(acquisition_function)
            )
        #: how the pool of most uncertain items is served (batch-aware strategies)
        self.batch_order = acquisition.ORDERS.get(acquisition_function, acquisition.diverse_order)
        self.diverse_pool = diverse_pool
        self.trainer_name = trainer_name
        self.record = record
        self.shuffle_prop = shuffle_prop
        self.preprocess = model_preprocess or default_preprocess
        self.chunk_size = chunk_size
        self.rng = np.random.default_rng(seed)
        self.cursor = 0
        self.labelled: dict[int, tuple[Any, list[str]]] = {}
        #: every annotation (item, worker, labels), for acquisitions that weigh annotators
        self.votes: list[tuple[int, str, tuple[str, ...]]] = []
        self._votes_cursor = 0
        self.history: list[RunResult] = []
        self._fit_lock = threading.Lock()
        self._settings: queue_pb2.Project | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None
        if cache_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="labelgrid-features-")
            cache_dir = self._tmp.name
        self.cache_dir = Path(cache_dir)
        self._cache: FeatureCache | None = None
        self._uncacheable = False
        self._closed = False
        self._own_scorer = scorer is None
        self.scorer: scoring.Scorer = scorer or (
            scoring.Processes(workers) if workers > 1 else scoring.InProcess()
        )
        if score_budget < 0:
            raise ValueError(f"score_budget must be >= 0; got {score_budget}")
        self.score_budget = score_budget
        if relabel_top < 1:
            raise ValueError(f"relabel_top must be >= 1; got {relabel_top}")
        self.relabel_top = relabel_top
        self._phases: dict[str, float] = {}

    def close(self) -> None:
        """Stop this learner's own scoring workers and drop a temporary cache. Waits for a
        run under way (RetrainNow), which would otherwise reopen the cache it closed and
        hold the directory's lock for good."""
        with self._fit_lock:
            self._closed = True
            if self._own_scorer:
                self.scorer.close()
            if self._cache is not None:
                self._cache.close()
                self._cache = None
            if self._tmp is not None:
                self._tmp.cleanup()

    @contextlib.contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self._phases[name] = self._phases.get(name, 0.0) + time.perf_counter() - start

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
            return "majority" if several_labels(self.settings) else None
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
        if getattr(self.acquire, "needs_votes", False):
            self._fetch_votes()
        return new

    def _fetch_votes(self) -> None:
        """The annotations newer than the votes' cursor (each worker's own label). An undo
        after they were read is not seen: the next fresh learner reads them anew."""
        for chunk in self.client.stream_labelled(
            self.project, after=self._votes_cursor, labels_only=True
        ):
            for a in chunk.items:
                self.votes.append((a.item_id, a.worker_id, tuple(a.labels)))
            self._votes_cursor = max(self._votes_cursor, chunk.cursor)

    def _training_set(self) -> tuple[Any, Any]:
        xs = [x for x, _ in self.labelled.values()]
        if self.settings.multi_label:
            self._binarizer = MultiLabelBinarizer()
            y = self._binarizer.fit_transform([labels for _, labels in self.labelled.values()])
        else:
            y = np.asarray(list(self.training_labels().values()))
        return self.preprocess(xs, y)

    def training_labels(self) -> dict[int, str]:
        """The label each labelled item is trained on (single-label projects): the queue's
        consensus, or the acquisition's own where it weighs annotators (`consensus(votes)`,
        e.g. relabel-or-new: each worker weighed by their estimated accuracy)."""
        mine = getattr(self.acquire, "consensus", None)
        theirs = mine(self.votes) if callable(mine) and self.votes else {}
        return {i: theirs.get(i, labels[0]) for i, (_, labels) in self.labelled.items()}

    # -- one run ------------------------------------------------------------------------

    def run_once(self) -> RunResult:
        """Fit, score and re-rank once. Never raises for a data problem: the result's status
        and message say what happened."""
        with self._fit_lock:
            start = time.perf_counter()
            self._phases = {}
            result = self._run()
            result.seconds = time.perf_counter() - start
            result.phases = list(self._phases.items())
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
        with self._phase("pull"):
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
        pool_ids = pool_priorities = None
        if self.acquire is not None and not self._uncacheable:
            with self._phase("pull"):
                try:
                    pool_ids, pool_priorities = self._pull_pool()
                except Uncacheable as exc:
                    log.info(
                        "features not cached", extra={"project": self.project, "why": str(exc)}
                    )
                    # busy: another learner's for now, so the next run tries again
                    self._uncacheable = not isinstance(exc, CacheBusy)
        score = std = None
        note = ""
        with self._phase("fit"):
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
        with self._phase("score"):
            # labelled items first: an acquisition may learn from them what it needs for the
            # unlabelled ones (relabel-or-new: the crowd's accuracy)
            again, again_values = self._relabel_scores(X, y)
            if pool_ids is not None and pool_priorities is not None:
                ids, values, pool, base = self._score_cached(pool_ids, pool_priorities)
            else:
                (ids, values, pool), base = self._score_unlabelled(), 0.0
        with self._phase("score"):
            # an item still in the pool (e.g. asking one more label after a disagreement)
            # is ranked there; the queue refuses an id in both lists
            fresh = ~np.isin(again, ids)
            again, again_values = again[fresh], again_values[fresh]
            if len(again) > 0:
                # ask again only what ranks among the next `relabel_top` of the combined order
                # (what labellers reach before the next run): a request reopens the item,
                # and a labelled item reopened at the bottom would only look unlabelled
                both = np.sort(np.concatenate([values, again_values]))[::-1]
                cut = both[min(self.relabel_top, len(both)) - 1]
                keep = again_values >= cut
                again, again_values = again[keep], again_values[keep]
        if len(ids) == 0 and len(again) == 0:
            return RunResult(
                ALL_LABELLED, f"fitted on {n} labels; nothing left to rank{note}", score, std, n
            )
        with self._phase("score"):
            # one serving order over the unlabelled items and the labelled ones asked again
            everything = np.concatenate([ids, again])
            order = np.argsort(-np.concatenate([values, again_values]), kind="stable")
            if pool is not None:
                order = self._diversify(everything, order, *pool, self.batch_order)
            ranked = acquisition.priorities_from_order(order, self.shuffle_prop, self.rng)
            ranked += base
            priorities, again_priorities = ranked[: len(ids)], ranked[len(ids) :]
        with self._phase("push"):
            version = self.client.get_project(self.project).model_version + 1
            extra = {}
            if self._can_relabel:  # each push replaces the open requests (maybe with none)
                extra = {"relabel_ids": again, "relabel_priorities": again_priorities}
            self.client.update_priorities(
                self.project, ids, priorities, model_version=version, **extra
            )
        asked = f", asked {len(again)} labelled items again" if len(again) else ""
        return RunResult(
            OK,
            f"fitted on {n} labels, ranked {len(ids)} items{asked}{note}",
            score,
            std,
            n,
            len(ids),
            version,
        )

    @property
    def _can_relabel(self) -> bool:
        """Relabel requests are pushed when the acquisition scores labelled items and the
        project lets a completed item get another label (max_overlap > overlap)."""
        settings = self.settings
        return relabel.relabel_scorer(self.acquire) is not None and settings.max_overlap > max(
            settings.overlap, 1
        )

    def _relabel_scores(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """(ids, scores) of the labelled items the acquisition wants another label on (on
        the scale of its unlabelled scores); none when it does not score labelled items
        (trainer_service/relabel.py)."""
        scorer = relabel.relabel_scorer(self.acquire)
        if scorer is None or not self._can_relabel:
            return np.empty(0, np.int64), np.empty(0)
        probs = None
        if getattr(self.acquire, "out_of_fold", False) and not self.settings.multi_label:
            try:  # each item predicted by a model that did not see it
                folds = max(2, min(3, int(np.min(np.unique(y, return_counts=True)[1]))))
                with warnings.catch_warnings():  # a rare class missing from a fold is
                    warnings.simplefilter("ignore")  # expected early on: its column is 0
                    probs = cross_val_predict(
                        models.fresh(self.model), X, y, cv=folds, method="predict_proba"
                    )
            except Exception as exc:  # too few labels per class: the fitted model's view
                log.info("no out-of-fold probabilities", extra={"why": str(exc)})
        if probs is None:
            probs = self.model.predict_proba(X)
        if isinstance(probs, list):  # multi-output estimators: one array per label
            probs = np.stack([p[:, -1] for p in probs], axis=1)
        pool = relabel.LabelledPool(
            ids=np.fromiter(self.labelled, np.int64, len(self.labelled)),
            probabilities=np.asarray(probs, dtype=np.float64),
            labels=[labels for _, labels in self.labelled.values()],
            classes=list(getattr(self.model, "classes_", [])),
            votes=self.votes,
        )
        return relabel.wanted(pool, scorer(pool))

    @staticmethod
    def _diversify(
        ids: np.ndarray,
        order: np.ndarray,
        pool_ids: np.ndarray,
        pool_x: np.ndarray,
        batch_order: Callable[[np.ndarray], np.ndarray] = acquisition.diverse_order,
    ) -> np.ndarray:
        """Serve the most uncertain items in the strategy's batch order (farthest-first for
        batch-margin, round-robin over clusters for cluster-margin), ahead of the rest (still
        by uncertainty), so concurrent labellers get diverse uncertain items."""
        position = {int(i): k for k, i in enumerate(ids)}
        head = np.asarray([position[int(i)] for i in pool_ids], dtype=np.int64)
        head = head[batch_order(pool_x)]
        rest = order[~np.isin(order, head)]
        return np.concatenate([head, rest])

    # -- the pool, from the feature cache ----------------------------------------------------

    def cache(self) -> FeatureCache:
        """This project's feature cache (opened on first use)."""
        if self._cache is None:
            if self._closed:  # a run after close: no lock that nobody would release
                raise CacheBusy(f"the learner of {self.project!r} is closed")
            created = self.settings.created_at.ToNanoseconds()
            address = getattr(self.client, "address", "")
            self._cache = FeatureCache(self.cache_dir / project_key(address, self.project, created))
        return self._cache

    def _pull_pool(self) -> tuple[np.ndarray, np.ndarray]:
        """The ids and priorities of the items in the pool now, with every one's features
        in the cache: only items added since the cache's cursor travel (and any the cache
        missed, e.g. reopened by an undo after the cursor passed them)."""
        cache = self.cache()
        ids: list[np.ndarray] = []
        prios: list[np.ndarray] = []
        for reply in self.client.stream_unlabelled(
            self.project, chunk_size=POOL_CHUNK, ids_only=True, packed=True
        ):
            if reply.items:  # a queue service older than packed ids answers with items
                ids.append(np.asarray([i.id for i in reply.items], np.int64))
                prios.append(np.asarray([i.priority for i in reply.items], np.float64))
                continue
            ids.append(np.fromiter(reply.ids, np.int64, len(reply.ids)))
            prios.append(np.fromiter(reply.priorities, np.float64, len(reply.priorities)))
        pool_ids = np.concatenate(ids) if ids else np.empty(0, np.int64)
        pool_prios = np.concatenate(prios) if prios else np.empty(0)
        self._fetch_features(cache.cursor, None)
        missing = pool_ids[cache.positions(pool_ids) < 0]
        if len(missing):
            self._fetch_features(int(missing.min()) - 1, set(missing.tolist()))
        return pool_ids, pool_prios

    def _fetch_features(self, after: int, wanted: set[int] | None) -> None:
        """Append the features of unlabelled items after `after` to the cache: all of them
        (wanted None, moving the cursor) or only the `wanted` ids (stopping once found)."""
        cache = self.cache()
        cursor = None
        stream = self.client.stream_unlabelled(
            self.project, after, chunk_size=FEATURE_CHUNK, packed=True
        )
        try:
            for reply in stream:
                if reply.items:
                    raise Uncacheable("the project has items that are not arrays")
                if not reply.HasField("rows"):
                    continue
                got = np.fromiter(reply.ids, np.int64, len(reply.ids))
                rows = reply.rows
                inner = tuple(rows.shape[1:])
                data: bytes | memoryview = rows.data
                if wanted is not None:
                    keep = np.isin(got, np.fromiter(wanted, np.int64, len(wanted)))
                    if not keep.any():
                        continue
                    block = np.frombuffer(rows.data, np.uint8).reshape(len(got), -1)
                    got, data = got[keep], block[keep].tobytes()
                    wanted.difference_update(got.tolist())
                cache.append(got, rows.dtype, inner, data)
                cursor = reply.cursor
                if wanted is not None and not wanted:
                    break
        finally:
            if hasattr(stream, "cancel"):
                stream.cancel()
        cache.commit(cursor if wanted is None else None)

    def _score_cached(
        self, pool_ids: np.ndarray, pool_priorities: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None, float]:
        """Scores of the pool (or of its candidates, under a budget) from cached rows; and
        the base the new priorities go above (the rest's highest, with a budget)."""
        cache = self.cache()
        positions = cache.positions(pool_ids)
        known = positions >= 0  # an item that left the cache's view meanwhile: skip it
        ids, positions, prios = pool_ids[known], positions[known], pool_priorities[known]
        base = 0.0
        if self.score_budget and len(ids) > self.score_budget:
            chosen = candidates(prios, self.score_budget, self.rng)
            rest = np.ones(len(ids), bool)
            rest[chosen] = False
            ranked = prios[rest][np.isfinite(prios[rest])]
            base = float(ranked.max()) if len(ranked) else 0.0
            ids, positions = ids[chosen], positions[chosen]
        preprocess = None if self.preprocess is default_preprocess else self.preprocess
        task = scoring.Task(self.model, self.acquire, bool(self.settings.multi_label), preprocess)
        rows = cache.rows()
        values = self.scorer.score(task, rows, positions, self.chunk_size, path=cache.rows_path)
        pool = None
        if self.batch_aware and len(ids):
            keep = np.lexsort((ids, -values))[: self.diverse_pool]
            X = scoring.features(rows[positions[keep]], preprocess)
            pool = (ids[keep], np.asarray(X, dtype=np.float64).reshape(len(keep), -1))
        return ids, values, pool, base

    # -- the pool, streamed (inputs that are not arrays of one shape) -------------------------

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
