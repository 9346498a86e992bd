"""DRF permission and throttle classes. Permissions decide nothing themselves: they ask the
policy."""

from __future__ import annotations

from typing import Any, cast

from django.http import Http404
from django.utils.translation import gettext_lazy as _
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle, SimpleRateThrottle

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
        if getattr(get_policy(), check)(request.user, obj):
            return True
        # Denied: but if a concurrent request deleted the object (and the memberships the
        # policy read went with it), the truthful answer is 404, not 403.
        if not type(obj)._default_manager.filter(pk=obj.pk).exists():
            raise Http404
        return False


class InvitationRateThrottle(ScopedRateThrottle):
    """Throttles invitation requests and decisions by scope, when the project sets a rate.

    The views name their scope in ``salon_throttle_scope``: ``"salon_invitations.create"``
    for new invitations and ``"salon_invitations.decide"`` for approve, reject, cancel and
    delete. Rates come from DRF's ``DEFAULT_THROTTLE_RATES``, read per request::

        REST_FRAMEWORK = {
            "DEFAULT_THROTTLE_RATES": {
                "salon_invitations.create": "20/hour",
                "salon_invitations.decide": "120/hour",
            },
        }

    A scope without a rate is not throttled (DRF's own ``ScopedRateThrottle`` would raise).
    The attribute has its own name so a project-wide ``ScopedRateThrottle`` ignores it.
    """

    scope_attr = "salon_throttle_scope"

    def allow_request(self, request: Request, view: Any) -> bool:
        self.scope = getattr(view, self.scope_attr, None)
        rates = cast("dict[str, str | None]", api_settings.DEFAULT_THROTTLE_RATES)
        rate = rates.get(self.scope) if self.scope else None
        if rate is None:
            return True
        self.rate = rate
        self.num_requests, self.duration = self.parse_rate(rate)
        return SimpleRateThrottle.allow_request(self, request, view)
