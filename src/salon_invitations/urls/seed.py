"""The original service's paths: ``api/invitation_to_auto_salon``, ``api/auto_salon``,
``api/salon_role``, and the event log at ``api/salon_events`` (no trailing slashes). Include
with ``path("", include(...))``."""

from salon_invitations.urls import (
    event_patterns,
    invitation_patterns,
    membership_patterns,
    salon_patterns,
)

urlpatterns = [
    *invitation_patterns("api/invitation_to_auto_salon"),
    *salon_patterns("api/auto_salon"),
    *membership_patterns("api/salon_role"),
    *event_patterns("api/salon_events"),
]
