"""The admin acts through the services and the policy, never around them."""

from __future__ import annotations

from unittest import mock

import pytest
from django.contrib import admin
from django.test import override_settings
from django.urls import reverse

from salon_invitations import services
from salon_invitations.models import (
    Invitation,
    Membership,
    Salon,
    get_membership_model,
    get_salon_model,
)
from salon_invitations.policies import RolePolicy
from tests import factories

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:salon_invitations_invitation_changelist"

default_salon_model = pytest.mark.skipif(
    "get_salon_model() is not Salon",
    reason="the default Salon admin is registered only when Salon is the active model",
)
default_membership_model = pytest.mark.skipif(
    "get_membership_model() is not Membership",
    reason="the default Membership admin is registered only when Membership is the active model",
)


@pytest.fixture
def root(db):
    return factories.make_user("root", is_staff=True, is_superuser=True)


@pytest.fixture
def client(client, root):
    client.force_login(root)
    return client


def memberships():
    return get_membership_model()._default_manager


def messages_of(response):
    return [str(message) for message in response.context["messages"]]


def run_action(client, action, invitations):
    return client.post(
        reverse(CHANGELIST),
        {"action": action, "_selected_action": [inv.pk for inv in invitations]},
        follow=True,
    )


# The changelist -------------------------------------------------------------------------------


def test_the_invitation_changelist_renders(client, salon):
    invitation = factories.make_invitation(salon, factories.make_user("applicant"), "mechanic")

    response = client.get(reverse(CHANGELIST))

    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [invitation]
    assert b"applicant" in response.content


def test_the_changelist_filters_by_status(client, salon, owner):
    pending = factories.make_invitation(salon, role="seller")
    rejected = factories.make_invitation(salon, role="mechanic")
    services.reject_invitation(rejected, actor=owner)

    response = client.get(reverse(CHANGELIST), {"status__exact": "rejected"})

    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [rejected]
    assert pending not in response.context["cl"].result_list


class HideSalonB(RolePolicy):
    def visible_invitations(self, user, queryset):
        return super().visible_invitations(user, queryset).exclude(salon__name="Salon B")


def test_the_changelist_is_scoped_by_the_policy(client, salon, other_salon):
    in_a = factories.make_invitation(salon, role="seller")
    factories.make_invitation(other_salon, role="seller")

    with override_settings(SALON_INVITATIONS={"PERMISSION_POLICY": "tests.test_admin.HideSalonB"}):
        response = client.get(reverse(CHANGELIST))

    assert list(response.context["cl"].result_list) == [in_a]


def test_invitations_are_not_edited_in_the_admin(client, salon):
    invitation = factories.make_invitation(salon, role="seller")

    change_url = reverse("admin:salon_invitations_invitation_change", args=[invitation.pk])
    assert client.get(change_url).status_code == 200  # view only
    response = client.post(change_url, {"status": "approved", "role": "admin"})
    assert response.status_code == 403
    invitation.refresh_from_db()
    assert (invitation.status, invitation.role) == ("pending", "seller")


# Bulk actions ---------------------------------------------------------------------------------


def test_approve_selected_approves_through_the_services_and_reports_conflicts(
    client, root, salon, owner
):
    first = factories.make_invitation(salon, role="seller")
    second = factories.make_invitation(salon, role="seller")
    mechanic = factories.make_invitation(salon, role="mechanic")
    decided = factories.make_invitation(salon, role="admin")
    services.reject_invitation(decided, actor=owner)

    response = run_action(client, "approve_selected", [first, second, mechanic, decided])

    assert response.status_code == 200
    shown = messages_of(response)
    assert "2 invitations approved." in shown
    assert "1 not changed (role_taken)." in shown
    assert "1 not changed (already_decided)." in shown
    statuses = dict(Invitation.objects.values_list("pk", "status"))
    # One of the two seller requests wins, whichever the admin handled first.
    assert sorted([statuses[first.pk], statuses[second.pk]]) == ["approved", "rejected"]
    assert (statuses[mechanic.pk], statuses[decided.pk]) == ("approved", "rejected")
    winner = first if statuses[first.pk] == "approved" else second
    loser = second if winner is first else first
    assert Invitation.objects.get(pk=winner.pk).decided_by_id == root.pk
    assert Invitation.objects.get(pk=loser.pk).reason == str(services.MSG_ROLE_TAKEN)
    assert memberships().get(salon=salon, role="seller").user_id == winner.user_id
    assert memberships().get(salon=salon, user=mechanic.user).role == "mechanic"
    assert not memberships().filter(salon=salon, user=loser.user).exists()


def test_approve_selected_sends_the_services_signals(
    client, salon, django_capture_on_commit_callbacks
):
    from salon_invitations.signals import invitation_approved

    invitation = factories.make_invitation(salon, role="seller")
    received = []

    def receiver(sender, invitation, actor, **kwargs):
        received.append((invitation.pk, actor.username))

    invitation_approved.connect(receiver, dispatch_uid="test-admin-approved")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            run_action(client, "approve_selected", [invitation])
    finally:
        invitation_approved.disconnect(dispatch_uid="test-admin-approved")

    assert received == [(invitation.pk, "root")]


def test_reject_selected_rejects(client, root, salon):
    invitations = [factories.make_invitation(salon, role=r) for r in ("seller", "mechanic")]

    response = run_action(client, "reject_selected", invitations)

    assert "2 invitations rejected." in messages_of(response)
    stored = Invitation.objects.filter(pk__in=[i.pk for i in invitations])
    assert set(stored.values_list("status", flat=True)) == {"rejected"}
    assert set(stored.values_list("decided_by", flat=True)) == {root.pk}
    assert memberships().filter(salon=salon).count() == 1  # the owner only


# Deleting -------------------------------------------------------------------------------------


def test_deleting_a_pending_invitation_goes_through_the_services(client, root, salon):
    invitation = factories.make_invitation(salon, role="seller")
    url = reverse("admin:salon_invitations_invitation_delete", args=[invitation.pk])

    with mock.patch.object(
        services, "delete_invitation", wraps=services.delete_invitation
    ) as delete_invitation:
        response = client.post(url, {"post": "yes"})

    assert response.status_code == 302
    delete_invitation.assert_called_once()
    assert delete_invitation.call_args.args[0].pk == invitation.pk
    assert delete_invitation.call_args.kwargs == {"actor": root}
    assert not Invitation.objects.filter(pk=invitation.pk).exists()


def test_a_decided_invitation_cannot_be_deleted_in_the_admin(client, salon, owner):
    invitation = factories.make_invitation(salon, role="seller")
    services.reject_invitation(invitation, actor=owner)
    url = reverse("admin:salon_invitations_invitation_delete", args=[invitation.pk])

    assert client.get(url).status_code == 403
    assert client.post(url, {"post": "yes"}).status_code == 403
    assert Invitation.objects.filter(pk=invitation.pk, status="rejected").exists()


def test_bulk_delete_of_pending_invitations_goes_through_the_services(client, salon):
    invitations = [factories.make_invitation(salon, role=r) for r in ("seller", "mechanic")]

    with mock.patch.object(
        services, "delete_invitation", wraps=services.delete_invitation
    ) as delete_invitation:
        response = client.post(
            reverse(CHANGELIST),
            {
                "action": "delete_selected",
                "_selected_action": [i.pk for i in invitations],
                "post": "yes",
            },
        )

    assert response.status_code == 302
    assert delete_invitation.call_count == 2
    assert not Invitation.objects.exists()


# Salon and membership admin -------------------------------------------------------------------


def test_the_default_models_are_registered_only_when_active():
    assert admin.site.is_registered(Salon) is (get_salon_model() is Salon)
    assert admin.site.is_registered(Membership) is (get_membership_model() is Membership)
    assert admin.site.is_registered(Invitation)


@default_salon_model
def test_adding_a_salon_in_the_admin_makes_the_owner_a_member(client, owner):
    response = client.post(
        reverse("admin:salon_invitations_salon_add"), {"name": "Admin-made", "owner": owner.pk}
    )

    assert response.status_code == 302
    salon = get_salon_model()._default_manager.get(name="Admin-made")
    assert salon.owner_id == owner.pk
    assert memberships().get(salon=salon, user=owner).role == "superuser"


@default_salon_model
def test_deleting_a_salon_in_the_admin_cascades(client, salon, seller_member):
    factories.make_invitation(salon, role="mechanic")
    url = reverse("admin:salon_invitations_salon_delete", args=[salon.pk])

    response = client.post(url, {"post": "yes"})

    assert response.status_code == 302
    assert not get_salon_model()._default_manager.filter(pk=salon.pk).exists()
    assert not memberships().filter(salon_id=salon.pk).exists()
    assert not Invitation.objects.filter(salon_id=salon.pk).exists()


@default_membership_model
def test_removing_a_membership_in_the_admin_frees_the_role(client, salon, seller_member):
    membership = memberships().get(salon=salon, user=seller_member)
    url = reverse("admin:salon_invitations_membership_delete", args=[membership.pk])

    response = client.post(url, {"post": "yes"})

    assert response.status_code == 302
    assert not memberships().filter(pk=membership.pk).exists()
    assert factories.make_invitation(salon, role="seller").is_pending


@default_membership_model
def test_the_owner_membership_is_not_removed_in_the_admin(client, salon, owner):
    membership = memberships().get(salon=salon, user=owner)
    url = reverse("admin:salon_invitations_membership_delete", args=[membership.pk])

    response = client.post(url, {"post": "yes"})

    # Refused outright: no error next to a "deleted successfully" message.
    assert response.status_code == 403
    assert memberships().filter(pk=membership.pk, role="superuser").exists()
    change = client.get(reverse("admin:salon_invitations_membership_change", args=[membership.pk]))
    assert b"deletelink" not in change.content


@default_membership_model
def test_bulk_deleting_a_selection_with_the_owner_membership_deletes_nothing(
    client, salon, owner, seller_member
):
    selection = list(memberships().filter(salon=salon).values_list("pk", flat=True))
    url = reverse("admin:salon_invitations_membership_changelist")

    confirm = client.post(url, {"action": "delete_selected", "_selected_action": selection})
    assert b"would require deleting the following protected" in confirm.content or (
        b"but your account doesn" in confirm.content
    )
    response = client.post(
        url, {"action": "delete_selected", "_selected_action": selection, "post": "yes"}
    )

    assert response.status_code == 403
    assert memberships().filter(pk__in=selection).count() == len(selection)


@default_salon_model
def test_a_new_owner_in_the_salon_form_is_an_ownership_transfer(client, salon, owner, admin_member):
    url = reverse("admin:salon_invitations_salon_change", args=[salon.pk])

    response = client.post(url, {"name": "Renamed", "owner": admin_member.pk})

    assert response.status_code == 302
    salon.refresh_from_db()
    assert (salon.name, salon.owner_id) == ("Renamed", admin_member.pk)
    assert memberships().get(salon=salon, user=admin_member).role == "superuser"
    assert memberships().get(salon=salon, user=owner).role == "admin"


@default_salon_model
def test_a_non_member_cannot_be_made_owner_in_the_salon_form(client, salon, owner):
    newcomer = factories.make_user("newcomer")
    url = reverse("admin:salon_invitations_salon_change", args=[salon.pk])

    response = client.post(url, {"name": "Renamed", "owner": newcomer.pk}, follow=True)

    salon.refresh_from_db()
    assert (salon.name, salon.owner_id) == ("Salon A", owner.pk)
    assert memberships().get(salon=salon, user=owner).role == "superuser"
    assert not memberships().filter(salon=salon, user=newcomer).exists()
    shown = messages_of(response)
    assert any("must be a member" in message for message in shown), shown
    assert not any("successfully" in message for message in shown), shown


@default_salon_model
def test_deleting_a_salon_with_decided_invitations_in_the_admin(client, salon, owner):
    decided = factories.make_invitation(salon, role="mechanic")
    services.reject_invitation(decided, actor=owner)
    url = reverse("admin:salon_invitations_salon_delete", args=[salon.pk])

    response = client.post(url, {"post": "yes"})

    assert response.status_code == 302
    assert not Invitation.objects.filter(pk=decided.pk).exists()


def test_the_outbox_is_listed_read_only(client, admin_user):
    from salon_invitations import outbox

    delivery = outbox.record(
        {"subject": "S", "body": "secret-link", "html": "x", "to": ["a@example.com"]},
        event_kind="invitation.created",
    )
    client.force_login(admin_user)
    listing = client.get(reverse("admin:salon_invitations_delivery_changelist"))
    assert listing.status_code == 200
    assert b"a@example.com" in listing.content
    page = client.get(reverse("admin:salon_invitations_delivery_change", args=[delivery.pk]))
    assert page.status_code == 200
    assert b"secret-link" not in page.content
    assert b'name="_save"' not in page.content


# Invites ---------------------------------------------------------------------------------------


def test_adding_an_invitation_in_the_admin_invites_by_email(
    client, salon, settings, mailoutbox, django_capture_on_commit_callbacks
):
    settings.SALON_INVITATIONS = {
        "NOTIFICATION_BACKENDS": ["salon_invitations.notifications.EmailBackend"],
        "INVITE_URL": "https://app.example.com/invite/{token}",
    }
    url = reverse("admin:salon_invitations_invitation_add")
    assert client.get(url).status_code == 200

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            url, {"salon": salon.pk, "email": "Zed@Example.com", "role": "seller"}
        )

    assert response.status_code == 302, response.content
    invite = Invitation.objects.get(direction="invite")
    assert (invite.email, invite.role, invite.status) == ("zed@example.com", "seller", "pending")
    assert [mail.to for mail in mailoutbox] == [["zed@example.com"]]
    assert "https://app.example.com/invite/" in mailoutbox[0].body


@pytest.mark.parametrize(
    ("email", "role", "error"),
    [("nope", "seller", "valid e-mail"), ("owner@example.com", "mechanic", "member")],
)
def test_an_admin_invite_refused_by_the_service_shows_the_error(client, salon, email, role, error):
    response = client.post(
        reverse("admin:salon_invitations_invitation_add"),
        {"salon": salon.pk, "email": email, "role": role},
    )
    assert response.status_code == 200
    assert error in response.content.decode()
    assert not Invitation.objects.exists()


def test_resend_and_revoke_actions_go_through_the_services(
    client, salon, owner, settings, mailoutbox, django_capture_on_commit_callbacks
):
    settings.SALON_INVITATIONS = {
        "NOTIFICATION_BACKENDS": ["salon_invitations.notifications.EmailBackend"],
        "INVITE_URL": "https://app.example.com/invite/{token}",
    }
    invite = services.invite(salon=salon, email="zed@example.com", role="seller", invited_by=owner)
    Invitation.objects.filter(pk=invite.pk).update(sent_at=None)
    old_digest = Invitation.objects.get(pk=invite.pk).token_digest
    changelist = reverse("admin:salon_invitations_invitation_changelist")

    with django_capture_on_commit_callbacks(execute=True):
        client.post(changelist, {"action": "resend_selected", "_selected_action": [invite.pk]})
    assert Invitation.objects.get(pk=invite.pk).token_digest != old_digest
    assert len(mailoutbox) == 1

    client.post(changelist, {"action": "revoke_selected", "_selected_action": [invite.pk]})
    assert Invitation.objects.get(pk=invite.pk).status == "cancelled"


# Races with other requests -----------------------------------------------------------------------


@default_salon_model
def test_changing_a_salon_deleted_meanwhile_does_not_bring_it_back(client, salon):
    url = reverse("admin:salon_invitations_salon_change", args=[salon.pk])

    def delete():
        Invitation.objects.filter(salon_id=salon.pk).delete()
        memberships().filter(salon_id=salon.pk).delete()
        get_salon_model()._default_manager.filter(pk=salon.pk).delete()

    with factories.before_the_lock(delete):
        response = client.post(url, {"name": "Zombie", "owner": salon.owner_id}, follow=True)

    # (The stand-in deletion runs inside the admin's transaction, so it is rolled back with
    # the refused change: what matters is that nothing was saved and the admin says why.)
    assert not get_salon_model()._default_manager.filter(name="Zombie").exists()
    shown = messages_of(response)
    assert any("no longer exists" in message for message in shown), shown
    assert not any("successfully" in message for message in shown), shown


def test_deleting_an_invitation_decided_meanwhile_reports_only_the_refusal(client, salon, owner):
    invitation = factories.make_invitation(salon, role="seller")
    url = reverse("admin:salon_invitations_invitation_delete", args=[invitation.pk])

    with factories.before_the_lock(lambda: services.reject_invitation(invitation, actor=owner)):
        response = client.post(url, {"post": "yes"}, follow=True)

    assert Invitation.objects.filter(pk=invitation.pk).exists()
    shown = messages_of(response)
    assert any("already been decided" in message for message in shown), shown
    assert not any("successfully" in message for message in shown), shown


def test_a_user_admin_with_the_mixin_deletes_users_with_decided_invitations(rf, root, salon, owner):
    from django.contrib.admin import AdminSite
    from django.contrib.auth import get_user_model
    from django.contrib.auth.admin import UserAdmin

    from salon_invitations.admin import CascadeThroughServicesMixin

    leaving = factories.make_user("leaving")
    decided = factories.make_invitation(salon, leaving, role="seller")
    services.reject_invitation(decided, actor=owner)
    request = rf.post("/")
    request.user = root
    site = AdminSite()
    site.register(Invitation, type(admin.site._registry[Invitation]))

    class PlainUserAdmin(UserAdmin):
        pass

    class ServicesUserAdmin(CascadeThroughServicesMixin, UserAdmin):
        pass

    User = get_user_model()
    plain = PlainUserAdmin(User, site).get_deleted_objects([leaving], request)
    mixed = ServicesUserAdmin(User, site).get_deleted_objects([leaving], request)
    assert plain[2]  # the decided invitation's delete permission blocks the plain admin
    assert not mixed[2]


class NoTransfersPolicy(RolePolicy):
    def can_transfer(self, user, salon):
        return False


@default_salon_model
def test_the_admin_asks_the_policy_before_a_transfer(client, salon, owner, admin_member):
    url = reverse("admin:salon_invitations_salon_change", args=[salon.pk])
    with override_settings(
        SALON_INVITATIONS={"PERMISSION_POLICY": "tests.test_admin.NoTransfersPolicy"}
    ):
        response = client.post(url, {"name": "Salon A", "owner": admin_member.pk}, follow=True)
    salon.refresh_from_db()
    assert salon.owner_id == owner.pk
    assert any("may not hand" in message for message in messages_of(response))
