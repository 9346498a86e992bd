"""The role table, read from ``SALON_INVITATIONS["ROLES"]``.

A role has a rank (a member decides invitations for roles ranked strictly below their own),
a limit of holders per salon (``None``: unlimited), whether users may ask for it, and whether
its holders manage the salon's invitations.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from salon_invitations.conf import app_settings


@dataclass(frozen=True)
class Role:
    name: str
    label: str
    rank: int
    limit: int | None
    requestable: bool
    manages: bool

    def outranks(self, other: Role) -> bool:
        return self.rank > other.rank


def _build(name: str, spec: Mapping[str, Any]) -> Role:
    return Role(
        name=name,
        label=spec.get("label", name),
        rank=spec["rank"],
        limit=spec.get("limit"),
        requestable=bool(spec.get("requestable", True)),
        manages=bool(spec.get("manages", False)),
    )


@functools.lru_cache(maxsize=1)
def get_roles() -> dict[str, Role]:
    """All roles by name, in the order the settings list them."""
    return {name: _build(name, spec) for name, spec in app_settings.raw("ROLES").items()}


def get_role(name: str) -> Role | None:
    return get_roles().get(name)


def owner_role() -> Role:
    return get_roles()[app_settings.raw("OWNER_ROLE")]


def requestable_roles() -> list[Role]:
    owner = app_settings.raw("OWNER_ROLE")
    return [role for role in get_roles().values() if role.requestable and role.name != owner]


def managing_role_names() -> list[str]:
    return [role.name for role in get_roles().values() if role.manages]


def role_choices() -> list[tuple[str, str]]:
    return [(role.name, role.label) for role in get_roles().values()]


def next_to_owner() -> Role:
    """The highest-ranked role other than the owner's (the first in the table on a tie): what
    a previous owner keeps after handing the salon on, unless told otherwise."""
    owner = app_settings.raw("OWNER_ROLE")
    others = [role for role in get_roles().values() if role.name != owner]
    return max(others, key=lambda role: role.rank)
