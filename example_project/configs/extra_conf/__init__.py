"""Settings split by concern, star-imported by ``configs.settings``.

Each module reads its own values from the environment with the helpers below, so every
concern can be read (and changed) on its own. With no environment at all the project runs on
its embedded development defaults.
"""

from __future__ import annotations

import os


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value and value.strip() else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value and value.strip() else default


def env_list(name: str, default: str = "") -> list[str]:
    """A comma-separated variable as a list, blanks dropped."""
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


#: Redis for Celery and Channels. Unset: eager Celery and the in-memory channel layer.
REDIS_URL = env_str("REDIS_URL")
