"""Deletions: every removal is announced, and a row deleted meanwhile is a 404, never a 500.

SPEC §8.4: deleting a salon or a user removes their invitations and memberships through the
services, so each removal reaches the people who would have heard of the row, after commit.
Races with deletion (the view loaded the object, a concurrent request deleted it before the
service took the lock) answer 404 — or a 400 naming ``salon`` when creating an invitation.
"""

from __future__ import annotations

from collections import Counter
from typing import Any
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.urls import reverse

from salon_invitations import services
from salon_invitations.models import Invitation, get_membership_model, get_salon_model
from salon_invitations.notifications import BaseBackend
from salon_invitations.policies import RolePolicy
from salon_invitations.signals import SIGNALS
from tests import factories

RECORDING = "tests.test_deletions.RecordingBackend"


class RecordingBackend(BaseBackend):
    events: list[Any] = []

    def send(self, event: Any) -> None:
        # Recipients as the backends see them: after commit.
        RecordingBackend.events.append((event.kind, event.instance, set(event.recipients)))


@pytest.fixture
def recorded(settings):
    RecordingBackend.events = []
    settings.SALON_INVITATIONS = {"NOTIFICATION_BACKENDS": [RECORDING]}
    return RecordingBackend.events


@pytest.fixture
def signals_sent():
    sent: list[tuple[str, Any]] = []

    def receiver(sender: Any, signal: Any, **kwargs: Any) -> None:
        kind = next(k for k, s in SIGNALS.items() if s is signal)
        sent.append((kind, kwargs.get("invitation") or kwargs.get("membership")))

    for signal in SIGNALS.values():
        signal.connect(receiver, dispatch_uid="test-deletions")
    yield sent
    for signal in SIGNALS.values():
        signal.disconnect(dispatch_uid="test-deletions")


@pytest.fixture
def crowded(salon, owner, admin_member, seller_member, requester):
    """A salon with three members, a pending and a decided invitation."""
    pending = factories.make_invitation(salon, requester, role="mechanic")
    decided = factories.make_invitation(salon, factories.make_user("declined"), role="mechanic")
    services.reject_invitation(decided, actor=owner)
    return pending, decided


def _delete_salon(how: str, salon: Any, owner: Any, staff: Any, api: Any, client: Any) -> None:
    if how == "service":
        services.delete_salon(salon, actor=owner)
    elif how == "rest":
        assert api(owner).delete(f"/api/auto_salon/{salon.pk}").status_code == 204
    elif how == "admin":
        staff.is_superuser = True
        staff.save()
        client.force_login(staff)
        url = reverse("admin:salon_invitations_salon_delete", args=[salon.pk])
        assert client.post(url, {"post": "yes"}).status_code == 302
    else:  # a project's own code deleting the row: the pre_delete receiver routes it
        get_salon_model()._default_manager.get(pk=salon.pk).delete()


@pytest.mark.parametrize("how", ["service", "rest", "admin", "model"])
def test_deleting_a_salon_announces_each_invitation_and_membership(
    how,
    salon,
    owner,
    admin_member,
    seller_member,
    requester,
    staff,
    crowded,
    recorded,
    signals_sent,
    api,
    client,
    django_capture_on_commit_callbacks,
    settings,
):
    if how == "admin" and get_salon_model()._meta.label != "salon_invitations.Salon":
        pytest.skip("the swapped salon model has no admin in the test project")
    pending, decided = crowded
    with django_capture_on_commit_callbacks(execute=True):
        _delete_salon(how, salon, owner, staff, api, client)

    assert not Invitation.objects.filter(salon_id=salon.pk).exists()
    assert not get_membership_model()._default_manager.filter(salon_id=salon.pk).exists()
    assert Counter(kind for kind, _i, _r in recorded) == {
        "invitation.deleted": 2,
        "membership.deleted": 3,
    }
    managers = {owner.pk, admin_member.pk}
    by_subject = {(kind, instance.user_id): recipients for kind, instance, recipients in recorded}
    # Computed before the rows went: the managers hear of every removal, each subject of theirs.
    assert by_subject[("invitation.deleted", requester.pk)] == managers | {requester.pk}
    assert by_subject[("invitation.deleted", decided.user_id)] == managers | {decided.user_id}
    assert by_subject[("membership.deleted", seller_member.pk)] == managers | {seller_member.pk}
    assert by_subject[("membership.deleted", owner.pk)] == managers
    assert {pk for _k, instance, _r in recorded for pk in [instance.pk]} >= {pending.pk, decided.pk}
    assert Counter(kind for kind, _obj in signals_sent) == {
        "invitation.deleted": 2,
        "membership.deleted": 3,
    }


def test_deleting_a_user_announces_their_invitations_and_memberships(
    salon,
    other_salon,
    owner,
    admin_member,
    recorded,
    signals_sent,
    django_capture_on_commit_callbacks,
):
    leaving = factories.make_user("leaving")
    factories.add_member(salon, leaving, role="seller")
    asked = factories.make_invitation(other_salon, leaving, role="mechanic")
    other_owner = other_salon.owner_id

    with django_capture_on_commit_callbacks(execute=True):
        get_user_model().objects.get(pk=leaving.pk).delete()

    assert sorted((kind, inst.salon_id, frozenset(r)) for kind, inst, r in recorded) == sorted(
        [
            ("invitation.deleted", other_salon.pk, frozenset({other_owner, leaving.pk})),
            (
                "membership.deleted",
                salon.pk,
                frozenset({owner.pk, admin_member.pk, leaving.pk}),
            ),
        ]
    )
    assert [obj.pk for kind, obj in signals_sent if kind == "invitation.deleted"] == [asked.pk]
    assert not Invitation.objects.filter(pk=asked.pk).exists()


def test_a_rolled_back_salon_deletion_announces_nothing(
    salon, crowded, recorded, django_capture_on_commit_callbacks
):
    class Abort(Exception):
        pass

    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(Abort),
        transaction.atomic(),
    ):
        services.delete_salon(salon)
        raise Abort
    assert recorded == []
    assert Invitation.objects.filter(salon=salon).count() == 2


# Races with deletion -----------------------------------------------------------------------------


def _remove_invitation(invitation: Invitation) -> Any:
    return lambda: Invitation.objects.filter(pk=invitation.pk).delete()


def _remove_salon(salon: Any) -> Any:
    def delete() -> None:
        Invitation.objects.filter(salon_id=salon.pk).delete()
        get_membership_model()._default_manager.filter(salon_id=salon.pk).delete()
        get_salon_model()._default_manager.filter(pk=salon.pk).delete()

    return delete


INVITATIONS = "/api/invitation_to_auto_salon"


@pytest.mark.parametrize(
    ("who", "method", "path", "gone"),
    [
        ("owner", "patch", "{inv}/approved", "invitation"),
        ("owner", "patch", "{inv}/rejected", "invitation"),
        ("requester", "patch", "{inv}/cancelled", "invitation"),
        ("owner", "delete", "delete/invitation/{inv}", "invitation"),
        ("owner", "patch", "{inv}/approved", "salon"),
        ("requester", "patch", "{inv}/cancelled", "salon"),
    ],
)
def test_an_invitation_deleted_meanwhile_is_404(
    who, method, path, gone, api, salon, owner, requester
):
    invitation = factories.make_invitation(salon, requester)
    delete = _remove_invitation(invitation) if gone == "invitation" else _remove_salon(salon)
    user = {"owner": owner, "requester": requester}[who]
    with factories.before_the_lock(delete):
        response = getattr(api(user), method)(f"{INVITATIONS}/{path.format(inv=invitation.pk)}")
    assert response.status_code == 404, response.content
    assert "detail" in response.json()


def test_creating_an_invitation_to_a_salon_deleted_meanwhile_is_400_naming_salon(
    api, salon, requester
):
    with factories.before_the_lock(_remove_salon(salon)):
        response = api(requester).post(INVITATIONS, {"salon": salon.pk, "role": "seller"})
    assert response.status_code == 400, response.content
    assert "salon" in response.json()
    assert not Invitation.objects.exists()


@pytest.mark.parametrize("method", ["patch", "put", "delete"])
def test_changing_a_salon_deleted_meanwhile_is_404(method, api, salon, owner):
    with factories.before_the_lock(_remove_salon(salon)):
        response = getattr(api(owner), method)(f"/api/auto_salon/{salon.pk}", {"name": "New"})
    assert response.status_code == 404, response.content


def test_removing_a_membership_removed_meanwhile_is_404(api, salon, owner, seller_member):
    membership = get_membership_model()._default_manager.get(salon=salon, user=seller_member)
    delete = lambda: type(membership)._default_manager.filter(pk=membership.pk).delete()  # noqa: E731
    with factories.before_the_lock(delete):
        response = api(owner).delete(f"/api/salon_role/{membership.pk}")
    assert response.status_code == 404, response.content


def test_a_denial_for_an_object_deleted_meanwhile_is_404_not_403(api, salon, owner, requester):
    """The salon went between loading the invitation and the policy's check of the owner's
    membership (deleted with it): the object is gone, so 404."""
    invitation = factories.make_invitation(salon, requester)
    real_check = RolePolicy.can_decide

    def check_after_deletion(self, user, obj):
        _remove_salon(salon)()
        return real_check(self, user, obj)

    with mock.patch.object(RolePolicy, "can_decide", check_after_deletion):
        response = api(owner).patch(f"{INVITATIONS}/{invitation.pk}/rejected")

    assert response.status_code == 404, response.content
