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


@pytest.fixture
def service(database_url: str) -> Iterator[ServiceProcess]:
    proc = ServiceProcess(database_url).start()
    yield proc
    proc.kill()


@pytest.fixture
def client(service: ServiceProcess) -> Iterator[QueueClient]:
    with QueueClient(service.address, retries=0) as c:
        yield c


@pytest.fixture
def project_name() -> str:
    return "p-" + uuid.uuid4().hex[:8]
