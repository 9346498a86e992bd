"""The invites migrations keep existing rows: they become requests for the role they hold."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("salon_invitations", "0002_delivery")]
AFTER = [("salon_invitations", "0004_requested_role_of_requests")]


def test_existing_invitations_become_requests_for_the_role_they_hold():
    salon = factories.make_salon()
    requester = factories.make_user("before_invites")
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old_apps = executor.loader.project_state(BEFORE).apps
    OldInvitation = old_apps.get_model("salon_invitations", "Invitation")
    old = OldInvitation.objects.create(
        user_id=requester.pk, salon_id=salon.pk, role="mechanic", status="pending"
    )

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(AFTER)

    new_apps = executor.loader.project_state(AFTER).apps
    row = new_apps.get_model("salon_invitations", "Invitation").objects.get(pk=old.pk)
    assert (row.direction, row.requested_role, row.email, row.token_digest) == (
        "request",
        "mechanic",
        "",
        "",
    )
    assert row.user_id == requester.pk
    # Leave the schema as the other tests expect it: at the latest migrations.
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
