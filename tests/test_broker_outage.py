"""A Celery broker that is down costs a request at most ``QUEUE_TIMEOUT``, and loses no e-mail.

The broker is a real Celery app (not eager) pointed at a loopback port nobody listens on. The
e-mail is recorded in the outbox; once the broker is back the relay sends it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from celery import _state as celery_state
from django.db import connection

from salon_invitations import notifications, outbox
from salon_invitations.models import Delivery, Invitation
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)

EMAIL = "salon_invitations.notifications.EmailBackend"
INVITATIONS = "/api/invitation_to_auto_salon"


@pytest.fixture
def dead_broker(settings) -> Iterator[Celery]:
    """The current Celery app publishes to a closed port; e-mail goes through Celery."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        app = Celery("dead-broker", broker=f"redis://127.0.0.1:{sock.getsockname()[1]}/0")
        previous_default = celery_state.default_app
        previous_current = celery_state._tls.current_app
        app.set_current()
        app.set_default()
        settings.SALON_INVITATIONS = {"NOTIFICATION_BACKENDS": [EMAIL], "EMAIL_DELIVERY": "celery"}
        outbox._broker_down_until = 0.0
        try:
            yield app
        finally:
            celery_state._tls.current_app = previous_current
            celery_state.set_default_app(previous_default)
            outbox._broker_down_until = 0.0


def _timed(call: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def write_path_latencies(api: Any, salon: Any, owner: Any) -> list[float]:
    """Two requests to join and the approval of one, each timed; all must succeed."""
    requesters = [factories.make_user(f"applicant{n}") for n in range(2)]
    latencies = []
    for user, role in zip(requesters, ["seller", "mechanic"], strict=True):
        response, took = _timed(
            lambda user=user, role=role: api(user).post(
                INVITATIONS, {"salon": salon.pk, "role": role}
            )
        )
        assert response.status_code == 201, response.content
        latencies.append(took)
    pending = Invitation.objects.get(user=requesters[0])
    approved, took = _timed(lambda: api(owner).patch(f"{INVITATIONS}/{pending.pk}/approved"))
    assert approved.status_code == 200, approved.content
    return [*latencies, took]


def test_writes_with_a_dead_broker_answer_in_bounded_time_and_keep_the_mail(
    dead_broker, api, salon, owner, admin_member, mailoutbox, settings
):
    latencies = write_path_latencies(api, salon, owner)
    read, read_took = _timed(lambda: api(owner).get("/api/auto_salon"))

    # The first write waits at most QUEUE_TIMEOUT (1 s), the following ones not at all (the
    # margins leave room for a loaded machine; an unbounded wait on the broker takes ~20 s).
    assert max(latencies) < 2.5, latencies
    assert sum(latencies) < 4.0, latencies
    assert read.status_code == 200 and read_took < 2.0
    # Nothing was sent, nothing is lost: 2 requests to 2 managers + 1 decision.
    assert mailoutbox == []
    assert Delivery.objects.filter(status="pending").count() == 5

    # The broker is back (here: e-mail sent by the relay itself); everything goes out once.
    assert outbox.deliver_due() == (5, 0)
    assert outbox.deliver_due() == (0, 0)
    assert len(mailoutbox) == 5
    assert [mail.to[0] for mail in mailoutbox].count("owner@example.com") == 2


def test_a_hanging_broker_is_abandoned_after_queue_timeout(dead_broker, settings, monkeypatch):
    settings.SALON_INVITATIONS = {**settings.SALON_INVITATIONS, "QUEUE_TIMEOUT": 0.3}
    release = threading.Event()
    monkeypatch.setattr(dead_broker, "send_task", lambda *a, **kw: release.wait(5))
    delivery = outbox.record({"subject": "S", "body": "B", "html": "B", "to": ["a@x.com"]})

    queued, took = _timed(lambda: outbox.enqueue([delivery.pk]))

    release.set()
    assert queued is False
    assert 0.3 <= took < 0.8
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("pending", 0)


@pytest.mark.concurrency
def test_parallel_writes_with_a_dead_broker_leave_reads_answering(dead_broker, salon, owner):
    """Eight writers at once, each in its own connection, while a reader keeps reading."""
    from rest_framework.test import APIClient

    salons = [factories.make_salon(owner=owner, name=f"S{n}") for n in range(8)]
    users = [factories.make_user(f"writer{n}") for n in range(8)]
    results: list[tuple[int, float]] = []
    reads: list[tuple[int, float]] = []
    barrier = threading.Barrier(9)

    def write(user: Any, target: Any) -> None:
        client = APIClient()
        client.force_authenticate(user)
        barrier.wait(timeout=10)
        response, took = _timed(
            lambda: client.post(INVITATIONS, {"salon": target.pk, "role": "seller"})
        )
        results.append((response.status_code, took))
        connection.close()

    def read() -> None:
        client = APIClient()
        client.force_authenticate(owner)
        barrier.wait(timeout=10)
        for _ in range(5):
            response, took = _timed(lambda: client.get("/api/auto_salon"))
            reads.append((response.status_code, took))
        connection.close()

    threads = [
        threading.Thread(target=write, args=pair) for pair in zip(users, salons, strict=True)
    ]
    threads.append(threading.Thread(target=read))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert [status for status, _ in results] == [201] * 8
    # QUEUE_TIMEOUT (1 s) and the request itself, with nine threads on two cores.
    assert max(took for _, took in results) < 2.5, results
    assert [status for status, _ in reads] == [200] * 5
    assert max(took for _, took in reads) < 2.5, reads
    assert Delivery.objects.filter(status="pending").count() == 8


# A channel layer that hangs ---------------------------------------------------------------------


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A loopback port that accepts connections and never answers (a hung Redis)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=2)
        for conn in accepted:
            conn.close()
        server.close()


def test_writes_with_a_hung_channel_layer_answer_in_bounded_time(
    black_hole, api, salon, owner, settings, caplog
):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{black_hole}/0"]},
        }
    }
    settings.SALON_INVITATIONS = {
        "NOTIFICATION_BACKENDS": ["salon_invitations.notifications.ChannelsBackend"]
    }
    notifications._layer_down_until = 0.0
    try:
        latencies = write_path_latencies(api, salon, owner)
    finally:
        notifications._layer_down_until = 0.0

    # One request waits QUEUE_TIMEOUT (1 s) for the layer, the next ones skip it (the
    # layer's own socket timeout would have cost each event many seconds).
    assert max(latencies) < 2.5, latencies
    assert sum(latencies) < 4.0, latencies
    assert any("failed" in record.getMessage() for record in caplog.records)


def test_publishing_threads_never_keep_the_process_alive(dead_broker, settings, monkeypatch):
    settings.SALON_INVITATIONS = {**settings.SALON_INVITATIONS, "QUEUE_TIMEOUT": 0.2}
    release = threading.Event()
    monkeypatch.setattr(dead_broker, "send_task", lambda *a, **kw: release.wait(5))
    delivery = outbox.record({"subject": "S", "body": "B", "html": "B", "to": ["a@x.com"]})

    assert outbox.enqueue([delivery.pk]) is False
    stuck = [t for t in threading.enumerate() if t.name == "salon-invitations-publish"]
    release.set()
    assert stuck and all(thread.daemon for thread in stuck)
