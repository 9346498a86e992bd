"""Shared fixtures, and the markers that tie a test to a database server.

- ``concurrency``: the test needs a database server that several connections (threads or
  processes) share, with row locks: PostgreSQL or MariaDB/MySQL
  (``SALON_TEST_DATABASE=postgres`` or ``mariadb``). The in-memory SQLite database of the
  other runs is private to one connection.
- ``postgres``: the test needs PostgreSQL itself.

Elsewhere such tests are skipped, except where ``SALON_REQUIRE_SERVICES=1`` (the tox envs
that run on a server, and so CI): there a test whose database is missing fails. The SQLite
envs deselect both markers (``-m``), so nothing is skipped in CI.
"""

from __future__ import annotations

import os

import pytest
from django.db import connection
from rest_framework.test import APIClient

from tests import asyncapi_support, factories

try:
    from celery import Celery
    from celery import _state as celery_state
except ImportError:  # pragma: no cover - celery is in the test extra
    Celery = None

# An eager Celery app: tasks run in the test's thread, exceptions are recorded, not raised.
celery_app = Celery("tests") if Celery is not None else None
if celery_app is not None:
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = False


#: marker -> (the database vendors it accepts, what to set to run it)
DATABASE_MARKERS = {
    "concurrency": (
        {"postgresql", "mysql"},
        "a database server: SALON_TEST_DATABASE=postgres or SALON_TEST_DATABASE=mariadb",
    ),
    "postgres": ({"postgresql"}, "PostgreSQL: SALON_TEST_DATABASE=postgres"),
}


def missing_database(item: pytest.Item) -> str | None:
    """What ``item`` needs that this run's database is not, or ``None``."""
    for marker, (vendors, needs) in DATABASE_MARKERS.items():
        if item.get_closest_marker(marker) and connection.vendor not in vendors:
            return f"needs {needs} (this run is on {connection.vendor})"
    return None


def pytest_collection_modifyitems(config, items):
    if os.environ.get("SALON_REQUIRE_SERVICES") == "1":
        return  # require_database fails them instead
    for item in items:
        reason = missing_database(item)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(autouse=True)
def require_database(request):
    """Fail, rather than skip, a test whose database this run does not have."""
    reason = missing_database(request.node)
    if reason:
        pytest.fail(f"SALON_REQUIRE_SERVICES=1 and this test {reason}", pytrace=False)


def undescribed_frames(problems: list[str]) -> None:
    """Fail with the frames ``docs/asyncapi.yaml`` does not describe, if there are any."""
    if problems:
        found = "\n".join(problems)
        problems.clear()
        pytest.fail(f"frames that docs/asyncapi.yaml does not describe:\n{found}", pytrace=False)


@pytest.fixture(autouse=True)
def no_layer_bound_to_a_closed_loop():
    """After each test, a channel layer whose receiving state belongs to an event loop that
    has closed (a consumer of a test's loop cancelled while it waited in ``receive()``) is
    dropped, so the next test's loop gets a layer of its own: ``RedisChannelLayer`` keeps its
    receive lock per instance, and a lock of a closed loop fails every later receive."""
    yield
    from channels.layers import channel_layers

    for alias, layer in list(channel_layers.backends.items()):
        if type(layer).__name__ != "RedisChannelLayer":  # the pub/sub layer is not affected
            continue
        loop = getattr(layer, "receive_event_loop", None)
        if loop is not None and loop.is_closed():
            del channel_layers.backends[alias]


@pytest.fixture(autouse=True)
def resumes_unpaced(monkeypatch):
    """A socket's replays follow each other at once in the tests (in production they are
    ``RESUME_INTERVAL`` apart); ``test_replay`` checks the pacing itself."""
    from salon_invitations import consumer

    monkeypatch.setattr(consumer, "RESUME_INTERVAL", 0.0)


@pytest.fixture(autouse=True)
def frames_match_asyncapi(monkeypatch):
    """Every frame the consumer sends, and every close code, is one ``docs/asyncapi.yaml``
    describes on the socket's channel: the test fails otherwise. The value is the list of
    problems found, for a test that provokes one on purpose (and then clears it)."""
    problems = asyncapi_support.watch_consumer(monkeypatch)
    yield problems
    undescribed_frames(problems)  # sent while fixtures were torn down


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    # A failure of the test itself rather than an error at teardown.
    result = yield
    undescribed_frames(item.funcargs.get("frames_match_asyncapi", []))
    return result


@pytest.fixture
def queries_in_every_thread(monkeypatch):
    """The SQL of every statement run while the test runs, in whichever thread (Django's
    ``CaptureQueriesContext`` sees one thread's connection only; a WebSocket handshake's
    lookup runs in a worker thread)."""
    import threading

    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.backends.utils import CursorWrapper

    statements: list[str] = []
    execute, connect = CursorWrapper._execute, BaseDatabaseWrapper.connect
    opening = threading.local()

    def recording(self, sql, params, *ignored_wrappers):
        if not getattr(opening, "now", False):  # not a new connection's own set-up
            statements.append(sql)  # list.append is atomic: threads may share the list
        return execute(self, sql, params, *ignored_wrappers)

    def connecting(self):
        opening.now = True
        try:
            return connect(self)
        finally:
            opening.now = False

    monkeypatch.setattr(CursorWrapper, "_execute", recording)
    monkeypatch.setattr(BaseDatabaseWrapper, "connect", connecting)
    return statements


@pytest.fixture
def owner(db):
    return factories.make_user("owner")


@pytest.fixture
def salon(owner):
    return factories.make_salon(owner=owner, name="Salon A")


@pytest.fixture
def other_salon(db):
    return factories.make_salon(owner=factories.make_user("other_owner"), name="Salon B")


@pytest.fixture
def admin_member(salon):
    return factories.add_member(salon, factories.make_user("salon_admin"), role="admin").user


@pytest.fixture
def seller_member(salon):
    return factories.add_member(salon, factories.make_user("salon_seller"), role="seller").user


@pytest.fixture
def requester(db):
    return factories.make_user("requester")


@pytest.fixture
def staff(db):
    return factories.make_staff("staff")


@pytest.fixture
def api():
    def client_for(user=None):
        client = APIClient()
        if user is not None:
            client.force_authenticate(user)
        return client

    return client_for


@pytest.fixture
def eager_celery():
    """The eager Celery app as the current and default app, for one test."""
    previous_default = celery_state.default_app
    previous_current = celery_state._tls.current_app
    celery_app.set_current()
    celery_app.set_default()
    try:
        yield celery_app
    finally:
        celery_state._tls.current_app = previous_current
        celery_state.set_default_app(previous_default)
