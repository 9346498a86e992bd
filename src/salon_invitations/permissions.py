"""DRF permission classes. They decide nothing themselves: they ask the policy."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request

from salon_invitations.policies import get_policy


class PolicyPermission(IsAuthenticated):
    """Authenticated callers only; object actions are checked by the policy.

    The view maps its actions to policy methods in ``policy_checks``, e.g.
    ``{"approve": "can_decide"}``; each method is called as ``method(user, obj)``. Actions
    not listed need only visibility, which the view's ``get_queryset`` already enforces.
    """

    message = _("You do not have permission to perform this action on this object.")

    def has_object_permission(self, request: Request, view: Any, obj: Any) -> bool:
        check = getattr(view, "policy_checks", {}).get(view.action)
        if check is None:
            return True
        return bool(getattr(get_policy(), check)(request.user, obj))
