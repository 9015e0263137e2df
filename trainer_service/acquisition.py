"""Acquisition functions: which unlabelled items are most worth labelling next.

Each takes class probabilities (n_items x n_classes, from `predict_proba`) and returns a
score per item, higher meaning "label this sooner". `rank()` turns scores into serving
priorities and applies superintendent's `shuffle_prop` exploration: that share of the
ranked positions is picked at random and shuffled among itself.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Acquisition = Callable[[np.ndarray], np.ndarray]


def _probs(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probabilities must be 2-d (items x classes); got shape {p.shape}")
    return p


def entropy(p: np.ndarray) -> np.ndarray:
    """Shannon entropy of the predicted distribution (natural log)."""
    p = _probs(p)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(axis=1)


def margin(p: np.ndarray) -> np.ndarray:
    """Negative gap between the two most likely classes: small gaps score high."""
    p = _probs(p)
    if p.shape[1] < 2:
        return np.zeros(len(p))
    top2 = np.sort(p, axis=1)[:, -2:]
    return -(top2[:, 1] - top2[:, 0])


def certainty(p: np.ndarray) -> np.ndarray:
    """Least confidence: one minus the probability of the most likely class."""
    return 1.0 - _probs(p).max(axis=1)


def random(p: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """Uniform random scores: the baseline every other strategy must beat."""
    return (rng or np.random.default_rng()).random(len(_probs(p)))


FUNCTIONS: dict[str, Acquisition] = {
    "entropy": entropy,
    "margin": margin,
    "certainty": certainty,
    "random": random,
}


def resolve(reorder: str | Acquisition | None) -> Acquisition | None:
    """A named acquisition function, a user callable, or None (no re-ranking)."""
    if reorder is None or callable(reorder):
        return reorder
    try:
        return FUNCTIONS[reorder]
    except KeyError:
        raise ValueError(
            f"unknown reorder {reorder!r}; use one of {sorted(FUNCTIONS)} or a callable"
        ) from None


def rank(
    scores: np.ndarray, shuffle_prop: float = 0.0, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Priorities (n..1, higher first) from scores, ties kept in the given (insertion) order,
    then `shuffle_prop` of the positions shuffled among themselves for exploration."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return priorities_from_order(order, shuffle_prop, rng)


def priorities_from_order(
    order: np.ndarray, shuffle_prop: float = 0.0, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Priorities for a serving order (order[0] first), with `shuffle_prop` exploration."""
    if not 0.0 <= shuffle_prop <= 1.0:
        raise ValueError(f"shuffle_prop must be between 0 and 1; got {shuffle_prop}")
    order = np.array(order, dtype=np.int64)
    n = len(order)
    k = round(shuffle_prop * n)
    if k > 1:
        rng = rng or np.random.default_rng()
        positions = np.sort(rng.choice(n, size=k, replace=False))
        order[positions] = order[rng.permutation(positions)]
    priorities = np.empty(n, dtype=np.float64)
    priorities[order] = np.arange(n, 0, -1, dtype=np.float64)
    return priorities


#: Strategies that also need the items' features: the batch-aware ones (the score that picks
#: the pool of candidates, and `ORDERS` the order in which that pool is served).
BATCH_AWARE = {"batch-margin": margin, "cluster-margin": margin}


def diverse_order(X: np.ndarray) -> np.ndarray:
    """Farthest-first (k-center greedy) order of rows: start with row 0, then repeatedly the
    row farthest from every row chosen so far. Given rows sorted by uncertainty, the result
    spreads the first picks across the feature space, so a batch of concurrent labellers is
    not handed near-duplicates."""
    n = len(X)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    X = np.asarray(X, dtype=np.float64).reshape(n, -1)
    order = [0]
    min_dist = np.linalg.norm(X - X[0], axis=1)
    min_dist[0] = -1.0
    for _ in range(n - 1):
        nxt = int(np.argmax(min_dist))  # ties go to the more uncertain (earlier) row
        order.append(nxt)
        min_dist = np.minimum(min_dist, np.linalg.norm(X - X[nxt], axis=1))
        min_dist[order] = -1.0
    return np.asarray(order, dtype=np.int64)


def kmeans(
    X: np.ndarray, k: int, rng: np.random.Generator | None = None, iterations: int = 10
) -> np.ndarray:
    """Cluster of each row: k-means (Lloyd) from a k-means++ start, in numpy."""
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    n = len(X)
    k = max(1, min(k, n))
    rng = rng or np.random.default_rng(0)
    centres = [X[rng.integers(n)]]
    d2 = ((X - centres[0]) ** 2).sum(axis=1)
    for _ in range(k - 1):
        total = d2.sum()
        pick = rng.choice(n, p=d2 / total) if total > 0 else rng.integers(n)
        centres.append(X[pick])
        d2 = np.minimum(d2, ((X - X[pick]) ** 2).sum(axis=1))
    C = np.asarray(centres)
    assign = np.zeros(n, dtype=np.int64)
    for _ in range(iterations):
        dist = (X**2).sum(1)[:, None] - 2 * X @ C.T + (C**2).sum(1)[None, :]
        new = dist.argmin(axis=1)
        if _ and np.array_equal(new, assign):
            break
        assign = new
        for c in range(len(C)):
            members = X[assign == c]
            if len(members):
                C[c] = members.mean(axis=0)
    return assign


def cluster_order(X: np.ndarray, cluster_size: int = 10, seed: int = 0) -> np.ndarray:
    """Cluster-Margin's serving order (Citovsky et al., 2021, "Batch Active Learning at
    Scale") of rows sorted by uncertainty (row 0 most uncertain): the rows are clustered
    (k-means, one cluster per `cluster_size` rows; the paper clusters the whole pool once,
    hierarchically), then served round-robin over the clusters, smallest cluster first as in
    the paper, each time that cluster's most uncertain row not yet served. The first k rows
    served all come from different clusters, so k concurrent labellers get k different kinds
    of uncertain items, and, unlike farthest-first, not the outliers of the feature space.

    The cost depends only on the number of rows (the loop's `diverse_pool` most uncertain
    items, 200 by default): the pool itself, up to millions of items, is only scored."""
    n = len(X)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    k = max(1, -(-n // max(1, cluster_size)))
    assign = kmeans(X, k, np.random.default_rng(seed))
    clusters = [np.flatnonzero(assign == c) for c in np.unique(assign)]
    # smallest first; equal sizes by their most uncertain row
    clusters.sort(key=lambda rows: (len(rows), rows[0]))
    order: list[int] = []
    depth = 0
    while len(order) < n:
        for rows in clusters:
            if depth < len(rows):
                order.append(int(rows[depth]))
        depth += 1
    return np.asarray(order, dtype=np.int64)


#: How each batch-aware strategy orders its pool of candidates (sorted by uncertainty).
ORDERS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "batch-margin": diverse_order,
    "cluster-margin": cluster_order,
}
