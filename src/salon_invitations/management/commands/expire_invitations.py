from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from salon_invitations import services

MAX_BATCH = 100_000


class Command(BaseCommand):
    help = (
        "Mark pending invitations past their expiry time as expired (for projects without Celery)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--batch-size", type=int, default=None, help="Invitations per transaction."
        )

    def handle(self, *args: Any, batch_size: int | None = None, **options: Any) -> None:
        if batch_size is not None and not 1 <= batch_size <= MAX_BATCH:
            raise CommandError(f"--batch-size must be between 1 and {MAX_BATCH}.")
        count = services.expire_invitations(batch_size=batch_size)
        self.stdout.write(f"{count} invitation(s) expired.")
