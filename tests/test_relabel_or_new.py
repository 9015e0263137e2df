"""The trainer's `relabel-or-new` acquisition (issue 18): hand-checked scores, and the whole
loop asking a disputed item again through a real queue service."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from labelgrid import QueueClient
from tests.support.servers import ServiceProcess, TrainerProcess
from trainer_service.relabel import LabelledPool
from trainer_service.relabel_or_new import RelabelOrNew

if TYPE_CHECKING:
    from trainer_service.loop import ActiveLearner


def test_unlabelled_items_score_the_gain_of_one_label_by_hand() -> None:
    acquire = RelabelOrNew(accuracy=0.8)
    # q = (0.5, 0.5): either answer makes its class 0.8 likely, so 0.8 - 0.5 = 0.3;
    # q = (0.99, 0.01): no single answer at 0.8 accuracy overturns it, so 0
    got = acquire(np.array([[0.5, 0.5], [0.99, 0.01], [0.7, 0.3]]))
    assert got[0] == pytest.approx(0.3)
    assert got[1] == pytest.approx(0.0, abs=1e-12)
    # q = (0.7, 0.3): answer a -> max(0.56, 0.06); answer b -> max(0.14, 0.24): 0.8 - 0.7
    assert got[2] == pytest.approx(0.1)


def test_a_disputed_item_is_worth_more_than_an_agreed_one() -> None:
    acquire = RelabelOrNew(accuracy=0.8)
    votes = [
        (1, "ann", ("a",)),
        (1, "bob", ("a",)),  # agreed, and the model agrees
        (2, "ann", ("a",)),
        (2, "bob", ("b",)),  # disputed, the model unsure
        (3, "cy", ("a",)),  # one label, the model fairly sure: settled
        (9, "ann", ("a",)),  # not in the pool: ignored
    ]
    pool = LabelledPool(
        ids=np.array([1, 2, 3, 4]),
        probabilities=np.array([[0.9, 0.1], [0.5, 0.5], [0.8, 0.2], [0.5, 0.5]]),
        labels=[["a"], ["a"], ["a"], ["b"]],
        classes=["a", "b"],
        votes=votes,
    )
    scores = acquire.relabel_scores(pool)
    assert np.isnan(scores[3])  # no annotation seen for item 4: not asked
    agreed, disputed, single = scores[:3]
    # the disputed item is the one worth asking; the others are settled (no single answer
    # at the crowd's accuracy would overturn them: NaN, never asked) or worth less
    assert 0 < disputed <= 0.5
    for other in (agreed, single):
        assert np.isnan(other) or other < disputed


def _relabelling_learner(client: QueueClient, project_name: str) -> ActiveLearner:
    """A learner asking up to 3 labelled items again, ranked in a fixed order, recording
    nothing."""
    from sklearn.linear_model import LogisticRegression

    from trainer_service.loop import ActiveLearner

    return ActiveLearner(
        client,
        project_name,
        LogisticRegression(),
        acquisition_function="relabel-or-new",
        shuffle_prop=0.0,
        record=False,
        relabel_top=3,
    )


@pytest.mark.parametrize("trusted", ["a", "b"])
def test_the_training_consensus_weighs_annotators_by_accuracy(trusted: str) -> None:
    """ann and bob agree on six items and eve contradicts them each time; on a seventh item
    only ann and eve answer, 1 against 1: the label is ann's, whichever it is."""
    other = {"a": "b", "b": "a"}
    votes = []
    for item in range(1, 7):
        label = "ab"[item % 2]
        votes += [(item, "ann", (label,)), (item, "bob", (label,)), (item, "eve", (other[label],))]
    votes += [(7, "eve", (other[trusted],)), (7, "ann", (trusted,))]
    consensus = RelabelOrNew().consensus(votes)
    assert consensus[7] == trusted
    assert all(consensus[i] == "ab"[i % 2] for i in range(1, 7))


def test_the_learner_asks_the_disputed_item_again(client: QueueClient, project_name: str) -> None:
    """Two workers label 1-d points; they disagree on one. relabel-or-new asks it again (and
    not the items they agree on, which the model backs), and the queue serves it to a third
    worker, never again to the two."""
    client.create_project(project_name, ["neg", "pos"], overlap=2, max_overlap=3)
    xs = np.array([[-4.0], [-3.5], [-3.0], [-2.5], [2.5], [3.0], [3.5], [4.0], [-0.2]])
    ids = client.add_features(project_name, xs)
    disputed = ids[-1]
    for worker in ("ann", "bob"):
        for it in client.pop(project_name, worker, n=len(ids)):
            label = "neg" if it.input[0] < 0 else "pos"
            if it.id == disputed and worker == "bob":
                label = "pos"
            client.submit(project_name, it, label, worker)
    assert client.progress(project_name).labelled == len(ids)
    learner = _relabelling_learner(client, project_name)
    try:
        result = learner.run_once()
        assert result.status == "ok", result.message
        assert "labelled items again" in result.message, result.message
        assert len(learner.votes) == 2 * len(ids)
        for worker in ("ann", "bob"):
            assert client.pop(project_name, worker, n=len(ids)) == []
        served = [it.id for it in client.pop(project_name, "cy", n=len(ids))]
        assert served and served[0] == disputed, (served, disputed)
        # the ends of the line, where both workers and the model agree, stay done
        assert ids[0] not in served and ids[7] not in served
    finally:
        learner.close()


def test_the_trainer_service_runs_relabel_or_new(
    service: ServiceProcess, client: QueueClient, project_name: str
) -> None:
    """The same acquisition through the trainer service's job (a real TrainerService)."""
    from labelgrid.trainer_client import TrainerClient

    client.create_project(project_name, ["neg", "pos"], overlap=2, max_overlap=3)
    xs = np.linspace(-3, 3, 8).reshape(-1, 1)
    ids = client.add_features(project_name, xs)
    for worker in ("ann", "bob"):
        for it in client.pop(project_name, worker, n=len(ids)):
            client.submit(project_name, it, "neg" if it.input[0] < 0 else "pos", worker)
    client.add_features(project_name, np.array([[0.1], [-0.1]]))
    trainer = TrainerProcess(service.address).start()
    try:
        with TrainerClient(trainer.address) as tc:
            tc.start_job(
                project_name,
                "sklearn.linear_model:LogisticRegression",
                {},
                acquisition="relabel-or-new",
                interval_seconds=3600,
            )
            run = tc.retrain_now(project_name)
            assert run.status == "ok", run.message
            assert run.model_version >= 1
    finally:
        trainer.kill()


def test_the_learner_asks_again_in_an_overlap_1_project(
    client: QueueClient, project_name: str
) -> None:
    """One label per item (overlap 1, max_overlap 3): ann labels every point, one of them
    against the line; relabel-or-new asks that one again, and the queue serves it to another
    worker, never to ann."""
    client.create_project(project_name, ["neg", "pos"], max_overlap=3)
    xs = np.array([[-4.0], [-3.5], [-3.0], [-2.5], [2.5], [3.0], [3.5], [4.0], [-3.2]])
    ids = client.add_features(project_name, xs)
    doubtful = ids[-1]
    for it in client.pop(project_name, "ann", n=len(ids)):
        label = "neg" if it.input[0] < 0 else "pos"
        client.submit(project_name, it, "pos" if it.id == doubtful else label, "ann")
    assert client.progress(project_name).labelled == len(ids)
    learner = _relabelling_learner(client, project_name)
    try:
        assert learner.consensus == "majority"  # items may get several labels
        result = learner.run_once()
        assert result.status == "ok", result.message
        assert "labelled items again" in result.message, result.message
        assert client.pop(project_name, "ann", n=len(ids)) == []
        served = [it.id for it in client.pop(project_name, "bob", n=len(ids))]
        assert doubtful in served, (served, doubtful)
        assert client.progress(project_name).labelled == len(ids) - len(served)
    finally:
        learner.close()
