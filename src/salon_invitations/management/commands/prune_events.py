from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from salon_invitations import events

MAX_DAYS = 365 * 100


class Command(BaseCommand):
    help = (
        "Delete events older than --older-than DAYS from the event log, with their deliveries "
        "and delivery attempts."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--older-than",
            type=int,
            required=True,
            metavar="DAYS",
            help="Keep the events of the last DAYS days (at least 1).",
        )

    def handle(self, *args: Any, older_than: int, **options: Any) -> None:
        if not 1 <= older_than <= MAX_DAYS:
            raise CommandError(f"--older-than must be between 1 and {MAX_DAYS} days.")
        removed = events.prune(timedelta(days=older_than))
        self.stdout.write(f"{removed} event(s) older than {older_than} day(s) deleted.")
