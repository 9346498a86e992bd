"""Helpers of the example project's smoke tests: subprocesses, the server, the services.

Nothing here imports Django; see ``conftest.py``.
"""

from __future__ import annotations

import email
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import Message
from itertools import count
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import pytest

EXAMPLE_DIR = Path(__file__).resolve().parent.parent

#: Seconds the server may take to listen (it is usually up in about one second).
SERVER_START_TIMEOUT = 30
#: Seconds any ``manage.py`` command may take.
MANAGE_TIMEOUT = 120

#: Environment variables the example project reads (configs/settings.py, configs/extra_conf/),
#: removed from every subprocess's environment before the test sets its own.
PROJECT_VARIABLES = frozenset(
    {
        "DJANGO_SETTINGS_MODULE",
        "DEBUG",
        "SECRET_KEY",
        "ALLOWED_HOSTS",
        "CSRF_TRUSTED_ORIGINS",
        "DATABASE_URL",
        "DB_POOL_MIN_SIZE",
        "DB_POOL_MAX_SIZE",
        "DB_POOL_TIMEOUT",
        "ASGI_THREADS",
        "REDIS_URL",
        "CHANNEL_LAYER",
        "EMAIL_HOST",
        "EMAIL_HOST_USER",
        "EMAIL_HOST_PASSWORD",
        "EMAIL_PORT",
        "EMAIL_USE_TLS",
        "EMAIL_TIMEOUT",
        "DEFAULT_FROM_EMAIL",
        "JWT_ACCESS_MINUTES",
        "DASHBOARD_TOKEN_SECONDS",
        "JWT_REFRESH_DAYS",
        "THROTTLE_ANON",
        "THROTTLE_USER",
        "THROTTLE_AUTH",
        "THROTTLE_REGISTRATION",
        "THROTTLE_INVITE",
        "INVITATION_TTL_DAYS",
        "INVITE_URL",
        "INVITE_TTL_DAYS",
        "INVITE_RESEND_COOLDOWN_SECONDS",
        "SECURE_SSL_REDIRECT",
        "SECURE_HSTS_SECONDS",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS",
        "SECURE_HSTS_PRELOAD",
        "SECURE_PROXY_SSL_HEADER",
        "NUM_PROXIES",
        "STATIC_ROOT",
        "TIME_ZONE",
        "API_PAGE_SIZE",
        "SALON_LOG_LEVEL",
        "PYTHONWARNINGS",
        "WEBSOCKET_URL",
        # serve.py's Procfile
        "PORT",
        "WS_PORT",
        "SERVE_HOST",
        "WEB_CONCURRENCY",
        "WEB_THREADS",
    }
)

SUBPROCESS_WARNINGS = "error::DeprecationWarning,error::PendingDeprecationWarning"

#: The password of every account the tests register.
PASSWORD = "Smoke-test-pass-739!"


# Subprocesses ---------------------------------------------------------------------------------


def project_env(**variables: str) -> dict[str, str]:
    """This process's environment without the project's variables, plus ``variables``."""
    env = {name: value for name, value in os.environ.items() if name not in PROJECT_VARIABLES}
    env.update(
        DJANGO_SETTINGS_MODULE="configs.settings",
        PYTHONWARNINGS=SUBPROCESS_WARNINGS,
        PYTHONUNBUFFERED="1",
    )
    env.update(variables)
    return env


def sqlite_url(directory: Path) -> str:
    """``DATABASE_URL`` of a (new) SQLite file in ``directory`` (an absolute path)."""
    return f"sqlite:///{directory.resolve() / 'db.sqlite3'}"


def run_python(*args: str, env: dict[str, str], timeout: float) -> Completed:
    """Run ``python *args`` in ``example_project/`` and wait for it (bounded)."""
    process = subprocess.run(
        [sys.executable, *args],
        cwd=EXAMPLE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Completed(args, process.returncode, process.stdout, process.stderr)


def manage(*args: str, env: dict[str, str], timeout: float = MANAGE_TIMEOUT) -> Completed:
    """Run ``python manage.py *args`` in ``example_project/``."""
    return run_python("manage.py", *args, env=env, timeout=timeout)


@dataclass
class Completed:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return (
            f"python {' '.join(self.args)} exited {self.returncode}\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
        )

    def ok(self) -> Completed:
        assert self.returncode == 0, str(self)
        return self


# The server -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A running ``daphne configs.asgi:application`` on 127.0.0.1."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def origin(self) -> str:
        return self.base_url

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start_server(
    name: str,
    env: dict[str, str],
    log_dir: Path,
    *,
    port_env: Callable[[int], dict[str, str]] | None = None,
    port: int | None = None,
) -> Server:
    """Start daphne on a free loopback port (or on ``port``, to restart a server where its
    clients will look for it) and wait (bounded) until it accepts connections.

    A port found free can be taken by someone else before daphne binds it: then daphne exits
    at once and another port is tried. ``port_env(port)`` adds the variables that name the
    port (``INVITE_URL``, say) to the server's environment.
    """
    fixed = port
    for attempt in range(1 if fixed else 3):
        port = fixed or free_port()
        log_path = log_dir / f"daphne-{name}-{attempt}.log"
        command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [*command, "configs.asgi:application"],
                cwd=EXAMPLE_DIR,
                env={**env, **port_env(port)} if port_env else env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        server = Server(name, port, process, log_path)
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            if _listening(port):
                time.sleep(0.1)  # a daphne that lost the port race exits right after
                if process.poll() is None:
                    return server
                break
            time.sleep(0.1)
        else:
            server.stop()
            pytest.fail(
                f"daphne did not listen on 127.0.0.1:{port} within {SERVER_START_TIMEOUT}s\n"
                f"{server.log_tail()}"
            )
        server.stop()
        if fixed or "Address already in use" not in server.log():
            pytest.fail(f"daphne exited with {process.returncode}\n{server.log_tail()}")
    pytest.fail("daphne could not bind a free port in 3 attempts")


# Configurations -------------------------------------------------------------------------------


def _postgres_params() -> dict[str, str]:
    return {
        "host": os.environ.get("PGHOST", "127.0.0.1"),
        "port": os.environ.get("PGPORT", "5432"),
        "user": os.environ.get("PGUSER", "postgres"),
        "password": os.environ.get("PGPASSWORD", ""),
    }


@dataclass
class PostgresDatabase:
    """A uniquely named PostgreSQL database, created now and dropped by :meth:`drop`."""

    name: str
    url: str

    @classmethod
    def create(cls) -> PostgresDatabase:
        import psycopg
        from psycopg import sql

        params = _postgres_params()
        name = f"salon_example_{uuid.uuid4().hex[:12]}"
        error = None
        try:
            with psycopg.connect(
                dbname="postgres", autocommit=True, connect_timeout=5, **params
            ) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.Error as exc:
            error = exc
        if error is not None:
            pytest.fail(
                f"SALON_REQUIRE_SERVICES=1 but PostgreSQL at {params['host']}:{params['port']} "
                f"(user {params['user']}) is unusable: {error}"
            )
        auth = quote(params["user"], safe="")
        if params["password"]:
            auth += ":" + quote(params["password"], safe="")
        return cls(name, f"postgres://{auth}@{params['host']}:{params['port']}/{name}")

    def query(self, statement: str) -> list[tuple[object, ...]]:
        import psycopg

        params = _postgres_params()
        with psycopg.connect(dbname=self.name, connect_timeout=5, **params) as conn:
            return conn.execute(statement).fetchall()

    def drop(self) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(
            dbname="postgres", autocommit=True, connect_timeout=5, **_postgres_params()
        ) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name))
            )


@dataclass
class RedisDatabase:
    """An empty Redis database (1 … 15) claimed for this run, flushed by :meth:`release`.

    The claim is a key set with NX in that database: concurrent runs on one Redis each get
    their own database, so none hears another's channel-layer groups (user ids repeat across
    fresh databases) or Celery queue.
    """

    url: str
    lock_value: str

    LOCK_KEY = "salon-example-tests:claimed"

    @classmethod
    def claim(cls) -> RedisDatabase:
        import redis

        base = urlsplit(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")
        where = f"{base.hostname}:{base.port or 6379}"
        lock_value = uuid.uuid4().hex
        error = None
        try:
            for db in range(15, 0, -1):
                url = urlunsplit(base._replace(path=f"/{db}", query=""))
                client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
                try:
                    if not client.set(cls.LOCK_KEY, lock_value, nx=True, ex=3600):
                        continue
                    if client.dbsize() == 1:
                        return cls(url, lock_value)
                    client.delete(cls.LOCK_KEY)  # in use by something else: leave it alone
                except redis.ResponseError:  # fewer databases configured
                    continue
                finally:
                    client.close()
        except redis.RedisError as exc:
            error = exc
        if error is not None:
            pytest.fail(f"SALON_REQUIRE_SERVICES=1 but Redis at {where} is unusable: {error}")
        pytest.fail(f"no empty Redis database (1-15) at {where} to claim for the test")

    def key_names(self) -> list[str]:
        import redis

        client = redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5)
        try:
            return sorted(key.decode() for key in client.keys("*"))
        finally:
            client.close()

    def release(self) -> None:
        import redis

        client = redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5)
        try:
            if client.get(self.LOCK_KEY) == self.lock_value.encode():
                client.flushdb()
        finally:
            client.close()


@dataclass
class Configuration:
    """A configuration's name and the environment its subprocesses get; with ``services``
    also the PostgreSQL and Redis databases in use."""

    name: str
    env: dict[str, str]
    postgres: PostgresDatabase | None = None
    redis: RedisDatabase | None = None


@contextmanager
def services_configuration(name: str = "services") -> Iterator[Configuration]:
    """A fresh PostgreSQL database and a claimed Redis database, dropped and flushed after."""
    database = PostgresDatabase.create()
    try:
        redis_db = RedisDatabase.claim()
        try:
            env = project_env(DATABASE_URL=database.url, REDIS_URL=redis_db.url)
            yield Configuration(name, env, postgres=database, redis=redis_db)
        finally:
            redis_db.release()
    finally:
        database.drop()


# E-mail -----------------------------------------------------------------------------------------


def invite_link_pattern(origin: str) -> re.Pattern[str]:
    """Accept links of invite e-mails to the server at ``origin``; the group is the token."""
    return re.compile(re.escape(origin) + r"/invite/([A-Za-z0-9_-]{43})")


#: The accept link of invite e-mails with ``INVITE_URL``'s default; the group is the token.
INVITE_LINK = invite_link_pattern("http://127.0.0.1:8000")
#: What Django's console e-mail backend writes after each message.
EMAIL_SEPARATOR = "-" * 79


def printed_emails(output: str) -> list[Message]:
    """The e-mails Django's console backend printed in ``output`` (a server's log, say)."""
    messages = []
    for chunk in output.split(EMAIL_SEPARATOR):
        # Log lines may come before a message: it starts at its first header.
        start = chunk.find("Content-Type: ")
        if start != -1:
            messages.append(email.message_from_string(chunk[start:]))
    return messages


def invite_link(output: str, address: str, pattern: re.Pattern[str] = INVITE_LINK) -> str:
    """The accept link (matching ``pattern``) in the last invite e-mail to ``address`` printed
    in ``output``; the link must be in the e-mail's text part."""
    for message in reversed(printed_emails(output)):
        if message["To"] == address:
            (text,) = [p for p in message.walk() if p.get_content_type() == "text/plain"]
            body = text.get_payload(decode=True).decode()
            found = pattern.search(body)
            assert found, f"no accept link in the e-mail to {address}:\n{body}"
            return found.group(0)
    pytest.fail(f"no e-mail to {address} was printed")


def invite_token(output: str, address: str) -> str:
    """The token of :func:`invite_link` with ``INVITE_URL``'s default."""
    return invite_link(output, address).rsplit("/", 1)[1]


# Clients ---------------------------------------------------------------------------------------


_CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def form_csrf(html: str) -> str | None:
    """The CSRF token of the first form of a page, as a browser would post it."""
    found = _CSRF_FIELD.search(html)
    return found.group(1) if found else None


def bearer(access: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access}"}


#: Where a salon's manager invites an address.
INVITE = "api/invitation_to_auto_salon/invite"

_salons = count(1)


def new_salon(http: httpx.Client, owner: str, name: str = "") -> dict[str, Any]:
    """A salon created by the user of the access token ``owner``; named ``name`` or
    ``Invite Motors <n>``."""
    name = name or f"Invite Motors {next(_salons)}"
    created = http.post("api/auto_salon", json={"name": name}, headers=bearer(owner))
    assert created.status_code == 201, created.text
    return created.json()


def invite(http: httpx.Client, owner: str, salon: dict[str, Any], address: str, role: str) -> int:
    """The pk of a pending invite of ``address`` to ``salon`` in ``role``, sent by the user of
    the access token ``owner``."""
    body = {"salon": salon["id"], "role": role, "email": address}
    response = http.post(INVITE, json=body, headers=bearer(owner))
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "pending"
    return response.json()["id"]


def sign_up(http: httpx.Client, email: str) -> tuple[int, str]:
    """Register and log in: ``(user id, access token)``."""
    registered = http.post("api/user/registration", json={"email": email, "password": PASSWORD})
    assert registered.status_code == 201, registered.text
    body = registered.json()
    assert body["email"] == email
    assert "password" not in body
    tokens = http.post("api/auth", json={"email": email, "password": PASSWORD})
    assert tokens.status_code == 200, tokens.text
    access = tokens.json()["access"]
    assert tokens.json()["refresh"]
    me = http.get("api/user/me", headers=bearer(access))
    assert me.status_code == 200, me.text
    assert me.json()["id"] == body["id"]
    assert me.json()["email"] == email
    return body["id"], access


def page_csrf(http: httpx.Client, path: str = "") -> str:
    """The CSRF token of the page at ``path`` (the dashboard by default)."""
    page = http.get(path)
    assert page.status_code == 200, page.text
    csrf = form_csrf(page.text)
    assert csrf, page.text
    return csrf


def log_in(
    http: httpx.Client, email: str, *, headers: dict[str, str] | None = None, **extra: str
) -> httpx.Response:
    data = {"csrfmiddlewaretoken": page_csrf(http, "login"), "username": email}
    return http.post("login", data={**data, "password": PASSWORD, **extra}, headers=headers)
