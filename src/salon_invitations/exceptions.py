"""Errors raised by :mod:`salon_invitations.services`.

They carry a machine-readable ``code`` and, for invalid input, the ``field`` at fault, so the
REST views, the admin and the WebSocket consumer can all render them the same way.
"""

from __future__ import annotations

from typing import Any


class SalonInvitationsError(Exception):
    code: str = "error"

    def __init__(self, message: Any, *, code: str | None = None, field: str | None = None):
        super().__init__(str(message))
        self.message = message
        if code is not None:
            self.code = code
        self.field = field


class InvalidInvitation(SalonInvitationsError):
    """The request breaks a domain rule at creation time (a 400 over HTTP)."""

    code = "invalid"


class Gone(SalonInvitationsError):
    """The object was deleted meanwhile, e.g. by a concurrent request (a 404 over HTTP)."""

    code = "not_found"


class NotAllowed(SalonInvitationsError):
    """The caller lost the right to do this while the request waited for the salon's lock (a
    403 over HTTP): services ask the policy again under the lock when given ``authorize``."""

    code = "permission_denied"


class Conflict(SalonInvitationsError):
    """The object's current state forbids the change (a 409 over HTTP).

    ``code`` is one of ``already_decided``, ``role_taken``, ``already_member``,
    ``owner_membership``, ``inactive_user``. ``instance`` is the object as it is after the
    attempt — for ``role_taken`` and ``already_member`` the invitation has been rejected.
    """

    code = "conflict"

    def __init__(self, message: Any, *, code: str, instance: Any = None):
        super().__init__(message, code=code)
        self.instance = instance


class TooSoon(SalonInvitationsError):
    """The action was done moments ago and may not be repeated yet (a 429 over HTTP).

    ``retry_after`` is the wait in seconds.
    """

    code = "too_soon"

    def __init__(self, message: Any, *, code: str, retry_after: float):
        super().__init__(message, code=code)
        self.retry_after = retry_after
