"""store/settled.py on hand-made samples: the settled annotation id moves only to a value
read before every open transaction began, never back."""

from __future__ import annotations

from datetime import datetime, timedelta

from queue_service.store.settled import MOST_SAMPLES, SettledIds

T0 = datetime(2026, 11, 26, 12, 0, 0)


def at(ms: float) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def test_with_nothing_open_every_id_read_is_settled() -> None:
    s = SettledIds()
    assert s.update(10, at(0), None) == 10
    assert s.update(12, at(1), None) == 12
    assert not s.waiting


def test_an_open_transaction_holds_the_ids_read_after_it_began() -> None:
    s = SettledIds()
    assert s.update(10, at(0), None) == 10
    # a transaction began at 5 ms (it may hold id 11): 11 and 12 are not settled yet
    assert s.update(12, at(6), at(5)) == 10
    assert s.waiting
    # it is still open: the sample at 6 ms was read after it began, so it cannot be used
    assert s.update(14, at(9), at(5)) == 10
    # it ended; the oldest open one began at 7 ms: the sample at 6 ms (12) is settled, the
    # one at 9 ms (14) is not
    assert s.update(15, at(12), at(7)) == 12
    # every transaction open now began after 9 ms
    assert s.update(16, at(15), at(10)) == 14
    assert s.update(16, at(20), None) == 16
    assert not s.waiting


def test_the_settled_id_never_goes_back() -> None:
    s = SettledIds()
    s.update(20, at(0), None)
    # an older-looking sample (a clock step) does not take it back
    assert s.update(5, at(1), at(0.5)) == 20
    assert s.update(5, at(2), None) == 20


def test_a_long_transaction_keeps_the_oldest_samples() -> None:
    """While one transaction stays open (an import), samples pile up: the newest give way,
    the oldest stay, since they are the ones usable first."""
    s = SettledIds()
    s.update(1, at(0), None)
    for k in range(1, MOST_SAMPLES + 50):
        assert s.update(1 + k, at(k), at(0.5)) == 1
    # it ended; another opened at 2.5 ms: the sample at 2 ms (value 3) is usable
    assert s.update(10_000, at(MOST_SAMPLES + 60), at(2.5)) == 3
