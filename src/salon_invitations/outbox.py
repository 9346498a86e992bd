"""Outgoing e-mail that survives a broken mail server or a broker outage.

The :class:`~salon_invitations.notifications.EmailBackend` records each rendered message as a
:class:`~salon_invitations.models.Delivery` row, then sends it: at once
(``EMAIL_DELIVERY = "sync"``) or through the ``salon_invitations.deliver_email`` Celery task
(``"celery"``), waiting at most ``QUEUE_TIMEOUT`` seconds for the broker. A request never
waits longer than that on the broker, and an e-mail that could not be sent or queued is not
lost: it stays ``pending`` with its next attempt scheduled (exponential back-off), and the relay
sends it — the ``salon_invitations.deliver_pending`` task in the beat schedule, or
``manage.py deliver_pending``. Delivery is at least once: a worker that dies after the mail
server took a message but before the row was marked sent sends it again.

Each attempt first *claims* the row (one ``UPDATE`` that also moves its next attempt a lease
ahead), so a worker and the relay never send the same row at the same time, and no database
lock is held while the mail server answers.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.mail import EmailMultiAlternatives
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from salon_invitations import tokens
from salon_invitations.conf import app_settings
from salon_invitations.models import Delivery, DeliveryAttempt

logger = logging.getLogger("salon_invitations")

#: Stands for an invite's token in a rendered message until it is sent (URL-safe, so it
#: survives HTML escaping and URL building unchanged).
TOKEN_PLACEHOLDER = "SALON-INVITE-TOKEN-PLACEHOLDER"
#: Name of the Celery task that sends one recorded delivery.
DELIVER_TASK = "salon_invitations.deliver_email"
#: How long a claimed delivery is left to the worker that claimed it before another may retry.
LEASE = timedelta(minutes=5)
#: Back-off between attempts: 30 s, 1 min, 2 min, … at most one hour.
FIRST_RETRY = timedelta(seconds=30)
LONGEST_RETRY = timedelta(hours=1)

#: After the broker failed to take a message, requests leave it alone this many seconds.
BROKER_PAUSE = 10.0
#: At most this many publications wait on the broker at once; beyond, the relay sends later.
MAX_PUBLISHING = 4

_publishing = threading.BoundedSemaphore(MAX_PUBLISHING)
_broker_down_until = 0.0


def send_email(message: dict[str, Any]) -> None:
    """Send one rendered message through Django's e-mail API (raises on SMTP errors).

    A message with a sealed invite token (``"seal"``) gets the token where the template put
    :data:`TOKEN_PLACEHOLDER`, only now, in memory.
    """
    parts = {key: message[key] for key in ("subject", "body", "html")}
    if message.get("seal"):
        token = tokens.unseal(message["seal"])
        parts = {key: value.replace(TOKEN_PLACEHOLDER, token) for key, value in parts.items()}
    email = EmailMultiAlternatives(parts["subject"], parts["body"], to=message["to"])
    email.attach_alternative(parts["html"], "text/html")
    email.send()


def create_once(delivery: Delivery, *, retried: bool = False) -> Delivery | None:
    """Save a new delivery; ``None`` when its event already has one for that target.

    Only a relayed event (``retried``) can meet one: its first run may still be recording.
    That case runs in a savepoint, so the conflict leaves the relay's transaction usable.
    """
    if not retried:
        delivery.save(force_insert=True)
        return delivery
    try:
        with transaction.atomic():
            delivery.save(force_insert=True)
    except IntegrityError:
        return None
    return delivery


def record(
    message: dict[str, Any],
    *,
    event_kind: str = "",
    event_id: int | None = None,
    retried: bool = False,
) -> Delivery | None:
    """Store a rendered e-mail as a pending delivery, due now (``None``: recorded already)."""
    to = message.get("to") or [""]
    delivery = Delivery(
        channel="email",
        event_kind=event_kind,
        event_id=event_id,
        target=str(to[0])[:255],
        payload=message,
    )
    return create_once(delivery, retried=retried)


def recorded_targets(event_id: int, channel: str) -> set[str]:
    """The targets already holding a delivery of event ``event_id`` on ``channel``."""
    deliveries = Delivery.objects.filter(event_id=event_id, channel=channel)
    return set(deliveries.values_list("target", flat=True))


def backoff(attempts: int) -> timedelta:
    """The wait before attempt ``attempts + 1``."""
    return min(FIRST_RETRY * 2 ** max(attempts - 1, 0), LONGEST_RETRY)


def _claim(pk: Any, now: datetime) -> Delivery | None:
    due = Delivery.objects.filter(pk=pk, status=Delivery.STATUS.pending, next_attempt_at__lte=now)
    if not due.update(next_attempt_at=now + LEASE, attempts=F("attempts") + 1):
        return None  # sent, failed for good, or being sent by another worker
    return Delivery.objects.get(pk=pk)


def _send(delivery: Delivery) -> Any:
    """Send one delivery: ``None`` when it went out, else what went wrong (see ``Outcome``)."""
    if delivery.channel == "webhook":
        from salon_invitations import webhooks

        return webhooks.deliver(delivery)
    send_email(delivery.payload)
    return None


def attempt(pk: Any, *, now: datetime | None = None) -> bool:
    """Send delivery ``pk`` once if it is due (at ``now``); ``True`` when it went out.

    Each try is recorded (:class:`~salon_invitations.models.DeliveryAttempt`). A failure is
    recorded on the row too (error, next attempt, or ``failed`` when it is not worth
    retrying or the attempts are used up) and logged, never raised.
    """
    now = now or timezone.now()
    delivery = _claim(pk, now)
    if delivery is None:
        return False
    started = time.monotonic()
    try:
        outcome = _send(delivery)
    except Exception as exc:
        outcome = Failure(f"{type(exc).__name__}: {exc}", retry=True, exc=exc)
    duration_ms = int((time.monotonic() - started) * 1000)
    status_code = getattr(outcome, "status_code", None)
    if outcome is None or getattr(outcome, "ok", False):
        DeliveryAttempt.objects.create(
            delivery_id=pk, at=now, ok=True, status_code=status_code, duration_ms=duration_ms
        )
        sent = Delivery.objects.filter(pk=pk)
        if "seal" in delivery.payload:
            # The invite's token is not needed any more: keep nothing that could rebuild the link.
            payload = {key: value for key, value in delivery.payload.items() if key != "seal"}
            sent.update(status=Delivery.STATUS.sent, sent_at=now, last_error="", payload=payload)
        else:
            sent.update(status=Delivery.STATUS.sent, sent_at=now, last_error="")
        return True
    error = outcome.error[:2000]
    DeliveryAttempt.objects.create(
        delivery_id=pk,
        at=now,
        ok=False,
        status_code=status_code,
        error=error,
        duration_ms=duration_ms,
    )
    final = not outcome.retry or delivery.attempts >= app_settings.DELIVERY_MAX_ATTEMPTS
    Delivery.objects.filter(pk=pk).update(
        status=Delivery.STATUS.failed if final else Delivery.STATUS.pending,
        last_error=error,
        next_attempt_at=now + backoff(delivery.attempts),
    )
    logger.error(
        "Could not e-mail %s about %s" if delivery.channel == "email" else "Could not post %s %s",
        delivery.payload.get("to") if delivery.channel == "email" else delivery.target,
        delivery.event_kind or "an event",
        exc_info=getattr(outcome, "exc", None) or None,
    )
    return False


@dataclass(frozen=True)
class Failure:
    """An attempt that raised."""

    error: str
    retry: bool
    exc: BaseException | None = None
    ok: bool = False
    status_code: int | None = None


def enqueue(pks: list[Any]) -> bool:
    """Queue deliveries ``pks`` to the Celery task, waiting at most ``QUEUE_TIMEOUT`` seconds.

    ``False`` when the broker did not take them all in time; what was not queued stays pending
    for the relay. After a failure the broker is left alone for :data:`BROKER_PAUSE`, so
    requests made during an outage do not wait at all.
    """
    global _broker_down_until
    from celery import current_app

    app = current_app._get_current_object()
    if app.conf.task_always_eager:
        task = app.tasks.get(DELIVER_TASK)
        for pk in pks:
            task.apply(args=[pk]) if task is not None else attempt(pk)
        return True
    if time.monotonic() < _broker_down_until or not _publishing.acquire(blocking=False):
        return False
    done = threading.Event()
    failure: list[BaseException] = []

    def publish() -> None:
        try:
            for pk in pks:
                app.send_task(DELIVER_TASK, args=[pk], retry=False)
        except BaseException as exc:  # reported to the waiting request below
            failure.append(exc)
        finally:
            _publishing.release()
            done.set()

    # A daemon thread: one stuck on a broker that never answers must not keep the server
    # process from exiting.
    threading.Thread(target=publish, name="salon-invitations-publish", daemon=True).start()
    if done.wait(app_settings.QUEUE_TIMEOUT) and not failure:
        return True
    _broker_down_until = time.monotonic() + BROKER_PAUSE
    reason = failure[0] if failure else TimeoutError(f"no answer in {app_settings.QUEUE_TIMEOUT}s")
    logger.warning(
        "Could not queue deliveries %s (%s: %s); they stay pending for the relay.",
        pks,
        type(reason).__name__,
        reason,
    )
    return False


def send(pks: list[Any], *, mode: str) -> None:
    """Send recorded deliveries now (``"sync"``) or queue them (``"celery"``), once the
    current transaction commits (at once outside one)."""
    if not pks:
        return
    if mode == "celery":
        transaction.on_commit(lambda: enqueue(pks))
    else:
        transaction.on_commit(lambda: [attempt(pk) for pk in pks])


def deliver(
    messages: list[dict[str, Any]],
    *,
    event_kind: str = "",
    event_id: int | None = None,
    retried: bool = False,
) -> list[Delivery]:
    """Record ``messages`` (one per address) and send them the configured way
    (``EMAIL_DELIVERY``)."""
    seen: set[str] = set()
    deliveries = []
    for message in messages:
        target = str((message.get("to") or [""])[0])
        if target in seen:
            continue
        seen.add(target)
        delivery = record(message, event_kind=event_kind, event_id=event_id, retried=retried)
        if delivery is not None:
            deliveries.append(delivery)
    send([delivery.pk for delivery in deliveries], mode=app_settings.raw("EMAIL_DELIVERY"))
    return deliveries


def deliver_due(
    *, now: datetime | None = None, limit: int | None = None, channel: str | None = None
) -> tuple[int, int]:
    """The relay: send every pending delivery (of ``channel``, or all) whose next attempt is due.

    Returns ``(sent, not sent)``. Safe to run in several processes at once.
    """
    now = now or timezone.now()
    due = Delivery.objects.filter(status=Delivery.STATUS.pending, next_attempt_at__lte=now)
    if channel is not None:
        due = due.filter(channel=channel)
    pks = list(due.order_by("next_attempt_at", "pk").values_list("pk", flat=True)[:limit])
    sent = sum(attempt(pk, now=now) for pk in pks)
    return sent, len(pks) - sent
