"""The highest annotation id below which no label can still appear: how far StreamLabelled
may send, so that its cursor (the last id sent) never passes a label that is yet to commit.

PostgreSQL takes an id from the sequence when a transaction inserts, not when it commits:
with labellers at work, a Submit that took id 100 can commit after one that took 101, and a
follower that read 101 and moved its cursor there never got 100 (tests/test_follow_complete.py:
about 2 % of the labels at 8 labellers). SQLite writes one transaction at a time, in id
order, and never reuses an id (migration 0010), so it needs no bound.

The bound comes from samples, each the sequence's value and then the transactions holding a
lock on the sequence: `nextval` locks it before it takes an id and the lock is held until the
transaction ends, whoever runs it. Every id up to a sample's value was taken before the
sample, by a transaction that was then either over or holding the lock; once none of the
holders a sample saw is still there, every id up to its value is committed (visible) or gone
for good (rolled back, undone). No clock and no role's view of other sessions is involved.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

# samples kept while a long transaction holds the sequence (an import of many labels): the
# oldest are the ones that settle first, so the newest give way when there are too many
MOST_SAMPLES = 4096


class SettledIds:
    def __init__(self) -> None:
        self._pending: deque[tuple[int, frozenset[str]]] = deque()
        self.settled = 0

    def update(self, value: int, holders: Iterable[str]) -> int:
        """Take a sample: the sequence's `value`, then the transactions (ids) holding its
        lock, read in that order. Returns the settled id (never lower than before)."""
        holding = frozenset(holders)
        while self._pending and not (self._pending[0][1] & holding):
            self.settled = max(self.settled, self._pending.popleft()[0])
        if not holding:
            self.settled = max(self.settled, value)
            self._pending.clear()
            return self.settled
        # samples are freed in order: a holder still there was there at every later sample
        if len(self._pending) >= MOST_SAMPLES:
            self._pending.pop()
        if value > self.settled:
            self._pending.append((value, holding))
        return self.settled

    @property
    def waiting(self) -> bool:
        """Whether ids beyond the settled one were seen taken (they may settle soon)."""
        return bool(self._pending)
