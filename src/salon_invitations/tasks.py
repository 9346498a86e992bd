"""Celery tasks (extra ``celery``). Import this module only where Celery is installed.

Schedule the expiry and the relay (events a crash or an outage left undelivered, then due
e-mail and webhook retries) in your beat schedule, e.g.::

    CELERY_BEAT_SCHEDULE = {
        "expire-invitations": {
            "task": "salon_invitations.expire_invitations",
            "schedule": 300.0,
        },
        "deliver-pending": {
            "task": "salon_invitations.deliver_pending",
            "schedule": 60.0,
        },
    }
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from salon_invitations import events, outbox, services


@shared_task(name="salon_invitations.expire_invitations")
def expire_invitations() -> int:
    """Mark pending invitations past ``expires_at`` as expired; returns how many."""
    return services.expire_invitations()


@shared_task(name=outbox.DELIVER_TASK)
def deliver_email(delivery: Any) -> bool:
    """Send one recorded delivery, an e-mail or a webhook (a
    :class:`~salon_invitations.models.Delivery` id).

    A failure is recorded on the delivery, which the ``deliver_pending`` relay retries with
    back-off. A rendered message (a dict, as queued by earlier versions) is sent as it is.
    """
    if isinstance(delivery, dict):
        outbox.send_email(delivery)
        return True
    return outbox.attempt(delivery)


@shared_task(name="salon_invitations.deliver_pending")
def deliver_pending() -> dict[str, int]:
    """The relay: run the backends of events left undispatched, then send every pending
    e-mail and webhook whose next attempt is due."""
    relayed = events.relay()
    sent, failed = outbox.deliver_due()
    return {"events": relayed, "sent": sent, "failed": failed}
