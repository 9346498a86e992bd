from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError

MAX_LIMIT = 1_000_000


def add_limit(parser: Any, what: str) -> None:
    parser.add_argument(
        "--limit", type=int, default=None, help=f"Send at most this many {what} (default: all)."
    )


def check_limit(limit: int | None) -> None:
    if limit is not None and not 1 <= limit <= MAX_LIMIT:
        raise CommandError(f"--limit must be between 1 and {MAX_LIMIT}.")
