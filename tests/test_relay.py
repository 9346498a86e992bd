"""The relay (:func:`salon_invitations.events.relay`, SPEC §9.6): what the log holds is delivered
even when a backend failed after the commit, or the process died between the commit and the
delivery.

"The process died" is simulated exactly: the change commits, and its on-commit hooks (the
delivery) are dropped before they run, as they would be with the process.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from salon_invitations import events, notifications, services
from salon_invitations.events import RELAY_GRACE, relay
from salon_invitations.models import Delivery, Invitation, SalonEvent, get_membership_model
from salon_invitations.notifications import group_name
from salon_invitations.policies import get_policy
from tests import factories
from tests.eventlog_support import (
    BROKEN_DATABASE,
    CHANNELS,
    EMAIL,
    EXPLODING,
    RECORDED,
    RECORDING,
    WEBHOOK,
    BrokenDatabaseBackend,
    ExplodingBackend,
    hook_server_fixture,  # noqa: F401 - a fixture
    last_event_id,
    log,
    recorded_fixture,  # noqa: F401 - a fixture
    webhook,
)

pytestmark = pytest.mark.django_db(transaction=True)

INVITE_URL = "https://app.example.com/invite/{token}"
LINK = re.compile(r"https://app\.example\.com/invite/([A-Za-z0-9_-]+)")
URL = "/api/invitation_to_auto_salon"


def configure(settings: Any, hook_server: Any, *backends: str) -> None:
    settings.SALON_INVITATIONS = {
        "NOTIFICATION_BACKENDS": list(backends),
        "WEBHOOKS": [webhook(hook_server.url("/hook"))],
        "INVITE_URL": INVITE_URL,
    }


@contextmanager
def dies_after_commit() -> Iterator[list[Any]]:
    """Commit what the block does, then lose its on-commit hooks: nothing is delivered, as
    when the process dies right after ``COMMIT``. Yields the hooks that were dropped."""
    dropped: list[Any] = []
    with transaction.atomic():
        yield dropped
        dropped.extend(connection.run_on_commit)
        connection.run_on_commit.clear()


@contextmanager
def socket_bound() -> Iterator[int]:
    """A loopback port that nothing listens on (refused at once), for the block."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def after_grace(rows: list[SalonEvent]) -> Any:
    return max(row.created_at for row in rows) + timedelta(minutes=1)


def deliveries() -> list[tuple[Any, str, str, str]]:
    rows = Delivery.objects.order_by("event_id", "channel", "target")
    return list(rows.values_list("event_id", "channel", "target", "status"))


# A backend fails after the commit ---------------------------------------------------------------


def test_a_failing_backend_leaves_the_event_to_the_relay_which_duplicates_nothing(
    settings, hook_server, recorded, mailoutbox, salon, owner, requester
):
    configure(settings, hook_server, EXPLODING, EMAIL, WEBHOOK, RECORDING)
    before = last_event_id()

    invitation = services.create_invitation(user=requester, salon=salon, role="seller")
    services.approve_invitation(invitation, actor=owner)

    rows = log(id__gt=before)
    assert [row.kind for row in rows] == [
        "invitation.created",
        "invitation.approved",
        "membership.created",
    ]
    # The other backends ran; the failure left every event undispatched.
    assert all(row.dispatched_at is None for row in rows)
    assert ExplodingBackend.calls == 3
    assert [mail.to for mail in mailoutbox] == [["owner@example.com"], ["requester@example.com"]]
    assert [hit.json["id"] for hit in hook_server.hits] == [row.id for row in rows]
    recorded_before = deliveries()
    assert len(recorded_before) == 5  # 2 e-mails, 3 webhooks

    # Too young for the relay.
    assert relay() == 0

    assert relay(now=after_grace(rows)) == 3

    assert all(row.dispatched_at is not None for row in log(id__gt=before))
    assert ExplodingBackend.calls == 6  # tried once more each
    # Nothing sent or recorded twice.
    assert len(mailoutbox) == 2
    assert len(hook_server.hits) == 3
    assert deliveries() == recorded_before
    # The relayed events are the logged ones.
    assert [(e.id, e.redelivery) for e in recorded] == [
        *[(row.id, False) for row in rows],
        *[(row.id, True) for row in rows],
    ]
    assert [e.frame for e in recorded[3:]] == [row.frame for row in rows]

    # Idempotent.
    assert relay(now=after_grace(rows) + timedelta(hours=1)) == 0
    assert ExplodingBackend.calls == 6
    assert (len(mailoutbox), len(hook_server.hits), deliveries()) == (2, 3, recorded_before)


def test_a_channel_layer_that_was_down_gets_the_frames_from_the_relay(
    settings, hook_server, mailoutbox, salon, owner, requester, monkeypatch
):
    with socket_bound() as closed_port:
        invitation = services.create_invitation(user=requester, salon=salon, role="seller")
        configure(settings, hook_server, CHANNELS, EMAIL, WEBHOOK)
        working_layer = settings.CHANNEL_LAYERS
        settings.CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {"hosts": [f"redis://127.0.0.1:{closed_port}/0"]},
            }
        }
        before = last_event_id()
        services.approve_invitation(invitation, actor=owner)

    rows = log(id__gt=before)
    assert [row.dispatched_at for row in rows] == [None, None]
    assert [mail.to for mail in mailoutbox] == [["requester@example.com"]]
    assert len(hook_server.hits) == 2

    # The layer is back; a socket of the requester listens.
    settings.CHANNEL_LAYERS = working_layer
    monkeypatch.setattr(notifications, "_layer_down_until", 0.0)
    layer = get_channel_layer()

    async def listen_while_relaying() -> tuple[int, list[dict[str, Any]]]:
        """Listen in one event loop, as a consumer does: the pub/sub layer's channels and
        subscriptions live only as long as the loop that made them."""
        streams = ("invitation", "membership")
        channels = [await layer.new_channel() for _stream in streams]
        for stream, channel in zip(streams, channels, strict=True):
            await layer.group_add(group_name(stream, requester.pk), channel)
        relayed = await sync_to_async(relay)(now=after_grace(rows))
        return relayed, [await asyncio.wait_for(layer.receive(c), 5) for c in channels]

    relayed, messages = async_to_sync(listen_while_relaying)()
    assert relayed == 2
    assert messages == [{"type": "salon_invitations.event", "frame": row.frame} for row in rows]
    assert all(row.dispatched_at is not None for row in log(id__gt=before))
    assert len(mailoutbox) == 1
    assert len(hook_server.hits) == 2


# The process dies between the commit and the delivery --------------------------------------------


def test_an_invite_whose_delivery_died_is_emailed_by_the_relay_with_a_working_link(
    settings, hook_server, mailoutbox, salon, owner
):
    configure(settings, hook_server, CHANNELS, EMAIL, WEBHOOK)
    before = last_event_id()

    with dies_after_commit() as dropped:
        invitation = services.invite(
            salon=salon, email="new@example.com", role="seller", invited_by=owner
        )

    assert dropped, "the change had on-commit hooks to lose"
    (row,) = log(id__gt=before)
    assert (row.kind, row.dispatched_at) == ("invitation.created", None)
    assert row.secret  # the sealed token waits in the log
    assert mailoutbox == []
    assert hook_server.hits == []
    assert deliveries() == []

    assert relay() == 0  # younger than RELAY_GRACE: maybe still being delivered
    assert relay(now=after_grace([row])) == 1

    (mail,) = mailoutbox
    assert mail.to == ["new@example.com"]
    (token,) = set(LINK.findall(mail.body))
    assert LINK.findall(mail.alternatives[0][0]) == [token]
    (hit,) = hook_server.hits
    assert hit.verified
    assert (hit.json["id"], hit.json["type"], hit.json["data"]) == (row.id, row.kind, row.data)
    assert token not in hit.body.decode()
    row.refresh_from_db()
    assert row.dispatched_at is not None
    assert row.secret == ""
    assert deliveries() == [
        (row.id, "email", "new@example.com", "sent"),
        (row.id, "webhook", hook_server.url("/hook"), "sent"),
    ]
    email = Delivery.objects.get(channel="email")
    assert "seal" not in email.payload
    assert token not in str(email.payload)

    # The link works.
    invitee = factories.make_user("invitee", email="new@example.com")
    client = APIClient()
    client.force_authenticate(invitee)
    response = client.post(f"{URL}/invite/{token}/accept")
    assert response.status_code == 200, response.content
    assert get_membership_model()._default_manager.get(salon=salon, user=invitee).role == "seller"
    assert Invitation.objects.get(pk=invitation.pk).status == "approved"

    # The relay does not send it again.
    accepted = log(id__gt=row.id)
    assert relay(now=after_grace(accepted)) == 0
    assert len(mailoutbox) == 1
    assert [h.json["type"] for h in hook_server.hits] == [
        "invitation.created",
        "invitation.approved",
        "membership.created",
    ]


def test_an_approval_whose_delivery_died_is_delivered_by_the_relay_as_logged(
    settings, hook_server, recorded, mailoutbox, salon, owner, requester
):
    invitation = services.create_invitation(user=requester, salon=salon, role="seller")
    configure(settings, hook_server, CHANNELS, EMAIL, WEBHOOK, RECORDING)
    before = last_event_id()

    with dies_after_commit():
        services.approve_invitation(invitation, actor=owner)
    rows = log(id__gt=before)
    assert [row.kind for row in rows] == ["invitation.approved", "membership.created"]
    assert (mailoutbox, hook_server.hits, recorded) == ([], [], [])

    assert relay(now=after_grace(rows)) == 2

    (mail,) = mailoutbox
    assert mail.to == ["requester@example.com"]
    assert mail.subject == "Welcome to Salon A"
    assert [(hit.json["id"], hit.json["type"], hit.json["data"]) for hit in hook_server.hits] == [
        (row.id, row.kind, row.data) for row in rows
    ]
    assert all(hit.verified for hit in hook_server.hits)
    assert [event.frame for event in recorded] == [row.frame for row in rows]
    assert all(event.redelivery for event in recorded)
    assert all(row.dispatched_at is not None for row in log(id__gt=before))

    assert relay(now=after_grace(rows) + timedelta(days=1)) == 0
    assert (len(mailoutbox), len(hook_server.hits), len(recorded)) == (1, 2, 2)
    assert len(deliveries()) == 3


def test_a_deleted_invitation_s_event_is_relayed_without_its_row(
    settings, hook_server, recorded, mailoutbox, salon, owner, requester
):
    invitation = services.create_invitation(user=requester, salon=salon, role="seller")
    configure(settings, hook_server, CHANNELS, EMAIL, WEBHOOK, RECORDING)
    before = last_event_id()

    with dies_after_commit():
        services.delete_invitation(invitation, actor=owner)

    (row,) = log(id__gt=before)
    assert relay(now=after_grace([row])) == 1

    (hit,) = hook_server.hits
    assert (hit.json["type"], hit.json["data"]) == ("invitation.deleted", row.data)
    assert hit.json["data"]["invitation"]["id"] == invitation.pk
    assert [event.frame for event in recorded] == [row.frame]
    assert mailoutbox == []


def test_the_relay_leaves_events_younger_than_the_grace_period(
    settings, hook_server, recorded, salon, requester
):
    configure(settings, hook_server, WEBHOOK, RECORDING)
    before = last_event_id()
    with dies_after_commit():
        services.create_invitation(user=requester, salon=salon, role="seller")
    (row,) = log(id__gt=before)

    assert relay(now=row.created_at) == 0
    assert relay(now=row.created_at + RELAY_GRACE - timedelta(seconds=1)) == 0
    assert (hook_server.hits, recorded) == ([], [])
    assert events.undispatched(now=row.created_at + RELAY_GRACE).count() == 1

    assert relay(now=row.created_at + RELAY_GRACE) == 1
    assert [hit.json["id"] for hit in hook_server.hits] == [row.id]
    assert [event.id for event in recorded] == [row.id]


def test_the_relay_sends_in_id_order_and_respects_its_limit(
    settings, hook_server, recorded, salon, requester
):
    configure(settings, hook_server, RECORDING)
    before = last_event_id()
    people = [factories.make_user() for _ in range(5)]
    with dies_after_commit():
        for person in people:
            services.create_invitation(user=person, salon=salon, role="seller")
    rows = log(id__gt=before)
    now = after_grace(rows)

    assert relay(now=now, limit=2) == 2
    assert relay(now=now, limit=2) == 2
    assert relay(now=now, limit=2) == 1
    assert relay(now=now, limit=2) == 0
    assert [event.id for event in recorded] == [row.id for row in rows]


def test_a_backend_s_database_error_does_not_undo_the_relay_s_other_work(
    settings, hook_server, recorded, mailoutbox, salon, owner, requester
):
    """A backend that fails on the database in the relay's transaction: the other backends'
    deliveries and the dispatch marks of every event in the batch stay."""
    invitation = services.create_invitation(user=requester, salon=salon, role="seller")
    configure(settings, hook_server, BROKEN_DATABASE, EMAIL, WEBHOOK, RECORDING)
    before = last_event_id()
    with dies_after_commit():
        services.approve_invitation(invitation, actor=owner)
    rows = log(id__gt=before)

    assert relay(now=after_grace(rows)) == 2

    assert BrokenDatabaseBackend.calls == 2
    assert all(row.dispatched_at is not None for row in log(id__gt=before))
    assert [mail.to for mail in mailoutbox] == [["requester@example.com"]]
    assert [hit.json["id"] for hit in hook_server.hits] == [row.id for row in rows]
    assert [event.id for event in recorded] == [row.id for row in rows]
    assert not Delivery.objects.filter(channel="broken").exists()
    assert {status for *_, status in deliveries()} == {"sent"}
    assert relay(now=after_grace(rows) + timedelta(hours=1)) == 0


# Backends that need no relay ----------------------------------------------------------------------


def test_with_only_the_channels_backend_events_are_logged_as_dispatched(
    settings, salon, owner, requester
):
    """WebSocket clients catch up from the log themselves: the row is written dispatched in
    the change's own transaction, nothing is marked after commit, and an event whose delivery
    died is left to the clients' replay, not to the relay."""
    settings.SALON_INVITATIONS = {"NOTIFICATION_BACKENDS": [CHANNELS]}
    before = last_event_id()
    with dies_after_commit():
        invitation = services.create_invitation(user=requester, salon=salon, role="seller")
        (row,) = log(id__gt=before)
        assert row.dispatched_at is not None  # before the commit
    assert relay(now=after_grace([row])) == 0
    # Still in the log, for the replay of the sockets that missed it.
    visible = get_policy().replayable_events(owner, SalonEvent.objects.all())
    assert list(visible.filter(id__gt=before).values_list("id", flat=True)) == [row.id]

    with CaptureQueriesContext(connection) as captured:
        services.approve_invitation(invitation, actor=owner)
    updates = [q["sql"] for q in captured.captured_queries if q["sql"].startswith("UPDATE")]
    assert not [sql for sql in updates if "dispatched_at" in sql], updates
    assert all(row.dispatched_at is not None and not row.secret for row in log(id__gt=before))


def test_one_relayed_backend_keeps_every_event_for_the_relay_until_delivered(
    settings, salon, requester
):
    settings.SALON_INVITATIONS = {"NOTIFICATION_BACKENDS": [CHANNELS, RECORDING]}
    before = last_event_id()
    with dies_after_commit():
        services.create_invitation(user=requester, salon=salon, role="seller")
        (row,) = log(id__gt=before)
        assert row.dispatched_at is None
    assert relay(now=after_grace([row])) == 1
    assert log(id__gt=before)[0].dispatched_at is not None


def test_the_events_of_one_change_compute_their_recipients_once(
    settings, salon, owner, requester, monkeypatch
):
    settings.SALON_INVITATIONS = {"NOTIFICATION_BACKENDS": [CHANNELS, RECORDING]}
    invitation = services.create_invitation(user=requester, salon=salon, role="seller")
    policy = get_policy()
    asked: list[tuple[Any, Any]] = []
    recipients = type(policy).recipients

    def counted(self: Any, salon_id: Any, user_id: Any) -> set[Any]:
        asked.append((salon_id, user_id))
        return recipients(self, salon_id, user_id)

    monkeypatch.setattr(type(policy), "recipients", counted)
    RECORDED.clear()
    services.approve_invitation(invitation, actor=owner)

    assert [event.kind for event in RECORDED] == ["invitation.approved", "membership.created"]
    assert [event.recipients for event in RECORDED] == [{owner.pk, requester.pk}] * 2
    assert asked == [(salon.pk, requester.pk)]
    # The next change asks again: the sharing ends with the transaction.
    services.create_invitation(user=factories.make_user(), salon=salon, role="mechanic")
    assert len(asked) == 2


def test_a_transaction_cache_lives_as_long_as_its_transaction():
    assert events.transaction_cache("x") is not events.transaction_cache("x")  # no transaction
    with transaction.atomic():
        first = events.transaction_cache("x")
        first["k"] = 1
        assert events.transaction_cache("x") is first
        assert events.transaction_cache("y") is not first
    with transaction.atomic():
        assert events.transaction_cache("x") == {}
