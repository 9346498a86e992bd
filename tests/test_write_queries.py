"""How many statements a request to join and its approval cost, through the REST API, with
everything after the commit (the event's delivery) included: the write path's budget
(docs/benchmarks.md). Transaction statements count where the database backend reports them.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)

INVITATIONS = "/api/invitation_to_auto_salon"
#: The budgets: statements per request (BEGIN and COMMIT included where reported). On
#: PostgreSQL one statement takes the event log's order lock and writes the events.
CREATE_BUDGET, APPROVE_BUDGET = {"postgresql": (7, 10)}.get(connection.vendor, (8, 11))


def _statements(client: APIClient, method: str, url: str, body: dict) -> tuple[int, list[str]]:
    with CaptureQueriesContext(connection) as captured:
        response = getattr(client, method)(url, body, format="json")
    assert response.status_code in (200, 201), response.content
    statements = [query["sql"] for query in captured.captured_queries]
    return len(statements), statements


def _client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_a_request_and_its_approval_stay_within_their_budgets():
    owner = factories.make_user()
    salon = factories.make_salon(owner=owner)
    requester = factories.make_user()

    created, statements = _statements(
        _client(requester), "post", INVITATIONS, {"salon": salon.pk, "role": "seller"}
    )
    assert created <= CREATE_BUDGET, "\n".join(statements)
    # No savepoint: a refused insert rolls the whole change back anyway.
    assert not [sql for sql in statements if "SAVEPOINT" in sql], statements

    pk = _client(requester).get(INVITATIONS).json()["results"][0]["id"]
    approved, statements = _statements(_client(owner), "patch", f"{INVITATIONS}/{pk}/approved", {})
    assert approved <= APPROVE_BUDGET, "\n".join(statements)
    print(f"create {created}, approve {approved} statements on {connection.vendor}")
