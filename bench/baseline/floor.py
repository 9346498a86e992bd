"""The floor: the baseline's list written in plain Django, without REST framework.

The same user lookup (one query, as ``BenchUserHeaderAuthentication``), the same rows and
order, a ``values()`` page and a count, rendered by ``JsonResponse``. What is left of a list
request once every library layer is gone: the cost of Django, the database and JSON.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.http import HttpRequest, JsonResponse

from baseline.views import MANAGING_ROLES, PlainInvitationSerializer
from salon_invitations.models import Invitation, Membership


def floor_list(request: HttpRequest) -> JsonResponse:
    try:
        user = get_user_model()._default_manager.get(
            pk=int(request.headers["X-Bench-User"]), is_active=True
        )
    except (KeyError, ValueError, get_user_model().DoesNotExist):
        return JsonResponse({"detail": "unknown bench user"}, status=401)
    size = min(int(request.GET.get("page_size") or 50), 200)
    page = max(int(request.GET.get("page") or 1), 1)
    managed = Membership.objects.filter(user=user, role__in=MANAGING_ROLES).values("salon_id")
    rows = Invitation.objects.filter(salon_id__in=managed).order_by("-created")
    fields = PlainInvitationSerializer.Meta.fields
    results = list(rows.values(*fields)[(page - 1) * size : page * size])
    return JsonResponse({"count": rows.count(), "results": results})
