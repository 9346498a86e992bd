"""End-to-end smoke tests of the example project (``example_project/``).

Run them from the repository root, with pytest-django switched off::

    .venv/bin/pytest example_project/tests -p no:django
    SALON_REQUIRE_SERVICES=1 .venv/bin/pytest example_project/tests -p no:django

They need the ``example`` and ``test`` extras (``pip install -e ".[example,test]"``).

How they work, and why ``-p no:django``
---------------------------------------
Nothing here imports Django. Every test drives the project the way a user does: ``manage.py``
commands and ``python -m daphne configs.asgi:application`` in subprocesses (cwd
``example_project/``), spoken to over HTTP (httpx) and WebSocket (websockets). The repository's
``pyproject.toml`` points pytest-django at the package suite's ``tests.settings``, of no use
here: ``-p no:django`` keeps Django out of the pytest process. It is required, not just tidy:
left on, pytest-django finds ``example_project/manage.py``, puts ``example_project/`` first on
``sys.path``, where ``tests`` is this package, and stops at once with "No module named
'tests.settings'". (The conftest declares pytest-django's ini key ``DJANGO_SETTINGS_MODULE``
when the plugin is off, so pytest does not warn about it.)

Whatever the pytest process has in its environment, each subprocess gets ``configs.settings``
and a clean set of the project's variables (see ``support.project_env``): a ``DATABASE_URL``,
``DEBUG`` or ``SECRET_KEY`` of the calling shell never leaks in (``REDIS_URL`` only gives the
services configuration its Redis host and port).

Every subprocess runs with ``PYTHONWARNINGS=error::DeprecationWarning,
error::PendingDeprecationWarning``, like the package suite: a deprecated call in the project's
stack breaks the test (the server answers 500 and its log is shown).

Configurations
--------------
``embedded``: the project's defaults (in-memory channel layer, eager Celery, console e-mail),
with a fresh SQLite file in a temporary directory as ``DATABASE_URL``. Always runs.

``services`` (marker ``services``): a freshly created PostgreSQL database (``PGHOST``,
``PGPORT``, ``PGUSER``, ``PGPASSWORD``; default ``postgres@127.0.0.1:5432``, dropped afterwards)
and an empty Redis database claimed for the run (host and port from ``REDIS_URL``, default
``redis://127.0.0.1:6379``; flushed afterwards). Where ``SALON_REQUIRE_SERVICES=1`` (CI) it runs
and fails loudly when PostgreSQL or Redis does not answer; elsewhere it is skipped
(``-m "not services"`` deselects it).

Every wait is bounded: subprocesses have timeouts, the server must listen within
``support.SERVER_START_TIMEOUT`` seconds, HTTP requests and WebSocket receives time out.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from .support import (
    Configuration,
    PostgresDatabase,
    RedisDatabase,
    Server,
    manage,
    project_env,
    sqlite_url,
    start_server,
)

SERVICES_REQUIRED = os.environ.get("SALON_REQUIRE_SERVICES") == "1"


# Pytest configuration -------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "services: needs PostgreSQL and Redis; runs (and is required) where "
        "SALON_REQUIRE_SERVICES=1, skipped elsewhere",
    )


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    if not pluginmanager.has_plugin("django"):
        # pyproject.toml sets pytest-django's DJANGO_SETTINGS_MODULE for the package suite;
        # known here, pytest does not warn about an unknown option under ``-p no:django``.
        parser.addini("DJANGO_SETTINGS_MODULE", "pytest-django's setting, unused here")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if SERVICES_REQUIRED:
        return  # the services fixture fails loudly when PostgreSQL or Redis is missing
    skip = pytest.mark.skip(
        reason="needs PostgreSQL and Redis: set SALON_REQUIRE_SERVICES=1 to run (and require) "
        "the services configuration"
    )
    for item in items:
        if "services" in item.keywords:
            item.add_marker(skip)


# Fixtures -------------------------------------------------------------------------------------


@pytest.fixture(
    scope="module",
    params=["embedded", pytest.param("services", marks=pytest.mark.services)],
)
def configuration(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Configuration]:
    """The environment of each configuration, on a fresh database."""
    name = request.param
    if name == "embedded":
        directory = tmp_path_factory.mktemp("example-embedded")
        yield Configuration(name, project_env(DATABASE_URL=sqlite_url(directory)))
        return
    database = PostgresDatabase.create()
    try:
        redis_db = RedisDatabase.claim()
        try:
            env = project_env(DATABASE_URL=database.url, REDIS_URL=redis_db.url)
            yield Configuration(name, env, postgres=database, redis=redis_db)
        finally:
            redis_db.release()
    finally:
        database.drop()


@contextmanager
def served(name: str, env: dict[str, str], log_dir: Path, **options: Any) -> Iterator[Server]:
    """The example project, migrated and served by daphne (``options``: see
    ``support.start_server``); afterwards, the server must have logged no traceback and no
    warning."""
    manage("migrate", "--noinput", env=env).ok()
    running = start_server(name, env, log_dir, **options)
    try:
        yield running
    finally:
        running.stop()
    log = running.log()
    problems = [word for word in ("Traceback", "Warning:") if word in log]
    if problems:
        pytest.fail(f"the server logged {problems}:\n{running.log_tail(200)}")


@pytest.fixture(scope="module")
def server(configuration: Configuration, tmp_path_factory) -> Iterator[Server]:
    """The example project, migrated and served by daphne, in each configuration."""
    with served(
        configuration.name, configuration.env, tmp_path_factory.mktemp("daphne")
    ) as running:
        yield running
