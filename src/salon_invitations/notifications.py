"""Events and their delivery.

Every state change made by :mod:`salon_invitations.services` produces one :class:`Event`.
:func:`dispatch` waits for the surrounding transaction to commit (so rolled-back work is never
announced), then sends the matching signal from :mod:`salon_invitations.signals` and runs every
backend in ``SALON_INVITATIONS["NOTIFICATION_BACKENDS"]``. A backend that raises is logged
and does not stop the others.

Writing a backend::

    from salon_invitations.notifications import BaseBackend

    class SlackBackend(BaseBackend):
        def send(self, event):
            post_to_slack(f"{event.kind}: {event.instance}")
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from salon_invitations.conf import app_settings
from salon_invitations.signals import SIGNALS

logger = logging.getLogger("salon_invitations")


@dataclass
class Event:
    """One change: ``kind`` is e.g. ``"invitation.approved"`` or ``"membership.deleted"``."""

    kind: str
    instance: Any
    actor: Any = None
    _recipients: set[Any] | None = field(default=None, repr=False)

    @property
    def model(self) -> str:
        return self.kind.split(".", 1)[0]

    @property
    def salon_id(self) -> Any:
        return self.instance.salon_id

    @property
    def recipients(self) -> set[Any]:
        """Primary keys of the users allowed to hear of this event, computed once when asked."""
        if self._recipients is None:
            from salon_invitations.policies import get_policy

            self._recipients = get_policy().recipients(self.salon_id, self.instance.user_id)
        return self._recipients


class BaseBackend:
    """A notification backend: one method that receives every committed :class:`Event`."""

    def send(self, event: Event) -> None:
        raise NotImplementedError


class LoggingBackend(BaseBackend):
    """Logs every event at INFO level on the ``salon_invitations`` logger (for development)."""

    def send(self, event: Event) -> None:
        logger.info(
            "%s %s pk=%s salon=%s actor=%s",
            event.kind,
            event.model,
            event.instance.pk,
            event.salon_id,
            getattr(event.actor, "pk", None),
        )


def deliver(event: Event) -> None:
    """Send the signal and run every backend now. Errors are logged, never raised."""
    signal = SIGNALS[event.kind]
    sender = type(event.instance)
    responses = signal.send_robust(
        sender=sender, **{event.model: event.instance, "actor": event.actor}
    )
    for receiver, response in responses:
        if isinstance(response, Exception):
            logger.error(
                "Receiver %r of %s failed", receiver, event.kind, exc_info=response
            )
    for backend_class in app_settings.NOTIFICATION_BACKENDS:
        try:
            backend_class().send(event)
        except Exception:
            logger.exception("Notification backend %s failed for %s", backend_class, event.kind)


def dispatch(event: Event) -> None:
    """Deliver ``event`` once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: deliver(event))
