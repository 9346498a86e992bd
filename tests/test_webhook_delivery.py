"""Webhooks end to end (SPEC §9.4): a change, its ``Delivery``, each attempt recorded, retries
with back-off by ``outbox.deliver_due``, against a real HTTP server on 127.0.0.1 that checks
every signature with :func:`salon_invitations.webhooks.verify`."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from salon_invitations import outbox, services
from salon_invitations.models import Delivery, DeliveryAttempt, SalonEvent
from tests.eventlog_support import (
    HOOK_SECRET,
    WEBHOOK,
    hook_server_fixture,  # noqa: F401 - a fixture
    webhook,
)

pytestmark = pytest.mark.django_db(transaction=True)


def configure(settings, *endpoints, **extra) -> None:
    settings.SALON_INVITATIONS = {
        "NOTIFICATION_BACKENDS": [WEBHOOK],
        "WEBHOOKS": list(endpoints),
        **extra,
    }


def approve(salon, owner, requester):
    invitation = services.create_invitation(user=requester, salon=salon, role="seller")
    started = timezone.now()
    services.approve_invitation(invitation, actor=owner)
    (event,) = SalonEvent.objects.filter(
        kind="invitation.approved", data__invitation__id=invitation.pk
    )
    return event, started


def attempts(delivery: Delivery) -> list[tuple[bool, int | None]]:
    return [(a.ok, a.status_code) for a in delivery.attempt_log.order_by("at", "pk")]


def test_a_failing_endpoint_is_retried_with_back_off_until_it_answers_2xx(
    settings,
    hook_server,
    salon,
    owner,
    requester,
):
    url = hook_server.url("/hook")
    hook_server.script["/hook"] = [500, 500, 200]
    configure(settings, webhook(url, "invitation.approved"))

    event, started = approve(salon, owner, requester)

    # One delivery for the one matching event; its first attempt made after the commit.
    (delivery,) = Delivery.objects.filter(channel="webhook")
    assert (delivery.event_id, delivery.event_kind, delivery.target) == (
        event.id,
        "invitation.approved",
        url,
    )
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    assert attempts(delivery) == [(False, 500)]
    assert delivery.last_error.startswith("HTTP 500 ")
    first_retry = delivery.next_attempt_at
    assert first_retry >= started + outbox.FIRST_RETRY

    # Not due yet: nothing is sent.
    assert outbox.deliver_due(now=first_retry - timedelta(seconds=1)) == (0, 0)
    assert len(hook_server.hits) == 1

    assert outbox.deliver_due(now=first_retry + timedelta(seconds=1)) == (0, 1)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("pending", 2)
    # The back-off doubles.
    assert delivery.next_attempt_at - (first_retry + timedelta(seconds=1)) == 2 * outbox.FIRST_RETRY

    assert outbox.deliver_due(now=delivery.next_attempt_at + timedelta(seconds=1)) == (1, 0)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("sent", 3)
    assert delivery.sent_at is not None
    assert delivery.last_error == ""
    assert attempts(delivery) == [(False, 500), (False, 500), (True, 200)]
    assert DeliveryAttempt.objects.filter(delivery=delivery).count() == 3

    # The receiver verified every request and saw one event, the same body each time.
    assert [hit.status for hit in hook_server.hits] == [500, 500, 200]
    assert all(hit.verified for hit in hook_server.hits)
    assert {hit.headers["X-Salon-Event-Id"] for hit in hook_server.hits} == {str(event.id)}
    assert {hit.headers["Idempotency-Key"] for hit in hook_server.hits} == {str(event.id)}
    assert {hit.headers["X-Salon-Event"] for hit in hook_server.hits} == {"invitation.approved"}
    assert {hit.headers["X-Salon-Delivery"] for hit in hook_server.hits} == {str(delivery.pk)}
    assert len({hit.body for hit in hook_server.hits}) == 1
    body = hook_server.hits[0].json
    assert set(body) == {"id", "type", "created_at", "data"}
    assert (body["id"], body["type"], body["data"]) == (event.id, event.kind, event.data)
    assert body["data"]["invitation"]["status"] == "approved"
    assert body["created_at"].startswith(event.created_at.strftime("%Y-%m-%dT%H:%M:%S"))

    # Sent: the relay leaves it alone from now on.
    assert outbox.deliver_due(now=timezone.now() + timedelta(days=1)) == (0, 0)
    assert len(hook_server.hits) == 3


def test_a_4xx_is_final_after_one_attempt(settings, hook_server, salon, owner, requester):
    hook_server.script["/gone"] = [410]
    configure(settings, webhook(hook_server.url("/gone"), "invitation.*"))

    event, _ = approve(salon, owner, requester)

    (delivery,) = Delivery.objects.filter(channel="webhook", event_id=event.id)
    assert (delivery.status, delivery.attempts) == ("failed", 1)
    assert attempts(delivery) == [(False, 410)]
    assert outbox.deliver_due(now=timezone.now() + timedelta(days=1)) == (0, 0)
    assert len(hook_server.on("/gone")) == 2  # invitation.created and .approved, once each
    assert [hit.json["type"] for hit in hook_server.on("/gone")] == [
        "invitation.created",
        "invitation.approved",
    ]


def test_attempts_are_bounded_by_delivery_max_attempts(
    settings,
    hook_server,
    salon,
    owner,
    requester,
):
    hook_server.script["/down"] = [503]
    configure(
        settings, webhook(hook_server.url("/down"), "invitation.approved"), DELIVERY_MAX_ATTEMPTS=3
    )

    approve(salon, owner, requester)

    (delivery,) = Delivery.objects.filter(channel="webhook")
    later = timezone.now()
    for _ in range(6):
        later += timedelta(hours=2)
        outbox.deliver_due(now=later)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("failed", 3)
    assert attempts(delivery) == [(False, 503)] * 3
    assert len(hook_server.hits) == 3
    assert all(hit.verified for hit in hook_server.hits)


def test_only_the_endpoints_whose_patterns_match_get_the_event(
    settings,
    hook_server,
    salon,
    owner,
    requester,
):
    configure(
        settings,
        webhook(hook_server.url("/decisions"), "invitation.approved", "invitation.rejected"),
        webhook(hook_server.url("/members"), "membership.*"),
        webhook(hook_server.url("/nothing"), "invitation.expired", "salon.*"),
        webhook(hook_server.url("/everything")),
    )

    approve(salon, owner, requester)

    assert [hit.json["type"] for hit in hook_server.on("/decisions")] == ["invitation.approved"]
    assert [hit.json["type"] for hit in hook_server.on("/members")] == ["membership.created"]
    assert hook_server.on("/nothing") == []
    assert [hit.json["type"] for hit in hook_server.on("/everything")] == [
        "invitation.created",
        "invitation.approved",
        "membership.created",
    ]
    assert not Delivery.objects.filter(target=hook_server.url("/nothing")).exists()
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}
    assert all(hit.verified for hit in hook_server.hits)
    # Each request's event id is its logged event's.
    for hit in hook_server.hits:
        logged = SalonEvent.objects.get(pk=hit.json["id"])
        assert hit.headers["X-Salon-Event-Id"] == str(logged.id)
        assert (hit.json["type"], hit.json["data"]) == (logged.kind, logged.data)


def test_a_receiver_with_another_secret_refuses_and_it_is_not_retried(
    settings,
    hook_server,
    salon,
    owner,
    requester,
):
    configure(settings, webhook(hook_server.url("/hook"), "invitation.approved", secret="wrong"))

    approve(salon, owner, requester)

    (hit,) = hook_server.hits
    assert not hit.verified
    (delivery,) = Delivery.objects.filter(channel="webhook")
    assert (delivery.status, attempts(delivery)) == ("failed", [(False, 400)])
    # The signature is what the receiver checked: with the right secret it verifies.
    from salon_invitations.webhooks import SIGNATURE_HEADER, verify

    assert verify("wrong", hit.headers[SIGNATURE_HEADER], hit.body)
    assert not verify(HOOK_SECRET, hit.headers[SIGNATURE_HEADER], hit.body)
    assert json.loads(hit.body)["type"] == "invitation.approved"
