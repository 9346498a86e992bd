from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from salon_invitations import outbox
from salon_invitations.management.commands._limits import add_limit, check_limit


class Command(BaseCommand):
    help = (
        "Send the e-mails and webhooks that a mail server, receiver or broker outage left "
        "pending (the relay; run it every minute or so where Celery beat does not)."
    )

    def add_arguments(self, parser: Any) -> None:
        add_limit(parser, "deliveries")

    def handle(self, *args: Any, limit: int | None = None, **options: Any) -> None:
        check_limit(limit)
        sent, failed = outbox.deliver_due(limit=limit)
        self.stdout.write(f"{sent} delivery(ies) sent, {failed} not sent (retried later).")
