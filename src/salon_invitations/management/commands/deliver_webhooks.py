from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from salon_invitations import outbox
from salon_invitations.management.commands._limits import add_limit, check_limit


class Command(BaseCommand):
    help = "Retry the webhooks whose next attempt is due (timeouts, 5xx, 408 and 429 answers)."

    def add_arguments(self, parser: Any) -> None:
        add_limit(parser, "webhooks")

    def handle(self, *args: Any, limit: int | None = None, **options: Any) -> None:
        check_limit(limit)
        sent, failed = outbox.deliver_due(limit=limit, channel="webhook")
        self.stdout.write(f"{sent} webhook(s) delivered, {failed} not delivered (retried later).")
