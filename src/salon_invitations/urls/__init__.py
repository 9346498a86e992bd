"""URL layouts.

The original service's layout — no trailing slashes — is built by three functions, one per
resource, each taking the prefix to mount at::

    from salon_invitations.urls import invitation_patterns, membership_patterns, salon_patterns

    urlpatterns = [
        *invitation_patterns("api/invitation_to_auto_salon"),
        *salon_patterns("api/auto_salon"),
        *membership_patterns("api/salon_role"),
        *event_patterns("api/salon_events"),
    ]

``include("salon_invitations.urls.seed")`` does exactly that at those prefixes. Projects that
prefer DRF's router layout (``invitations/{pk}/approve/``) include
``salon_invitations.urls.router`` instead.

Building full paths (rather than ``include()`` under a prefix without a slash) keeps Django's
URL checks quiet whatever ``APPEND_SLASH`` is.
"""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern, path

from salon_invitations.views import (
    InvitationViewSet,
    InviteTokenViewSet,
    MembershipViewSet,
    SalonEventViewSet,
    SalonViewSet,
)


def invitation_patterns(prefix: str) -> list[URLPattern]:
    """``prefix``, ``prefix/<pk>``, ``…/approved``, ``…/rejected``, ``…/cancelled``,
    ``…/resend``, ``prefix/delete/invitation/<pk>``, ``prefix/invite``,
    ``prefix/invite/<token>`` (``…/accept``, ``…/decline``). URL names: ``salon-invitation-*``
    and ``salon-invite-*``."""
    prefix = prefix.strip("/")
    return [
        path(
            f"{prefix}/invite",
            InvitationViewSet.as_view({"post": "invite"}),
            name="salon-invitation-invite",
        ),
        path(
            f"{prefix}/invite/<str:token>",
            InviteTokenViewSet.as_view({"get": "retrieve"}),
            name="salon-invite-detail",
        ),
        path(
            f"{prefix}/invite/<str:token>/accept",
            InviteTokenViewSet.as_view({"post": "accept"}),
            name="salon-invite-accept",
        ),
        path(
            f"{prefix}/invite/<str:token>/decline",
            InviteTokenViewSet.as_view({"post": "decline"}),
            name="salon-invite-decline",
        ),
        path(
            f"{prefix}/<int:pk>/resend",
            InvitationViewSet.as_view({"post": "resend"}),
            name="salon-invitation-resend",
        ),
        path(
            prefix,
            InvitationViewSet.as_view({"get": "list", "post": "create"}),
            name="salon-invitation-list",
        ),
        path(
            f"{prefix}/<int:pk>",
            InvitationViewSet.as_view({"get": "retrieve"}),
            name="salon-invitation-detail",
        ),
        path(
            f"{prefix}/<int:pk>/approved",
            InvitationViewSet.as_view({"patch": "approve"}),
            name="salon-invitation-approve",
        ),
        path(
            f"{prefix}/<int:pk>/rejected",
            InvitationViewSet.as_view({"patch": "reject"}),
            name="salon-invitation-reject",
        ),
        path(
            f"{prefix}/<int:pk>/cancelled",
            InvitationViewSet.as_view({"patch": "cancel"}),
            name="salon-invitation-cancel",
        ),
        path(
            f"{prefix}/delete/invitation/<int:pk>",
            InvitationViewSet.as_view({"delete": "destroy"}),
            name="salon-invitation-delete",
        ),
    ]


def salon_patterns(prefix: str) -> list[URLPattern]:
    """``prefix`` (list, create), ``prefix/<pk>`` (retrieve, update, delete) and
    ``prefix/<pk>/transfer``."""
    prefix = prefix.strip("/")
    detail: dict[str, Any] = {
        "get": "retrieve",
        "put": "update",
        "patch": "partial_update",
        "delete": "destroy",
    }
    return [
        path(prefix, SalonViewSet.as_view({"get": "list", "post": "create"}), name="salon-list"),
        path(f"{prefix}/<pk>", SalonViewSet.as_view(detail), name="salon-detail"),
        path(
            f"{prefix}/<pk>/transfer",
            SalonViewSet.as_view({"post": "transfer"}),
            name="salon-transfer",
        ),
    ]


def membership_patterns(prefix: str) -> list[URLPattern]:
    """``prefix`` (list) and ``prefix/<pk>`` (retrieve, change the role, delete)."""
    prefix = prefix.strip("/")
    return [
        path(prefix, MembershipViewSet.as_view({"get": "list"}), name="salon-membership-list"),
        path(
            f"{prefix}/<pk>",
            MembershipViewSet.as_view(
                {"get": "retrieve", "patch": "partial_update", "delete": "destroy"}
            ),
            name="salon-membership-detail",
        ),
    ]


def event_patterns(prefix: str) -> list[URLPattern]:
    """``prefix``: the event log (list)."""
    prefix = prefix.strip("/")
    return [path(prefix, SalonEventViewSet.as_view({"get": "list"}), name="salon-event-list")]


__all__ = ["event_patterns", "invitation_patterns", "membership_patterns", "salon_patterns"]
