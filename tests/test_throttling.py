"""Invitation creation and decisions can be rate limited per user (DRF throttle scopes)."""

from unittest import mock

import pytest
from django.core.cache import cache
from rest_framework.throttling import ScopedRateThrottle

from salon_invitations.views import InvitationViewSet
from tests import factories

URL = "/api/invitation_to_auto_salon"


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


def _rates(settings, **rates):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}


@pytest.mark.django_db
def test_creation_is_throttled_per_user_when_a_rate_is_set(settings, api, requester):
    _rates(settings, **{"salon_invitations.create": "2/minute"})
    salons = [factories.make_salon() for _ in range(3)]
    client = api(requester)

    codes = [client.post(URL, {"salon": s.pk, "role": "seller"}).status_code for s in salons]

    assert codes == [201, 201, 429]
    assert requester.salon_invitations.count() == 2
    # Another user has a budget of their own.
    other = api(factories.make_user())
    assert other.post(URL, {"salon": salons[2].pk, "role": "seller"}).status_code == 201


@pytest.mark.django_db
def test_decisions_are_throttled(settings, api, salon, owner):
    _rates(settings, **{"salon_invitations.decide": "1/minute"})
    first = factories.make_invitation(salon, role="seller")
    second = factories.make_invitation(salon, role="mechanic")
    client = api(owner)

    assert client.patch(f"{URL}/{first.pk}/rejected").status_code == 200
    response = client.patch(f"{URL}/{second.pk}/rejected")

    assert response.status_code == 429
    assert "Retry-After" in response
    second.refresh_from_db()
    assert second.status == "pending"
    # Reading is not a decision.
    assert client.get(URL).status_code == 200


@pytest.mark.django_db
def test_no_rate_configured_means_no_throttling(api, requester):
    salons = [factories.make_salon() for _ in range(5)]
    client = api(requester)

    codes = {client.post(URL, {"salon": s.pk, "role": "seller"}).status_code for s in salons}

    assert codes == {201}


@pytest.mark.django_db
def test_a_project_wide_scoped_throttle_does_not_trip_over_the_package_scopes(api, requester):
    # DRF's ScopedRateThrottle raises for a scope it has no rate for; the package's scopes
    # live under their own attribute so it never sees them.
    salon = factories.make_salon()
    with mock.patch.object(InvitationViewSet, "throttle_classes", [ScopedRateThrottle]):
        response = api(requester).post(URL, {"salon": salon.pk, "role": "seller"})

    assert response.status_code == 201
