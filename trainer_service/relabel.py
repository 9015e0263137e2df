"""Relabel requests from the active-learning loop (issue 18): the interface an acquisition
implements to ask one more label on items that are already labelled.

An acquisition is a callable from class probabilities to one score per unlabelled item
(trainer_service/acquisition.py). One that also has a `relabel_scores(pool)` method, taking
a `LabelledPool` (the labelled items, the model's probabilities on them, their training
labels) and returning one score per labelled item ON THE SAME SCALE as its unlabelled
scores (NaN or -inf: do not ask), makes `ActiveLearner` rank both together: one serving
order over the unlabelled items and the labelled ones worth another label, pushed in one
UpdatePriorities call (`relabel_ids`, `relabel_priorities`), so the queue serves an item
asked again between unlabelled items of higher and lower score, to a worker who has not
labelled it, within the project's max_overlap. The loop asks only in projects with
max_overlap > overlap; each push replaces the project's open requests (protos/labelgrid/v1/
queue.proto, UpdatePrioritiesRequest).

This module defines the interface only; the scoring itself (e.g. cleanlab's ActiveLab) is an
acquisition's own business.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class LabelledPool:
    """The labelled items a relabel score is asked for, in one order."""

    #: item ids
    ids: np.ndarray
    #: the fitted model's predict_proba on them (items x classes; multi-label: items x
    #: labels, the probability of each label)
    probabilities: np.ndarray
    #: the label(s) each was trained on (the project's consensus, or its annotations)
    labels: list[list[str]]
    #: the model's classes, in the columns' order
    classes: list[Any]
    #: every annotation seen (item id, worker, labels), for acquisitions that weigh each
    #: annotator (`needs_votes = True`); may include items outside `ids`
    votes: Sequence[tuple[int, str, tuple[str, ...]]] = ()


@runtime_checkable
class RelabelAcquisition(Protocol):
    def __call__(self, probabilities: np.ndarray) -> np.ndarray: ...

    def relabel_scores(self, pool: LabelledPool) -> np.ndarray:
        """One score per item of `pool`, on the scale of `__call__`'s scores; NaN or -inf
        for an item not worth another label."""
        ...


def relabel_scorer(acquire: Any) -> Callable[[LabelledPool], np.ndarray] | None:
    """The acquisition's `relabel_scores`, or None when it scores unlabelled items only."""
    scorer = getattr(acquire, "relabel_scores", None)
    return scorer if callable(scorer) else None


def wanted(pool: LabelledPool, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """The (ids, scores) of the pool's items worth another label: finite scores only."""
    values = np.asarray(scores, dtype=np.float64)
    if values.shape != (len(pool.ids),):
        raise ValueError(
            f"relabel_scores gave shape {values.shape}; need one score per labelled item "
            f"({len(pool.ids)})"
        )
    keep = np.isfinite(values)
    return pool.ids[keep], values[keep]
