"""The plain-DRF baseline: what a developer would write by hand over the same table.

``ListCreateAPIView`` (= ``ListAPIView`` + ``CreateAPIView``) with a ``ModelSerializer``; the
list shows the invitations of the salons the caller manages (owner or admin), newest first,
with the project's pagination (50 per page). No policy, no filters, no notifications, no
domain checks beyond the model's constraints.
"""

from __future__ import annotations

from typing import Any

from rest_framework import generics, serializers

from salon_invitations.models import Invitation, Membership

MANAGING_ROLES = ("superuser", "admin")
WRITABLE = ("salon", "role", "message")  # on create; ``user`` is the caller


class PlainInvitationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Invitation
        fields = (
            "id",
            "user",
            "salon",
            "role",
            "status",
            "message",
            "reason",
            "decided_by",
            "decided_at",
            "expires_at",
            "created",
            "modified",
        )
        read_only_fields = tuple(field for field in fields if field not in WRITABLE)


class BaselineInvitationListCreate(generics.ListCreateAPIView):
    serializer_class = PlainInvitationSerializer

    def get_queryset(self) -> Any:
        managed = Membership.objects.filter(user=self.request.user, role__in=MANAGING_ROLES).values(
            "salon_id"
        )
        return Invitation.objects.filter(salon_id__in=managed).order_by("-created")

    def perform_create(self, serializer: Any) -> None:
        serializer.save(user=self.request.user)
