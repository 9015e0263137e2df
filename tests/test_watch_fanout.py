"""watch.Fanout on its own: the reads it makes as watchers come, go and multiply, and what a
failed read does to them (the service's WatchProgress is a thin loop over it)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from queue_service.notify import ChangeNotifier
from queue_service.watch import Fanout


class Source:
    """A counter read through `read`; `fail` makes the next read raise."""

    def __init__(self, delay: float = 0.01) -> None:
        self.value = 0
        self.reads = 0
        self.delay = delay
        self.fail: Exception | None = None

    async def read(self, _arg: object) -> int:
        self.reads += 1
        await asyncio.sleep(self.delay)
        if self.fail is not None:
            exc, self.fail = self.fail, None
            raise exc
        return self.value


async def _collect(fanout: Fanout, out: list[int]) -> None:
    async with contextlib.aclosing(fanout.watch(1, None)) as values:
        async for value in values:
            out.append(value)


async def _burst(notifier: ChangeNotifier, source: Source, changes: int, every: float) -> None:
    for _ in range(changes):
        source.value += 1
        notifier.notify(1)
        await asyncio.sleep(every)


def _through_a_burst(
    watchers: int, delay: float, settle: float, **fanout: float
) -> tuple[int, int, list[list[int]]]:
    """`watchers` watch a Source whose reads take `delay` while it changes 40 times, every
    0.05 s; the reads made during the burst, and until `settle` s after it, and what each
    watcher saw by then."""

    async def run() -> tuple[int, int, list[list[int]]]:
        notifier, source = ChangeNotifier(), Source(delay=delay)
        fan = Fanout(notifier, source.read, poll=60, **fanout)
        seen: list[list[int]] = [[] for _ in range(watchers)]
        tasks = [asyncio.create_task(_collect(fan, s)) for s in seen]
        await asyncio.sleep(0.5)
        before = source.reads
        await _burst(notifier, source, 40, 0.05)
        during = source.reads - before
        await asyncio.sleep(settle)
        notifier.close()
        await asyncio.gather(*tasks)
        return during, source.reads - before, seen

    return asyncio.run(run())


@pytest.mark.parametrize(("budget", "most_reads"), [(1e9, 30), (40.0, 6)])
def test_reads_are_spaced_by_the_budget_and_everyone_gets_the_last_value(
    budget: float, most_reads: int
) -> None:
    """40 watchers and 40 changes over 2 s: with no budget to speak of a read at most every
    0.2 s; with a budget of 40 messages a second, one read a second. Either way every watcher
    ends with the last value."""
    _, reads, seen = _through_a_burst(40, 0.01, 1.5, min_gap=0.2, budget=budget)
    assert all(s[-1] == 40 for s in seen)
    assert all(s == sorted(set(s)) for s in seen)  # only new values, in order
    assert 2 <= reads <= most_reads, reads


@pytest.mark.parametrize(("duty", "fewest_reads", "most_reads"), [(1.0, 10, 30), (0.25, 2, 7)])
def test_slow_reads_take_at_most_their_duty_share_of_the_time(
    duty: float, fewest_reads: int, most_reads: int
) -> None:
    """A read of 0.1 s (a big project) and a change every 0.05 s for 2 s: reads back to back
    when they may take all the time (duty 1: one every 0.1 s), one every 0.4 s at a quarter;
    the watchers end with the last value either way."""
    reads, _, seen = _through_a_burst(5, 0.1, 1.0, min_gap=0.05, duty=duty)
    assert all(s[-1] == 40 for s in seen)
    assert fewest_reads <= reads <= most_reads, reads


def test_a_failed_read_ends_every_watcher_and_the_next_watcher_reads_again() -> None:
    async def run() -> tuple[list[BaseException | None], list[int]]:
        notifier, source = ChangeNotifier(), Source()
        fanout = Fanout(notifier, source.read, poll=60)
        first: list[list[int]] = [[], []]
        tasks = [asyncio.create_task(_collect(fanout, s)) for s in first]
        await asyncio.sleep(0.1)
        source.fail = ConnectionError("database unavailable")
        notifier.notify(1)
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        errors = [o if isinstance(o, BaseException) else None for o in outcomes]
        later: list[int] = []
        task = asyncio.create_task(_collect(fanout, later))
        await asyncio.sleep(0.1)
        notifier.close()
        await task
        return errors, later

    errors, later = asyncio.run(run())
    assert all(isinstance(e, ConnectionError) for e in errors), errors
    assert later == [0]


def test_the_last_watcher_leaving_stops_the_reads() -> None:
    async def run() -> tuple[int, int, int]:
        notifier, source = ChangeNotifier(), Source()
        fanout = Fanout(notifier, source.read, poll=0.05, min_gap=0.05)
        async with contextlib.aclosing(fanout.watch(1, None)) as values:
            assert await anext(values) == 0
            await asyncio.sleep(0.3)  # polls about every 0.05 s while watched
            watched = source.reads
        await asyncio.sleep(0.05)
        left = source.reads
        await asyncio.sleep(0.3)
        return watched, left, source.reads

    watched, left, later = asyncio.run(run())
    assert watched >= 3
    assert later == left  # nobody watches: no more reads
