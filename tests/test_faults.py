"""Faults outside the package: the database, Redis or the mail server fails (SPEC §2.7, §4).

- The database connection drops in the middle of an approval (or of a salon's creation): the
  transaction rolls back whole — the invitation stays pending, no membership, no salon — no
  event or signal goes out, and Django answers 500, as it does for any lost database.
  Simulated with ``connection.execute_wrapper``: the ``INSERT`` into the membership table
  raises ``OperationalError`` the way a dropped connection does.
- Redis (the channel layer) is down: the approval is committed and answered 200; the failure
  is logged and the other backends still run.
- The mail server refuses (a closed port, or a server that answers 554): the approval is
  answered 200 and the failure logged; with Celery delivery the task is retried a bounded
  number of times.

All tests commit for real (``transaction=True``), so on-commit callbacks run as in
production.
"""

from __future__ import annotations

import logging
import re
import smtplib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import django
import pytest
import redis.exceptions
from celery.signals import task_prerun
from django.db import OperationalError, connection
from django.utils import timezone
from rest_framework.test import APIClient

from salon_invitations import outbox, services
from salon_invitations.models import Delivery, Invitation, get_membership_model, get_salon_model
from salon_invitations.notifications import BaseBackend, Event
from salon_invitations.signals import SIGNALS

pytestmark = pytest.mark.django_db(transaction=True)

CHANNELS = "salon_invitations.notifications.ChannelsBackend"
EMAIL = "salon_invitations.notifications.EmailBackend"
RECORDING = "tests.test_faults.RecordingBackend"
SMTP = "django.core.mail.backends.smtp.EmailBackend"

#: events seen by :class:`RecordingBackend` while a test runs
EVENTS: list[Event] = []


class RecordingBackend(BaseBackend):
    def send(self, event: Event) -> None:
        EVENTS.append(event)


# Fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def events():
    """The package signals sent while the test runs (``"signal <kind>"``), and an empty
    :data:`EVENTS` for :class:`RecordingBackend` (see :func:`backends`)."""
    delivered: list[str] = []

    def receiver(sender: Any, *, kind: str, **kwargs: Any) -> None:
        delivered.append(f"signal {kind}")

    receivers = {
        kind: (lambda sender, kind=kind, **kwargs: receiver(sender, kind=kind, **kwargs))
        for kind in SIGNALS
    }
    for kind, signal in SIGNALS.items():
        signal.connect(receivers[kind], weak=False)
    EVENTS.clear()
    try:
        yield delivered
    finally:
        for kind, signal in SIGNALS.items():
            signal.disconnect(receivers[kind])
        EVENTS.clear()


def backends(settings: Any, *paths: str) -> None:
    """Notify through ``paths``, then record every event in :data:`EVENTS`."""
    settings.SALON_INVITATIONS = {"NOTIFICATION_BACKENDS": [*paths, RECORDING]}


@pytest.fixture
def deliveries():
    """How many times the ``deliver_email`` task started (first run and retries)."""
    started: list[str] = []

    def record(sender: Any = None, task: Any = None, **kwargs: Any) -> None:
        if task.name == "salon_invitations.deliver_email":
            started.append(task.name)

    task_prerun.connect(record, weak=False)
    try:
        yield started
    finally:
        task_prerun.disconnect(record)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port bound by this test and not listening: connecting is refused at once,
    and nobody else can open a server on it while the test runs."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


class RefusingSMTPServer:
    """A mail server on loopback that greets every client with ``554`` and hangs up."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:  # timeout: look at the stop flag again
                continue
            with client:
                self.connections += 1
                client.sendall(b"554 5.3.2 No service for you\r\n")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def refusing_smtp() -> Iterator[RefusingSMTPServer]:
    server = RefusingSMTPServer()
    try:
        yield server
    finally:
        server.stop()


def use_smtp(settings: Any, port: int) -> None:
    """Django's real SMTP backend at 127.0.0.1:``port`` (MAILERS from Django 6.1)."""
    if django.VERSION >= (6, 1):
        options = {"host": "127.0.0.1", "port": port, "use_tls": False, "timeout": 5}
        settings.MAILERS = {"default": {"BACKEND": SMTP, "OPTIONS": options}}
    else:
        settings.EMAIL_BACKEND = SMTP
        settings.EMAIL_HOST = "127.0.0.1"
        settings.EMAIL_PORT = port
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        settings.EMAIL_TIMEOUT = 5


# Helpers --------------------------------------------------------------------------------------


def memberships() -> Any:
    return get_membership_model()._default_manager


def client_for(user: Any) -> APIClient:
    """A client that gets a 500 response for an unhandled error, as a real client would."""
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(user)
    return client


def approve(user: Any, invitation: Invitation) -> Any:
    return client_for(user).patch(f"/api/invitation_to_auto_salon/{invitation.pk}/approved")


@contextmanager
def database_drops_on_insert_into(table: str) -> Iterator[list[str]]:
    """Every ``INSERT`` into ``table`` fails as if the connection to the server was lost.

    Yields the statements sent meanwhile, each as ``"<VERB> <table>"`` (``"INSERT
    salon_invitations_membership (refused)"``), so a test can tell what had already been
    written when the connection dropped.
    """
    statements: list[str] = []
    # Table names are quoted "like this" on PostgreSQL and SQLite, `like this` on MySQL.
    table_name = re.compile(r"(?:INTO|UPDATE|FROM)\s+[\"`]([^\"`]+)[\"`]", re.IGNORECASE)
    quoted_table = connection.ops.quote_name(table)

    def drop(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        verb = sql.lstrip().split(None, 1)[0].upper()
        match = table_name.search(sql)
        statement = f"{verb} {match.group(1) if match else '?'}"
        if verb == "INSERT" and quoted_table in sql:
            statements.append(f"{statement} (refused)")
            raise OperationalError("server closed the connection unexpectedly")
        statements.append(statement)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(drop):
        yield statements


def rows() -> dict[str, list[dict[str, Any]]]:
    return {
        "salons": list(get_salon_model()._default_manager.order_by("pk").values()),
        "memberships": list(memberships().order_by("pk").values()),
        "invitations": list(Invitation.objects.order_by("pk").values()),
    }


def errors(caplog: Any) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno >= logging.ERROR]


# The database ---------------------------------------------------------------------------------


def test_lost_database_during_approval_rolls_everything_back(
    settings, caplog, events, salon, owner, requester
):
    backends(settings, CHANNELS)
    invitation = services.create_invitation(user=requester, salon=salon, role="seller")
    events.clear()
    EVENTS.clear()
    before = rows()

    table = get_membership_model()._meta.db_table
    with caplog.at_level(logging.ERROR), database_drops_on_insert_into(table) as statements:
        response = approve(owner, invitation)

    # The connection dropped after the invitation had been marked approved, in the same
    # transaction: what follows shows that write was rolled back.
    writes = [s for s in statements if s.split()[0] in {"INSERT", "UPDATE", "DELETE"}]
    # (The approval's events are written together at the end: the drop came first.)
    assert writes == [
        "UPDATE salon_invitations_invitation",
        f"INSERT {table} (refused)",
    ]
    assert response.status_code == 500
    assert rows() == before
    invitation.refresh_from_db()
    assert invitation.status == "pending"
    assert invitation.decided_by is None
    assert invitation.decided_at is None
    assert not memberships().filter(user=requester).exists()
    assert EVENTS == []
    assert events == []
    (error,) = errors(caplog)
    assert error.name == "django.request"
    assert isinstance(error.exc_info[1], OperationalError)

    # Once the database is back, the same approval goes through.
    response = approve(owner, invitation)
    assert response.status_code == 200, response.content
    assert memberships().get(user=requester, salon=salon).role == "seller"
    assert [event.kind for event in EVENTS] == ["invitation.approved", "membership.created"]


def test_lost_database_while_creating_a_salon_leaves_no_ownerless_salon(
    settings, caplog, events, owner
):
    backends(settings, CHANNELS)
    before = rows()

    table = get_membership_model()._meta.db_table
    with caplog.at_level(logging.ERROR), database_drops_on_insert_into(table) as statements:
        response = client_for(owner).post("/api/auto_salon", {"name": "Half Motors"})

    salon_table = get_salon_model()._meta.db_table
    writes = [s for s in statements if s.split()[0] in {"INSERT", "UPDATE", "DELETE"}]
    assert writes == [f"INSERT {salon_table}", f"INSERT {table} (refused)"]
    assert response.status_code == 500
    assert rows() == before
    assert not get_salon_model()._default_manager.filter(name="Half Motors").exists()
    assert EVENTS == []
    assert events == []
    assert [record.name for record in errors(caplog)] == ["django.request"]


# Redis ----------------------------------------------------------------------------------------


def test_unreachable_redis_does_not_fail_an_approval(
    settings, caplog, events, closed_port, salon, owner, requester
):
    invitation = services.create_invitation(user=requester, salon=salon, role="seller")
    backends(settings, CHANNELS)
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{closed_port}/0"]},
        }
    }
    events.clear()
    EVENTS.clear()

    with caplog.at_level(logging.INFO):
        response = approve(owner, invitation)

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "approved"
    assert memberships().get(salon=salon, user=requester).role == "seller"
    invitation.refresh_from_db()
    assert invitation.status == "approved"

    # Each event's channel-layer push failed and was logged; the signals and the other
    # backends went on regardless.
    logged = [(record.name, record.getMessage()) for record in errors(caplog)]
    assert logged == [
        (
            "salon_invitations",
            f"Notification backend <class '{CHANNELS}'> failed for {kind}",
        )
        for kind in ("invitation.approved", "membership.created")
    ]
    assert all(
        isinstance(record.exc_info[1], redis.exceptions.ConnectionError)
        for record in errors(caplog)
    )
    assert [event.kind for event in EVENTS] == ["invitation.approved", "membership.created"]
    assert events == ["signal invitation.approved", "signal membership.created"]


# The mail server ------------------------------------------------------------------------------


@pytest.fixture(params=["closed port", "refusing server"])
def smtp_failure(request) -> tuple[int, Any]:
    """``(port, connections seen by the server or None)`` of a mail server that fails."""
    if request.param == "closed port":
        return request.getfixturevalue("closed_port"), None
    server = request.getfixturevalue("refusing_smtp")
    return server.port, server


def test_refusing_mail_server_does_not_fail_an_approval(
    settings, caplog, events, smtp_failure, salon, owner, requester
):
    port, server = smtp_failure
    invitation = services.create_invitation(user=requester, salon=salon, role="seller")
    backends(settings, EMAIL)
    use_smtp(settings, port)
    EVENTS.clear()

    with caplog.at_level(logging.INFO):
        response = approve(owner, invitation)

    assert response.status_code == 200, response.content
    assert memberships().get(salon=salon, user=requester).role == "seller"
    (error,) = errors(caplog)
    assert error.name == "salon_invitations"
    assert error.getMessage() == (
        "Could not e-mail ['requester@example.com'] about invitation.approved"
    )
    expected = OSError if server is None else smtplib.SMTPConnectError
    assert isinstance(error.exc_info[1], expected)
    if server is not None:
        assert server.connections == 1
    assert [event.kind for event in EVENTS] == ["invitation.approved", "membership.created"]


def test_refusing_mail_server_with_celery_is_retried_by_the_relay_a_bounded_number_of_times(
    settings, caplog, events, eager_celery, deliveries, smtp_failure, salon, owner, requester
):
    port, server = smtp_failure
    invitation = services.create_invitation(user=requester, salon=salon, role="seller")
    backends(settings, EMAIL)
    settings.SALON_INVITATIONS = {**settings.SALON_INVITATIONS, "EMAIL_DELIVERY": "celery"}
    use_smtp(settings, port)
    EVENTS.clear()

    with caplog.at_level(logging.INFO):
        response = approve(owner, invitation)

    assert response.status_code == 200, response.content
    assert memberships().get(salon=salon, user=requester).role == "seller"
    assert len(deliveries) == 1  # the task ran once and recorded the failure
    (delivery,) = Delivery.objects.all()
    assert (delivery.status, delivery.attempts, delivery.recipients) == (
        "pending",
        1,
        ["requester@example.com"],
    )
    assert delivery.last_error
    (error,) = errors(caplog)
    assert error.getMessage() == (
        "Could not e-mail ['requester@example.com'] about invitation.approved"
    )
    expected = OSError if server is None else smtplib.SMTPConnectError
    assert isinstance(error.exc_info[1], expected)

    # The relay retries with back-off until DELIVERY_MAX_ATTEMPTS, then gives up.
    assert outbox.deliver_due() == (0, 0)  # not due yet
    later = timezone.now()
    for _ in range(10):
        later += timedelta(hours=2)
        outbox.deliver_due(now=later)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("failed", 6)
    if server is not None:
        assert server.connections == 6
    assert [event.kind for event in EVENTS] == ["invitation.approved", "membership.created"]
