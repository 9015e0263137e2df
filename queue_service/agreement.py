"""How much annotators agree: per project and per worker pair, and per worker.

Project-level: percent agreement (the share of agreeing annotator pairs per item, averaged),
Fleiss' kappa (over the items with the most common number of annotations, as Fleiss'
formula needs a fixed number per item) and Krippendorff's alpha (nominal, from the
`krippendorff` package; any number of annotations per item). Per worker pair: percent
agreement and Cohen's kappa (scikit-learn) on the items both labelled. Multi-label projects
are measured label by label as yes/no questions and summarised by the mean over labels.
A value that is undefined (one category only, too few items) is NaN.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import krippendorff
import numpy as np

from queue_service.consensus import Consensus, Votes

# gaps between one worker's labels longer than this are breaks, not labelling time
BREAK_SECONDS = 600.0


def percent_agreement(counts: np.ndarray) -> float:
    """Mean over items with >= 2 annotations of the share of annotator pairs that agree."""
    n = counts.sum(axis=1)
    keep = n >= 2
    if not keep.any():
        return math.nan
    c, n = counts[keep], n[keep]
    return float(((c * (c - 1)).sum(axis=1) / (n * (n - 1))).mean())


def fleiss_kappa(counts: np.ndarray) -> tuple[float, int]:
    """Fleiss' kappa over the items whose number of annotations is the most common one
    (>= 2); returns (kappa, items used)."""
    n = counts.sum(axis=1)
    sizes = n[n >= 2]
    if len(sizes) == 0:
        return math.nan, 0
    values, freq = np.unique(sizes, return_counts=True)
    m = values[freq.argmax()]
    table = counts[n == m].astype(float)
    items = len(table)
    p = table.sum(axis=0) / (items * m)
    p_item = ((table**2).sum(axis=1) - m) / (m * (m - 1))
    expected = float((p**2).sum())
    if expected >= 1.0 or items < 2:
        return math.nan, items
    return (float(p_item.mean()) - expected) / (1.0 - expected), items


def krippendorff_alpha(counts: np.ndarray) -> float:
    """Krippendorff's alpha, nominal, over the items with >= 2 annotations."""
    table = counts[counts.sum(axis=1) >= 2]
    if len(table) == 0 or (table.sum(axis=0) > 0).sum() < 2:
        return math.nan
    return float(krippendorff.alpha(value_counts=table, level_of_measurement="nominal"))


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or len(np.union1d(a, b)) < 2:
        return math.nan
    # imported here, not at the top: scikit-learn takes ~1 s of CPU to import, which every
    # queue service start paid before serving, and only the agreement statistics use it
    from sklearn.metrics import cohen_kappa_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(cohen_kappa_score(a, b))


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


@dataclass
class LabelAgreement:
    label: str
    percent: float
    fleiss_kappa: float
    krippendorff_alpha: float


@dataclass
class PairAgreement:
    worker_a: str
    worker_b: str
    n_items: int
    percent: float
    cohen_kappa: float


@dataclass
class WorkerStats:
    worker: str
    labels: int
    # share of this worker's labels on items with >= 2 labels that match the consensus
    agreement_with_consensus: float
    n_compared: int
    # median time between consecutive labels, breaks over BREAK_SECONDS left out
    seconds_per_label: float


@dataclass
class Agreement:
    n_items: int  # items with >= 2 annotations
    n_annotations: int
    percent: float
    fleiss_kappa: float
    fleiss_items: int
    krippendorff_alpha: float
    per_label: list[LabelAgreement] = field(default_factory=list)
    pairs: list[PairAgreement] = field(default_factory=list)


def pairs_of(votes: Votes) -> tuple[np.ndarray, np.ndarray]:
    """Every (vote, vote) pair by two different workers on one item, as index arrays."""
    order = np.lexsort((votes.worker, votes.item))
    item = votes.item[order]
    firsts, seconds = [], []
    most = int(np.bincount(votes.item).max()) if len(item) else 0
    for gap in range(1, most):
        same = item[gap:] == item[:-gap]
        firsts.append(order[:-gap][same])
        seconds.append(order[gap:][same])
    if not firsts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    a, b = np.concatenate(firsts), np.concatenate(seconds)
    keep = votes.worker[a] != votes.worker[b]
    return a[keep], b[keep]


def measure(votes: Votes) -> Agreement:
    questions = votes.questions()
    per_label: list[LabelAgreement] = []
    percents, fleiss, alphas, used = [], [], [], 0
    for name, codes, k in questions:
        counts = votes.counts(codes, k)
        pct = percent_agreement(counts)
        kappa, used = fleiss_kappa(counts)
        alpha = krippendorff_alpha(counts)
        percents.append(pct)
        fleiss.append(kappa)
        alphas.append(alpha)
        if name is not None:
            per_label.append(LabelAgreement(name, pct, kappa, alpha))
    per_item = np.bincount(votes.item, minlength=votes.n_items) if votes.n_items else np.zeros(0)
    return Agreement(
        n_items=int((per_item >= 2).sum()),
        n_annotations=len(votes.item),
        percent=_mean(percents),
        fleiss_kappa=_mean(fleiss),
        fleiss_items=used,
        krippendorff_alpha=_mean(alphas),
        per_label=per_label,
        pairs=_pairs(votes, questions),
    )


def _pairs(
    votes: Votes, questions: list[tuple[str | None, np.ndarray, int]]
) -> list[PairAgreement]:
    a, b = pairs_of(votes)
    if len(a) == 0:
        return []
    wa, wb = votes.worker[a], votes.worker[b]
    low, high = np.minimum(wa, wb), np.maximum(wa, wb)
    swap = wa > wb
    a, b = np.where(swap, b, a), np.where(swap, a, b)
    key = low * len(votes.workers) + high
    uniq, inverse = np.unique(key, return_inverse=True)
    out = []
    for g, k in enumerate(uniq):
        rows = inverse == g
        va, vb = a[rows], b[rows]
        pct = [float((codes[va] == codes[vb]).mean()) for _, codes, _ in questions]
        kap = [cohen_kappa(codes[va], codes[vb]) for _, codes, _ in questions]
        out.append(
            PairAgreement(
                votes.workers[int(k // len(votes.workers))],
                votes.workers[int(k % len(votes.workers))],
                int(rows.sum()),
                _mean(pct),
                _mean(kap),
            )
        )
    out.sort(key=lambda p: (-p.n_items, p.worker_a, p.worker_b))
    return out


def worker_stats(
    votes: Votes, consensus: Consensus, times: dict[str, list[float]]
) -> list[WorkerStats]:
    """Labels, agreement with the consensus (on items with >= 2 labels) and labelling pace
    for every worker; `times` are each worker's annotation times (any order)."""
    per_item = np.bincount(votes.item, minlength=votes.n_items)
    index = {name: j for j, name in enumerate(votes.label_names)}
    decided = np.zeros((votes.n_items, len(votes.label_names)), dtype=bool)
    has = np.zeros(votes.n_items, dtype=bool)
    at = np.searchsorted(votes.item_ids, consensus.item_ids)
    found = at < votes.n_items  # the consensus's items among the votes' (all at once)
    found[found] = votes.item_ids[at[found]] == consensus.item_ids[found]
    has[at[found]] = True
    for j, name in enumerate(consensus.labels.names):
        if name in index:
            decided[at[found], index[name]] = consensus.labels.present[found, j]
    compared = (per_item[votes.item] >= 2) & has[votes.item]
    agreed = compared & (votes.onehot == decided[votes.item]).all(axis=1)
    out = []
    names = sorted(set(votes.workers) | set(times))
    for name in names:
        mine = votes.worker == votes.workers.index(name) if name in votes.workers else None
        n_cmp = int(compared[mine].sum()) if mine is not None else 0
        stamps = np.sort(np.asarray(times.get(name, []), dtype=float))
        gaps = np.diff(stamps)
        gaps = gaps[gaps <= BREAK_SECONDS]
        out.append(
            WorkerStats(
                worker=name,
                labels=len(stamps),
                agreement_with_consensus=float(agreed[mine].sum() / n_cmp) if n_cmp else math.nan,
                n_compared=n_cmp,
                seconds_per_label=float(np.median(gaps)) if len(gaps) else math.nan,
            )
        )
    return out
