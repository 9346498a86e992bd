"""Notification backends (SPEC §4, §5): e-mail, logging, channels, and the group names they use."""

from __future__ import annotations

import logging
import re
import smtplib
import uuid
from typing import Any
from unittest import mock

import django
import pytest
from celery.signals import task_prerun
from channels.layers import BaseChannelLayer, get_channel_layer
from django.core.mail.backends.base import BaseEmailBackend
from django.utils import translation

from salon_invitations import notifications, outbox, services
from salon_invitations.models import Delivery, Invitation, get_membership_model
from salon_invitations.notifications import (
    ChannelsBackend,
    EmailBackend,
    Event,
    LoggingBackend,
    group_name,
)
from salon_invitations.tasks import deliver_email
from tests import factories

EMAIL = "salon_invitations.notifications.EmailBackend"


@pytest.fixture
def queued_tasks():
    """Names of the Celery tasks run while the test runs."""
    names: list[str] = []

    def record(sender: Any = None, task: Any = None, **kwargs: Any) -> None:
        names.append(task.name)

    task_prerun.connect(record, weak=False)
    try:
        yield names
    finally:
        task_prerun.disconnect(record)


@pytest.fixture
def email_only(settings):
    settings.SALON_INVITATIONS = {"NOTIFICATION_BACKENDS": [EMAIL]}
    return settings


def use_email_backend(settings: Any, backend: str) -> None:
    """Point the default mailer at ``backend`` (MAILERS from Django 6.1, EMAIL_BACKEND before)."""
    if django.VERSION >= (6, 1):
        settings.MAILERS = {"default": {"BACKEND": backend}}
    else:
        settings.EMAIL_BACKEND = backend


class DisconnectedEmailBackend(BaseEmailBackend):
    """A mail server that hangs up on every attempt."""

    attempts = 0

    def send_messages(self, email_messages: Any) -> int:
        type(self).attempts += 1
        raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")


class FrenchSpeakingRecipients(EmailBackend):
    """As a project whose user model has a ``language`` field set to French."""

    def recipients_for(self, event: Event) -> list[Any]:
        users = super().recipients_for(event)
        for user in users:
            user.language = "fr"
        return users


class LanguagePerUser(EmailBackend):
    def language_for(self, user: Any) -> str:
        return {"owner": "de", "salon_admin": "fr"}[user.username]


@pytest.fixture
def render_languages():
    """(template, active language, recipient's e-mail) for every template the backend renders."""
    calls: list[tuple[str, str, str]] = []
    real = notifications.render_to_string

    def spy(template_name: str, context: Any = None, *args: Any, **kwargs: Any) -> str:
        calls.append((template_name, translation.get_language(), context["recipient"].email))
        return real(template_name, context, *args, **kwargs)

    with mock.patch.object(notifications, "render_to_string", side_effect=spy):
        yield calls


def _by_recipient(outbox: list[Any]) -> dict[str, Any]:
    assert all(len(message.to) == 1 for message in outbox)
    mails = {message.to[0]: message for message in outbox}
    assert len(mails) == len(outbox), "one e-mail per recipient"
    return mails


def _pending(salon: Any, requester: Any, capture: Any, **fields: Any) -> Any:
    """A pending invitation whose own notifications have been dropped."""
    with capture(execute=False):
        return services.create_invitation(user=requester, salon=salon, role="mechanic", **fields)


# E-mail ---------------------------------------------------------------------------------------


def test_new_request_emails_the_salon_managers_not_the_requester(
    email_only,
    salon,
    admin_member,
    seller_member,
    requester,
    mailoutbox,
    django_capture_on_commit_callbacks,
):
    with django_capture_on_commit_callbacks(execute=True):
        services.create_invitation(
            user=requester, salon=salon, role="mechanic", message="I fix <b>cars</b> & vans."
        )

    mails = _by_recipient(mailoutbox)
    assert set(mails) == {"owner@example.com", "salon_admin@example.com"}
    for mail in mails.values():
        assert mail.subject == "New request to join Salon A"
        assert mail.body == (
            "requester asks to join Salon A as mechanic.\n"
            "\n"
            "I fix <b>cars</b> & vans.\n"
            "\n"
            "Approve or reject the request in the application.\n"
        )
        assert mail.alternatives == [
            (
                "<p>requester asks to join Salon A as mechanic.</p>\n"
                "<blockquote>I fix &lt;b&gt;cars&lt;/b&gt; &amp; vans.</blockquote>\n"
                "<p>Approve or reject the request in the application.</p>\n",
                "text/html",
            )
        ]


def test_plain_text_parts_are_not_html_escaped(
    email_only, requester, mailoutbox, django_capture_on_commit_callbacks
):
    salon = factories.make_salon(owner=factories.make_user("boss"), name="Cars & <Co>")
    with django_capture_on_commit_callbacks(execute=True):
        services.create_invitation(user=requester, salon=salon, role="seller")

    (mail,) = mailoutbox
    assert mail.subject == "New request to join Cars & <Co>"
    assert mail.body.startswith("requester asks to join Cars & <Co> as seller.")
    html, mimetype = mail.alternatives[0]
    assert mimetype == "text/html"
    assert "Cars &amp; &lt;Co&gt;" in html


def test_approval_emails_the_requester_only(
    email_only,
    salon,
    admin_member,
    requester,
    mailoutbox,
    django_capture_on_commit_callbacks,
):
    invitation = _pending(salon, requester, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        services.approve_invitation(invitation, actor=admin_member)

    (mail,) = mailoutbox
    assert mail.to == ["requester@example.com"]
    assert mail.subject == "Welcome to Salon A"
    assert mail.body == "Your request to join Salon A as mechanic was approved.\n"
    assert mail.alternatives == [
        ("<p>Your request to join Salon A as mechanic was approved.</p>\n\n", "text/html")
    ]


def test_rejection_emails_the_requester_with_the_reason(
    email_only, salon, owner, requester, mailoutbox, django_capture_on_commit_callbacks
):
    invitation = _pending(salon, requester, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        services.reject_invitation(invitation, actor=owner, reason="No bays free until May.")

    (mail,) = mailoutbox
    assert mail.to == ["requester@example.com"]
    assert mail.subject == "Your request to join Salon A was declined"
    assert mail.body == (
        "Your request to join Salon A as mechanic was declined.\nReason: No bays free until May.\n"
    )
    assert mail.alternatives == [
        (
            "<p>Your request to join Salon A as mechanic was declined.</p>\n"
            "<p>Reason: No bays free until May.</p>\n",
            "text/html",
        )
    ]


def test_expiry_emails_the_requester(
    email_only, salon, requester, mailoutbox, django_capture_on_commit_callbacks
):
    invitation = _pending(salon, requester, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        services.expire_invitations(now=invitation.created)  # expires_at is None: nothing
    assert mailoutbox == []

    Invitation.objects.filter(pk=invitation.pk).update(expires_at=invitation.created)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.expire_invitations() == 1

    (mail,) = mailoutbox
    assert mail.to == ["requester@example.com"]
    assert mail.subject == "Your request to join Salon A expired"
    assert mail.body == (
        "Your request to join Salon A as mechanic expired before anyone decided it.\n"
    )


@pytest.mark.parametrize("change", ["cancel", "delete"])
def test_cancellation_and_deletion_email_nobody(
    change, email_only, salon, owner, requester, mailoutbox, django_capture_on_commit_callbacks
):
    invitation = _pending(salon, requester, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        if change == "cancel":
            services.cancel_invitation(invitation, actor=requester)
        else:
            services.delete_invitation(invitation, actor=owner)
    assert len(callbacks) == 1  # the event was delivered, and the backend chose silence
    assert mailoutbox == []


def test_managers_without_an_address_are_skipped(
    email_only, salon, requester, mailoutbox, django_capture_on_commit_callbacks
):
    factories.add_member(salon, factories.make_user("mute_admin", email=""), role="admin")
    with django_capture_on_commit_callbacks(execute=True):
        services.create_invitation(user=requester, salon=salon, role="seller")
    assert [mail.to for mail in mailoutbox] == [["owner@example.com"]]


# Language -------------------------------------------------------------------------------------


def test_messages_render_in_the_project_language(
    email_only, salon, requester, mailoutbox, render_languages, django_capture_on_commit_callbacks
):
    email_only.LANGUAGE_CODE = "de"
    with translation.override("en"), django_capture_on_commit_callbacks(execute=True):
        services.create_invitation(user=requester, salon=salon, role="seller")
        assert translation.get_language() == "en"  # restored after rendering

    assert len(mailoutbox) == 1
    assert render_languages == [
        ("salon_invitations/email/invitation_created_subject.txt", "de", "owner@example.com"),
        ("salon_invitations/email/invitation_created.txt", "de", "owner@example.com"),
        ("salon_invitations/email/invitation_created.html", "de", "owner@example.com"),
    ]


def test_messages_render_in_the_language_attribute_of_the_user(
    settings, salon, requester, mailoutbox, render_languages, django_capture_on_commit_callbacks
):
    settings.SALON_INVITATIONS = {
        "NOTIFICATION_BACKENDS": ["tests.test_notifications.FrenchSpeakingRecipients"]
    }
    invitation = _pending(salon, requester, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        services.approve_invitation(invitation, actor=salon.owner)

    assert [mail.to for mail in mailoutbox] == [["requester@example.com"]]
    assert {language for _, language, _ in render_languages} == {"fr"}
    assert len(render_languages) == 3


def test_each_recipient_gets_their_own_language(
    settings,
    salon,
    admin_member,
    requester,
    mailoutbox,
    render_languages,
    django_capture_on_commit_callbacks,
):
    settings.SALON_INVITATIONS = {
        "NOTIFICATION_BACKENDS": ["tests.test_notifications.LanguagePerUser"]
    }
    with django_capture_on_commit_callbacks(execute=True):
        services.create_invitation(user=requester, salon=salon, role="seller")

    assert len(mailoutbox) == 2
    languages = {(address, language) for _, language, address in render_languages}
    assert languages == {("owner@example.com", "de"), ("salon_admin@example.com", "fr")}
    assert len(render_languages) == 6


# Celery delivery ------------------------------------------------------------------------------


def test_celery_delivery_queues_the_deliver_email_task(
    settings,
    eager_celery,
    queued_tasks,
    salon,
    admin_member,
    requester,
    mailoutbox,
    django_capture_on_commit_callbacks,
):
    settings.SALON_INVITATIONS = {"NOTIFICATION_BACKENDS": [EMAIL], "EMAIL_DELIVERY": "celery"}
    with django_capture_on_commit_callbacks(execute=True):
        services.create_invitation(user=requester, salon=salon, role="seller")

    assert queued_tasks == ["salon_invitations.deliver_email"] * 2
    mails = _by_recipient(mailoutbox)
    assert set(mails) == {"owner@example.com", "salon_admin@example.com"}
    assert all(mail.subject == "New request to join Salon A" for mail in mails.values())
    assert all(mail.alternatives[0][1] == "text/html" for mail in mails.values())


def test_sync_delivery_does_not_use_celery(
    email_only,
    eager_celery,
    queued_tasks,
    salon,
    requester,
    mailoutbox,
    django_capture_on_commit_callbacks,
):
    with django_capture_on_commit_callbacks(execute=True):
        services.create_invitation(user=requester, salon=salon, role="seller")
    assert queued_tasks == []
    assert [mail.to for mail in mailoutbox] == [["owner@example.com"]]


def test_deliver_email_sends_a_recorded_delivery_once(db, mailoutbox):
    assert deliver_email.name == "salon_invitations.deliver_email"
    message = {"subject": "S", "body": "B", "html": "<p>B</p>", "to": ["a@example.com"]}
    delivery = outbox.record(message, event_kind="invitation.created")

    assert deliver_email(delivery.pk) is True
    assert deliver_email(delivery.pk) is False  # already sent: never twice
    assert [mail.to for mail in mailoutbox] == [["a@example.com"]]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("sent", 1)
    # A message queued by an earlier version (the rendered dict) is still sent.
    assert deliver_email(message) is True
    assert len(mailoutbox) == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("delivery", "attempts"), [("sync", 1), ("celery", 1)])
def test_failing_mail_server_does_not_fail_an_approval(
    request, settings, caplog, api, salon, owner, requester, delivery, attempts
):
    invitation = services.create_invitation(user=requester, salon=salon, role="mechanic")
    if delivery == "celery":
        request.getfixturevalue("eager_celery")
    settings.SALON_INVITATIONS = {"NOTIFICATION_BACKENDS": [EMAIL], "EMAIL_DELIVERY": delivery}
    use_email_backend(settings, "tests.test_notifications.DisconnectedEmailBackend")
    DisconnectedEmailBackend.attempts = 0

    with caplog.at_level(logging.INFO):
        response = api(owner).patch(f"/api/invitation_to_auto_salon/{invitation.pk}/approved")

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "approved"
    membership = get_membership_model()._default_manager.get(salon=salon, user=requester)
    assert membership.role == "mechanic"
    invitation.refresh_from_db()
    assert invitation.status == "approved"

    assert DisconnectedEmailBackend.attempts == attempts
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1, [record.getMessage() for record in errors]
    (error,) = errors
    assert error.exc_info is not None
    assert isinstance(error.exc_info[1], smtplib.SMTPServerDisconnected)
    assert error.name == "salon_invitations"
    assert error.getMessage() == (
        "Could not e-mail ['requester@example.com'] about invitation.approved"
    )
    # Recorded for the relay, not lost.
    (recorded,) = Delivery.objects.all()
    assert (recorded.status, recorded.attempts) == ("pending", 1)


# Logging and channels -------------------------------------------------------------------------


def test_logging_backend_logs_every_event(
    settings, caplog, salon, owner, requester, django_capture_on_commit_callbacks
):
    settings.SALON_INVITATIONS = {
        "NOTIFICATION_BACKENDS": ["salon_invitations.notifications.LoggingBackend"]
    }
    with caplog.at_level(logging.INFO, logger="salon_invitations"):
        with django_capture_on_commit_callbacks(execute=True):
            invitation = services.create_invitation(user=requester, salon=salon, role="seller")
        with django_capture_on_commit_callbacks(execute=True):
            services.approve_invitation(invitation, actor=owner)
    membership = get_membership_model()._default_manager.get(salon=salon, user=requester)

    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "salon_invitations",
            "INFO",
            f"invitation.created invitation pk={invitation.pk} salon={salon.pk} "
            f"actor={requester.pk}",
        ),
        (
            "salon_invitations",
            "INFO",
            f"invitation.approved invitation pk={invitation.pk} salon={salon.pk} actor={owner.pk}",
        ),
        (
            "salon_invitations",
            "INFO",
            f"membership.created membership pk={membership.pk} salon={salon.pk} actor={owner.pk}",
        ),
    ]


def test_logging_backend_logs_automatic_changes_without_actor(caplog, salon, requester):
    invitation = factories.make_invitation(salon=salon, user=requester)
    with caplog.at_level(logging.INFO, logger="salon_invitations"):
        LoggingBackend().send(Event("invitation.expired", invitation, None))
    assert [r.getMessage() for r in caplog.records] == [
        f"invitation.expired invitation pk={invitation.pk} salon={salon.pk} actor=None"
    ]


def test_channels_backend_without_a_channel_layer_does_nothing(
    settings, caplog, salon, owner, requester, django_capture_on_commit_callbacks
):
    settings.CHANNEL_LAYERS = {}
    assert get_channel_layer() is None
    invitation = factories.make_invitation(salon=salon, user=requester)

    ChannelsBackend().send(Event("invitation.created", invitation, requester))  # raises nothing

    with (
        caplog.at_level(logging.INFO),
        django_capture_on_commit_callbacks(execute=True) as callbacks,
    ):
        services.approve_invitation(invitation, actor=owner)
    assert len(callbacks) == 2  # invitation.approved and membership.created were delivered
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


# Group names ----------------------------------------------------------------------------------

GROUP_NAME = re.compile(r"^[a-zA-Z\d\-_.]+$")

PRIMARY_KEYS = [
    0,
    42,
    2**63 - 1,
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "alice",
    "a b",
    "a_b",
    "a_20b",
    "a@b.example",
    "a_b.example",
    "Zoë/ünïcode:€ 🚗",
    "",
    "../..",
    "x" * 500,
    "x" * 499 + "y",
    "\udcff",
]


@pytest.mark.parametrize("stream", ["invitation", "membership"])
@pytest.mark.parametrize("pk", PRIMARY_KEYS, ids=lambda pk: repr(pk)[:24])
def test_group_name_is_a_valid_channels_group_name(stream, pk):
    name = group_name(stream, pk)
    assert GROUP_NAME.match(name), name
    assert len(name) < BaseChannelLayer.MAX_NAME_LENGTH
    assert BaseChannelLayer().require_valid_group_name(name)
    assert name == group_name(stream, pk)  # stable


def test_group_name_keeps_ordinary_keys_readable():
    assert group_name("invitation", 42) == "salon_invitations.invitation.42"
    assert group_name("membership", uuid.UUID("12345678-1234-5678-1234-567812345678")) == (
        "salon_invitations.membership.12345678-1234-5678-1234-567812345678"
    )


def test_group_names_of_distinct_keys_and_streams_are_distinct():
    names = {
        group_name(stream, pk) for stream in ("invitation", "membership") for pk in PRIMARY_KEYS
    }
    assert len(names) == 2 * len(PRIMARY_KEYS)


def test_no_decision_email_to_an_inactive_requester(
    email_only, salon, owner, requester, mailoutbox, django_capture_on_commit_callbacks
):
    invitation = services.create_invitation(user=requester, salon=salon, role="seller")
    type(requester).objects.filter(pk=requester.pk).update(is_active=False)
    mailoutbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.reject_invitation(invitation, actor=owner)
    assert mailoutbox == []
