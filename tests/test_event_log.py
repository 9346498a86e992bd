"""The event log (SPEC §9.1): every announcing service writes ``SalonEvent`` rows in the
transaction that makes the change.

Every test commits for real (``transaction=True``), so what is checked inside the ``atomic``
block is what the transaction holds before its commit, and what is checked after it is what
the on-commit hooks did, as in production.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from salon_invitations import services, tokens
from salon_invitations.models import Invitation, SalonEvent, get_membership_model, get_salon_model
from salon_invitations.serializers import InvitationSerializer, MembershipSerializer
from tests import factories
from tests.eventlog_support import (
    RECORDING,
    last_event_id,
    log,
    recorded_fixture,  # noqa: F401 - a fixture
)
from tests.test_consumer import as_json

pytestmark = pytest.mark.django_db(transaction=True)

INVITE_URL = "https://app.example.com/invite/{token}"


@pytest.fixture(autouse=True)
def recording(settings, recorded):
    settings.SALON_INVITATIONS = {"NOTIFICATION_BACKENDS": [RECORDING], "INVITE_URL": INVITE_URL}
    return recorded


def memberships() -> Any:
    return get_membership_model()._default_manager


@dataclass
class Expected:
    """One row a change must log: its kind, salon, subject and actor, and facts about data."""

    kind: str
    salon: Any
    user: Any
    actor: Any
    data: dict[str, Any] = field(default_factory=dict)  # "<model>.<field>" -> value


@dataclass
class Change:
    """A service call (``run``) made after ``prepare``; ``expected`` reads the prepared state."""

    run: Callable[[dict[str, Any]], Any]
    expected: Callable[[dict[str, Any]], list[Expected]]
    prepare: Callable[[dict[str, Any]], None] = lambda state: None
    #: whether the row keeps a sealed invite token until its backends ran
    sealed: bool = False


def _pending(state: dict[str, Any], **fields: Any) -> None:
    state["invitation"] = services.create_invitation(
        user=state["requester"], salon=state["salon"], role="mechanic", message="Hi"
    )
    if fields:
        Invitation.objects.filter(pk=state["invitation"].pk).update(**fields)


def _invite(state: dict[str, Any]) -> None:
    state["invitation"] = services.invite(
        salon=state["salon"], email="new@example.com", role="seller", invited_by=state["owner"]
    )


def _invite_sent_long_ago(state: dict[str, Any]) -> None:
    _invite(state)
    Invitation.objects.filter(pk=state["invitation"].pk).update(
        sent_at=timezone.now() - timedelta(hours=1)
    )


def _invitee(state: dict[str, Any]) -> None:
    _invite(state)
    state["invitee"] = factories.make_user("invitee", email="new@example.com")


def _seller(state: dict[str, Any]) -> None:
    state["member"] = factories.add_member(state["salon"], factories.make_user("seller"))


def _ids(state: dict[str, Any], *names: str) -> tuple[Any, ...]:
    return tuple(getattr(state.get(name), "pk", None) for name in names)


def _new_salon(state: dict[str, Any]) -> Any:
    state["new_salon"] = services.create_salon(owner=state["requester"], name="New Motors")
    return state["new_salon"]


def _delete_salon(state: dict[str, Any]) -> None:
    services.delete_salon(state["salon"], actor=state["owner"])


CHANGES: dict[str, Change] = {
    "salon create": Change(
        run=_new_salon,
        expected=lambda s: [
            Expected(
                "membership.created",
                s["new_salon"].pk,
                s["requester"].pk,
                s["requester"].pk,
                {"membership.role": "superuser"},
            )
        ],
    ),
    "create": Change(
        run=lambda s: s.update(
            invitation=services.create_invitation(
                user=s["requester"], salon=s["salon"], role="mechanic", message="Hi"
            )
        ),
        expected=lambda s: [
            Expected(
                "invitation.created",
                s["salon"].pk,
                s["requester"].pk,
                s["requester"].pk,
                {"invitation.status": "pending", "invitation.message": "Hi"},
            )
        ],
    ),
    "approve": Change(
        prepare=_pending,
        run=lambda s: services.approve_invitation(s["invitation"], actor=s["owner"]),
        expected=lambda s: [
            Expected(
                "invitation.approved",
                s["salon"].pk,
                s["requester"].pk,
                s["owner"].pk,
                {"invitation.status": "approved"},
            ),
            Expected(
                "membership.created",
                s["salon"].pk,
                s["requester"].pk,
                s["owner"].pk,
                {"membership.role": "mechanic"},
            ),
        ],
    ),
    "reject": Change(
        prepare=_pending,
        run=lambda s: services.reject_invitation(s["invitation"], actor=s["owner"], reason="No"),
        expected=lambda s: [
            Expected(
                "invitation.rejected",
                s["salon"].pk,
                s["requester"].pk,
                s["owner"].pk,
                {"invitation.status": "rejected", "invitation.reason": "No"},
            )
        ],
    ),
    "cancel": Change(
        prepare=_pending,
        run=lambda s: services.cancel_invitation(s["invitation"], actor=s["requester"]),
        expected=lambda s: [
            Expected(
                "invitation.cancelled",
                s["salon"].pk,
                s["requester"].pk,
                s["requester"].pk,
                {"invitation.status": "cancelled"},
            )
        ],
    ),
    "delete": Change(
        prepare=_pending,
        run=lambda s: services.delete_invitation(s["invitation"], actor=s["owner"]),
        expected=lambda s: [
            Expected(
                "invitation.deleted",
                s["salon"].pk,
                s["requester"].pk,
                s["owner"].pk,
                {"invitation.id": s["invitation"].pk, "invitation.status": "pending"},
            )
        ],
    ),
    "expire": Change(
        prepare=lambda s: _pending(s, expires_at=timezone.now() - timedelta(minutes=1)),
        run=lambda s: services.expire_invitations(),
        expected=lambda s: [
            Expected(
                "invitation.expired",
                s["salon"].pk,
                s["requester"].pk,
                None,
                {"invitation.status": "expired"},
            )
        ],
    ),
    "invite": Change(
        run=_invite,
        sealed=True,
        expected=lambda s: [
            Expected(
                "invitation.created",
                s["salon"].pk,
                None,
                s["owner"].pk,
                {"invitation.email": "new@example.com", "invitation.direction": "invite"},
            )
        ],
    ),
    "accept": Change(
        prepare=_invitee,
        run=lambda s: services.accept_invite(s["invitation"], user=s["invitee"]),
        expected=lambda s: [
            Expected(
                "invitation.approved",
                s["salon"].pk,
                s["invitee"].pk,
                s["invitee"].pk,
                {"invitation.status": "approved"},
            ),
            Expected(
                "membership.created",
                s["salon"].pk,
                s["invitee"].pk,
                s["invitee"].pk,
                {"membership.role": "seller"},
            ),
        ],
    ),
    "decline": Change(
        prepare=_invite,
        run=lambda s: services.decline_invite(s["invitation"]),
        expected=lambda s: [
            Expected(
                "invitation.rejected",
                s["salon"].pk,
                None,
                None,
                {"invitation.status": "rejected"},
            )
        ],
    ),
    "resend": Change(
        prepare=_invite_sent_long_ago,
        run=lambda s: services.resend_invite(s["invitation"], actor=s["owner"]),
        sealed=True,
        expected=lambda s: [
            Expected(
                "invitation.resent",
                s["salon"].pk,
                None,
                s["owner"].pk,
                {"invitation.status": "pending"},
            )
        ],
    ),
    "change_role": Change(
        prepare=_seller,
        run=lambda s: services.change_role(s["member"], role="mechanic", actor=s["owner"]),
        expected=lambda s: [
            Expected(
                "membership.updated",
                s["salon"].pk,
                s["member"].user_id,
                s["owner"].pk,
                {"membership.role": "mechanic", "previous_role": "seller"},
            )
        ],
    ),
    "transfer": Change(
        prepare=_seller,
        run=lambda s: services.transfer_ownership(
            s["salon"], new_owner=s["member"].user, actor=s["owner"]
        ),
        expected=lambda s: [
            Expected(
                "membership.updated",
                s["salon"].pk,
                s["member"].user_id,
                s["owner"].pk,
                {"membership.role": "superuser", "previous_role": "seller"},
            ),
            Expected(
                "membership.updated",
                s["salon"].pk,
                s["owner"].pk,
                s["owner"].pk,
                {"membership.role": "admin", "previous_role": "superuser"},
            ),
        ],
    ),
    "remove_membership": Change(
        prepare=_seller,
        run=lambda s: services.remove_membership(s["member"], actor=s["owner"]),
        expected=lambda s: [
            Expected(
                "membership.deleted",
                s["salon"].pk,
                s["member"].user_id,
                s["owner"].pk,
                {"membership.id": s["member"].pk, "membership.role": "seller"},
            )
        ],
    ),
    "salon delete": Change(
        prepare=lambda s: (_pending(s), _seller(s)),
        run=_delete_salon,
        expected=lambda s: [
            Expected(
                "invitation.deleted",
                s["salon"].pk,
                s["requester"].pk,
                s["owner"].pk,
                {"invitation.id": s["invitation"].pk},
            ),
            Expected(
                "membership.deleted",
                s["salon"].pk,
                s["owner"].pk,
                s["owner"].pk,
                {"membership.role": "superuser"},
            ),
            Expected(
                "membership.deleted",
                s["salon"].pk,
                s["member"].user_id,
                s["owner"].pk,
                {"membership.id": s["member"].pk},
            ),
        ],
    ),
}


@pytest.fixture
def state(salon, owner, requester) -> dict[str, Any]:
    return {"salon": salon, "owner": owner, "requester": requester}


def _dig(data: dict[str, Any], path: str) -> Any:
    value: Any = data
    for part in path.split("."):
        value = value[part]
    return value


def _representation(kind: str, pk: Any) -> dict[str, Any] | None:
    """The object as the REST API shows it now (``None`` when it is gone)."""
    if kind.startswith("invitation."):
        invitation = Invitation.objects.filter(pk=pk).first()
        return as_json(InvitationSerializer(invitation).data) if invitation else None
    membership = memberships().filter(pk=pk).first()
    return as_json(MembershipSerializer(membership).data) if membership else None


@pytest.mark.parametrize("name", list(CHANGES))
def test_a_change_logs_its_events_in_its_own_transaction(name, state, recording):
    change = CHANGES[name]
    change.prepare(state)
    recording.clear()
    before = last_event_id()

    with transaction.atomic():
        change.run(state)
        # Written in the transaction, before its commit; nothing delivered yet.
        rows = log(id__gt=before)
        assert recording == []
        expected = change.expected(state)
        assert [(row.kind, row.salon_id, row.user_id, row.actor_id) for row in rows] == [
            (e.kind, e.salon, e.user, e.actor) for e in expected
        ]
        for row, e in zip(rows, expected, strict=True):
            for path, value in e.data.items():
                assert _dig(row.data, path) == value, (row, path)
            assert row.dispatched_at is None
            assert bool(row.secret) is change.sealed, row
        sealed = {row.id: row.secret for row in rows}

    # Committed: the backends ran with frames that are the rows, and the rows are marked.
    rows = log(id__gt=before)
    assert len(rows) == len(expected)
    assert [event.id for event in recording] == [row.id for row in rows]
    for row, event in zip(rows, recording, strict=True):
        assert event.frame == row.frame == {"id": row.id, "type": row.kind, **row.data}
        assert {k: v for k, v in event.frame.items() if k not in ("id", "type")} == row.data
        assert event.kind == row.kind
        assert event.created_at == row.created_at
        assert row.dispatched_at is not None
        assert row.dispatched_at >= row.created_at
        assert row.secret == ""
        # What an invite's e-mail needed was sealed in the row until then.
        if sealed[row.id]:
            assert event.token is not None
            assert tokens.unseal(sealed[row.id]) == event.token
    # The last event about each object carries its representation as the REST API shows it.
    last: dict[tuple[str, Any], SalonEvent] = {}
    for row in rows:
        model = row.kind.split(".")[0]
        last[(model, row.data[model]["id"])] = row
    for (model, pk), row in last.items():
        shown = _representation(row.kind, pk)
        if shown is not None:
            assert row.data[model] == shown, row
    # Ids grow in the order of the changes.
    assert [row.id for row in rows] == sorted(row.id for row in rows)
    assert all(row.id > before for row in rows)


class Rollback(Exception):
    pass


@pytest.mark.parametrize("name", list(CHANGES))
def test_a_rolled_back_change_leaves_no_row(name, state, recording):
    change = CHANGES[name]
    change.prepare(state)
    recording.clear()
    prepared = dict(state)
    before = last_event_id()
    salons = get_salon_model()._default_manager.count()

    with pytest.raises(Rollback), transaction.atomic():
        change.run(state)
        assert log(id__gt=before), "the change logged nothing"
        raise Rollback

    assert log(id__gt=before) == []
    assert recording == []
    assert get_salon_model()._default_manager.count() == salons

    # The same change committed afterwards is logged after everything before it.
    state.clear()
    state.update(prepared)
    for key in ("invitation", "member"):
        if key in state:
            state[key] = type(state[key])._default_manager.get(pk=state[key].pk)
    change.run(state)
    rows = log(id__gt=before)
    assert [row.kind for row in rows] == [e.kind for e in change.expected(state)]
    assert all(row.dispatched_at is not None for row in rows)


def test_a_rolled_back_savepoint_drops_its_rows_only(salon, owner, requester, recording):
    other = factories.make_user("other")
    recording.clear()
    before = last_event_id()

    with transaction.atomic():
        first = services.create_invitation(user=requester, salon=salon, role="mechanic")
        with pytest.raises(Rollback), transaction.atomic():
            services.create_invitation(user=other, salon=salon, role="seller")
            raise Rollback
        services.approve_invitation(first, actor=owner)

    rows = log(id__gt=before)
    assert [(row.kind, row.user_id) for row in rows] == [
        ("invitation.created", requester.pk),
        ("invitation.approved", requester.pk),
        ("membership.created", requester.pk),
    ]
    assert [row.id for row in rows] == sorted(row.id for row in rows)
    assert [event.id for event in recording] == [row.id for row in rows]
    assert not Invitation.objects.filter(user=other).exists()


def test_ids_grow_in_the_order_the_changes_commit(salon, owner, admin_member, recording):
    people = [factories.make_user(f"p{i}") for i in range(3)]
    before = last_event_id()
    ids: list[list[int]] = []
    for person, role in zip(people, ("seller", "mechanic", "seller"), strict=True):
        mark = last_event_id()
        invitation = services.create_invitation(user=person, salon=salon, role=role)
        if role == "mechanic":
            services.approve_invitation(invitation, actor=owner)
        else:
            services.reject_invitation(invitation, actor=admin_member)
        ids.append([row.id for row in log(id__gt=mark)])

    flat = [pk for group in ids for pk in group]
    assert flat == sorted(flat)
    assert len(set(flat)) == len(flat)
    assert [row.id for row in log(id__gt=before)] == flat
    assert [len(group) for group in ids] == [2, 3, 2]


@pytest.mark.parametrize("name", ["invite", "resend"])
def test_the_invite_token_never_appears_in_the_log(name, state, recording):
    change = CHANGES[name]
    change.prepare(state)
    recording.clear()
    before = last_event_id()

    with transaction.atomic():
        change.run(state)
        (row,) = log(id__gt=before)
        secret = row.secret

    (event,) = recording
    token = str(event.token)
    assert len(token) >= 20
    digest = tokens.digest(token)
    for stored in SalonEvent.objects.filter(id__gt=before - 1).values():
        text = json.dumps(stored, default=str)
        assert token not in text
        assert digest not in text
    assert token not in secret
    assert tokens.unseal(secret) == token
    # Nor in what every listener is given.
    frame = json.dumps(event.frame, default=str)
    assert token not in frame
    assert digest not in frame
    assert "token" not in event.data["invitation"]
    assert "token_digest" not in event.data["invitation"]
