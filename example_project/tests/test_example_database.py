"""The example project's PostgreSQL connection pool under daphne (README "Database
connections"): ``DB_POOL_MAX_SIZE`` bounds the connections a server opens, and requests beyond
it wait for one instead of failing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from .support import PostgresDatabase, Server, bearer, manage, project_env, sign_up, start_server

pytestmark = pytest.mark.services

POOL_MAX_SIZE = 2
PARALLEL = 10


@pytest.fixture(scope="module")
def database() -> Iterator[PostgresDatabase]:
    database = PostgresDatabase.create()
    try:
        yield database
    finally:
        database.drop()


@pytest.fixture(scope="module")
def server(database: PostgresDatabase, tmp_path_factory) -> Iterator[Server]:
    env = project_env(
        DATABASE_URL=database.url,
        DB_POOL_MIN_SIZE="1",
        DB_POOL_MAX_SIZE=str(POOL_MAX_SIZE),
        DB_POOL_TIMEOUT="30",
    )
    manage("migrate", "--noinput", env=env).ok()
    running = start_server("pool", env, tmp_path_factory.mktemp("daphne"))
    try:
        yield running
    finally:
        running.stop()
    assert "Traceback" not in running.log(), running.log_tail(200)


def connections(database: PostgresDatabase) -> int:
    """Connections to the test database other than this query's own."""
    ((count,),) = database.query(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    return int(count)


def test_the_pool_bounds_the_connections_and_requests_wait_for_one(
    server: Server, database: PostgresDatabase
) -> None:
    with httpx.Client(base_url=server.base_url, timeout=30, trust_env=False) as client:
        _, access = sign_up(client, "pool@example.com")

    seen: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.append(connections(database))
            time.sleep(0.01)

    start = threading.Barrier(PARALLEL)

    def me(_: int) -> int:
        with httpx.Client(base_url=server.base_url, timeout=60, trust_env=False) as client:
            start.wait(timeout=30)
            # Each request authenticates (a query) and reads itself, holding a connection.
            return client.get("api/user/me", headers=bearer(access)).status_code

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(PARALLEL) as pool:
            codes = list(pool.map(me, range(PARALLEL * 3)))
    finally:
        done.set()
        watcher.join()

    assert codes == [200] * PARALLEL * 3
    assert seen, "pg_stat_activity was never read"
    assert 1 <= max(seen) <= POOL_MAX_SIZE, seen
