from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from salon_invitations import events
from salon_invitations.management.commands._limits import add_limit, check_limit


class Command(BaseCommand):
    help = (
        "Run the notification backends again for events that a crash or an outage left "
        "undispatched (older than 30 seconds). deliver_pending does this and sends what is due."
    )

    def add_arguments(self, parser: Any) -> None:
        add_limit(parser, "events")

    def handle(self, *args: Any, limit: int | None = None, **options: Any) -> None:
        check_limit(limit)
        relayed = events.relay(limit=limit or 500)
        self.stdout.write(f"{relayed} event(s) relayed.")
