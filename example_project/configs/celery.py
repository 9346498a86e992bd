"""The Celery app. Start a worker with the beat scheduler from ``example_project/``::

    REDIS_URL=redis://localhost:6379/0 celery -A configs worker -B -l info

Without ``REDIS_URL`` tasks run eagerly in the calling process and no worker is needed.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "configs.settings")

app = Celery("configs")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

app.conf.beat_schedule = {
    # Pending invitations past their ``expires_at`` become "expired" (SALON_INVITATIONS
    # ["INVITATION_TTL"] sets it); requesters and managers are notified.
    "expire-invitations": {
        "task": "salon_invitations.expire_invitations",
        "schedule": 5 * 60.0,
    },
    # E-mails that a mail server or broker outage left pending are retried with back-off.
    "deliver-pending": {
        "task": "salon_invitations.deliver_pending",
        "schedule": 60.0,
    },
}
