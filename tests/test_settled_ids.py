"""store/settled.py on hand-made samples: the settled annotation id moves to a sample's value
once none of the transactions that held the sequence at that sample is left, never back."""

from __future__ import annotations

from queue_service.store.settled import MOST_SAMPLES, SettledIds


def test_with_nobody_holding_the_sequence_every_id_read_is_settled() -> None:
    s = SettledIds()
    assert s.update(10, []) == 10
    assert s.update(12, []) == 12
    assert not s.waiting


def test_ids_settle_when_the_transactions_seen_holding_them_end() -> None:
    s = SettledIds()
    assert s.update(10, []) == 10
    # A and B hold the sequence: 11 and 12 may be theirs, not settled
    assert s.update(12, ["A", "B"]) == 10
    assert s.waiting
    # A ended, B still there (and C began): nothing up to 12 is sure yet
    assert s.update(14, ["B", "C"]) == 10
    # B ended: everything B or A could hold (up to 12) settled; C may hold 13 or 14
    assert s.update(15, ["C", "D"]) == 12
    # C ended: up to 14; D holds on
    assert s.update(16, ["D"]) == 14
    assert s.update(16, []) == 16
    assert not s.waiting


def test_the_settled_id_never_goes_back() -> None:
    s = SettledIds()
    s.update(20, [])
    assert s.update(5, ["A"]) == 20  # a sequence reset does not take it back
    assert s.update(5, []) == 20


def test_a_long_transaction_keeps_the_oldest_samples() -> None:
    """While one transaction holds the sequence (an import), samples pile up: the newest give
    way, the oldest stay, since they are the ones that settle first."""
    s = SettledIds()
    s.update(1, [])
    for k in range(1, MOST_SAMPLES + 50):
        assert s.update(1 + k, ["import", f"t{k}"]) == 1
    # the import ended, t3 has not: the samples before t3's (ids up to 3) settle, so the
    # oldest were kept
    assert s.update(10_000, ["t3"]) == 3
    # t3 ended as well: every sample kept settles, the one taken with t3 holding too
    assert s.update(10_001, ["later"]) == 10_000
    assert s.update(10_002, []) == 10_002
