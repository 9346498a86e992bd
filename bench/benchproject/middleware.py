"""``X-Server-Time-Us``: microseconds spent in Django (auth, view, queries, rendering)."""

from __future__ import annotations

import time
from typing import Any


def server_timing(get_response: Any) -> Any:
    def middleware(request: Any) -> Any:
        start = time.perf_counter()
        response = get_response(request)
        response["X-Server-Time-Us"] = str(int((time.perf_counter() - start) * 1e6))
        return response

    return middleware
