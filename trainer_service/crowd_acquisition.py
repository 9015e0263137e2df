"""Acquisition for a crowd: one more label on a doubtful item, or a first label on a new one?

With several imperfect annotators per item, an item is not simply "labelled" or "not": its
consensus may still be wrong. These functions score labelled items (for one more label) and
unlabelled items (for a first one) on one scale, so a single ranking decides between them.
All are pure numpy functions of:

- `labels`: (items x annotators) float array of class codes 0..K-1, NaN where an annotator did
  not label the item (cleanlab's `labels_multiannotator` layout; `labels_matrix` builds it
  from the queue's votes), one row per item with at least one label;
- `pred_probs`: the model's class probabilities for those labelled items. Use out-of-sample
  probabilities (cross-validated, e.g. `sklearn.model_selection.cross_val_predict`): a model
  scored on its own training items agrees with whatever it was trained on, and every
  labelled item would look settled;
- `pred_probs_unlabelled`: the model's probabilities for items with no label yet.

Two estimates of the value of one more label, higher meaning "ask sooner" (the convention of
trainer_service/acquisition.py):

- `activelab`: ActiveLab (Goh, Mueller et al., 2023; cleanlab 2.9's
  `cleanlab.multiannotator.get_active_learning_scores`), re-implemented here in numpy and
  tested against cleanlab on random cases (tests/test_crowd_acquisition.py). It returns
  cleanlab's quality scores (in [0, 1], LOW first); `relabel_or_new(method="activelab")` turns
  them into values as 1 - quality.
- `expected_gain`: how much one more label from an average annotator is expected to raise
  the probability that the item's consensus label is right. The current belief about a
  labelled item's class (`annotator_belief`) weighs each annotator by their Dawid-Skene
  accuracy (queue_service.consensus) and multiplies in the model's prediction; for an
  unlabelled item it is the model's prediction alone. With belief q and an annotator of
  accuracy a whose wrong answers fall uniformly on the other K-1 classes, the expected
  probability of being right after their label is sum_l max_y q(y) P(l | y), so the gain is
  that minus max_y q(y): 0 for a settled item, largest for an item nobody can call.

`weighted_consensus` is the consensus the trainer can train on: Dawid-Skene posteriors (each
worker's answers weighed by their estimated confusion matrix), optionally multiplied by the
model's prediction, and each worker's estimated accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from queue_service.consensus import Vote, Votes, dawid_skene_posteriors

#: cleanlab's constants (cleanlab/internal/constants.py), kept so the results match
CLIPPING_LOWER_BOUND = 1e-6
SMALL_CONST = 1e-30
EPSILON = 1e-6
COARSE_TEMPERATURES = (0.1, 0.2, 0.5, 0.8, 1.0, 2.0, 3.0, 5.0, 8.0)


# -- inputs -------------------------------------------------------------------------------


def labels_matrix(
    votes: Sequence[Vote], classes: Sequence[str]
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(item ids ascending, workers, labels matrix) from single-label votes: row i is item
    `item_ids[i]`, column j worker `workers[j]`, each cell the class index of that worker's
    label in `classes`, NaN where they gave none."""
    coded = Votes.build(votes, multi_label=False, label_names=classes)
    if len(coded.label_names) != len(classes):
        unknown = sorted(set(coded.label_names) - set(classes))
        raise ValueError(f"labels outside the classes: {unknown}")
    matrix = np.full((coded.n_items, len(coded.workers)), np.nan)
    codes = coded.questions()[0][1]
    matrix[coded.item, coded.worker] = codes
    return coded.item_ids, coded.workers, matrix


def _check(labels: np.ndarray, pred_probs: np.ndarray | None, name: str) -> np.ndarray:
    labels = np.asarray(labels, dtype=np.float64)
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2-d (items x annotators); got shape {labels.shape}")
    if len(labels) and (~np.isnan(labels)).sum(axis=1).min() == 0:
        raise ValueError("every row of labels needs at least one label")
    if pred_probs is not None and len(pred_probs) != len(labels):
        raise ValueError(f"{name} has {len(pred_probs)} rows for {len(labels)} labelled items")
    return labels


def _votes(labels: np.ndarray) -> Votes:
    """The labels matrix as queue_service.consensus votes (class codes as label names)."""
    rows, cols = np.nonzero(~np.isnan(labels))
    return Votes(
        item_ids=np.arange(len(labels), dtype=np.int64),
        workers=[str(j) for j in range(labels.shape[1])],
        label_names=[],
        item=rows.astype(np.int64),
        worker=cols.astype(np.int64),
        onehot=np.zeros((len(rows), 0), dtype=bool),
        multi_label=False,
    )


def _counts(labels: np.ndarray, k: int) -> np.ndarray:
    """(items, classes) votes per class."""
    rows, cols = np.nonzero(~np.isnan(labels))
    out = np.zeros((len(labels), k))
    np.add.at(out, (rows, labels[rows, cols].astype(np.int64)), 1.0)
    return out


# -- ActiveLab (cleanlab 2.9), in numpy ------------------------------------------------------


def _softmax(x: np.ndarray, temperature: float) -> np.ndarray:
    e = np.exp(x / max(temperature, EPSILON))
    return e / e.sum(axis=1, keepdims=True)


def temp_scale(pred_probs: np.ndarray, temperature: float) -> np.ndarray:
    p = np.clip(pred_probs, SMALL_CONST, None)
    p = p / p.sum(axis=1, keepdims=True)
    s = _softmax(np.log(p), temperature)
    return s / s.sum(axis=1, keepdims=True)


def best_temperature(labels: np.ndarray, pred_probs: np.ndarray) -> float:
    """The temperature whose scaled probabilities best match the annotators' empirical label
    distribution (soft cross-entropy; cleanlab's coarse then fine grid search)."""
    k = pred_probs.shape[1]
    counts = _counts(labels, k)
    empirical = counts / counts.sum(axis=1, keepdims=True)
    logp = np.log(pred_probs, where=pred_probs > 0, out=np.full(pred_probs.shape, -np.inf))

    def loss(t: float) -> float:
        q = np.clip(_softmax(logp, t), SMALL_CONST, None)
        return float(np.mean(-(empirical * np.log(q)).sum(axis=1) / np.log(k)))

    coarse = list(COARSE_TEMPERATURES)
    best = int(np.argmin([loss(t) for t in coarse]))
    fine = np.array([])
    if best != 0:
        fine = np.append(np.linspace(coarse[best - 1], coarse[best], 4, endpoint=False), fine)
    if best != len(coarse) - 1:
        fine = np.append(fine, np.linspace(coarse[best], coarse[best + 1], 5, endpoint=True))
    return float(fine[int(np.argmin([loss(t) for t in fine]))])


def majority_vote(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """The most common label per item; ties broken by the model's probability, then by the
    rarer class overall, then by the lowest class code (cleanlab breaks that last kind of
    tie by the annotators' agreement and then at random)."""
    k = pred_probs.shape[1]
    counts = _counts(labels, k)
    tied = counts == counts.max(axis=1, keepdims=True)
    key = np.where(tied, pred_probs, -np.inf)
    best = key == key.max(axis=1, keepdims=True)
    freq = np.where(best, counts.sum(axis=0)[None, :], np.inf)
    return np.argmin(freq, axis=1)  # lowest frequency; argmin's first index breaks the rest


def _agreement_with_annotators(labels: np.ndarray, n_ann: np.ndarray) -> np.ndarray:
    """Per annotator: the share of the other annotators of the same item who gave the same
    label, averaged over their items weighted by (annotations - 1); the mean of the others
    for an annotator who never shares an item."""
    multi = n_ann > 1
    out = np.full(labels.shape[1], np.nan)
    for j in range(labels.shape[1]):
        mine = ~np.isnan(labels[:, j])
        rows = mine & multi
        if not rows.any():
            continue
        same = (labels[rows] == labels[rows, j : j + 1]).sum(axis=1) - 1
        w = n_ann[rows] - 1
        out[j] = float(np.sum(same / w * w) / w.sum())
    if np.isnan(out).any():
        out[np.isnan(out)] = np.nanmean(out) if (~np.isnan(out)).any() else np.nan
    return out


def _crowdlab_stats(
    labels: np.ndarray, pred_probs: np.ndarray, consensus: np.ndarray
) -> tuple[np.ndarray, float, np.ndarray]:
    """CROWDLAB: posterior probabilities (model and annotators in a weighted average), the
    model's weight and each annotator's weight, for a given consensus label."""
    k = pred_probs.shape[1]
    n_ann = (~np.isnan(labels)).sum(axis=1)
    multi = n_ann != 1
    agreement = (labels == consensus[:, None]).sum(axis=1) / n_ann
    consensus_likelihood = float(np.mean(agreement[multi]))
    non_consensus_likelihood = (1 - consensus_likelihood) / (k - 1)
    sub = consensus[multi]
    most_likely_class_error = max(
        float(np.mean(sub != np.argmax(np.bincount(sub, minlength=k)))), CLIPPING_LOWER_BOUND
    )
    annotator_error = 1 - _agreement_with_annotators(labels, n_ann)
    annotator_weight = np.clip(
        1 - annotator_error / most_likely_class_error, CLIPPING_LOWER_BOUND, None
    )
    model_error = float(np.mean(np.argmax(pred_probs[multi], axis=1) != sub))
    model_weight = max(1 - model_error / most_likely_class_error, CLIPPING_LOWER_BOUND) * float(
        np.sqrt(np.mean(n_ann))
    )
    given = ~np.isnan(labels)
    total = (given * annotator_weight).sum(axis=1) + model_weight
    post = pred_probs * model_weight
    onehot = np.zeros((*labels.shape, k), dtype=bool)
    rows, cols = np.nonzero(given)
    onehot[rows, cols, labels[rows, cols].astype(np.int64)] = True
    share = np.where(onehot, consensus_likelihood, non_consensus_likelihood)
    post = post + (share * (given * annotator_weight)[:, :, None]).sum(axis=1)
    return post / total[:, None], model_weight, annotator_weight


def _crowdlab(
    labels: np.ndarray, pred_probs: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """CROWDLAB's "best_quality" consensus: the majority vote's posterior, then its most
    likely class (the majority vote on a tie), then the posterior and weights again."""
    mv = majority_vote(labels, pred_probs)
    post, _, _ = _crowdlab_stats(labels, pred_probs, mv)
    top = post == post.max(axis=1, keepdims=True)
    consensus = np.where(top.sum(axis=1) == 1, post.argmax(axis=1), mv)
    post, model_weight, annotator_weight = _crowdlab_stats(labels, pred_probs, consensus)
    return consensus, post, model_weight, annotator_weight


def crowdlab_consensus(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """CROWDLAB's consensus label per item (cleanlab's `get_label_quality_multiannotator`,
    consensus_method "best_quality", with the model temperature-scaled as ActiveLab does): the
    annotators' labels and the model's prediction in a weighted average, annotators weighted
    by how often they agree with the others and the model by how often it agrees with the
    consensus. With one label per item it is that label."""
    pred_probs = np.asarray(pred_probs, dtype=np.float64)
    labels = _check(labels, pred_probs, "pred_probs")
    n_ann = (~np.isnan(labels)).sum(axis=1)
    if (n_ann == 1).all():
        return majority_vote(labels, pred_probs)
    scaled = temp_scale(pred_probs, best_temperature(labels, pred_probs))
    return _crowdlab(labels, scaled)[0]


def activelab(
    labels: np.ndarray | None,
    pred_probs: np.ndarray | None,
    pred_probs_unlabelled: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """ActiveLab quality scores for labelled and unlabelled items, LOW meaning "label next"
    (as cleanlab's `get_active_learning_scores`, whose steps this follows: temperature-scale
    the model when some item has several labels; CROWDLAB's consensus ("best_quality") and
    weights; the consensus quality averaged with 1/K, weighted by the item's annotators'
    weights plus the model's against an average annotator's)."""
    if pred_probs is None and pred_probs_unlabelled is None:
        raise ValueError("give pred_probs (with labels) or pred_probs_unlabelled, or both")
    temperature, model_weight, mean_annotator_weight = 1.0, 1.0, 1.0
    scores = np.empty(0)
    k = None
    if pred_probs is not None:
        if labels is None:
            raise ValueError("pred_probs (labelled items) needs their labels")
        pred_probs = np.asarray(pred_probs, dtype=np.float64)
        labels = _check(labels, pred_probs, "pred_probs")
        k = pred_probs.shape[1]
        n_ann = (~np.isnan(labels)).sum(axis=1)
        if (n_ann == 1).all():
            consensus = majority_vote(labels, pred_probs)
            quality = pred_probs[np.arange(len(labels)), consensus]
            annotator_weight = np.ones(labels.shape[1])
        else:
            temperature = best_temperature(labels, pred_probs)
            pred_probs = temp_scale(pred_probs, temperature)
            consensus, post, model_weight, annotator_weight = _crowdlab(labels, pred_probs)
            quality = post[np.arange(len(labels)), consensus]
        mean_annotator_weight = float(np.mean(annotator_weight))
        weight = (~np.isnan(labels) * annotator_weight).sum(axis=1) + model_weight
        scores = (quality * weight + mean_annotator_weight / k) / (weight + mean_annotator_weight)
    unlabelled = np.empty(0)
    if pred_probs_unlabelled is not None:
        p = np.asarray(pred_probs_unlabelled, dtype=np.float64)
        k = p.shape[1]
        p = temp_scale(p, temperature)
        unlabelled = (p.max(axis=1) * model_weight + mean_annotator_weight / k) / (
            model_weight + mean_annotator_weight
        )
    return scores, unlabelled


# -- Dawid-Skene: reliability-weighted consensus and the expected gain of one more label ----


#: pseudo-votes on the diagonal of each annotator's confusion matrix (see
#: queue_service.consensus.dawid_skene_posteriors): sparse crowds stay sane
DIAGONAL_PRIOR = 10.0


def weighted_consensus(
    labels: np.ndarray,
    n_classes: int,
    pred_probs: np.ndarray | None = None,
    diagonal_prior: float = DIAGONAL_PRIOR,
) -> tuple[np.ndarray, np.ndarray]:
    """(items x classes) posterior of each item's class, and each annotator's estimated
    accuracy (NaN for one with no labels).

    The posterior is queue_service.consensus's Dawid-Skene EM (one confusion matrix per
    annotator, so reliable annotators count more; `diagonal_prior` pseudo-votes on each
    matrix's diagonal, as without them a crowd with mostly one label per item can collapse
    to one class), multiplied by the model's `pred_probs`
    when given (the model as one more, independent, voter) and renormalised. An annotator's
    accuracy is the mean Dawid-Skene probability of the labels they gave."""
    labels = _check(labels, pred_probs, "pred_probs")
    votes = _votes(labels)
    codes = labels[votes.item, votes.worker].astype(np.int64)
    post = (
        dawid_skene_posteriors(votes, codes, n_classes, diagonal_prior=diagonal_prior)
        if len(codes)
        else np.empty((0, 0))
    )
    accuracy = np.full(labels.shape[1], np.nan)
    if len(codes):
        right = post[votes.item, codes]
        given = np.bincount(votes.worker, minlength=labels.shape[1])
        sums = np.bincount(votes.worker, weights=right, minlength=labels.shape[1])
        accuracy = np.where(given > 0, sums / np.maximum(given, 1), np.nan)
    if pred_probs is not None and len(post):
        post = post * np.clip(np.asarray(pred_probs, dtype=np.float64), 1e-6, None)
        post /= post.sum(axis=1, keepdims=True)
    return post, accuracy


def annotator_belief(
    labels: np.ndarray,
    n_classes: int,
    pred_probs: np.ndarray | None = None,
    shrink: float = 5.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(items x classes) belief about each labelled item's class, and the accuracy used for
    each annotator.

    Each annotator is taken as right with their estimated accuracy a_j and otherwise wrong
    uniformly over the other classes (a "one-coin" model), times the model's `pred_probs`
    when given. a_j is the Dawid-Skene accuracy of `weighted_consensus`, shrunk toward the
    crowd's mean by `shrink` pseudo-labels. Dawid-Skene's own posteriors are not used as the
    belief: on a small crowd its full confusion matrices absorb the very labels they judge
    and call a 1-1 disagreement settled at 0.99, which says nothing about the value of one
    more label."""
    labels = _check(labels, pred_probs, "pred_probs")
    k = n_classes
    _, accuracy = weighted_consensus(labels, k)
    given = ~np.isnan(labels)
    n_j = given.sum(axis=0)
    mean = float(np.nanmean(accuracy)) if (~np.isnan(accuracy)).any() else 0.8
    a = np.where(n_j > 0, (n_j * np.nan_to_num(accuracy) + shrink * mean) / (n_j + shrink), mean)
    a = np.clip(a, 1.0 / k + 1e-3, 0.999)
    rows, cols = np.nonzero(given)
    wrong = np.log((1 - a) / (k - 1))
    log_b = np.zeros((len(labels), k))
    if pred_probs is not None:
        log_b += np.log(np.clip(np.asarray(pred_probs, dtype=np.float64), 1e-6, None))
    np.add.at(log_b, rows, wrong[cols][:, None])
    np.add.at(log_b, (rows, labels[rows, cols].astype(np.int64)), np.log(a[cols]) - wrong[cols])
    log_b -= log_b.max(axis=1, keepdims=True)
    belief = np.exp(log_b)
    return belief / belief.sum(axis=1, keepdims=True), a


def gain_of_one_label(belief: np.ndarray, accuracy: float) -> np.ndarray:
    """Expected rise in the probability that the consensus (the most likely class) is right,
    from one more label by an annotator of `accuracy` whose wrong answers are uniform over the
    other classes: sum over answers l of max_y q(y) P(l | y), minus max_y q(y)."""
    q = np.asarray(belief, dtype=np.float64)
    k = q.shape[1]
    if k < 2:
        return np.zeros(len(q))
    wrong = (1.0 - accuracy) / (k - 1)
    # max over y of q(y) P(l | y) = max(q(l) * accuracy, max_{y != l} q(y) * wrong)
    order = np.sort(q, axis=1)
    top, second = order[:, -1:], order[:, -2:-1]
    best_other = np.where(q == top, second, top)
    after = np.maximum(q * accuracy, best_other * wrong).sum(axis=1)
    return after - top[:, 0]


def expected_gain(
    labels: np.ndarray | None,
    pred_probs: np.ndarray | None,
    pred_probs_unlabelled: np.ndarray | None = None,
    accuracy: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The value of one more label for labelled and unlabelled items, on one scale (HIGH
    first): `gain_of_one_label` of the belief (labelled: `annotator_belief` with the model;
    unlabelled: the model's prediction), for an annotator of the annotators' mean estimated
    accuracy (or `accuracy`)."""
    gains = np.empty(0)
    k = None
    if pred_probs is not None:
        if labels is None:
            raise ValueError("pred_probs (labelled items) needs their labels")
        pred_probs = np.asarray(pred_probs, dtype=np.float64)
        k = pred_probs.shape[1]
        belief, acc = annotator_belief(labels, k, pred_probs)
        if accuracy is None:
            accuracy = float(np.mean(acc))
        gains = gain_of_one_label(belief, accuracy)
    unlabelled = np.empty(0)
    if pred_probs_unlabelled is not None:
        p = np.asarray(pred_probs_unlabelled, dtype=np.float64)
        unlabelled = gain_of_one_label(p, accuracy if accuracy is not None else 0.8)
    return gains, unlabelled


#: relabel-or-new estimates by name; each returns (labelled, unlabelled) values, HIGH first
METHODS = ("activelab", "expected_gain")


def relabel_or_new(
    labels: np.ndarray | None,
    pred_probs: np.ndarray | None,
    pred_probs_unlabelled: np.ndarray | None = None,
    method: str = "activelab",
) -> tuple[np.ndarray, np.ndarray]:
    """Values of one more label for labelled items and of a first label for unlabelled ones,
    on one scale, higher meaning "ask sooner": 1 - ActiveLab quality, or `expected_gain`."""
    if method == "activelab":
        a, b = activelab(labels, pred_probs, pred_probs_unlabelled)
        return 1.0 - a, 1.0 - b
    if method == "expected_gain":
        return expected_gain(labels, pred_probs, pred_probs_unlabelled)
    raise ValueError(f"unknown relabel-or-new method {method!r}; use one of {METHODS}")


def choose(
    labelled_values: np.ndarray,
    unlabelled_values: np.ndarray,
    n: int,
    eligible: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The `n` best of both kinds together: (positions among the labelled items, positions
    among the unlabelled ones), each best first. `eligible` (bool per labelled item) leaves
    out labelled items that may not get another label (at `max_overlap`, or no annotator
    left who has not labelled them)."""
    lv = np.asarray(labelled_values, dtype=np.float64)
    if eligible is not None:
        lv = np.where(eligible, lv, -np.inf)
    values = np.concatenate([lv, np.asarray(unlabelled_values, dtype=np.float64)])
    order = np.argsort(-values, kind="stable")
    order = order[np.isfinite(values[order])][:n]
    return order[order < len(lv)], order[order >= len(lv)] - len(lv)
