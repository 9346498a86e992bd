"""``{{ name|role_label }}``: a role's label from the package's role table."""

from __future__ import annotations

from django import template

from salon_invitations import roles

register = template.Library()


@register.filter
def role_label(name: str) -> str:
    role = roles.get_role(name)
    return str(role.label) if role else name
