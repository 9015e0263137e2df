"""Acquisition functions against rankings worked out by hand on small arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trainer_service import acquisition

P = np.array(
    [
        [0.90, 0.05, 0.05],  # confident
        [0.40, 0.35, 0.25],  # torn between 0 and 1
        [0.50, 0.10, 0.40],  # margin 0.10
        [1 / 3, 1 / 3, 1 / 3],  # uniform: most uncertain by every measure
    ]
)


def test_entropy_by_hand() -> None:
    got = acquisition.entropy(P)
    assert got[0] == pytest.approx(-(0.9 * math.log(0.9) + 2 * 0.05 * math.log(0.05)))
    assert got[3] == pytest.approx(math.log(3))
    assert acquisition.entropy(np.array([[1.0, 0.0]]))[0] == 0.0  # 0 log 0 = 0, no NaN
    assert list(np.argsort(-got, kind="stable")) == [3, 1, 2, 0]


def test_margin_by_hand() -> None:
    got = acquisition.margin(P)
    assert got == pytest.approx([-0.85, -0.05, -0.10, 0.0])
    assert list(np.argsort(-got, kind="stable")) == [3, 1, 2, 0]


def test_certainty_by_hand() -> None:
    got = acquisition.certainty(P)
    assert got == pytest.approx([0.10, 0.60, 0.50, 2 / 3])
    assert list(np.argsort(-got, kind="stable")) == [3, 1, 2, 0]


def test_rank_gives_priorities_with_ties_in_insertion_order() -> None:
    priorities = acquisition.rank(np.array([0.2, 0.9, 0.2, 0.5]))
    assert list(priorities) == [2.0, 4.0, 1.0, 3.0]


def test_shuffle_prop_moves_only_that_share() -> None:
    scores = np.arange(100, 0, -1, dtype=float)  # already in order
    rng = np.random.default_rng(3)
    priorities = acquisition.rank(scores, shuffle_prop=0.1, rng=rng)
    moved = np.sum(priorities != np.arange(100, 0, -1))
    assert 2 <= moved <= 10
    assert sorted(priorities) == list(range(1, 101))
    unmoved = acquisition.rank(scores, shuffle_prop=0.0)
    assert list(unmoved) == list(range(100, 0, -1))
    with pytest.raises(ValueError):
        acquisition.rank(scores, shuffle_prop=1.5)


def test_random_is_seeded_and_resolve_refuses_unknown() -> None:
    a = acquisition.random(P, np.random.default_rng(1))
    b = acquisition.random(P, np.random.default_rng(1))
    assert list(a) == list(b)
    assert acquisition.resolve("margin") is acquisition.margin
    custom = acquisition.resolve(lambda p: p[:, 0])
    assert list(custom(P)) == list(P[:, 0])
    with pytest.raises(ValueError, match="unknown reorder"):
        acquisition.resolve("most-fun")


def test_diverse_order_by_hand() -> None:
    # two tight pairs and a loner; farthest-first alternates between the groups
    X = np.array([[0.0, 0.0], [0.1, 0.0], [10.0, 0.0], [10.1, 0.0], [5.0, 8.0]])
    order = acquisition.diverse_order(X)
    # from row 0: farthest is row 3 (10.1); then the point farthest from both is row 4;
    # then row 2 (0.1 from row 3 vs 0.1 from row 0 for row 1: tie goes to the earlier, row 1)
    assert list(order) == [0, 3, 4, 1, 2]
    assert list(acquisition.diverse_order(np.empty((0, 2)))) == []
