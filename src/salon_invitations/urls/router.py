"""DRF router layout: ``invitations/``, ``invitations/{pk}/approve/``, ``salons/``,
``memberships/``.

URL names are namespaced ``salon_invitations:`` (e.g. ``salon_invitations:invitation-approve``)."""

from rest_framework.routers import DefaultRouter

from salon_invitations.views import InvitationViewSet, MembershipViewSet, SalonViewSet

router = DefaultRouter()
router.register("invitations", InvitationViewSet, basename="invitation")
router.register("salons", SalonViewSet, basename="salon")
router.register("memberships", MembershipViewSet, basename="membership")

app_name = "salon_invitations"
urlpatterns = router.urls
