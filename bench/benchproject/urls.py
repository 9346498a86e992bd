"""The package at ``api/…`` (its own URL builders) and the plain-DRF baseline at
``baseline/…``, the event log at ``api/salon_events``."""

from baseline.floor import floor_list
from baseline.views import BaselineInvitationListCreate
from django.urls import path

from salon_invitations.urls import (
    event_patterns,
    invitation_patterns,
    membership_patterns,
    salon_patterns,
)

urlpatterns = [
    *invitation_patterns("api/invitations"),
    *salon_patterns("api/salons"),
    *membership_patterns("api/memberships"),
    *event_patterns("api/salon_events"),
    path("baseline/invitations", BaselineInvitationListCreate.as_view(), name="baseline-list"),
    path("floor/invitations", floor_list, name="floor-list"),
]
