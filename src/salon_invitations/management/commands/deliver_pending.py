from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from salon_invitations import events, outbox
from salon_invitations.management.commands._limits import add_limit, check_limit


class Command(BaseCommand):
    help = (
        "The relay, as the salon_invitations.deliver_pending task: run the backends of events "
        "a crash or an outage left undispatched, then send the e-mails and webhooks that are "
        "due (run it every minute or so where Celery beat does not)."
    )

    def add_arguments(self, parser: Any) -> None:
        add_limit(parser, "deliveries")

    def handle(self, *args: Any, limit: int | None = None, **options: Any) -> None:
        check_limit(limit)
        relayed = events.relay()
        sent, failed = outbox.deliver_due(limit=limit)
        self.stdout.write(
            f"{relayed} event(s) relayed; {sent} delivery(ies) sent, {failed} not sent "
            "(retried later)."
        )
