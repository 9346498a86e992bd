"""What both sides share, so that it costs them the same: authentication by a header,
page-number pagination and the middleware that reports the time spent in Django."""

from __future__ import annotations

import time
from typing import Any

from django.contrib.auth import get_user_model
from rest_framework import authentication, exceptions
from rest_framework.pagination import PageNumberPagination


class BenchUserHeaderAuthentication(authentication.BaseAuthentication):
    """``X-Bench-User: <user id>``. Benchmark-only and deliberately cheap (one query loading
    the user, as token authentication does), so that authentication does not dominate. Never
    use anything like it outside a benchmark."""

    def authenticate(self, request: Any) -> tuple[Any, None] | None:
        raw = request.META.get("HTTP_X_BENCH_USER")
        if not raw:
            return None
        try:
            user = get_user_model()._default_manager.get(pk=int(raw), is_active=True)
        except (ValueError, get_user_model().DoesNotExist) as exc:
            raise exceptions.AuthenticationFailed("unknown bench user") from exc
        return user, None

    def authenticate_header(self, request: Any) -> str:
        return "X-Bench-User"


class BenchPagination(PageNumberPagination):
    """50 per page, ``?page_size=`` up to 200."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


def server_timing(get_response: Any) -> Any:
    """``X-Server-Time-Us``: microseconds spent in Django (auth, view, queries, rendering)."""

    def middleware(request: Any) -> Any:
        start = time.perf_counter()
        response = get_response(request)
        response["X-Server-Time-Us"] = str(int((time.perf_counter() - start) * 1e6))
        return response

    return middleware
