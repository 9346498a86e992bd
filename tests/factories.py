"""Small helpers that build the objects the tests talk about."""

from __future__ import annotations

import itertools
from typing import Any

from django.contrib.auth import get_user_model

from salon_invitations import services
from salon_invitations.models import Invitation, get_membership_model, get_salon_model

_seq = itertools.count(1)


def make_user(username: str | None = None, **fields: Any) -> Any:
    username = username or f"user{next(_seq)}"
    fields.setdefault("email", f"{username}@example.com")
    return get_user_model().objects.create_user(username=username, password="pw", **fields)


def make_staff(username: str | None = None) -> Any:
    return make_user(username, is_staff=True)


def make_salon(owner: Any = None, name: str | None = None, **fields: Any) -> Any:
    owner = owner or make_user()
    return services.create_salon(owner=owner, name=name or f"Salon {next(_seq)}", **fields)


def add_member(salon: Any, user: Any = None, role: str = "seller") -> Any:
    """A membership created directly, as if an invitation had been approved."""
    user = user or make_user()
    return get_membership_model()._default_manager.create(salon=salon, user=user, role=role)


def make_invitation(
    salon: Any = None, user: Any = None, role: str = "seller", **fields: Any
) -> Invitation:
    salon = salon or make_salon()
    user = user or make_user()
    return services.create_invitation(user=user, salon=salon, role=role, **fields)


def salon_model() -> Any:
    return get_salon_model()


def membership_model() -> Any:
    return get_membership_model()


def before_the_lock(change: Any) -> Any:
    """Patch the services' salon lock so that ``change`` happens just before the first lock
    is taken: what a concurrent request that committed first would have done.

    (In a test that runs inside one transaction, ``change`` is rolled back with the service's
    own work when the service refuses: assert on what the service did, not on ``change``.)
    """
    from unittest import mock

    from salon_invitations.services import base

    original = base.lock_salon
    done: list[bool] = []

    def lock(salon_id: Any) -> Any:
        if not done:
            done.append(True)
            change()
        return original(salon_id)

    return mock.patch.object(base, "lock_salon", lock)
