"""Expiry (SPEC §2.6) and the e-mail relay: the Celery tasks and the management commands."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from salon_invitations import outbox, services, tasks
from salon_invitations.models import Delivery, Invitation
from salon_invitations.notifications import BaseBackend, Event
from salon_invitations.signals import invitation_expired
from salon_invitations.tasks import expire_invitations
from tests import factories

#: events seen by :class:`RecordingBackend` while a test runs
EVENTS: list[Event] = []


class RecordingBackend(BaseBackend):
    def send(self, event: Event) -> None:
        EVENTS.append(event)


@pytest.fixture
def events(settings):
    settings.SALON_INVITATIONS = {
        "NOTIFICATION_BACKENDS": ["tests.test_tasks.RecordingBackend"],
    }
    EVENTS.clear()
    yield EVENTS
    EVENTS.clear()


@pytest.fixture
def expired_signals():
    received: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        received.append({"sender": sender, **kwargs})

    invitation_expired.connect(receiver)
    try:
        yield received
    finally:
        invitation_expired.disconnect(receiver)


@pytest.fixture
def invitations(salon, other_salon, django_capture_on_commit_callbacks):
    """Three overdue pending invitations, and others the expiry must leave alone."""
    now = timezone.now()
    past, future = now - timedelta(minutes=1), now + timedelta(days=1)

    def make(salon: Any, expires_at: Any, *, approve: bool = False) -> Invitation:
        invitation = factories.make_invitation(
            salon=salon, role="seller" if approve else "mechanic"
        )
        if approve:
            invitation = services.approve_invitation(invitation, actor=salon.owner)
        Invitation.objects.filter(pk=invitation.pk).update(expires_at=expires_at)
        invitation.refresh_from_db()
        return invitation

    with django_capture_on_commit_callbacks(execute=False):  # their own events are not ours
        overdue = [
            make(salon, past),
            make(other_salon, past),
            make(other_salon, now - timedelta(days=30)),
        ]
        kept = {
            "approved": make(salon, past, approve=True),
            "not yet due": make(salon, future),
            "never expires": make(other_salon, None),
        }
    return overdue, kept


def _snapshot(invitation: Invitation) -> tuple[Any, ...]:
    invitation.refresh_from_db()
    return (invitation.status, invitation.decided_at, invitation.decided_by_id, invitation.modified)


def test_task_expires_only_overdue_pending_invitations(
    invitations, events, expired_signals, django_capture_on_commit_callbacks
):
    overdue, kept = invitations
    before = {name: _snapshot(invitation) for name, invitation in kept.items()}
    started = timezone.now()

    with django_capture_on_commit_callbacks(execute=True):
        result = expire_invitations.apply()

    assert result.successful()
    assert result.get() == 3
    for invitation in overdue:
        invitation.refresh_from_db()
        assert invitation.status == "expired"
        assert invitation.decided_by is None
        assert invitation.decided_at >= started
    assert {name: _snapshot(invitation) for name, invitation in kept.items()} == before
    assert before["approved"][0] == "approved"
    assert before["not yet due"][0] == before["never expires"][0] == "pending"

    expected = sorted(invitation.pk for invitation in overdue)
    assert sorted(event.instance.pk for event in events) == expected
    assert {(event.kind, event.actor) for event in events} == {("invitation.expired", None)}
    assert sorted(signal["invitation"].pk for signal in expired_signals) == expected
    assert all(signal["sender"] is Invitation for signal in expired_signals)
    assert all(signal["actor"] is None for signal in expired_signals)
    assert all(signal["invitation"].status == "expired" for signal in expired_signals)


def test_running_the_task_again_changes_nothing(
    invitations, events, django_capture_on_commit_callbacks
):
    overdue, kept = invitations
    with django_capture_on_commit_callbacks(execute=True):
        assert expire_invitations.apply().get() == 3
    after_first = [_snapshot(invitation) for invitation in [*overdue, *kept.values()]]
    EVENTS.clear()

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert expire_invitations.apply().get() == 0

    assert callbacks == []
    assert events == []
    assert [_snapshot(invitation) for invitation in [*overdue, *kept.values()]] == after_first


def test_task_is_registered_under_its_documented_name():
    assert expire_invitations.name == "salon_invitations.expire_invitations"


def test_nothing_to_expire_returns_zero(
    salon, settings, events, django_capture_on_commit_callbacks
):
    settings.SALON_INVITATIONS = {
        **settings.SALON_INVITATIONS,
        "INVITATION_TTL": timedelta(hours=1),
    }
    with django_capture_on_commit_callbacks(execute=True):
        invitation = factories.make_invitation(salon=salon)
    assert invitation.expires_at is not None
    EVENTS.clear()

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert expire_invitations.apply().get() == 0

    assert callbacks == []
    assert events == []
    invitation.refresh_from_db()
    assert invitation.status == "pending"


@pytest.mark.parametrize("batch_size", [None, 1, 2])
def test_management_command_expires_and_prints_the_count(
    batch_size, invitations, events, expired_signals, django_capture_on_commit_callbacks
):
    overdue, kept = invitations
    before = {name: _snapshot(invitation) for name, invitation in kept.items()}
    options = {} if batch_size is None else {"batch_size": batch_size}
    out = StringIO()

    with django_capture_on_commit_callbacks(execute=True):
        call_command("expire_invitations", stdout=out, **options)

    assert out.getvalue() == "3 invitation(s) expired.\n"
    assert all(_snapshot(invitation)[0] == "expired" for invitation in overdue)
    assert {name: _snapshot(invitation) for name, invitation in kept.items()} == before
    expected = sorted(invitation.pk for invitation in overdue)
    assert sorted(event.instance.pk for event in events) == expected
    assert sorted(signal["invitation"].pk for signal in expired_signals) == expected

    again = StringIO()
    call_command("expire_invitations", "--batch-size", "1", stdout=again)
    assert again.getvalue() == "0 invitation(s) expired.\n"


@pytest.mark.parametrize("value", ["-1", "0", "99999999999999999999"])
def test_expire_command_refuses_a_batch_size_out_of_range(db, value):
    with pytest.raises(CommandError, match="--batch-size"):
        call_command("expire_invitations", "--batch-size", value, stdout=StringIO())


def test_deliver_pending_command_sends_what_is_due(db, mailoutbox):
    message = {"subject": "S", "body": "B", "html": "<p>B</p>", "to": ["a@example.com"]}
    due = outbox.record(message)
    later = outbox.record(message)
    Delivery.objects.filter(pk=later.pk).update(next_attempt_at=timezone.now() + timedelta(hours=1))
    out = StringIO()

    call_command("deliver_pending", stdout=out)

    assert out.getvalue().strip() == (
        "0 event(s) relayed; 1 delivery(ies) sent, 0 not sent (retried later)."
    )
    assert Delivery.objects.get(pk=due.pk).status == "sent"
    assert Delivery.objects.get(pk=later.pk).status == "pending"
    assert len(mailoutbox) == 1
    for value in ("0", "99999999999999999999"):
        with pytest.raises(CommandError, match="--limit"):
            call_command("deliver_pending", "--limit", value, stdout=StringIO())


def test_deliver_pending_task_is_the_relay(db, mailoutbox):
    outbox.record({"subject": "S", "body": "B", "html": "<p>B</p>", "to": ["a@example.com"]})
    assert tasks.deliver_pending() == {"events": 0, "sent": 1, "failed": 0}
    assert tasks.deliver_pending() == {"events": 0, "sent": 0, "failed": 0}
