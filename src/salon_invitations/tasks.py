"""Celery tasks (extra ``celery``). Import this module only where Celery is installed.

Schedule the expiry in your beat schedule, e.g.::

    CELERY_BEAT_SCHEDULE = {
        "expire-invitations": {
            "task": "salon_invitations.expire_invitations",
            "schedule": 300.0,
        },
    }
"""

from __future__ import annotations

import logging
import smtplib
from typing import Any

from celery import shared_task

from salon_invitations import services
from salon_invitations.notifications import send_email

logger = logging.getLogger("salon_invitations")


@shared_task(name="salon_invitations.expire_invitations")
def expire_invitations() -> int:
    """Mark pending invitations past ``expires_at`` as expired; returns how many."""
    return services.expire_invitations()


@shared_task(
    name="salon_invitations.deliver_email",
    autoretry_for=(smtplib.SMTPException, OSError),
    retry_backoff=True,
    retry_backoff_max=600,
    max_retries=5,
)
def deliver_email(message: dict[str, Any]) -> None:
    """Send one rendered e-mail; SMTP and connection errors are retried with back-off."""
    send_email(message)
