"""The one authentication class of both sides: ``X-Bench-User: <user id>``.

Benchmark-only and deliberately cheap (one query loading the user, as token authentication
does), so that authentication costs the same on both sides and does not dominate.
Never use anything like it outside a benchmark.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from rest_framework import authentication, exceptions


class BenchUserHeaderAuthentication(authentication.BaseAuthentication):
    header = "HTTP_X_BENCH_USER"

    def authenticate(self, request: Any) -> tuple[Any, None] | None:
        raw = request.META.get(self.header)
        if not raw:
            return None
        try:
            user = get_user_model()._default_manager.get(pk=int(raw), is_active=True)
        except (ValueError, get_user_model().DoesNotExist) as exc:
            raise exceptions.AuthenticationFailed("unknown bench user") from exc
        return user, None

    def authenticate_header(self, request: Any) -> str:
        return "X-Bench-User"
