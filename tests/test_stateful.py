"""Random sequences of actions never break the domain rules (SPEC §2, §8), checked by hypothesis.

A :class:`~hypothesis.stateful.RuleBasedStateMachine` creates salons and invitations, approves
(as the role asked for or granting another one), rejects, cancels and deletes invitations,
changes members' roles, transfers ownership and removes memberships, each time as one of the
actors the rules talk about (the salon's owner, its admin, a seller, a stranger, staff, the
requester or member concerned). Like the views, it asks the policy first (visibility, then the
action's check) and only then calls the service. An action is *refused* when the policy denies
it or the service raises :class:`InvalidInvitation` or :class:`Conflict`.

The machine keeps its own model of the memberships (who holds which role in which salon, who
owns each salon, and which approved request granted the role a member still holds) and
predicts the outcome of every action the policy allows: done, or exactly which refusal
(``role_taken`` exactly when the target role is full, ``owner_membership``, ``not_a_member``,
``already_owner``, ``invalid_role``, ...).

After every step: the model matches the database; one membership per (user, salon); each salon
has exactly one owner-role membership, its ``owner``'s; no role has more holders than its limit;
at most one pending invitation per (user, salon); a decided invitation never changes again; an
approved request's ``role`` is the role its member holds until a role change or a transfer
moves it; every membership was created with its salon or by an approved request. Every action
changes exactly what it should and sends the events it should: a refused one changes nothing at
all and sends no event, except the documented approval conflicts (``role_taken``,
``already_member``), which reject that invitation and nothing else.

How it runs under pytest-django: one ``django_db`` test (inside a transaction) runs the machine
with :func:`run_state_machine_as_test`; each generated example opens a savepoint in the
machine's ``__init__`` and rolls it back in ``teardown``, so every example starts from the
same empty tables and no example sees another's rows or events (on-commit callbacks registered
inside a rolled-back savepoint are discarded with it). This works the same on SQLite,
PostgreSQL and MariaDB and needs neither ``transaction=True`` (slow table flushes) nor
hypothesis' Django test case, whose per-example hooks only wrap ``@given`` methods, not state
machines.

Bounded and deterministic for CI: ``derandomize=True`` and no example database, so a given
checkout generates the same examples every run (50 sequences of up to 25 steps; the database
servers, in the ``postgres`` and ``mariadb`` tox envs, run 30). Hypothesis also mixes in
constants it finds in the project's modules, so the examples shift when other code changes (or
when this file runs alone rather than in the whole suite); the rules and weights below make the
coverage checks at the end hold whatever the seed.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from django.db import connection, transaction
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from salon_invitations import roles, services
from salon_invitations.exceptions import Conflict, InvalidInvitation
from salon_invitations.models import Invitation, get_membership_model, get_salon_model
from salon_invitations.policies import get_policy
from tests import factories

pytestmark = pytest.mark.django_db

#: Regular users in each example (besides one staff user); few, so actions collide often.
USERS = 6
#: Salons per example at most; few, so roles fill up and invitations meet conflicts.
MAX_SALONS = 2
#: Role names asked for: mostly requestable ones (the seller's most often, so that requests
#: compete for it), sometimes the owner's role and one the role table does not know.
ASKED_ROLES = ["seller", "admin", "seller", "mechanic", "seller", "superuser", "?"]
#: Roles an approval grants instead of the one asked for or a role change gives (SPEC §8.1,
#: §8.3), and roles a transfer gives the previous owner (§8.2): mostly requestable ones,
#: sometimes the owner's role and one the role table does not know (both ``invalid_role``).
NEW_ROLES = ["seller", "mechanic", "admin", "seller", "mechanic", "superuser", "?"]
PREVIOUS_OWNER_ROLES = ["admin", "seller", "mechanic", "admin", "seller", "superuser", "?"]
#: Refused approvals that still change one thing: the invitation is rejected (SPEC §2.3, §2.4).
APPROVAL_CONFLICTS = {services.ROLE_TAKEN, services.ALREADY_MEMBER}
#: The code of a 400 for a role that cannot be asked for, granted or given.
INVALID_ROLE = "invalid_role"

#: Texts a client could send through the serializers (which refuse NUL characters).
TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=20)

#: ``(action, outcome)`` counts over the whole run, to prove the run exercised the rules.
OUTCOMES: Counter[tuple[str, str]] = Counter()
#: Changes the model applied over the whole run (a role that moved, an ownership, ...).
CHANGES: Counter[str] = Counter()


def _tables() -> dict[str, Any]:
    return {
        "salon": get_salon_model()._default_manager,
        "membership": get_membership_model()._default_manager,
        "invitation": Invitation.objects,
    }


def snapshot() -> dict[tuple[str, Any], dict[str, Any]]:
    """Every row of the package's tables: ``{(table, pk): {column: value}}``."""
    return {
        (table, row["id"]): row
        for table, manager in _tables().items()
        for row in manager.order_by("pk").values()
    }


def requestable(role: Any) -> bool:
    return role in {r.name for r in roles.requestable_roles()}


def pending_events() -> int:
    """How many on-commit callbacks (events, SPEC §4) wait for the test transaction."""
    return len(connection.run_on_commit)


# Django 6.1 renamed transaction.savepoint() to savepoint_create().
_savepoint_create = getattr(transaction, "savepoint_create", None) or transaction.savepoint


class InvitationMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # Rolled back in teardown(): every example starts from the same empty tables.
        self._savepoint = _savepoint_create()
        self.policy = get_policy()
        self.users = [factories.make_user() for _ in range(USERS)]
        self.staff = factories.make_staff()
        self.decided: dict[Any, dict[str, Any]] = {}
        # The model: the role each user holds in each salon, each salon's owner and creator,
        # and the approved request whose role the member still holds (until it is changed).
        self.members: dict[tuple[Any, Any], str] = {}
        self.owners: dict[Any, Any] = {}
        self.founders: dict[Any, Any] = {}
        self.granted_by: dict[tuple[Any, Any], Any] = {}

    def teardown(self) -> None:
        transaction.savepoint_rollback(self._savepoint)

    # Reading the state -------------------------------------------------------------------------

    def salons(self) -> list[Any]:
        return list(get_salon_model()._default_manager.order_by("pk"))

    def invitations(self) -> list[Invitation]:
        return list(Invitation.objects.order_by("pk"))

    def memberships(self) -> list[Any]:
        return list(get_membership_model()._default_manager.order_by("pk"))

    def holders(self, salon_id: Any, role: str, but: Any = None) -> int:
        """How many members of ``salon_id`` hold ``role`` in the model (not counting ``but``)."""
        return sum(
            1
            for (salon, user), held in self.members.items()
            if salon == salon_id and held == role and user != but
        )

    def is_full(self, salon_id: Any, role: str, but: Any = None) -> bool:
        """Has ``role`` as many holders in ``salon_id`` as it allows (the model says)?"""
        role_obj = roles.get_role(role)
        limit = role_obj.limit if role_obj is not None else None
        return limit is not None and self.holders(salon_id, role, but) >= limit

    def actors_for(self, salon: Any, requester: Any = None) -> dict[str, list[Any]]:
        """The users who stand in each relation to ``salon`` (and to ``requester``)."""
        held = {
            m.user_id: m.role
            for m in get_membership_model()._default_manager.filter(salon_id=salon.pk)
        }
        managing = set(roles.managing_role_names())
        owner_role = roles.owner_role().name
        by_kind: dict[str, list[Any]] = {
            "owner": [u for u in self.users if u.pk == salon.owner_id],
            "admin": [u for u in self.users if held.get(u.pk) in managing - {owner_role}],
            "seller": [u for u in self.users if u.pk in held and held[u.pk] not in managing],
            "stranger": [
                u for u in self.users if u.pk not in held and u.pk != getattr(requester, "pk", 0)
            ],
            "staff": [self.staff],
            "requester": [requester] if requester is not None else [],
        }
        return {kind: users for kind, users in by_kind.items() if users}

    def draw_actor(
        self, data: Any, salon: Any, requester: Any = None, prefer: Any = None
    ) -> tuple[str, Any]:
        """An actor kind and a user of that kind; with ``prefer(user)``, mostly such a user."""
        candidates = self.actors_for(salon, requester)
        kinds = sorted(candidates)
        if prefer is not None:
            kind = self.draw_mostly(
                data, kinds, lambda k: any(prefer(u) for u in candidates[k]), label="actor"
            )
        else:
            kind = data.draw(st.sampled_from(kinds), label="actor")
        user = data.draw(st.sampled_from(candidates[kind]), label=f"{kind} user")
        return kind, user

    # Running an action ---------------------------------------------------------------------------

    def attempt(
        self,
        action: str,
        allowed: bool,
        call: Any,
        expect: Any,
        conflict: Any = None,
        *,
        predicted: str,
    ) -> tuple[str, Any]:
        """Run ``call`` if ``allowed`` and check the change against ``expect`` (or nothing).

        ``predicted`` is the outcome the model expects when the policy allows the action:
        ``"done"`` or a refusal's code. ``expect(before, after, added, removed, changed)``
        checks a successful action; ``conflict(code, ...)`` the change a service made before
        raising (None: no change). Returns the outcome and what ``call`` returned.
        """
        before, events_before = snapshot(), pending_events()
        outcome, result = "denied", None
        if allowed:
            try:
                result = call()
            except (InvalidInvitation, Conflict) as exc:
                outcome = exc.code
            else:
                outcome = "done"
            assert outcome == predicted, f"{action}: {outcome}, the model predicted {predicted}"
        after = snapshot()
        events = pending_events() - events_before
        added = sorted(set(after) - set(before), key=str)
        removed = sorted(set(before) - set(after), key=str)
        changed = sorted(
            (key for key in before if key in after and before[key] != after[key]), key=str
        )
        OUTCOMES[action, outcome] += 1
        if outcome == "done":
            expected_events = expect(before, after, added, removed, changed)
            assert events == expected_events, (action, events)
        elif conflict is not None and outcome in APPROVAL_CONFLICTS:
            conflict(outcome, before, after, added, removed, changed)
            assert events == 1, (action, outcome, events)  # invitation.rejected
        else:
            assert after == before, f"refused {action} ({outcome}) changed the tables"
            assert events == 0, f"refused {action} ({outcome}) sent {events} event(s)"
        return outcome, result

    # Rules -------------------------------------------------------------------------------------

    @initialize(who=st.integers(0, USERS - 1), name=TEXT)
    def first_salon(self, who: int, name: str) -> None:
        self.create_salon(who, name)

    @precondition(lambda self: len(self.salons()) < MAX_SALONS)
    @rule(who=st.integers(0, USERS - 1), name=TEXT)
    def create_salon(self, who: int, name: str) -> None:
        user = self.users[who]

        def expect(before, after, added, removed, changed):
            membership_key, salon_key = sorted(added)
            assert (membership_key[0], salon_key[0]) == ("membership", "salon")
            assert removed == changed == []
            assert after[salon_key]["owner_id"] == user.pk
            membership = after[membership_key]
            assert (membership["salon_id"], membership["user_id"], membership["role"]) == (
                salon_key[1],
                user.pk,
                roles.owner_role().name,
            )
            return 1  # membership.created

        outcome, salon = self.attempt(
            "create_salon",
            self.policy.can_create_salon(user),
            lambda: services.create_salon(owner=user, name=name),
            expect,
            predicted="done",
        )
        if outcome == "done":
            self.members[salon.pk, user.pk] = roles.owner_role().name
            self.owners[salon.pk] = self.founders[salon.pk] = user.pk

    @rule(data=st.data(), role=st.sampled_from(ASKED_ROLES), message=TEXT)
    def create_invitation(self, data: Any, role: str, message: str) -> None:
        salon = data.draw(st.sampled_from(self.salons()), label="salon")
        self.request(data, salon, role, message)

    @precondition(lambda self: Invitation.objects.filter(status="pending").exists())
    @rule(data=st.data(), message=TEXT)
    def race_for_a_role(self, data: Any, message: str) -> None:
        """Someone else asks for the role a pending invitation asks for, then both requests
        are approved, mostly by actors who may: the second finds the role taken (SPEC §2.3)."""
        pending = [i for i in self.invitations() if i.is_pending]
        invitation = data.draw(st.sampled_from(pending), label="racing with")
        self.request(data, invitation.salon, invitation.role, message)
        rivals = Invitation.objects.filter(
            status="pending", salon_id=invitation.salon_id, role=invitation.role
        )
        for rival in rivals.order_by("pk")[:2]:
            kind, actor = self.draw_actor(
                data,
                rival.salon,
                rival.user,
                prefer=lambda u, r=rival: self.policy.can_decide(u, r),
            )
            self.approve_one(rival, kind, actor)

    def request(self, data: Any, salon: Any, role: str, message: str) -> None:
        """A user (mostly one who is not a member of ``salon``) asks for ``role`` in it."""
        members = set(
            get_membership_model()
            ._default_manager.filter(salon_id=salon.pk)
            .values_list("user_id", flat=True)
        )
        user = self.draw_mostly(
            data, [*self.users, self.staff], lambda u: u.pk not in members, label="requester"
        )

        def expect(before, after, added, removed, changed):
            assert removed == changed == []
            (key,) = added
            assert key[0] == "invitation"
            row = after[key]
            assert (row["user_id"], row["salon_id"], row["role"], row["status"]) == (
                user.pk,
                salon.pk,
                role,
                "pending",
            )
            assert row["message"] == message
            assert row["decided_at"] is None
            assert row["decided_by_id"] is None
            return 1  # invitation.created

        if not requestable(role):
            predicted = INVALID_ROLE
        elif (salon.pk, user.pk) in self.members:
            predicted = services.ALREADY_MEMBER
        elif self.is_full(salon.pk, role):
            predicted = services.ROLE_TAKEN
        elif Invitation.objects.filter(salon_id=salon.pk, user=user, status="pending").exists():
            predicted = services.DUPLICATE_PENDING
        else:
            predicted = "done"
        self.attempt(
            "create_invitation",
            self.policy.can_create_invitation(user, salon, role),
            lambda: services.create_invitation(user=user, salon=salon, role=role, message=message),
            expect,
            predicted=predicted,
        )

    def draw_mostly(self, data: Any, rows: list[Any], wanted: Any, label: str) -> Any:
        """One of ``rows``, three times in four one for which ``wanted(row)`` holds if any."""
        preferred = [row for row in rows if wanted(row)]
        if preferred and data.draw(st.integers(0, 3), label=f"{label} preferred") < 3:
            rows = preferred
        return data.draw(st.sampled_from(rows), label=label)

    def _invitation_and_actor(
        self, data: Any, contested: bool = False
    ) -> tuple[Invitation, str, Any, bool]:
        """An invitation (fresh from the database, as a view's ``get_object`` has it), an
        actor, and whether the actor can see it (invisible objects are 404 in the views).

        Mostly a pending invitation; with ``contested``, mostly one whose role has filled up
        since it was made or, failing that, one with a rival (another pending request for the
        same role in the same salon): approving both is the race of SPEC §2.3.
        """
        invitations = self.invitations()
        wanted = [i for i in invitations if i.is_pending]
        if contested:
            held = Counter((m.salon_id, m.role) for m in self.memberships())
            asked = Counter((i.salon_id, i.role) for i in wanted)

            def is_full(i: Invitation) -> bool:
                limit = roles.get_role(i.role).limit
                return limit is not None and held[i.salon_id, i.role] >= limit

            full = [i for i in wanted if is_full(i)]
            rivals = [i for i in wanted if asked[i.salon_id, i.role] > 1]
            wanted = full or rivals or wanted
        invitation = self.draw_mostly(data, invitations, wanted.__contains__, label="invitation")
        kind, actor = self.draw_actor(data, invitation.salon, invitation.user)
        return invitation, kind, actor, self.visible(actor, invitation)

    def visible(self, actor: Any, invitation: Invitation) -> bool:
        """Can ``actor`` see ``invitation`` (the views answer 404 if not)?"""
        queryset = Invitation.objects.filter(pk=invitation.pk)
        return self.policy.visible_invitations(actor, queryset).exists()

    def _decided(
        self,
        invitation: Invitation,
        actor: Any,
        status: str,
        reason: Any = None,
        role: str | None = None,
    ):
        """Checks a decision; ``role``: the role an approval granted instead of the one asked."""
        key = ("invitation", invitation.pk)

        def expect(before, after, added, removed, changed):
            assert changed == [key], changed
            assert invitation.status == "pending"  # only pending invitations can be decided
            row = after[key]
            assert row["status"] == status
            assert row["decided_by_id"] == actor.pk
            assert row["decided_at"] is not None
            if reason is not None:
                assert row["reason"] == reason
            assert row["role"] == (role or invitation.role)
            for column in ("user_id", "salon_id", "requested_role", "message", "created"):
                assert row[column] == before[key][column]
            return key, added, removed

        return expect

    @precondition(lambda self: Invitation.objects.filter(status="pending").exists())
    @rule(data=st.data())
    def approve(self, data: Any) -> None:
        """Approve, mostly a contested invitation; one time in three granting another role
        (SPEC §8.3), mostly one that is free."""
        invitation, kind, actor, _ = self._invitation_and_actor(data, contested=True)
        role = None
        if data.draw(st.integers(0, 2), label="grant another role") == 0:
            free = {
                r
                for r in NEW_ROLES
                if requestable(r)
                and r != invitation.role
                and not self.is_full(invitation.salon_id, r)
            }
            role = self.draw_mostly(data, NEW_ROLES, free.__contains__, label="granted role")
        self.approve_one(invitation, kind, actor, role)

    def approve_one(
        self, invitation: Invitation, kind: str, actor: Any, role: str | None = None
    ) -> None:
        visible = self.visible(actor, invitation)
        granted = role or invitation.role
        decided = self._decided(invitation, actor, "approved", role=role)
        member = (invitation.salon_id, invitation.user_id)

        def expect(before, after, added, removed, changed):
            _, added, removed = decided(before, after, added, removed, changed)
            assert removed == []
            (key,) = added
            assert key[0] == "membership"
            membership = after[key]
            assert (membership["user_id"], membership["salon_id"], membership["role"]) == (
                invitation.user_id,
                invitation.salon_id,
                granted,
            )
            return 2  # invitation.approved, membership.created

        def conflict(code, before, after, added, removed, changed):
            key = ("invitation", invitation.pk)
            assert added == removed == []
            assert changed == [key]
            row = after[key]
            assert row["status"] == "rejected"
            assert row["decided_by_id"] == actor.pk
            assert row["reason"]
            # Rejected as asked: the role offered instead was never the requester's.
            assert row["role"] == before[key]["role"]
            assert row["requested_role"] == before[key]["requested_role"]
            if code == services.ROLE_TAKEN:
                holders = get_membership_model()._default_manager.filter(
                    salon_id=invitation.salon_id, role=granted
                )
                assert holders.count() >= roles.get_role(granted).limit

        if role is not None and not requestable(role):
            predicted = INVALID_ROLE
        elif not invitation.is_pending:
            predicted = services.ALREADY_DECIDED
        elif member in self.members:
            predicted = services.ALREADY_MEMBER
        elif self.is_full(invitation.salon_id, granted):
            predicted = services.ROLE_TAKEN
        else:
            predicted = "done"
        allowed = visible and self.policy.can_decide(actor, invitation)
        if role is not None:
            allowed = allowed and self.policy.can_approve_as(actor, invitation, role)
        outcome, _ = self.attempt(
            f"approve as {kind}",
            allowed,
            lambda: services.approve_invitation(invitation, actor=actor, role=role),
            expect,
            conflict,
            predicted=predicted,
        )
        if outcome == "done":
            self.members[member] = granted
            self.granted_by[member] = invitation.pk
            if granted != invitation.requested_role:
                CHANGES["approved as another role"] += 1

    @precondition(lambda self: Invitation.objects.filter(status="pending").exists())
    @rule(data=st.data(), reason=TEXT)
    def reject(self, data: Any, reason: str) -> None:
        invitation, kind, actor, visible = self._invitation_and_actor(data)
        decided = self._decided(invitation, actor, "rejected", reason)

        def expect(*args):
            _, added, removed = decided(*args)
            assert added == removed == []
            return 1  # invitation.rejected

        self.attempt(
            f"reject as {kind}",
            visible and self.policy.can_decide(actor, invitation),
            lambda: services.reject_invitation(invitation, actor=actor, reason=reason),
            expect,
            predicted="done" if invitation.is_pending else services.ALREADY_DECIDED,
        )

    @precondition(lambda self: Invitation.objects.filter(status="pending").exists())
    @rule(data=st.data())
    def cancel(self, data: Any) -> None:
        invitation, kind, actor, visible = self._invitation_and_actor(data)
        decided = self._decided(invitation, actor, "cancelled")

        def expect(*args):
            _, added, removed = decided(*args)
            assert added == removed == []
            assert actor.pk == invitation.user_id
            return 1  # invitation.cancelled

        self.attempt(
            f"cancel as {kind}",
            visible and self.policy.can_cancel(actor, invitation),
            lambda: services.cancel_invitation(invitation, actor=actor),
            expect,
            predicted="done" if invitation.is_pending else services.ALREADY_DECIDED,
        )

    @precondition(lambda self: Invitation.objects.filter(status="pending").exists())
    @rule(data=st.data())
    def delete(self, data: Any) -> None:
        invitation, kind, actor, visible = self._invitation_and_actor(data)

        def expect(before, after, added, removed, changed):
            assert added == changed == []
            assert removed == [("invitation", invitation.pk)]
            assert before[removed[0]]["status"] == "pending"
            return 1  # invitation.deleted

        self.attempt(
            f"delete as {kind}",
            visible and self.policy.can_delete(actor, invitation),
            lambda: services.delete_invitation(invitation, actor=actor),
            expect,
            predicted="done" if invitation.is_pending else services.ALREADY_DECIDED,
        )

    @precondition(
        lambda self: (
            get_membership_model()._default_manager.exclude(role=roles.owner_role().name).exists()
        )
    )
    @rule(data=st.data())
    def remove_membership(self, data: Any) -> None:
        """Any membership (the owner's too), once there is one that could be removed."""
        membership = data.draw(st.sampled_from(self.memberships()), label="membership")
        kind, actor = self.draw_actor(data, membership.salon, membership.user)
        visible = self.policy.visible_memberships(
            actor, get_membership_model()._default_manager.filter(pk=membership.pk)
        ).exists()

        def expect(before, after, added, removed, changed):
            assert added == changed == []
            assert removed == [("membership", membership.pk)]
            assert membership.role != roles.owner_role().name
            return 1  # membership.deleted

        member = (membership.salon_id, membership.user_id)
        is_owner = self.members[member] == roles.owner_role().name
        outcome, _ = self.attempt(
            f"remove_membership as {kind}",
            visible and self.policy.can_remove_membership(actor, membership),
            lambda: services.remove_membership(membership, actor=actor),
            expect,
            predicted=services.OWNER_MEMBERSHIP if is_owner else "done",
        )
        if outcome == "done":
            del self.members[member]
            self.granted_by.pop(member, None)

    def has_members(self) -> bool:
        """Does any salon have a member besides its owner (the model says)?"""
        owner_role = roles.owner_role().name
        return any(role != owner_role for role in self.members.values())

    @precondition(has_members)
    @rule(data=st.data())
    def change_role(self, data: Any) -> None:
        """Give a member another role (SPEC §8.1): mostly a non-owner membership (mostly in a
        salon with other members), and half the time (mostly) a role that is full in its salon,
        else (mostly) a free one."""
        owner_role = roles.owner_role().name
        memberships = self.memberships()
        others = [m for m in memberships if m.role != owner_role]
        crowded = Counter(m.salon_id for m in others)
        wanted = [m for m in others if crowded[m.salon_id] > 1] or others
        membership = self.draw_mostly(data, memberships, wanted.__contains__, label="membership")
        full = {r for r in NEW_ROLES if requestable(r) and self.is_full(membership.salon_id, r)}
        current = membership.role
        if data.draw(st.booleans(), label="aim at a full role"):
            wanted = full - {current}
        else:
            wanted = {r for r in NEW_ROLES if requestable(r)} - full - {current}
        role = self.draw_mostly(data, NEW_ROLES, wanted.__contains__, label="new role")
        self.change_one(data, membership, role)

    @precondition(has_members)
    @rule(data=st.data(), message=TEXT)
    def contest_a_role(self, data: Any, message: str) -> None:
        """Someone asks for a free role in a salon that has a member, the request is approved
        (mostly by someone who may), one member of that salon is given another member's role
        (``role_taken``, SPEC §8.1, unless a step before it was refused), then a free one."""
        owner_role = roles.owner_role().name
        membership = data.draw(
            st.sampled_from([m for m in self.memberships() if m.role != owner_role]),
            label="member",
        )
        salon = membership.salon
        free = [r for r in NEW_ROLES if requestable(r) and not self.is_full(salon.pk, r)]
        role = data.draw(st.sampled_from(free or NEW_ROLES), label="free role")
        self.request(data, salon, role, message)
        asked = Invitation.objects.filter(status="pending", salon_id=salon.pk, role=role)
        invitation = asked.order_by("pk").first()
        if invitation is not None:
            kind, actor = self.draw_actor(
                data,
                salon,
                invitation.user,
                prefer=lambda u: self.policy.can_decide(u, invitation),
            )
            self.approve_one(invitation, kind, actor)
        members = [m for m in self.memberships() if m.salon_id == salon.pk and m.role != owner_role]
        membership = data.draw(st.sampled_from(members), label="member to change")
        others = sorted({m.role for m in members} - {membership.role})
        role = data.draw(st.sampled_from(others or NEW_ROLES), label="another member's role")
        self.change_one(data, membership, role)
        membership = get_membership_model()._default_manager.get(pk=membership.pk)
        free = [r for r in NEW_ROLES if requestable(r) and not self.is_full(salon.pk, r)]
        if free:
            self.change_one(data, membership, data.draw(st.sampled_from(free), label="free role"))

    def change_one(self, data: Any, membership: Any, role: str) -> None:
        """Give ``membership`` the role ``role``, as (mostly) someone who may."""
        owner_role = roles.owner_role().name
        member = (membership.salon_id, membership.user_id)
        current = self.members[member]
        kind, actor = self.draw_actor(
            data,
            membership.salon,
            membership.user,
            prefer=lambda u: self.policy.can_change_role(u, membership, role),
        )
        visible = self.policy.visible_memberships(
            actor, get_membership_model()._default_manager.filter(pk=membership.pk)
        ).exists()
        key = ("membership", membership.pk)

        def expect(before, after, added, removed, changed):
            assert added == removed == []
            if role == current:
                assert changed == []
                return 0  # the same role again changes and announces nothing
            assert changed == [key], changed
            row, old = dict(after[key]), dict(before[key])
            assert (row.pop("role"), old.pop("role")) == (role, current)
            row.pop("modified", None)
            old.pop("modified", None)
            assert row == old
            return 1  # membership.updated

        if not requestable(role):
            predicted = INVALID_ROLE
        elif current == owner_role:
            predicted = services.OWNER_MEMBERSHIP
        elif role == current:
            predicted = "done"
        elif self.is_full(membership.salon_id, role):
            predicted = services.ROLE_TAKEN
        else:
            predicted = "done"
        outcome, _ = self.attempt(
            f"change_role as {kind}",
            visible and self.policy.can_change_role(actor, membership, role),
            lambda: services.change_role(membership, role=role, actor=actor),
            expect,
            predicted=predicted,
        )
        if outcome == "done" and role != current:
            self.members[member] = role
            self.granted_by.pop(member, None)
            CHANGES["role changed"] += 1

    @precondition(has_members)
    @rule(data=st.data())
    def transfer(self, data: Any) -> None:
        """Hand (mostly) a salon with other members to (mostly) one of them (SPEC §8.2), as
        (mostly) someone who may: the owner or staff; the previous owner takes (mostly) a role
        that has room once the new owner has left theirs."""
        owner_role = roles.owner_role().name
        with_members = {salon for (salon, _), role in self.members.items() if role != owner_role}
        salon = self.draw_mostly(data, self.salons(), lambda s: s.pk in with_members, label="salon")
        owner_id = self.owners[salon.pk]
        new_owner = self.draw_mostly(
            data,
            [*self.users, self.staff],
            lambda u: (salon.pk, u.pk) in self.members and u.pk != owner_id,
            label="new owner",
        )
        previous_owner_role = self.draw_mostly(
            data,
            PREVIOUS_OWNER_ROLES,
            lambda r: requestable(r) and not self.is_full(salon.pk, r, but=new_owner.pk),
            label="previous owner's role",
        )
        kind, actor = self.draw_actor(
            data, salon, new_owner, prefer=lambda u: self.policy.can_transfer(u, salon)
        )

        def expect(before, after, added, removed, changed):
            assert added == removed == []
            rows = {
                (row["salon_id"], row["user_id"]): key
                for key, row in before.items()
                if key[0] == "membership"
            }
            salon_key = ("salon", salon.pk)
            incoming, outgoing = rows[salon.pk, new_owner.pk], rows[salon.pk, owner_id]
            assert changed == sorted([salon_key, incoming, outgoing], key=str), changed
            assert after[salon_key]["owner_id"] == new_owner.pk
            assert before[salon_key]["owner_id"] == owner_id
            assert after[incoming]["role"] == owner_role
            assert (before[outgoing]["role"], after[outgoing]["role"]) == (
                owner_role,
                previous_owner_role,
            )
            return 3  # two membership.updated events, the ownership_transferred signal

        role_obj = roles.get_role(previous_owner_role)
        if role_obj is None or previous_owner_role == owner_role:
            predicted = INVALID_ROLE
        elif new_owner.pk == owner_id:
            predicted = "already_owner"
        elif (salon.pk, new_owner.pk) not in self.members:
            predicted = "not_a_member"
        elif self.is_full(salon.pk, previous_owner_role, but=new_owner.pk):
            predicted = services.ROLE_TAKEN
        else:
            predicted = "done"
        outcome, _ = self.attempt(
            f"transfer as {kind}",
            self.policy.visible_salons(
                actor, get_salon_model()._default_manager.filter(pk=salon.pk)
            ).exists()
            and self.policy.can_transfer(actor, salon),
            lambda: services.transfer_ownership(
                salon, new_owner=new_owner, previous_owner_role=previous_owner_role, actor=actor
            ),
            expect,
            predicted=predicted,
        )
        if outcome == "done":
            self.owners[salon.pk] = new_owner.pk
            self.members[salon.pk, new_owner.pk] = owner_role
            self.members[salon.pk, owner_id] = previous_owner_role
            self.granted_by.pop((salon.pk, new_owner.pk), None)
            self.granted_by.pop((salon.pk, owner_id), None)
            CHANGES["ownership transferred"] += 1

    # Invariants --------------------------------------------------------------------------------

    @invariant()
    def roles_hold_no_more_than_their_limit(self) -> None:
        held = Counter((m.salon_id, m.role) for m in self.memberships())
        for (salon_id, role_name), count in held.items():
            role = roles.get_role(role_name)
            assert role is not None, role_name
            assert role.limit is None or count <= role.limit, (salon_id, role_name, count)

    @invariant()
    def one_pending_invitation_per_user_and_salon(self) -> None:
        pending = Counter(
            (i.user_id, i.salon_id) for i in self.invitations() if i.status == "pending"
        )
        assert all(count == 1 for count in pending.values()), pending

    @invariant()
    def decided_invitations_never_change(self) -> None:
        rows = {row["id"]: row for row in Invitation.objects.values()}
        for pk, row in self.decided.items():
            assert rows.get(pk) == row, f"decided invitation {pk} changed"
        for pk, row in rows.items():
            if row["status"] != "pending":
                self.decided.setdefault(pk, row)

    @invariant()
    def the_model_matches_the_database(self) -> None:
        held = {(m.salon_id, m.user_id): m.role for m in self.memberships()}
        assert held == self.members
        owners = dict(get_salon_model()._default_manager.values_list("pk", "owner_id"))
        assert owners == self.owners

    @invariant()
    def one_membership_per_user_and_salon(self) -> None:
        memberships = Counter((m.salon_id, m.user_id) for m in self.memberships())
        assert all(count == 1 for count in memberships.values()), memberships

    @invariant()
    def every_salon_has_one_owner_membership_its_owners(self) -> None:
        owner_role = roles.owner_role().name
        holders: dict[Any, list[Any]] = {salon.pk: [] for salon in self.salons()}
        for m in self.memberships():
            if m.role == owner_role:
                holders[m.salon_id].append(m.user_id)
        for salon in self.salons():
            assert holders[salon.pk] == [salon.owner_id], (salon.pk, holders[salon.pk])

    @invariant()
    def approved_requests_grant_the_role_held(self) -> None:
        """An approved request's ``role`` is what its member holds, until a role change or a
        transfer moves it (the model drops it from ``granted_by`` then)."""
        held = {(m.salon_id, m.user_id): m.role for m in self.memberships()}
        invitations = Invitation.objects.in_bulk(list(self.granted_by.values()))
        for member, pk in self.granted_by.items():
            invitation = invitations[pk]
            assert invitation.status == "approved", (member, pk)
            assert (invitation.salon_id, invitation.user_id) == member
            assert invitation.role == held[member], (member, invitation.role, held[member])

    @invariant()
    def every_membership_came_with_its_salon_or_an_approval(self) -> None:
        approved = set(
            Invitation.objects.filter(status="approved").values_list("user_id", "salon_id")
        )
        for m in self.memberships():
            assert m.user_id == self.founders[m.salon_id] or (m.user_id, m.salon_id) in approved, m


def test_random_action_sequences_keep_the_domain_rules():
    # The database servers (the postgres and mariadb tox envs) run a smaller budget: they are
    # there for the real locks and constraints; SQLite runs the full one.
    full = connection.vendor == "sqlite" and not __import__("os").environ.get("SWEEP_SMALL")
    OUTCOMES.clear()
    CHANGES.clear()
    run_state_machine_as_test(
        InvitationMachine,
        settings=settings(
            max_examples=50 if full else 30,
            stateful_step_count=25,
            deadline=None,
            derandomize=__import__("os").environ.get("SWEEP") is None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )

    # The run met the rules it claims to check. Both budgets: every action was tried, each
    # decision was denied to someone, a role was taken at a request, at an approval (SPEC
    # §2.3) and at a role change (§8.1), a member's role changed, an ownership moved (§8.2)
    # and a request was approved as another role than the one asked for (§8.3). Full
    # budget: every action also succeeded and was refused, and the conflicts of §2.4, §2.6
    # and §2.9 came up. The examples are the same from run to run, but hypothesis also draws
    # constants from the project's modules, so changes elsewhere shift them: these checks
    # held for 25 of 25 random seeds at each budget.
    import sys

    print("\nSTATS", dict(CHANGES), sorted(OUTCOMES.items()), file=sys.stderr)

    def actions(outcomes: Any) -> set[str]:
        return {action.split(" as ")[0] for action, outcome in OUTCOMES if outcome in outcomes}

    everything = {outcome for _, outcome in OUTCOMES}
    assert actions(everything) == {
        "create_salon",
        "create_invitation",
        "approve",
        "reject",
        "cancel",
        "delete",
        "remove_membership",
        "change_role",
        "transfer",
    }
    assert actions({"denied"}) >= {"approve", "reject", "cancel", "delete"}, OUTCOMES
    assert actions({services.ROLE_TAKEN}) >= {"create_invitation", "approve", "change_role"}, (
        OUTCOMES
    )
    assert CHANGES["role changed"], CHANGES
    assert CHANGES["ownership transferred"], CHANGES
    assert CHANGES["approved as another role"], CHANGES
    if full:
        assert actions({"done"}) == actions(everything), OUTCOMES
        assert actions(everything - {"done"}) == actions(everything) - {"create_salon"}, OUTCOMES
        assert actions({services.ALREADY_DECIDED}), OUTCOMES
        assert actions({services.DUPLICATE_PENDING, services.ALREADY_MEMBER}), OUTCOMES
        assert actions({services.OWNER_MEMBERSHIP}) >= {"remove_membership"}, OUTCOMES
