"""Agreement and consensus statistics on fixed data: hand-computed values, and the
reference packages (statsmodels' Fleiss' kappa, krippendorff's reliability-data path,
crowd-kit's Dawid-Skene) where they are installed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from queue_service import agreement
from queue_service.consensus import DAWID_SKENE, MAJORITY, Vote, Votes, aggregate

# Four items, three workers, two categories. By hand (see the README's formulas):
# percent = mean(1, 1/3, 1, 1/3) = 2/3; Fleiss: p = (.5, .5), Pe = .5, kappa = 1/3;
# Krippendorff: o_ab + o_ba = 4 of n = 12, n_a = n_b = 6, alpha = 1 - 11 * 4 / 72 = 7/18.
TABLE = {
    1: {"w1": "a", "w2": "a", "w3": "a"},
    2: {"w1": "a", "w2": "a", "w3": "b"},
    3: {"w1": "b", "w2": "b", "w3": "b"},
    4: {"w1": "a", "w2": "b", "w3": "b"},
}


def votes_from(table: dict[int, dict[str, object]], multi: bool = False) -> Votes:
    return Votes.build(
        [
            Vote(item, worker, tuple(v) if multi else (v,))
            for item, row in table.items()
            for worker, v in row.items()
        ],
        multi,
    )


def test_hand_computed_project_agreement() -> None:
    measured = agreement.measure(votes_from(TABLE))
    assert measured.n_items == 4 and measured.n_annotations == 12
    assert measured.percent == pytest.approx(2 / 3)
    assert measured.fleiss_kappa == pytest.approx(1 / 3)
    assert measured.fleiss_items == 4
    assert measured.krippendorff_alpha == pytest.approx(7 / 18)


def test_hand_computed_pairs() -> None:
    pairs = {(p.worker_a, p.worker_b): p for p in agreement.measure(votes_from(TABLE)).pairs}
    # w1 vs w2: agree on 3 of 4; marginals (.75,.25) and (.5,.5): pe = .5, kappa = .5
    assert pairs["w1", "w2"].percent == pytest.approx(0.75)
    assert pairs["w1", "w2"].cohen_kappa == pytest.approx(0.5)
    # w1 vs w3: 2 of 4; pe = .75*.25 + .25*.75 = .375, kappa = .125/.625 = .2
    assert pairs["w1", "w3"].percent == pytest.approx(0.5)
    assert pairs["w1", "w3"].cohen_kappa == pytest.approx(0.2)
    assert pairs["w2", "w3"].cohen_kappa == pytest.approx(0.5)
    assert {p.n_items for p in pairs.values()} == {4}


def test_majority_and_worker_stats_by_hand() -> None:
    votes = votes_from(TABLE)
    result = aggregate(votes, MAJORITY)
    assert [x[0] for x in result.labels] == ["a", "a", "b", "b"]
    assert result.confidence == pytest.approx([1, 2 / 3, 1, 2 / 3])
    times = {"w1": [0.0, 10.0, 30.0, 5000.0], "w2": [0.0, 4.0], "w3": []}
    stats = {w.worker: w for w in agreement.worker_stats(votes, result, times)}
    assert stats["w1"].agreement_with_consensus == pytest.approx(0.75)
    assert stats["w2"].agreement_with_consensus == pytest.approx(1.0)
    assert stats["w3"].agreement_with_consensus == pytest.approx(0.75)
    assert stats["w1"].seconds_per_label == pytest.approx(15.0)  # median(10, 20); break dropped
    assert stats["w2"].seconds_per_label == pytest.approx(4.0)
    assert math.isnan(stats["w3"].seconds_per_label)


def test_undefined_values_are_nan_not_errors() -> None:
    same = {1: {"w1": "a", "w2": "a"}, 2: {"w1": "a", "w2": "a"}}
    measured = agreement.measure(votes_from(same))
    assert measured.percent == 1.0
    assert math.isnan(measured.fleiss_kappa) and math.isnan(measured.krippendorff_alpha)
    assert math.isnan(measured.pairs[0].cohen_kappa)
    single = agreement.measure(votes_from({1: {"w1": "a"}}))
    assert single.n_items == 0 and math.isnan(single.percent) and single.pairs == []
    empty = agreement.measure(Votes.build([], False))
    assert empty.n_annotations == 0 and math.isnan(empty.krippendorff_alpha)


def random_table(seed: int, items: int = 80, workers: int = 6, k: int = 3) -> dict:
    rng = np.random.default_rng(seed)
    names = [f"w{i}" for i in range(workers)]
    return {
        i: {w: "abc"[rng.integers(0, 3)] for w in rng.choice(names, k, replace=False)}
        for i in range(items)
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fleiss_matches_statsmodels(seed: int) -> None:
    inter_rater = pytest.importorskip("statsmodels.stats.inter_rater")
    votes = votes_from(random_table(seed))
    [(_, codes, k)] = votes.questions()
    counts = votes.counts(codes, k)
    ours, used = agreement.fleiss_kappa(counts)
    assert used == len(counts)
    assert ours == pytest.approx(inter_rater.fleiss_kappa(counts, method="fleiss"))


@pytest.mark.parametrize("seed", [4, 5])
def test_alpha_matches_krippendorff_on_reliability_data(seed: int) -> None:
    import krippendorff

    table = random_table(seed, k=2) | {
        1000 + i: row for i, row in random_table(seed + 10, items=30, k=4).items()
    }
    votes = votes_from(table)
    matrix = np.full((len(votes.workers), votes.n_items), np.nan)
    [(_, codes, _)] = votes.questions()
    matrix[votes.worker, votes.item] = codes
    reference = krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal")
    assert agreement.measure(votes).krippendorff_alpha == pytest.approx(reference)


def test_multi_label_is_measured_label_by_label() -> None:
    table = {
        1: {"w1": ("x", "y"), "w2": ("x",), "w3": ("x", "y")},
        2: {"w1": (), "w2": ("y",), "w3": ()},
        3: {"w1": ("x",), "w2": ("x",), "w3": ()},
    }
    votes = votes_from(table, multi=True)
    measured = agreement.measure(votes)
    by_label = {x.label: x for x in measured.per_label}
    # x: item counts (yes, no) = (3,0), (0,3), (2,1) -> percent (1 + 1 + 1/3) / 3
    assert by_label["x"].percent == pytest.approx(7 / 9)
    # y: (2,1), (1,2), (0,3) -> (1/3 + 1/3 + 1) / 3
    assert by_label["y"].percent == pytest.approx(5 / 9)
    assert measured.percent == pytest.approx((7 / 9 + 5 / 9) / 2)
    result = aggregate(votes, MAJORITY)
    assert result.labels == [["x", "y"], [], ["x"]]
    assert result.confidence == pytest.approx([2 / 3, 2 / 3, 2 / 3])


def simulate(seed: int, items: int = 600, k: int = 5) -> tuple[Votes, np.ndarray]:
    """Two careful workers and five careless ones who mostly answer 'a'."""
    rng = np.random.default_rng(seed)
    classes = 3
    truth = rng.integers(0, classes, items)
    good = np.full((classes, classes), 0.05) + np.eye(classes) * 0.85
    lazy = np.tile([0.7, 0.15, 0.15], (classes, 1))
    lazy[np.arange(classes), np.arange(classes)] += 0.1
    lazy /= lazy.sum(axis=1, keepdims=True)
    confusions = [good, good, lazy, lazy, lazy, lazy, lazy]
    votes = []
    for i in range(items):
        for w in rng.choice(len(confusions), k, replace=False):
            given = rng.choice(classes, p=confusions[w][truth[i]])
            votes.append(Vote(i, f"w{w}", ("abc"[given],)))
    return Votes.build(votes, False, ["a", "b", "c"]), truth


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dawid_skene_beats_majority_on_noisy_workers(seed: int) -> None:
    votes, truth = simulate(seed)
    want = np.asarray(["abc"[t] for t in truth])

    def accuracy(method: str) -> float:
        got = np.asarray([x[0] for x in aggregate(votes, method).labels])
        return float((got == want).mean())

    majority, ds = accuracy(MAJORITY), accuracy(DAWID_SKENE)
    assert ds > majority + 0.05, (ds, majority)


@pytest.mark.filterwarnings("ignore")  # crowd-kit's pandas deprecation warnings, thousands
def test_dawid_skene_matches_crowd_kit() -> None:
    crowdkit = pytest.importorskip("crowdkit.aggregation")
    pd = pytest.importorskip("pandas")
    votes, _ = simulate(7)
    [(_, codes, _)] = votes.questions()
    frame = pd.DataFrame({"task": votes.item, "worker": votes.worker, "label": codes})
    # crowd-kit stops when its evidence bound stops rising, which here is after two
    # iterations; tol=-1 makes it run its EM to the end, as ours does
    reference = crowdkit.DawidSkene(n_iter=500, tol=-1).fit_predict(frame).sort_index()
    ours = aggregate(votes, DAWID_SKENE)
    got = np.asarray([votes.label_names.index(x[0]) for x in ours.labels])
    # the rest differ only by smoothing (ours adds 0.01 to every confusion count)
    assert (got == reference.to_numpy()).mean() >= 0.97
