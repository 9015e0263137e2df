"""The highest annotation id below which no label can still appear: how far StreamLabelled
may send, so that its cursor (the last id sent) never passes a label that is yet to commit.

PostgreSQL takes an id from the sequence when a transaction inserts, not when it commits:
with labellers at work, a Submit that took id 100 can commit after one that took 101, and a
follower that read 101 and moved its cursor there never got 100 (tests/test_follow_complete.py:
about 2 % of the labels at 8 labellers). SQLite writes one transaction at a time, in id
order, and never reuses an id (migration 0010), so it needs no bound.

The bound comes from samples of the sequence, each `(clock, value)` read in that order, and
the start of the oldest of the services' transactions still open (pg_stat_activity): every id
up to a sample's value was taken before its clock, so by a transaction that began before it;
once every open transaction began after that clock, none of them can hold such an id, and
every id up to the value is either committed (visible) or gone for good (rolled back, undone).
"""

from __future__ import annotations

from collections import deque
from datetime import datetime

# samples kept while a long transaction is open (an import of many labels): the oldest are
# the ones that become usable first, so the newest give way when there are too many
MOST_SAMPLES = 4096


class SettledIds:
    def __init__(self) -> None:
        self._samples: deque[tuple[datetime, int]] = deque()
        self.settled = 0

    def update(self, value: int, at: datetime, oldest_open: datetime | None) -> int:
        """Take the sample (`value` of the sequence read before `at`) and the start of the
        oldest open transaction (None: none open, as read after the sample); returns the
        settled id (never lower than before)."""
        if oldest_open is None:
            self._samples.clear()
            self._samples.append((at, value))
            self.settled = max(self.settled, value)
            return self.settled
        usable = None
        while self._samples and self._samples[0][0] < oldest_open:
            usable = self._samples.popleft()
        if usable is not None:
            self._samples.appendleft(usable)  # still usable next time
            self.settled = max(self.settled, usable[1])
        if len(self._samples) >= MOST_SAMPLES:
            self._samples.pop()
        self._samples.append((at, value))
        return self.settled

    @property
    def waiting(self) -> bool:
        """Whether a sample is newer than the settled id (ids may settle soon)."""
        return bool(self._samples) and self._samples[-1][1] > self.settled
