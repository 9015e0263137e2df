"""Fixtures: every store test runs on a real SQLite file and on a throwaway PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from labelgrid import QueueClient
from tests.support import postgres
from tests.support.servers import ServiceProcess

BACKENDS = ["sqlite", "postgres"]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# The modules whose tests take longest (tens of seconds each, or tests/test_readme.py's ~3
# minutes on one xdist worker), run first: on `make test`'s two workers the short tests then
# fill in around them instead of one long test finishing alone at the end. Only the order of
# modules changes; within a module the tests keep their order.
SLOW_FIRST = (
    "test_readme.py",
    "test_bench_smoke.py",
    "test_faults.py",
    "test_compose.py",
    "test_owner_view.py",
)


# Modules that run whole on one pytest-xdist worker, in file order: tests/test_readme.py (its
# blocks rely on the ones before them and share one `make run` stack on the README's fixed
# ports) and tests/test_installs.py (one module-scoped pip install of the checkout).
ONE_WORKER = ("tests/test_readme.py", "tests/test_installs.py")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """`--dist loadgroup` (make test) with the ONE_WORKER modules as one work unit each.

    Not the xdist_group marker: pytest-xdist 3.8 groups by renaming item._nodeid, which
    pytest 9.2 no longer reads (nodeid comes from item._id), so the marker is silently
    ignored and the README blocks were split across workers."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class Scheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module in ONE_WORKER else super()._split_scope(nodeid)

    return Scheduling(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return SLOW_FIRST.index(name) if name in SLOW_FIRST else len(SLOW_FIRST)

    items.sort(key=rank)  # stable


@pytest.fixture(scope="session")
def pg() -> Iterator[postgres.Postgres]:
    reason = postgres.available()
    if reason:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required under CI: {reason}")
        pytest.skip(reason)
    server = postgres.Postgres().start()
    yield server
    server.cleanup()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def database_url(backend: str, tmp_path, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database on the backend under test."""
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'queue.db'}"
    return request.getfixturevalue("pg").new_database()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Each phase's report kept on the test (`rep_call`), for fixtures to read at teardown."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def service(database_url: str, request: pytest.FixtureRequest) -> Iterator[ServiceProcess]:
    """A queue service in a child process. One that exits during the test fails it with its
    exit status and log; a failed test prints the log (a connection refused says little)."""
    proc = ServiceProcess(database_url).start()
    yield proc
    assert proc.proc is not None
    exited = proc.proc.poll()
    proc.kill()
    if exited is not None:
        pytest.fail(f"the queue service exited with {exited} during the test:\n{proc.tail()}")
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(f"queue service log ({proc.log}):\n{proc.tail()}")


@pytest.fixture
def client(service: ServiceProcess) -> Iterator[QueueClient]:
    with QueueClient(service.address, retries=0) as c:
        yield c


@pytest.fixture
def project_name() -> str:
    return "p-" + uuid.uuid4().hex[:8]
