"""One label per item from several annotators: majority vote and Dawid-Skene.

Votes are coded as integers once (`Votes.build`) so both methods are a few numpy array
operations, whatever the number of items. Multi-label projects are aggregated label by
label, each as a yes/no question. A final label (an adjudicator's, or one imported with
the data) overrides the vote with confidence 1.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

MAJORITY, DAWID_SKENE = "majority", "dawid_skene"
METHODS = (MAJORITY, DAWID_SKENE)


def modal_fraction(labelsets: Sequence[Hashable]) -> float:
    """The share of annotators who gave the most common answer (1.0 for one or none)."""
    if len(labelsets) < 2:
        return 1.0
    return Counter(labelsets).most_common(1)[0][1] / len(labelsets)


@dataclass(frozen=True)
class Vote:
    item_id: int
    worker: str
    labels: tuple[str, ...]


@dataclass
class Votes:
    """Annotations as codes: vote v is worker `worker[v]` on item `item[v]`."""

    item_ids: np.ndarray  # the item id of each item index, ascending
    workers: list[str]
    label_names: list[str]
    item: np.ndarray  # item index per vote
    worker: np.ndarray  # worker index per vote
    onehot: np.ndarray  # (votes, labels) bool: which labels each vote gave
    multi_label: bool

    @classmethod
    def build(
        cls, votes: Sequence[Vote], multi_label: bool, label_names: Sequence[str] = ()
    ) -> Votes:
        names = list(label_names)
        known = set(names)
        for v in votes:
            for label in v.labels:
                if label not in known:
                    known.add(label)
                    names.append(label)
        index = {name: i for i, name in enumerate(names)}
        item_ids, item = np.unique(
            np.fromiter((v.item_id for v in votes), np.int64, len(votes)), return_inverse=True
        )
        workers, worker = np.unique(
            np.asarray([v.worker for v in votes], dtype=str), return_inverse=True
        )
        onehot = np.zeros((len(votes), len(names)), dtype=bool)
        for row, v in enumerate(votes):
            onehot[row, [index[label] for label in v.labels]] = True
        return cls(
            item_ids=item_ids,
            workers=[str(w) for w in workers],
            label_names=names,
            item=item.astype(np.int64),
            worker=worker.astype(np.int64),
            onehot=onehot,
            multi_label=multi_label,
        )

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def questions(self) -> list[tuple[str | None, np.ndarray, int]]:
        """(label or None, category code per vote, number of categories) per question:
        one question with every label for single-label projects, one yes/no question per
        label for multi-label ones."""
        if not self.multi_label:
            codes = self.onehot.argmax(axis=1) if self.onehot.size else np.zeros(0, np.int64)
            return [(None, codes.astype(np.int64), max(len(self.label_names), 1))]
        return [
            (name, self.onehot[:, j].astype(np.int64), 2) for j, name in enumerate(self.label_names)
        ]

    def counts(self, codes: np.ndarray, n_categories: int) -> np.ndarray:
        """(items, categories) how many votes each item got for each category."""
        flat = np.bincount(self.item * n_categories + codes, minlength=self.n_items * n_categories)
        return flat.reshape(self.n_items, n_categories)


def _majority(counts: np.ndarray) -> np.ndarray:
    """Posterior-like shares; ties split evenly (the lowest code wins the argmax)."""
    totals = counts.sum(axis=1, keepdims=True)
    return counts / np.maximum(totals, 1)


def dawid_skene_posteriors(
    votes: Votes,
    codes: np.ndarray,
    n_categories: int,
    max_iter: int = 100,
    tol: float = 1e-6,
    diagonal_prior: float = 0.0,
) -> np.ndarray:
    """EM over one confusion matrix per worker (Dawid & Skene, 1979), started from the
    majority vote; returns (items, categories) posterior class probabilities.

    `diagonal_prior` adds that many pseudo-votes to the diagonal of every worker's confusion
    matrix (a prior that workers are more often right than wrong). Without it, a worker's row
    for a class they never answered is uniform, and when most items have one label EM can
    drift every item to one class; 1.0 keeps sparse crowds (one or two labels per item) sane
    and barely moves dense ones."""
    k = n_categories
    posterior = _majority(votes.counts(codes, k)).astype(float)
    if votes.n_items == 0:
        return posterior
    n_workers = len(votes.workers)
    smoothing = 1e-2
    for _ in range(max_iter):
        prior = np.clip(posterior.mean(axis=0), 1e-9, None)
        prior /= prior.sum()
        confusion = np.full((n_workers, k, k), smoothing)
        confusion[:, np.arange(k), np.arange(k)] += diagonal_prior
        for label in range(k):
            mask = codes == label
            np.add.at(confusion[:, :, label], votes.worker[mask], posterior[votes.item[mask]])
        confusion /= confusion.sum(axis=2, keepdims=True)
        log_post = np.tile(np.log(prior), (votes.n_items, 1))
        np.add.at(log_post, votes.item, np.log(confusion[votes.worker, :, codes]))
        log_post -= log_post.max(axis=1, keepdims=True)
        new = np.exp(log_post)
        new /= new.sum(axis=1, keepdims=True)
        change = float(np.abs(new - posterior).max())
        posterior = new
        if change < tol:
            break
    return posterior


@dataclass
class Consensus:
    item_ids: np.ndarray
    labels: list[list[str]]
    confidence: np.ndarray


def aggregate(votes: Votes, method: str = MAJORITY) -> Consensus:
    """One label (or label set) per item with a confidence in [0, 1].

    Single-label: the winning label and its posterior (for majority: its vote share).
    Multi-label: each label is kept when more likely present than not; the confidence is
    that of the least certain of those per-label decisions."""
    if method not in METHODS:
        raise ValueError(f"unknown consensus method {method!r}; use one of {METHODS}")
    labels: list[list[str]] = [[] for _ in range(votes.n_items)]
    confidence = np.ones(votes.n_items)
    for name, codes, k in votes.questions():
        if method == DAWID_SKENE:
            post = dawid_skene_posteriors(votes, codes, k)
        else:
            post = _majority(votes.counts(codes, k))
        if name is None:
            winner = post.argmax(axis=1)
            for i, w in enumerate(winner):
                labels[i] = [votes.label_names[w]]
            confidence = post[np.arange(votes.n_items), winner]
        else:
            present = post[:, 1] > post[:, 0]
            for i in np.flatnonzero(present):
                labels[i].append(name)
            confidence = np.minimum(confidence, post.max(axis=1))
    if votes.multi_label:
        labels = [sorted(x) for x in labels]
    return Consensus(votes.item_ids, labels, confidence)
