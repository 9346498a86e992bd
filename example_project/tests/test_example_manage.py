"""The example project's ``manage.py`` commands, without a server: system checks (also for
deployment), the OpenAPI schema, migrations, and the demo data."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import pytest

from .support import INVITE_LINK, manage, project_env, sqlite_url

#: What a production deployment sets (README "Environment"). Nothing here is connected to.
PRODUCTION = {
    "DEBUG": "0",
    "ALLOWED_HOSTS": "example.com",
    "CSRF_TRUSTED_ORIGINS": "https://example.com",
    "DATABASE_URL": "postgres://salon:secret@db.example.com:5432/salon",
    "REDIS_URL": "redis://redis.example.com:6379/0",
    "EMAIL_HOST": "smtp.example.com",
}

COUNTS = (
    "import json; "
    "from django.contrib.auth import get_user_model; "
    "from salon_invitations.models import Invitation, get_membership_model, get_salon_model; "
    "print(json.dumps({"
    "'users': get_user_model()._default_manager.count(), "
    "'salons': get_salon_model()._default_manager.count(), "
    "'memberships': get_membership_model()._default_manager.count(), "
    "'invitations': Invitation._default_manager.count()}))"
)


DATABASE_OPTIONS = (
    "import json; from django.conf import settings; "
    "print(json.dumps(settings.DATABASES['default']['OPTIONS']))"
)


def database_options(database_url: str, **variables: str) -> dict:
    """``DATABASES["default"]["OPTIONS"]`` as the settings compute them (nothing connects)."""
    env = project_env(DATABASE_URL=database_url, **variables)
    return json.loads(manage("shell", "-c", DATABASE_OPTIONS, env=env).ok().stdout.splitlines()[-1])


CHANNEL_LAYERS = (
    "import json; from django.conf import settings; "
    "print(json.dumps(settings.CHANNEL_LAYERS['default'], "
    "default=lambda o: f'{o.__module__}.{o.__qualname__}'))"
)


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({}, {"BACKEND": "channels.layers.InMemoryChannelLayer"}),
        (
            {"REDIS_URL": "redis://redis.example.com:6379/3"},
            {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {
                    "hosts": [
                        {
                            "address": "redis://redis.example.com:6379/3",
                            "socket_timeout": 15,
                            "max_connections": 2000,
                            "retry_on_error": ["redis.exceptions.ConnectionError"],
                        }
                    ]
                },
            },
        ),
        (
            {"REDIS_URL": "redis://redis.example.com:6379/3", "CHANNEL_LAYER": "pubsub"},
            {
                "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                "CONFIG": {"hosts": ["redis://redis.example.com:6379/3"], "prefix": "asgi-db3:"},
            },
        ),
        (
            {"REDIS_URL": "redis://redis.example.com", "CHANNEL_LAYER": "pubsub"},
            {
                "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                "CONFIG": {"hosts": ["redis://redis.example.com"], "prefix": "asgi-db0:"},
            },
        ),
    ],
)
def test_channel_layer_from_the_environment(variables: dict[str, str], expected: dict) -> None:
    """``REDIS_URL`` picks RedisChannelLayer, and ``CHANNEL_LAYER=pubsub`` the pub/sub layer,
    whose prefix names the Redis database (pub/sub channels are shared by all of them)."""
    env = project_env(**variables)
    result = manage("shell", "-c", CHANNEL_LAYERS, env=env).ok()
    assert json.loads(result.stdout.splitlines()[-1]) == expected


def test_an_unknown_channel_layer_is_refused() -> None:
    result = manage("check", env=project_env(REDIS_URL="redis://r:6379/0", CHANNEL_LAYER="kafka"))
    assert result.returncode != 0, str(result)
    assert "CHANNEL_LAYER must be redis or pubsub, not 'kafka'" in result.stderr


def test_check_without_environment() -> None:
    result = manage("check", "--fail-level", "WARNING", env=project_env()).ok()
    assert "System check identified no issues" in result.stdout


def test_check_deploy_with_production_environment() -> None:
    env = project_env(SECRET_KEY=secrets.token_urlsafe(64), **PRODUCTION)
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env).ok()
    assert "System check identified no issues" in result.stdout


def test_debug_off_requires_a_secret_key() -> None:
    result = manage("check", env=project_env(**PRODUCTION))
    assert result.returncode != 0, str(result)
    assert "ImproperlyConfigured" in result.stderr
    assert "SECRET_KEY" in result.stderr


def test_schema_validates(tmp_path: Path) -> None:
    schema = tmp_path / "schema.yaml"
    env = project_env(DATABASE_URL=sqlite_url(tmp_path))
    manage("spectacular", "--validate", "--fail-on-warn", "--file", str(schema), env=env).ok()
    text = schema.read_text()
    assert text.startswith("openapi: 3")
    for path in (
        "/api/invitation_to_auto_salon:",
        "/api/invitation_to_auto_salon/{id}/approved:",
        "/api/auto_salon:",
        "/api/salon_role:",
        "/api/auth:",
        "/api/user/registration:",
    ):
        assert f"\n  {path}\n" in text, path


def test_no_missing_migrations(tmp_path: Path) -> None:
    env = project_env(DATABASE_URL=sqlite_url(tmp_path))
    result = manage("makemigrations", "--check", "--dry-run", env=env).ok()
    assert "No changes detected" in result.stdout


def test_seed_demo_is_idempotent(tmp_path: Path) -> None:
    env = project_env(DATABASE_URL=sqlite_url(tmp_path))
    manage("migrate", "--noinput", env=env).ok()

    first = manage("seed_demo", env=env).ok()
    assert "created  user owner@example.com" in first.stdout
    assert "Demo data is ready" in first.stdout
    # Which account goes in which window of the dashboard.
    assert "Dashboard: http://127.0.0.1:8000/ " in first.stdout
    assert "window 1: log in as owner@example.com" in first.stdout
    assert "window 2: log in as applicant@example.com" in first.stdout
    counts = json.loads(manage("shell", "-c", COUNTS, env=env).ok().stdout.splitlines()[-1])
    # 5 users; 2 salons owned by one user; the admin approved, the seller pending, the
    # mechanic rejected; newcomer@example.com (no account) invited.
    assert counts == {"users": 5, "salons": 2, "memberships": 3, "invitations": 4}
    # The invite's link, caught from its e-mail (which nobody else got).
    links = INVITE_LINK.findall(first.stdout)
    assert len(links) == 1, first.stdout
    assert "MIME-Version:" not in first.stdout

    second = manage("seed_demo", env=env).ok()
    assert "created" not in second.stdout, second.stdout
    assert "exists   user owner@example.com" in second.stdout
    assert "Demo data is ready" in second.stdout
    assert not INVITE_LINK.findall(second.stdout), second.stdout
    assert "--resend-invite prints a new link" in second.stdout
    again = json.loads(manage("shell", "-c", COUNTS, env=env).ok().stdout.splitlines()[-1])
    assert again == counts

    # --resend-invite e-mails it again at once only after INVITE_RESEND_COOLDOWN (a minute).
    soon = manage("seed_demo", "--resend-invite", env=env).ok()
    assert "skipped  invite newcomer@example.com" in soon.stdout, soon.stdout
    assert not INVITE_LINK.findall(soon.stdout)


def run_sql(statement: str, env: dict[str, str]) -> str:
    """Run one SQL statement through ``manage.py shell``: the rows it returns, or the database
    error it raised, as text."""
    code = (
        "from django.db import DatabaseError, connection\n"
        "try:\n"
        "    with connection.cursor() as cursor:\n"
        f"        cursor.execute({statement!r})\n"
        "        print(cursor.fetchall() if cursor.description else 'done')\n"
        "except DatabaseError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    return manage("shell", "-c", code, env=env).ok().stdout.splitlines()[-1]


def insert_user(email: str) -> str:
    return (
        "INSERT INTO users_user (password, is_superuser, email, is_staff, is_active, date_joined)"
        f" VALUES ('', FALSE, '{email}', FALSE, TRUE, '2026-01-01')"
    )


def test_case_insensitive_email_migration_keeps_clashing_accounts(tmp_path: Path) -> None:
    """users.0002 adds a unique index on LOWER(email); accounts that clash stop it, untouched."""
    env = project_env(DATABASE_URL=sqlite_url(tmp_path))
    manage("migrate", "users", "0001", "--noinput", env=env).ok()
    for email in ("Ann@X.com", "ann@x.com", "bob@x.com"):
        assert run_sql(insert_user(email), env) == "done"

    refused = manage("migrate", "--noinput", env=env)
    assert refused.returncode != 0, str(refused)
    assert (
        "CommandError: 1 e-mail address(es) belong to more than one account when compared "
        "case-insensitively: ann@x.com." in refused.stderr
    ), str(refused)
    assert "Traceback" not in refused.stderr
    emails = "SELECT email FROM users_user ORDER BY id"
    assert run_sql(emails, env) == "[('Ann@X.com',), ('ann@x.com',), ('bob@x.com',)]"

    # Once the accounts no longer clash, the migration goes through and the index holds.
    run_sql("UPDATE users_user SET email = 'ann+old@x.com' WHERE email = 'ann@x.com'", env)
    manage("migrate", "--noinput", env=env).ok()
    assert run_sql(insert_user("BOB@x.com"), env).startswith("IntegrityError UNIQUE")
    assert run_sql(emails, env) == "[('Ann@X.com',), ('ann+old@x.com',), ('bob@x.com',)]"


POSTGRES_URL = "postgres://salon:secret@db.example.com:5432/salon?sslmode=require"


def test_postgres_pool_defaults_follow_the_thread_count() -> None:
    """README "Database connections": max_size = ASGI_THREADS (Python's default thread-pool
    size, min(32, CPUs + 4), when unset) + 4, min_size 2, timeout 5 s."""
    cpus = getattr(os, "process_cpu_count", os.cpu_count)() or 1
    assert database_options(POSTGRES_URL) == {
        "sslmode": "require",
        "pool": {"min_size": 2, "max_size": min(32, cpus + 4) + 4, "timeout": 5.0},
    }
    assert database_options(POSTGRES_URL, ASGI_THREADS="12")["pool"] == {
        "min_size": 2,
        "max_size": 16,
        "timeout": 5.0,
    }


def test_postgres_pool_is_sized_by_the_environment() -> None:
    pool = database_options(
        POSTGRES_URL, DB_POOL_MIN_SIZE="1", DB_POOL_MAX_SIZE="3", DB_POOL_TIMEOUT="2.5"
    )["pool"]
    assert pool == {"min_size": 1, "max_size": 3, "timeout": 2.5}
    # A maximum below the default minimum takes the minimum down with it.
    assert database_options(POSTGRES_URL, DB_POOL_MAX_SIZE="1")["pool"]["min_size"] == 1


@pytest.mark.parametrize(
    "sizes", [{"DB_POOL_MIN_SIZE": "8", "DB_POOL_MAX_SIZE": "4"}, {"DB_POOL_MAX_SIZE": "0"}]
)
def test_postgres_pool_sizes_that_cannot_work_are_refused(sizes: dict[str, str]) -> None:
    result = manage("check", env=project_env(DATABASE_URL=POSTGRES_URL, **sizes))
    assert result.returncode != 0, str(result)
    assert "ImproperlyConfigured: The database pool needs" in result.stderr, str(result)


def test_sqlite_has_no_pool(tmp_path: Path) -> None:
    assert database_options(sqlite_url(tmp_path), DB_POOL_MAX_SIZE="3") == {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }


API_ANSWER_WITHOUT_REDIS = (
    "import json; from django.conf import settings; from rest_framework.settings import "
    "api_settings; from redis.exceptions import TimeoutError; "
    "r = api_settings.EXCEPTION_HANDLER(TimeoutError('Timeout reading from socket'), {}); "
    "print(json.dumps([r.status_code, r['Retry-After'], r.data, "
    "settings.CACHES['default'].get('OPTIONS')]))"
)


def test_while_redis_does_not_answer_the_api_answers_503_within_a_second() -> None:
    """The throttles count in Redis: a Redis that stalls makes each request a JSON 503 with
    Retry-After, within the cache's one-second timeout (not an HTML 500 after five)."""
    env = project_env(REDIS_URL="redis://redis.example.com:6379/3")
    result = manage("shell", "-c", API_ANSWER_WITHOUT_REDIS, env=env).ok()
    status, retry_after, body, cache_options = json.loads(result.stdout.splitlines()[-1])
    assert (status, retry_after) == (503, "5")
    assert body["code"] == "service_unavailable" and "Try again" in body["detail"]
    assert cache_options == {"socket_timeout": 1, "socket_connect_timeout": 1}


PAGE_ANSWER_WITHOUT_REDIS = (
    "import json; from unittest import mock; from django.test import RequestFactory; "
    "from redis.exceptions import TimeoutError; from apps.invites import views; "
    "stalled = mock.patch.object(views.PageThrottle, 'allow_request', "
    "side_effect=TimeoutError('Timeout reading from socket')); "
    "stalled.start(); print(json.dumps(views.throttled(RequestFactory().post('/login'), 'auth')))"
)


def test_while_redis_does_not_answer_the_log_in_pages_answer_503() -> None:
    """The pages that log people in (the dashboard's, the invite page's) count their posts in
    the same cache: a 503 with Retry-After too, not a 500."""
    env = project_env(REDIS_URL="redis://redis.example.com:6379/3")
    result = manage("shell", "-c", PAGE_ANSWER_WITHOUT_REDIS, env=env).ok()
    message, wait, status = json.loads(result.stdout.splitlines()[-1])
    assert (status, wait) == (503, 5) and "Try again" in message
