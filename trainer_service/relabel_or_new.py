"""`relabel-or-new`: the trainer's acquisition for crowds (issue 18), one more label on a
doubtful item or a first label on a new one, whichever is worth more.

Both are scored by the expected gain of one label (trainer_service/crowd_acquisition.py,
`expected_gain`): how much one more answer from an annotator of the crowd's mean accuracy is
expected to raise the probability that the item's consensus is right. A labelled item's
belief weighs each annotator by their estimated (Dawid-Skene) accuracy and multiplies in the
model's out-of-fold prediction; an unlabelled item's is the model's prediction. The queue
then serves the labelled items asked again (relabel requests, trainer_service/relabel.py) to
workers who have not labelled them, within max_overlap, ranked among the unlabelled items.

ActiveLab (`crowd_acquisition.activelab`, tested against cleanlab) is the other estimate the
benchmark compares; this acquisition uses the expected gain, which needs only one number
(the crowd's mean accuracy) to score unlabelled items chunk by chunk in worker processes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from trainer_service import crowd_acquisition
from trainer_service.relabel import LabelledPool

#: the crowd's accuracy assumed before any item has two labels
DEFAULT_ACCURACY = 0.8
#: a labelled item whose expected gain is at most this is settled: never asked again
SETTLED = 1e-6


class RelabelOrNew:
    """An acquisition (probabilities -> scores, higher first) that also scores labelled
    items for one more label (`relabel_scores`), on the same scale."""

    #: ActiveLearner passes the annotations of the labelled items (LabelledPool.votes)
    needs_votes = True
    #: ... and out-of-fold probabilities for them: a model judged on its own training items
    #: agrees with them and every item would look settled
    out_of_fold = True

    def __init__(self, accuracy: float | None = None) -> None:
        self.fixed = accuracy
        self.accuracy = DEFAULT_ACCURACY if accuracy is None else float(accuracy)

    def __call__(self, probabilities: np.ndarray) -> np.ndarray:
        p = np.asarray(probabilities, dtype=np.float64)
        if p.ndim != 2:
            raise ValueError(f"probabilities must be 2-d (items x classes); got {p.shape}")
        return crowd_acquisition.gain_of_one_label(p, self.accuracy)

    def relabel_scores(self, pool: LabelledPool) -> np.ndarray:
        """The gain of one more label per item of the pool (NaN: no annotation seen for
        it); sets the crowd's accuracy used for the unlabelled items of the same run (the
        loop scores labelled items first)."""
        classes = [str(c) for c in pool.classes]
        out = np.full(len(pool.ids), np.nan)
        votes = _votes(pool.votes, set(classes), set(pool.ids.tolist()))
        if not votes or pool.probabilities.ndim != 2:
            return out
        item_ids, _, labels = crowd_acquisition.labels_matrix(votes, classes)
        where = {int(i): k for k, i in enumerate(pool.ids)}
        rows = np.asarray([where[int(i)] for i in item_ids], dtype=np.int64)
        probs = pool.probabilities[rows]
        belief, accuracy = crowd_acquisition.annotator_belief(labels, len(classes), probs)
        if self.fixed is None and len(accuracy):
            self.accuracy = float(np.mean(accuracy))
        gain = crowd_acquisition.gain_of_one_label(belief, self.accuracy)
        out[rows] = np.where(gain > SETTLED, gain, np.nan)  # nothing to gain: do not ask
        return out

    def consensus(self, votes: Sequence[tuple[int, str, Sequence[str]]]) -> dict[int, str]:
        """Each voted item's most likely label, every annotator weighed by their estimated
        (Dawid-Skene) accuracy (`crowd_acquisition.annotator_belief`, without the model: the
        labels it is trained on); single-label votes only."""
        names = sorted({str(labels[0]) for _, _, labels in votes if len(labels) == 1})
        chosen = _votes(votes, set(names), {int(item) for item, _, _ in votes})
        if len(names) < 2 or not chosen:
            return {}
        item_ids, _, labels = crowd_acquisition.labels_matrix(chosen, names)
        belief, _ = crowd_acquisition.annotator_belief(labels, len(names))
        return {int(i): names[k] for i, k in zip(item_ids, belief.argmax(axis=1), strict=True)}


def _votes(
    annotations: Sequence[tuple[int, str, Sequence[str]]], classes: set[str], ids: set[int]
) -> list[crowd_acquisition.Vote]:
    """Single-label votes on the pool's items, in the model's classes (a label the model
    has never seen cannot be weighed against it)."""
    return [
        crowd_acquisition.Vote(int(item), str(worker), (str(labels[0]),))
        for item, worker, labels in annotations
        if int(item) in ids and len(labels) == 1 and str(labels[0]) in classes
    ]
