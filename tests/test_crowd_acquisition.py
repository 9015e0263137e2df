"""Crowd acquisition (trainer_service/crowd_acquisition.py) and the cluster-margin batch
strategy: small hand-checked cases, ActiveLab against cleanlab's own, and the strategy
through the loop and the trainer service."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from labelgrid.client import QueueClient
from queue_service.consensus import Vote
from tests.support.servers import ServiceProcess, TrainerProcess
from trainer_service import acquisition
from trainer_service import crowd_acquisition as ca
from trainer_service.loop import ActiveLearner

NAN = np.nan


# -- ActiveLab ---------------------------------------------------------------------------


def test_activelab_single_labels_by_hand() -> None:
    # one label per item: no temperature scaling, model and annotator weights 1, so a
    # labelled item scores (p[label] * (1 + 1) + 1/K) / 3 and an unlabelled one
    # (max p + 1/K) / 2 (cleanlab's formulas with those weights)
    labels = np.array([[0.0, NAN], [NAN, 1.0]])
    probs = np.array([[0.9, 0.1], [0.6, 0.4]])
    unl = np.array([[0.5, 0.5], [0.8, 0.2]])
    scores, scores_u = ca.activelab(labels, probs, unl)
    assert scores == pytest.approx([(0.9 * 2 + 0.5) / 3, (0.4 * 2 + 0.5) / 3])
    assert scores_u == pytest.approx([(0.5 + 0.5) / 2, (0.8 + 0.5) / 2])
    # one scale (values 1 - score: 0.233, 0.567 | 0.5, 0.35): the labelled item whose label
    # the model doubts (0.4) first, then the unlabelled coin toss, the unlabelled item the
    # model is fairly sure of, and last the labelled item the model agrees with
    values_l, values_u = ca.relabel_or_new(labels, probs, unl)
    order = np.argsort(-np.concatenate([values_l, values_u]))
    assert list(order) == [1, 2, 3, 0]


def test_disagreement_and_a_doubtful_model_rank_first() -> None:
    """Three labelled items: A (three annotators agree, the model agrees), B (two annotators
    disagree, the model cannot decide), C (one label, the model agrees): B is asked first,
    by both estimates; A is the most settled."""
    labels = np.array(
        [
            [0.0, 0.0, 0.0, NAN],  # A
            [NAN, 1.0, 2.0, NAN],  # B
            [NAN, NAN, NAN, 2.0],  # C
            [1.0, 1.0, NAN, 1.0],  # D: more agreement, so annotators look reliable
            [2.0, NAN, 2.0, 2.0],
        ]
    )
    probs = np.array(
        [
            [0.90, 0.05, 0.05],
            [0.10, 0.45, 0.45],
            [0.05, 0.10, 0.85],
            [0.05, 0.90, 0.05],
            [0.05, 0.05, 0.90],
        ]
    )
    for method in ca.METHODS:
        values, _ = ca.relabel_or_new(labels, probs, method=method)
        assert int(np.argmax(values)) == 1, method
        assert values[1] > values[2] > values[0] or method == "expected_gain", method
        assert values[0] == pytest.approx(min(values[:3]), abs=1e-9), method


def _random_case(rng: np.random.Generator, single: bool) -> tuple[np.ndarray, ...]:
    n, m, k = int(rng.integers(5, 40)), int(rng.integers(2, 8)), int(rng.integers(2, 6))
    truth = rng.integers(0, k, n)
    labels = np.full((n, m), NAN)
    for i in range(n):
        for j in rng.choice(m, size=int(rng.integers(1, m + 1)), replace=False):
            labels[i, j] = truth[i] if rng.random() < 0.7 else rng.integers(0, k)
    labels[:k, 0] = np.arange(k)  # every class given at least once (cleanlab checks)
    if single:
        for i in range(n):
            given = np.flatnonzero(~np.isnan(labels[i]))
            labels[i, given[1:]] = NAN
    return labels, rng.dirichlet(np.ones(k), n), rng.dirichlet(np.ones(k), 20)


def test_activelab_matches_cleanlab(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same scores as cleanlab 2.9's get_active_learning_scores on 120 random cases.

    One deliberate difference, patched out here: cleanlab's temperature search counts each
    item's labels with `value_counts`, which, for the float labels of a matrix with NaN,
    puts the counts of the classes present in the FIRST columns (an item labelled [2, 2] of
    3 classes counts as [2, 0, 0]); `best_temperature` counts them in their own columns, and
    cleanlab is given the same temperature."""
    multiannotator = pytest.importorskip("cleanlab.multiannotator")
    monkeypatch.setattr(multiannotator, "find_best_temp_scaler", ca.best_temperature)
    rng = np.random.default_rng(0)
    compared = 0
    for case in range(160):
        labels, probs, unl = _random_case(rng, single=case % 4 == 0)
        if np.isnan(labels).all(axis=0).any():
            continue  # cleanlab refuses an annotator with no labels
        compared += 1
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            want, want_u = multiannotator.get_active_learning_scores(labels, probs, unl)
        got, got_u = ca.activelab(labels, probs, unl)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12, err_msg=f"case {case}")
        np.testing.assert_allclose(got_u, want_u, rtol=0, atol=1e-12, err_msg=f"case {case}")
    assert compared >= 100


def test_crowdlab_consensus_matches_cleanlab(monkeypatch: pytest.MonkeyPatch) -> None:
    multiannotator = pytest.importorskip("cleanlab.multiannotator")
    from cleanlab.internal.multiannotator_utils import temp_scale_pred_probs

    rng = np.random.default_rng(1)
    for case in range(40):
        labels, probs, _ = _random_case(rng, single=False)
        if np.isnan(labels).all(axis=0).any():
            continue
        scaled = temp_scale_pred_probs(probs, ca.best_temperature(labels, probs))
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            info = multiannotator.get_label_quality_multiannotator(
                labels, scaled, return_annotator_stats=False, return_detailed_quality=False
            )
        want = info["label_quality"]["consensus_label"].to_numpy()
        assert list(ca.crowdlab_consensus(labels, probs)) == list(want), case


# -- Dawid-Skene: weighted consensus and expected gain --------------------------------------


def test_gain_of_one_label_by_hand() -> None:
    # two classes at 50/50, an annotator right 80 % of the time: after their label the
    # consensus is right with probability 0.5*0.8 + 0.5*0.8 = 0.8, up from 0.5
    assert ca.gain_of_one_label(np.array([[0.5, 0.5]]), 0.8) == pytest.approx([0.3])
    # a settled item gains nothing; ten classes, nothing known: 0.775 - 0.1
    assert ca.gain_of_one_label(np.array([[1.0, 0.0]]), 0.8) == pytest.approx([0.0])
    assert ca.gain_of_one_label(np.full((1, 10), 0.1), 0.775) == pytest.approx([0.675])
    # 0.9/0.1: answer 0 -> 0.72, answer 1 -> max(0.9*0.2, 0.1*0.8) = 0.18; 0.9 -> gain 0
    assert ca.gain_of_one_label(np.array([[0.9, 0.1]]), 0.8) == pytest.approx([0.0])
    # 0.6/0.4 with a 90 % annotator: 0.54 + 0.36 = 0.9, gain 0.3
    assert ca.gain_of_one_label(np.array([[0.6, 0.4]]), 0.9) == pytest.approx([0.3])


def test_weighted_consensus_trusts_reliable_annotators() -> None:
    """Three annotators always right, two always wrong (they answer the next class) on 40
    shared items; on a last item one reliable annotator says 0 and both unreliable ones say
    1: the majority says 1, the reliability-weighted consensus 0."""
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, 40)
    rows = [[t, t, t, (t + 1) % 3, (t + 1) % 3] for t in truth]
    rows.append([0, NAN, NAN, 1, 1])
    labels = np.asarray(rows, dtype=float)
    post, accuracy = ca.weighted_consensus(labels, 3)
    assert list(post.argmax(axis=1)[:40]) == list(truth)
    assert post[40].argmax() == 0
    assert ca.majority_vote(labels[40:], np.full((1, 3), 1 / 3))[0] == 1
    assert accuracy[:3] == pytest.approx([1.0, 1.0, 1.0], abs=0.02)
    assert max(accuracy[3:]) < 0.05


def test_weighted_consensus_does_not_collapse_on_single_labels() -> None:
    """With one label per item the confusion matrices are unidentifiable; the diagonal prior
    keeps every item on its only label (without it, EM drifts them all to one class)."""
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 10, 60)
    labels = np.full((60, 20), NAN)
    labels[np.arange(60), rng.integers(0, 20, 60)] = codes
    post, _ = ca.weighted_consensus(labels, 10)
    assert list(post.argmax(axis=1)) == list(codes)


def test_labels_matrix_and_choose() -> None:
    votes = [
        Vote(7, "b", ("cat",)),
        Vote(3, "a", ("dog",)),
        Vote(7, "a", ("dog",)),
    ]
    ids, workers, labels = ca.labels_matrix(votes, ["cat", "dog"])
    assert list(ids) == [3, 7] and workers == ["a", "b"]
    np.testing.assert_array_equal(labels, [[1, NAN], [1, 0]])
    with pytest.raises(ValueError, match="outside the classes"):
        ca.labels_matrix([Vote(1, "a", ("cow",))], ["cat", "dog"])
    # labelled 0.9 (not eligible: at max overlap), 0.5; unlabelled 0.7, 0.1
    old, new = ca.choose(
        np.array([0.9, 0.5]), np.array([0.7, 0.1]), 3, eligible=np.array([False, True])
    )
    assert list(old) == [1] and list(new) == [0, 1]


def test_relabel_or_new_refuses_unknown_methods_and_bad_shapes() -> None:
    with pytest.raises(ValueError, match="unknown relabel-or-new method"):
        ca.relabel_or_new(None, None, np.full((1, 2), 0.5), method="loudest")
    with pytest.raises(ValueError, match="at least one label"):
        ca.activelab(np.array([[NAN, NAN]]), np.array([[0.5, 0.5]]))


# -- cluster-margin ------------------------------------------------------------------------


def _blobs() -> np.ndarray:
    """Nine rows in three tight, distant blobs; rows sorted by uncertainty put the three of
    blob A first (0, 1, 2), then B (3, 4, 5), then C (6, 7, 8)."""
    centres = np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0]])
    offsets = np.array([[0.0, 0.0], [0.3, 0.1], [0.1, 0.3]])
    return np.concatenate([c + offsets for c in centres])


def test_cluster_order_serves_distinct_clusters_first() -> None:
    order = acquisition.cluster_order(_blobs(), cluster_size=3)
    # round-robin over the clusters, each time its most uncertain row left
    assert list(order[:3]) == [0, 3, 6]
    assert list(order) == [0, 3, 6, 1, 4, 7, 2, 5, 8]
    assert list(acquisition.cluster_order(np.empty((0, 2)))) == []
    # a smaller cluster is served first
    X = np.concatenate([_blobs(), [[20.1, 0.1]]])  # blob B gets a fourth row
    assert list(acquisition.cluster_order(X, cluster_size=4)[:3]) == [0, 6, 3]


def test_kmeans_finds_separated_blobs() -> None:
    assign = acquisition.kmeans(_blobs(), 3, np.random.default_rng(3))
    assert len(set(assign[:3])) == len(set(assign[3:6])) == len(set(assign[6:])) == 1
    assert len(set(assign)) == 3


@pytest.fixture
def blobs_project(client: QueueClient, project_name: str) -> Iterator[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0], [6.0, 6.0]])
    y = np.repeat(np.arange(4), 60)
    X = (centres[y] + rng.normal(scale=1.2, size=(len(y), 2))).astype(np.float32)
    labels = [str(v) if i % 15 == 0 else None for i, v in enumerate(y)]
    client.create_project(project_name, ["0", "1", "2", "3"])
    ids = client.add_features(project_name, X, labels=labels)
    yield project_name, np.asarray(ids)


def test_the_loop_serves_cluster_margin(
    client: QueueClient, blobs_project: tuple[str, np.ndarray]
) -> None:
    project, _ = blobs_project
    learner = ActiveLearner(
        client,
        project,
        LogisticRegression(max_iter=500),
        eval_method=lambda m, X, y: [0.0],
        acquisition_function="cluster-margin",
        shuffle_prop=0.0,
        diverse_pool=40,
        record=False,
    )
    try:
        assert learner.batch_aware and learner.batch_order is acquisition.cluster_order
        result = learner.run_once()
        assert result.status == "ok", result.message
        # the first four served are the most uncertain of four different clusters of the 40
        # most uncertain items, which lie on the boundaries between the blobs
        served = client.pop(project, "w", 4)
        X = np.stack([np.asarray(item.input) for item in served])
        distances = np.linalg.norm(X[:, None] - X[None], axis=2)[np.triu_indices(4, 1)]
        assert distances.min() > 0.5
    finally:
        learner.close()


def test_the_trainer_service_accepts_cluster_margin(
    service: ServiceProcess, blobs_project: tuple[str, np.ndarray]
) -> None:
    from labelgrid.trainer_client import TrainerClient

    project, _ = blobs_project
    trainer = TrainerProcess(service.address).start()
    try:
        with TrainerClient(trainer.address) as tc:
            tc.start_job(
                project,
                "sklearn.linear_model:LogisticRegression",
                {"max_iter": 500},
                acquisition="cluster-margin",
                interval_seconds=3600,
            )
            run = tc.retrain_now(project)
            assert run.status == "ok", run.message
    finally:
        trainer.kill()
