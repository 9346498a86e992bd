"""Invites sent by managers (SPEC §7): each rule has a test that fails without it.

The raw token is read from the e-mail, the one place it may appear.
"""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import timedelta
from typing import Any

import pytest
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from salon_invitations import outbox, services, tokens
from salon_invitations.conf import DEFAULTS
from salon_invitations.exceptions import Conflict, Gone, InvalidInvitation
from salon_invitations.models import Delivery, Invitation, get_membership_model
from salon_invitations.policies import get_policy
from salon_invitations.signals import SIGNALS
from tests import factories

URL = "/api/invitation_to_auto_salon"
EMAIL = "salon_invitations.notifications.EmailBackend"
INVITE_URL = "https://app.example.com/invite/{token}"
LINK = re.compile(r"https://app\.example\.com/invite/([A-Za-z0-9_-]+)")


@pytest.fixture(autouse=True)
def invite_settings(settings):
    settings.SALON_INVITATIONS = {
        "NOTIFICATION_BACKENDS": [EMAIL, "salon_invitations.notifications.ChannelsBackend"],
        "INVITE_URL": INVITE_URL,
    }
    cache.clear()
    return settings


@pytest.fixture
def commit(django_capture_on_commit_callbacks):
    """Run on-commit callbacks (events, e-mail) of what the block does."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def token_in(mail: Any) -> str:
    (token,) = set(LINK.findall(mail.body))
    assert LINK.findall(mail.alternatives[0][0]) == [token]
    return token


def invite_as(api: Any, user: Any, commit: Any, **body: Any) -> Any:
    with commit():
        return api(user).post(f"{URL}/invite", body, format="json")


def members(salon: Any) -> Any:
    return get_membership_model()._default_manager.filter(salon=salon)


@pytest.fixture
def sent(api, salon, owner, commit, mailoutbox):
    """A pending seller invite to new@example.com by the owner: (invitation, token)."""
    response = invite_as(api, owner, commit, salon=salon.pk, role="seller", email="New@Example.com")
    assert response.status_code == 201, response.content
    (mail,) = mailoutbox
    mailoutbox.clear()
    return Invitation.objects.get(pk=response.json()["id"]), token_in(mail)


# Creating invites --------------------------------------------------------------------------------


def test_an_invite_is_created_and_emailed_with_the_accept_link(
    api, salon, owner, commit, mailoutbox
):
    response = invite_as(
        api, owner, commit, salon=salon.pk, role="admin", email=" Ann@Example.COM ", message="Hi"
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["direction"], body["email"], body["role"], body["requested_role"]) == (
        "invite",
        "ann@example.com",
        "admin",
        "admin",
    )
    assert (body["user"], body["invited_by"], body["status"]) == (None, owner.pk, "pending")
    assert body["expires_at"] is not None
    (mail,) = mailoutbox
    assert mail.to == ["ann@example.com"]
    assert mail.subject == "You are invited to join Salon A as Admin"
    token = token_in(mail)
    assert len(token) >= 43  # 32 random bytes, URL-safe
    stored = Invitation.objects.get(pk=body["id"])
    assert stored.token_digest == hashlib.sha256(token.encode()).hexdigest()
    assert token not in str(body) and token not in repr(stored)


@pytest.mark.parametrize(
    ("inviter", "role", "status"),
    [
        ("owner", "admin", 201),
        ("owner", "seller", 201),
        ("admin", "seller", 201),
        ("admin", "mechanic", 201),
        ("admin", "admin", 403),  # not ranked strictly below the admin's own role
        ("seller", "mechanic", 403),
        ("stranger", "seller", 403),
        ("staff", "admin", 201),
        ("other_owner", "seller", 403),  # the owner of another salon
    ],
)
def test_the_rank_ceiling_decides_who_invites_whom(
    api,
    salon,
    owner,
    admin_member,
    seller_member,
    staff,
    other_salon,
    commit,
    inviter,
    role,
    status,
):
    users = {
        "owner": owner,
        "admin": admin_member,
        "seller": seller_member,
        "stranger": factories.make_user("stranger"),
        "staff": staff,
        "other_owner": other_salon.owner,
    }
    if status == 201:
        members(salon).filter(role=role).delete()  # free the role

    response = invite_as(api, users[inviter], commit, salon=salon.pk, role=role, email="x@y.com")

    assert response.status_code == status, response.content
    assert Invitation.objects.filter(direction="invite").count() == (1 if status == 201 else 0)


def test_policy_can_invite_is_the_one_place(salon, owner, admin_member, seller_member):
    policy = get_policy()
    assert policy.can_invite(owner, salon, "admin")
    assert not policy.can_invite(admin_member, salon, "admin")
    assert policy.can_invite(admin_member, salon, "seller")
    assert not policy.can_invite(seller_member, salon, "mechanic")


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"role": "seller", "email": "not-an-address"}, "email", "invalid_email"),
        ({"role": "seller", "email": "a@b"}, "email", "invalid_email"),
        ({"role": "superuser", "email": "a@example.com"}, "role", None),
        ({"role": "chef", "email": "a@example.com"}, "role", None),
        ({"role": "seller", "email": 42}, "email", None),
        ({"role": "seller", "email": ["a@example.com"]}, "email", None),
        ({"role": "seller"}, "email", None),
        ({"role": "seller", "email": "a@example.com", "emails": ["b@example.com"]}, "email", None),
        ({"role": "seller", "emails": []}, "emails", None),
        ({"role": "seller", "emails": "a@example.com"}, "emails", None),
        ({"role": "seller", "email": "a@example.com", "message": "x" * 1001}, "message", None),
        ({"role": "seller", "email": "a" * 250 + "@example.com"}, "email", None),
        ({"salon": 999_999, "role": "seller", "email": "a@example.com"}, "salon", None),
        ({"salon": "x", "role": "seller", "email": "a@example.com"}, "salon", None),
    ],
)
def test_invalid_input_is_a_400_naming_the_field(api, salon, owner, commit, body, field, code):
    body = {"salon": salon.pk, **body}
    response = invite_as(api, owner, commit, **body)

    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    assert not Invitation.objects.exists()


def test_a_taken_role_is_refused(api, salon, owner, seller_member, commit):
    response = invite_as(api, owner, commit, salon=salon.pk, role="seller", email="a@example.com")
    assert response.status_code == 400
    assert "role" in response.json()


def test_the_address_of_a_member_is_refused(api, salon, owner, seller_member, commit):
    response = invite_as(
        api, owner, commit, salon=salon.pk, role="mechanic", email="SALON_SELLER@example.com"
    )
    assert response.status_code == 400
    assert "email" in response.json()


def test_a_second_pending_invite_to_the_same_address_is_refused_case_insensitively(
    api, salon, owner, sent, commit
):
    response = invite_as(
        api, owner, commit, salon=salon.pk, role="mechanic", email="NEW@example.com"
    )
    assert response.status_code == 400
    assert "email" in response.json()
    with pytest.raises(InvalidInvitation) as refused:
        services.invite(salon=salon, email="new@EXAMPLE.com", role="mechanic", invited_by=owner)
    assert refused.value.code == "already_invited"


def test_the_database_refuses_a_duplicate_pending_invite_in_other_case(salon, sent):
    if not connection.features.supports_partial_indexes:
        pytest.skip("the database cannot enforce conditional constraints (MySQL, MariaDB)")
    with pytest.raises(IntegrityError), transaction.atomic():
        Invitation.objects.create(
            direction="invite", email="NEW@EXAMPLE.COM", salon=salon, role="mechanic"
        )


def test_a_person_with_a_pending_request_is_not_invited(api, salon, owner, commit):
    person = factories.make_user("asker", email="Asker@Example.com")
    factories.make_invitation(salon, person, role="mechanic")

    response = invite_as(
        api, owner, commit, salon=salon.pk, role="seller", email="asker@example.com"
    )

    assert response.status_code == 400
    assert "email" in response.json()
    with pytest.raises(InvalidInvitation) as refused:
        services.invite(salon=salon, email="asker@example.com", role="seller", invited_by=owner)
    assert refused.value.code == "pending_request"


@pytest.mark.parametrize("how", ["expired", "declined", "revoked"])
def test_a_used_invite_never_blocks_a_new_one(api, salon, owner, sent, commit, how):
    invitation, token = sent
    if how == "expired":
        services.expire_invitations(now=timezone.now() + timedelta(days=30))
    elif how == "declined":
        services.decline_invite(services.find_invite(token))
    else:
        services.cancel_invitation(invitation, actor=owner)

    response = invite_as(api, owner, commit, salon=salon.pk, role="seller", email="new@example.com")
    assert response.status_code == 201, response.content


def test_a_salon_the_caller_may_not_see_is_404(api, salon, owner, commit, settings):
    settings.SALON_INVITATIONS = {
        **settings.SALON_INVITATIONS,
        "PERMISSION_POLICY": "tests.test_invites.NoSalonsPolicy",
    }
    response = invite_as(api, owner, commit, salon=salon.pk, role="seller", email="a@example.com")
    assert response.status_code == 404


from salon_invitations.policies import RolePolicy  # noqa: E402


class NoSalonsPolicy(RolePolicy):
    def visible_salons(self, user, queryset):
        return queryset.none()


# Bulk ------------------------------------------------------------------------------------------


def test_a_bulk_invite_creates_the_good_and_reports_the_bad(
    api, salon, owner, commit, mailoutbox, settings
):
    # Sellers without a limit, so that one salon can take a hundred of them.
    roles = {name: {**spec, "limit": None} for name, spec in DEFAULTS["ROLES"].items()}
    settings.SALON_INVITATIONS = {**settings.SALON_INVITATIONS, "ROLES": roles}
    good = [f"person{n}@example.com" for n in range(96)]
    bad = ["nope", "owner@example.com", "person1@EXAMPLE.com", "x@"]

    response = invite_as(api, owner, commit, salon=salon.pk, role="seller", emails=good + bad)

    assert response.status_code == 200, response.content
    body = response.json()
    assert sorted(i["email"] for i in body["created"]) == sorted(good)
    assert [(f["email"], f["code"]) for f in body["failed"]] == [
        ("nope", "invalid_email"),
        ("owner@example.com", "already_member"),
        ("person1@EXAMPLE.com", "already_invited"),
        ("x@", "invalid_email"),
    ]
    assert all(f["detail"] for f in body["failed"])
    assert Invitation.objects.filter(direction="invite").count() == 96
    assert len(mailoutbox) == 96


def test_a_bulk_invite_of_more_than_100_is_refused(api, salon, owner, commit):
    emails = [f"p{n}@example.com" for n in range(101)]
    response = invite_as(api, owner, commit, salon=salon.pk, role="seller", emails=emails)
    assert response.status_code == 400
    assert "emails" in response.json()
    assert not Invitation.objects.exists()


# Looking at and accepting an invite --------------------------------------------------------------


def test_get_on_the_link_shows_the_invite_and_changes_nothing(api, salon, owner, sent):
    invitation, token = sent
    owner.first_name, owner.last_name = "Olga", "Owner"
    owner.save()

    response = api().get(f"{URL}/invite/{token}")

    assert response.status_code == 200
    assert response.json() == {
        "salon": {"id": salon.pk, "name": "Salon A"},
        "role": "seller",
        "role_label": "Seller",
        "message": "",
        "email": "new@example.com",
        "status": "pending",
        "expires_at": response.json()["expires_at"],
        "invited_by_name": "Olga Owner",
    }
    invitation.refresh_from_db()
    assert invitation.status == "pending" and invitation.user_id is None
    assert not members(salon).filter(role="seller").exists()


@pytest.mark.parametrize(
    "token", ["x" * 43, "short", "A" * 300, "bad$chars-but-long-enough-xxxxxxxx"]
)
def test_unknown_tokens_are_404(db, api, token):
    assert api().get(f"{URL}/invite/{token}").status_code == 404
    assert api().post(f"{URL}/invite/{token}/decline").status_code == 404


def test_the_invitee_accepts_with_a_post(api, salon, owner, sent, commit):
    _invitation, token = sent
    invitee = factories.make_user("newbie", email="NEW@example.com")

    with commit():
        response = api(invitee).post(f"{URL}/invite/{token}/accept")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["user"], body["decided_by"]) == (
        "approved",
        invitee.pk,
        invitee.pk,
    )
    assert members(salon).get(user=invitee).role == "seller"
    # Accepting twice grants once: the link is used up.
    again = api(invitee).post(f"{URL}/invite/{token}/accept")
    assert again.status_code == 404
    assert members(salon).filter(user=invitee).count() == 1
    assert api().get(f"{URL}/invite/{token}").status_code == 404


def test_another_account_cannot_accept_with_the_link(api, salon, sent):
    invitation, token = sent
    intruder = factories.make_user("intruder", email="intruder@example.com")

    response = api(intruder).post(f"{URL}/invite/{token}/accept")

    assert response.status_code == 403
    assert response.json()["code"] == "email_mismatch"
    invitation.refresh_from_db()
    assert (invitation.status, invitation.user_id) == ("pending", None)
    assert not members(salon).filter(user=intruder).exists()


def test_accepting_needs_an_account(api, sent):
    invitation, token = sent
    assert api().post(f"{URL}/invite/{token}/accept").status_code in (401, 403)
    invitation.refresh_from_db()
    assert invitation.status == "pending"


def test_an_inactive_account_cannot_accept(api, sent):
    invitation, _token = sent
    invitee = factories.make_user("newbie", email="new@example.com", is_active=False)
    assert not get_policy().can_accept(invitee, invitation)


def test_a_role_filled_meanwhile_rejects_the_invite_with_409(api, salon, owner, sent, commit):
    invitation, token = sent
    invitee = factories.make_user("newbie", email="new@example.com")
    factories.add_member(salon, factories.make_user("quick"), role="seller")

    response = api(invitee).post(f"{URL}/invite/{token}/accept")

    assert response.status_code == 409
    assert response.json()["code"] == "role_taken"
    invitation.refresh_from_db()
    assert invitation.status == "rejected"


def test_an_existing_member_accepting_gets_409(api, salon, sent):
    _invitation, token = sent
    invitee = factories.make_user("newbie", email="new@example.com")
    factories.add_member(salon, invitee, role="mechanic")

    response = api(invitee).post(f"{URL}/invite/{token}/accept")

    assert response.status_code == 409
    assert response.json()["code"] == "already_member"


def test_an_expired_link_is_404_and_the_job_expires_invites(api, salon, sent, settings):
    invitation, token = sent
    Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() - timedelta(1))
    invitee = factories.make_user("newbie", email="new@example.com")

    assert api(invitee).post(f"{URL}/invite/{token}/accept").status_code == 404
    assert services.expire_invitations() == 1
    invitation.refresh_from_db()
    assert (invitation.status, invitation.token_digest) == ("expired", "")


def test_invite_ttl_sets_the_expiry(salon, owner, settings):
    settings.SALON_INVITATIONS = {**settings.SALON_INVITATIONS, "INVITE_TTL": timedelta(days=2)}
    before = timezone.now()
    invitation = services.invite(
        salon=salon, email="a@example.com", role="seller", invited_by=owner
    )
    assert before + timedelta(days=2) <= invitation.expires_at <= timezone.now() + timedelta(days=2)


def test_decline_by_anyone_holding_the_token(api, salon, sent, commit):
    invitation, token = sent
    with commit():
        response = api().post(f"{URL}/invite/{token}/decline")
    assert response.status_code == 200
    assert response.json() == {"status": "rejected"}
    invitation.refresh_from_db()
    assert invitation.status == "rejected"
    assert api().post(f"{URL}/invite/{token}/decline").status_code == 404


# Managing invites ---------------------------------------------------------------------------


def test_a_manager_revokes_an_invite_by_cancelling_it(api, salon, admin_member, sent, commit):
    invitation, token = sent
    response = api(admin_member).patch(f"{URL}/{invitation.pk}/cancelled")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "cancelled"
    assert api().get(f"{URL}/invite/{token}").status_code == 404


def test_a_seller_cannot_revoke(api, salon, owner, seller_member):
    invitation = services.invite(
        salon=salon, email="m@example.com", role="mechanic", invited_by=owner
    )
    assert api(seller_member).patch(f"{URL}/{invitation.pk}/cancelled").status_code == 404
    invitation.refresh_from_db()
    assert invitation.status == "pending"


@pytest.mark.parametrize("action", ["approved", "rejected"])
def test_an_invite_is_not_approved_or_rejected_by_a_manager(api, owner, sent, action):
    invitation, _token = sent
    response = api(owner).patch(f"{URL}/{invitation.pk}/{action}")
    assert response.status_code == 409
    assert response.json()["code"] == "not_a_request"


def test_resend_makes_a_new_link_and_the_old_one_stops_working(
    api, salon, owner, sent, commit, mailoutbox, settings
):
    invitation, old = sent
    Invitation.objects.filter(pk=invitation.pk).update(sent_at=timezone.now() - timedelta(hours=1))

    with commit():
        response = api(owner).post(f"{URL}/{invitation.pk}/resend")

    assert response.status_code == 200, response.content
    (mail,) = mailoutbox
    new = token_in(mail)
    assert new != old
    assert api().get(f"{URL}/invite/{old}").status_code == 404
    assert api().get(f"{URL}/invite/{new}").status_code == 200
    refreshed = Invitation.objects.get(pk=invitation.pk)
    assert refreshed.expires_at > invitation.expires_at


def test_resend_within_the_cooldown_is_429(api, owner, sent, commit, mailoutbox):
    invitation, _token = sent
    response = api(owner).post(f"{URL}/{invitation.pk}/resend")
    assert response.status_code == 429
    assert response.json()["code"] == "resend_too_soon"
    assert int(response["Retry-After"]) >= 1
    assert mailoutbox == []


def test_only_managers_resend(api, salon, owner, seller_member):
    invitation = services.invite(
        salon=salon, email="m@example.com", role="mechanic", invited_by=owner
    )
    assert api(seller_member).post(f"{URL}/{invitation.pk}/resend").status_code == 404


def test_a_request_is_not_resent(api, salon, owner):
    request = factories.make_invitation(salon, role="mechanic")
    response = api(owner).post(f"{URL}/{request.pk}/resend")
    assert response.status_code == 409


def test_invite_and_resend_are_throttled_by_scope(api, salon, owner, sent, settings, commit):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"salon_invitations.invite": "1/minute"},
    }
    first = invite_as(api, owner, commit, salon=salon.pk, role="mechanic", email="m@example.com")
    second = invite_as(api, owner, commit, salon=salon.pk, role="admin", email="a@example.com")
    assert (first.status_code, second.status_code) == (201, 429)


# Real time, signals and secrecy -----------------------------------------------------------------


def test_invite_events_reach_managers_then_the_invitee(salon, owner, admin_member, sent):
    invitation, _token = sent
    policy = get_policy()
    assert policy.recipients(salon.pk, invitation.user_id) == {owner.pk, admin_member.pk}
    invitee = factories.make_user("newbie", email="new@example.com")
    accepted = services.accept_invite(invitation, user=invitee)
    assert policy.recipients(salon.pk, accepted.user_id) == {owner.pk, admin_member.pk, invitee.pk}


def test_the_raw_token_is_in_no_frame_signal_log_or_stored_row(
    api, salon, owner, commit, mailoutbox, caplog, settings
):
    settings.SALON_INVITATIONS = {
        **settings.SALON_INVITATIONS,
        "NOTIFICATION_BACKENDS": [
            EMAIL,
            "salon_invitations.notifications.ChannelsBackend",
            "salon_invitations.notifications.LoggingBackend",
            "tests.test_invites.FrameRecorder",
        ],
    }
    FrameRecorder.frames = []
    seen: list[str] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        seen.append(repr(kwargs) + repr(vars(kwargs.get("invitation") or kwargs["membership"])))

    for signal in SIGNALS.values():
        signal.connect(receiver, dispatch_uid="test-invites-secrecy")
    try:
        with caplog.at_level(logging.DEBUG):
            response = invite_as(
                api, owner, commit, salon=salon.pk, role="seller", email="new@example.com"
            )
            first = token_in(mailoutbox[0])
            invitation = Invitation.objects.get(pk=response.json()["id"])
            Invitation.objects.filter(pk=invitation.pk).update(sent_at=None)
            with commit():
                api(owner).post(f"{URL}/{invitation.pk}/resend")
            token = token_in(mailoutbox[1])
            invitee = factories.make_user("newbie", email="new@example.com")
            with commit():
                accepted = api(invitee).post(f"{URL}/invite/{token}/accept")
    finally:
        for signal in SIGNALS.values():
            signal.disconnect(dispatch_uid="test-invites-secrecy")

    assert accepted.status_code == 200
    assert FrameRecorder.frames and seen
    everything = [
        *map(str, FrameRecorder.frames),
        *seen,
        *(record.getMessage() for record in caplog.records),
        str(response.content),
        str(accepted.content),
        *(str(d.payload) for d in Delivery.objects.all()),
        *(str(row) for row in Invitation.objects.values()),
    ]
    assert not [line for line in everything if token in line or first in line]


from salon_invitations.notifications import BaseBackend  # noqa: E402


class FrameRecorder(BaseBackend):
    frames: list[Any] = []

    def send(self, event: Any) -> None:
        FrameRecorder.frames.append(event.frame)


# E-mail delivery ----------------------------------------------------------------------------


def test_the_token_is_sealed_in_the_outbox_until_sent(salon, owner, commit, settings, mailoutbox):
    from tests.test_notifications import DisconnectedEmailBackend, use_email_backend

    use_email_backend(settings, "tests.test_notifications.DisconnectedEmailBackend")
    DisconnectedEmailBackend.attempts = 0
    with commit():
        services.invite(salon=salon, email="a@example.com", role="seller", invited_by=owner)

    (delivery,) = Delivery.objects.all()
    assert (delivery.status, delivery.attempts) == ("pending", 1)  # recorded, retried later
    assert "seal" in delivery.payload
    assert outbox.TOKEN_PLACEHOLDER in delivery.payload["body"]

    use_email_backend(settings, "django.core.mail.backends.locmem.EmailBackend")
    assert outbox.deliver_due(now=timezone.now() + timedelta(hours=1)) == (1, 0)
    (mail,) = mailoutbox
    token = token_in(mail)
    invitation = Invitation.objects.get()
    assert tokens.matches(token, invitation.token_digest)
    delivery.refresh_from_db()
    assert delivery.status == "sent" and "seal" not in delivery.payload


def test_the_celery_path_sends_the_invite(salon, owner, commit, settings, mailoutbox, eager_celery):
    settings.SALON_INVITATIONS = {**settings.SALON_INVITATIONS, "EMAIL_DELIVERY": "celery"}
    with commit():
        services.invite(salon=salon, email="a@example.com", role="seller", invited_by=owner)
    (mail,) = mailoutbox
    assert services.find_invite(token_in(mail)).email == "a@example.com"


def test_the_invite_email_is_translated(salon, owner, commit, settings, mailoutbox):
    settings.LANGUAGE_CODE = "de"
    with commit():
        services.invite(salon=salon, email="a@example.com", role="seller", invited_by=owner)
    (mail,) = mailoutbox
    assert "Salon A" in mail.subject
    assert "invited" not in mail.subject


def test_tokens_seal_and_unseal():
    token, digest = tokens.new_token()
    sealed = tokens.seal(token)
    assert token not in sealed
    assert tokens.unseal(sealed) == token
    assert tokens.seal(token) != sealed  # a salt of its own each time
    assert repr(token) == "<Token ***>"
    assert tokens.matches(token, digest) and not tokens.matches(token + "x", digest)
    with pytest.raises(ValueError):
        tokens.unseal("garbage")


# Services directly --------------------------------------------------------------------------------


def test_find_invite_refuses_requests_and_bad_tokens(salon, requester):
    factories.make_invitation(salon, requester)
    for token in [None, 42, "", "a" * 19]:
        with pytest.raises(Gone):
            services.find_invite(token)


def test_accept_invite_under_the_lock_refuses_a_revoked_invite(salon, owner, sent):
    invitation, token = sent
    found = services.find_invite(token)
    services.cancel_invitation(invitation, actor=owner)
    invitee = factories.make_user("newbie", email="new@example.com")
    with pytest.raises(Gone):
        services.accept_invite(found, user=invitee)
    assert not members(salon).filter(user=invitee).exists()


def test_approve_refuses_an_invite(salon, owner, sent):
    invitation, _token = sent
    with pytest.raises(Conflict) as refused:
        services.approve_invitation(invitation, actor=owner)
    assert refused.value.code == "not_a_request"


def test_a_token_sealed_under_a_rotated_key_is_refused_or_read_with_the_fallback(settings):
    token, _digest = tokens.new_token()
    sealed = tokens.seal(token)
    old_key = settings.SECRET_KEY
    settings.SECRET_KEY = "another-secret-key-after-rotation"
    with pytest.raises(ValueError, match="no longer configured"):
        tokens.unseal(sealed)
    settings.SECRET_KEY_FALLBACKS = [old_key]
    assert tokens.unseal(sealed) == token
    tampered = sealed[:-3] + ("A" if sealed[-3] != "A" else "B") + sealed[-2:]
    with pytest.raises(ValueError):
        tokens.unseal(tampered)


def test_an_overdue_invite_the_job_has_not_reached_blocks_nothing(api, salon, owner, sent, commit):
    invitation, _token = sent
    Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() - timedelta(1))

    response = invite_as(api, owner, commit, salon=salon.pk, role="seller", email="new@example.com")

    assert response.status_code == 201, response.content
    invitation.refresh_from_db()
    assert invitation.status == "expired"


def test_an_overdue_request_the_job_has_not_reached_blocks_nothing(salon, requester):
    old = factories.make_invitation(salon, requester, role="seller")
    Invitation.objects.filter(pk=old.pk).update(expires_at=timezone.now() - timedelta(1))

    new = services.create_invitation(user=requester, salon=salon, role="mechanic")

    old.refresh_from_db()
    assert (old.status, new.status) == ("expired", "pending")


@pytest.mark.parametrize(
    "address",
    ["zw@example.com\u200b", "z\u200bw@example.com", "zw@exa\u00admple.com", "zw @example.com"],
    ids=["zero-width-space", "zero-width-inside", "soft-hyphen", "space"],
)
def test_invisible_characters_make_an_address_invalid(salon, owner, address):
    with pytest.raises(InvalidInvitation) as refused:
        services.invite(salon=salon, email=address, role="seller", invited_by=owner)
    assert (refused.value.code, refused.value.field) == ("invalid_email", "email")


def test_addresses_are_compared_in_nfkc_form(salon, owner):
    services.invite(salon=salon, email="\u017feller@example.com", role="seller", invited_by=owner)
    with pytest.raises(InvalidInvitation) as refused:
        services.invite(salon=salon, email="SELLER@example.com", role="mechanic", invited_by=owner)
    assert refused.value.code == "already_invited"


def test_blank_and_odd_entries_fail_alone_in_a_batch(api, salon, owner, commit):
    emails = ["dup@example.com", "", "   ", None, "a" * 300 + "@example.com", "ann@example.com"]
    response = invite_as(api, owner, commit, salon=salon.pk, role="seller", emails=emails)
    assert response.status_code == 200, response.content
    body = response.json()
    assert sorted(i["email"] for i in body["created"]) == ["ann@example.com", "dup@example.com"]
    assert [f["code"] for f in body["failed"]] == ["invalid_email"] * 4
