from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from salon_invitations import outbox

MAX_LIMIT = 1_000_000


class Command(BaseCommand):
    help = (
        "Send the e-mails that a mail server or broker outage left pending (the relay; run it "
        "every minute or so where Celery beat does not)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--limit", type=int, default=None, help="Send at most this many (default: all due)."
        )

    def handle(self, *args: Any, limit: int | None = None, **options: Any) -> None:
        if limit is not None and not 1 <= limit <= MAX_LIMIT:
            raise CommandError(f"--limit must be between 1 and {MAX_LIMIT}.")
        sent, failed = outbox.deliver_due(limit=limit)
        self.stdout.write(f"{sent} e-mail(s) sent, {failed} not sent (retried later).")
