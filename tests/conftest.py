"""Shared fixtures.

Tests marked ``postgres`` need PostgreSQL (``SALON_TEST_DATABASE=postgres``). Where
``SALON_REQUIRE_SERVICES=1`` (the ``postgres`` tox envs, and so CI) they fail loudly on any
other database instead of being skipped.
"""

from __future__ import annotations

import os

import pytest
from django.db import connection
from rest_framework.test import APIClient

from tests import factories

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


def pytest_collection_modifyitems(config, items):
    if os.environ.get("SALON_TEST_DATABASE") == "postgres":
        return
    if os.environ.get("SALON_REQUIRE_SERVICES") == "1":
        return  # the require_postgres fixture fails them loudly
    skip = pytest.mark.skip(reason="needs SALON_TEST_DATABASE=postgres")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def require_postgres():
    if connection.vendor != "postgresql":
        pytest.fail(f"this test needs PostgreSQL, the suite runs on {connection.vendor}")


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
