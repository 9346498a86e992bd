"""DRF router layout: ``invitations/``, ``invitations/{pk}/approve/``,
``invitations/invite/``, ``invites/{token}/`` (``accept/``, ``decline/``), ``salons/``,
``memberships/``, ``events/``.

URL names are namespaced ``salon_invitations:`` (e.g. ``salon_invitations:invitation-approve``)."""

from rest_framework.routers import DefaultRouter

from salon_invitations.views import (
    InvitationViewSet,
    InviteTokenViewSet,
    MembershipViewSet,
    SalonEventViewSet,
    SalonViewSet,
)

router = DefaultRouter()
router.register("invitations", InvitationViewSet, basename="invitation")
router.register("invites", InviteTokenViewSet, basename="invite")
router.register("salons", SalonViewSet, basename="salon")
router.register("memberships", MembershipViewSet, basename="membership")
router.register("events", SalonEventViewSet, basename="event")

app_name = "salon_invitations"
urlpatterns = router.urls
