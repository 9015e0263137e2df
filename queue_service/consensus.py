"""One label per item from several annotators: majority vote and Dawid-Skene.

Votes are coded as integers once (`Votes.build`) so both methods are a few numpy array
operations, whatever the number of items. Multi-label projects are aggregated label by
label, each as a yes/no question. A final label (an adjudicator's, or one imported with
the data) overrides the vote with confidence 1.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
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


def onehot_sets(
    labelsets: Sequence[tuple[str, ...]], codes: Iterable[int], names: Sequence[str]
) -> tuple[list[str], np.ndarray]:
    """`names` extended by every label of the sets `codes` that it lacks (in that order), and
    each set as a row of bools over them (the rows of sets not in `codes` stay empty)."""
    names = list(names)
    known = set(names)
    codes = list(codes)
    for code in codes:
        for label in labelsets[code]:
            if label not in known:
                known.add(label)
                names.append(label)
    index = {name: i for i, name in enumerate(names)}
    by_set = np.zeros((len(labelsets), len(names)), dtype=bool)
    for code in codes:
        by_set[code, [index[label] for label in labelsets[code]]] = True
    return names, by_set


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
        workers: dict[str, int] = {}
        sets: dict[tuple[str, ...], int] = {}
        worker = [workers.setdefault(v.worker, len(workers)) for v in votes]
        labels = [sets.setdefault(tuple(v.labels), len(sets)) for v in votes]
        return cls.from_codes(
            np.fromiter((v.item_id for v in votes), np.int64, len(votes)),
            np.asarray(worker, dtype=np.int64),
            list(workers),
            np.asarray(labels, dtype=np.int64),
            list(sets),
            multi_label,
            label_names,
        )

    @classmethod
    def from_codes(
        cls,
        item_ids: np.ndarray,
        worker: np.ndarray,
        worker_names: Sequence[str],
        labels: np.ndarray,
        labelsets: Sequence[tuple[str, ...]],
        multi_label: bool,
        label_names: Sequence[str] = (),
    ) -> Votes:
        """From votes already coded (a stored project's, store/vote_table.py): vote v is by
        `worker_names[worker[v]]` on item `item_ids[v]`, giving `labelsets[labels[v]]`. The
        labels are `label_names` then any others in the order the votes first give them;
        the workers in sorted order."""
        used, first = np.unique(labels, return_index=True)
        names, by_set = onehot_sets(labelsets, used[np.argsort(first)], label_names)
        ids, item = np.unique(np.asarray(item_ids, dtype=np.int64), return_inverse=True)
        present, worker = np.unique(worker, return_inverse=True)
        present_names = [str(worker_names[c]) for c in present]
        order = sorted(range(len(present_names)), key=present_names.__getitem__)
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        return cls(
            item_ids=ids,
            workers=[present_names[i] for i in order],
            label_names=names,
            item=item.astype(np.int64).reshape(-1),
            worker=rank[worker.reshape(-1)],
            onehot=by_set[labels],
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


class LabelSets(Sequence[list[str]]):
    """Each item's labels, read from an (items, labels) bool matrix when asked: a list per
    item for 10^6 items took about 100 MB. An item's labels are in sorted order."""

    def __init__(self, present: np.ndarray, names: Sequence[str]) -> None:
        self.present = present
        self.names = list(names)
        self._order = sorted(range(len(self.names)), key=self.names.__getitem__)

    def __len__(self) -> int:
        return len(self.present)

    def _one(self, i: int) -> list[str]:
        row = self.present[i]
        return [self.names[j] for j in self._order if row[j]]

    def __getitem__(self, i):  # type: ignore[no-untyped-def, override]
        if isinstance(i, slice):
            return [self._one(j) for j in range(*i.indices(len(self)))]
        return self._one(i)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]


@dataclass
class Consensus:
    item_ids: np.ndarray
    labels: LabelSets
    confidence: np.ndarray


def aggregate(votes: Votes, method: str = MAJORITY) -> Consensus:
    """One label (or label set) per item with a confidence in [0, 1].

    Single-label: the winning label and its posterior (for majority: its vote share).
    Multi-label: each label is kept when more likely present than not; the confidence is
    that of the least certain of those per-label decisions."""
    if method not in METHODS:
        raise ValueError(f"unknown consensus method {method!r}; use one of {METHODS}")
    n = votes.n_items
    present = np.zeros((n, len(votes.label_names)), dtype=bool)
    confidence = np.ones(n)
    for j, (name, codes, k) in enumerate(votes.questions()):
        if method == DAWID_SKENE:
            post = dawid_skene_posteriors(votes, codes, k)
        else:
            post = _majority(votes.counts(codes, k))
        if name is None:
            winner = post.argmax(axis=1)
            if present.shape[1]:
                present[np.arange(n), winner] = True
            confidence = post[np.arange(n), winner]
        else:
            present[:, j] = post[:, 1] > post[:, 0]
            confidence = np.minimum(confidence, post.max(axis=1))
    return Consensus(votes.item_ids, LabelSets(present, votes.label_names), confidence)
