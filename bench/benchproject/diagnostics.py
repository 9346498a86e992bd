"""Diagnostics only, timed in-process (Django test client), never over HTTP: the package's
list view without its filter and ordering backends, to tell their cost apart from the rest of
the package's overhead against the plain-DRF baseline."""

from __future__ import annotations

from typing import Any

from salon_invitations.views import InvitationViewSet


class NoFilterBackendsInvitationViewSet(InvitationViewSet):
    @property
    def filter_backends(self) -> list[Any]:  # type: ignore[override]
        return []
