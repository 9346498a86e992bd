"""The production topology of ``Procfile``, run by ``serve.py`` (``make serve``): HTTP under
gunicorn (the WSGI application), WebSockets under daphne (the ASGI application) on a port of
their own, a Celery worker with beat; the events cross from the HTTP processes to the sockets
over Redis.
"""

from __future__ import annotations

import json
import re
import secrets
import signal
import socket as sockets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from .support import (
    EXAMPLE_DIR,
    PASSWORD,
    SERVER_START_TIMEOUT,
    SUBPROCESS_WARNINGS,
    Completed,
    bearer,
    form_csrf,
    free_port,
    invite,
    invite_link,
    invite_link_pattern,
    manage,
    new_salon,
    project_env,
    run_python,
    services_configuration,
    sign_up,
    sqlite_url,
)

sys.path.insert(0, str(EXAMPLE_DIR))
import serve

INVITATIONS = "api/invitation_to_auto_salon"
#: Seconds to wait for a frame, an e-mail or a process that must come or go.
WAIT = 15


def cookie_header(cookies: dict[str, str]) -> str:
    return "; ".join(f"{name}={value}" for name, value in cookies.items())


def listening(port: int) -> bool:
    with sockets.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Serving:
    """A running ``python serve.py``, its ports and its output (stdout and stderr)."""

    process: subprocess.Popen[bytes]
    port: int
    ws_port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, condition, what: str) -> None:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while not condition():
            if self.process.poll() is not None:
                pytest.fail(f"serve.py exited with {self.process.returncode}\n{self.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{what} within {SERVER_START_TIMEOUT}s\n{self.output()[-5000:]}")
            time.sleep(0.1)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=serve.STOP_TIMEOUT + 5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"serve.py did not stop on SIGTERM\n{self.output()}")


def start_serve(env: dict[str, str], log_dir: Path, *names: str, ws_port: int = 0) -> Serving:
    port, ws_port = free_port(), ws_port or free_port()
    log_path = log_dir / f"serve-{port}.log"
    env = {
        **env,
        "PORT": str(port),
        "WS_PORT": str(ws_port),
        "WEBSOCKET_URL": f"ws://127.0.0.1:{ws_port}",
        "INVITE_URL": f"http://127.0.0.1:{port}/invite/{{token}}",
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "serve.py", *names],
            cwd=EXAMPLE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return Serving(process, port, ws_port, log_path)


def run_serve(env: dict[str, str], *names: str) -> Completed:
    return run_python("serve.py", *names, env=env, timeout=WAIT)


def test_the_procfile_serves_http_by_wsgi_and_websockets_by_asgi() -> None:
    table = serve.processes(serve.PROCFILE.read_text())
    assert set(table) == {"web", "ws", "worker"}
    assert table["web"].startswith("gunicorn configs.wsgi:application ")
    assert "configs.asgi:application" in table["ws"]
    assert table["worker"].startswith("celery --app configs worker --beat")


def test_web_and_ws_refuse_to_run_apart_without_redis(tmp_path: Path) -> None:
    env = project_env(DATABASE_URL=sqlite_url(tmp_path))
    refused = run_serve(env)
    assert refused.returncode == 2, refused
    assert "web and ws need REDIS_URL" in refused.stdout
    assert not refused.stderr
    unknown = run_serve(env, "web", "nginx")
    assert unknown.returncode == 2, unknown
    assert "unknown process(es) nginx" in unknown.stdout


def test_when_one_process_ends_the_others_are_stopped(tmp_path: Path) -> None:
    """daphne cannot bind its port (taken): serve.py stops gunicorn and exits with an error."""
    env = project_env(DATABASE_URL=sqlite_url(tmp_path), REDIS_URL="redis://127.0.0.1:6379/0")
    with sockets.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        running = start_serve(env, tmp_path, "web", "ws", ws_port=taken.getsockname()[1])
        try:
            status = running.process.wait(timeout=SERVER_START_TIMEOUT + serve.STOP_TIMEOUT)
        finally:
            running.stop()
    output = running.output()
    assert status != 0, output
    assert re.search(r"serve: ws exited with status [1-9]\d*; stopping the others", output), output
    assert not listening(running.port), output


@pytest.fixture
def production(tmp_path: Path) -> Iterator[dict[str, str]]:
    """PostgreSQL and Redis, DEBUG off, migrated and collected."""
    with services_configuration() as configuration:
        env = {
            **configuration.env,
            "DEBUG": "0",
            "SECRET_KEY": secrets.token_urlsafe(64),
            "ALLOWED_HOSTS": "127.0.0.1",
            "SECURE_SSL_REDIRECT": "0",
            "STATIC_ROOT": str(tmp_path / "static"),
            # Celery's Redis result backend calls redis-py's deprecated setex.
            "PYTHONWARNINGS": f"{SUBPROCESS_WARNINGS},ignore:Call to deprecated setex",
        }
        manage("migrate", "--noinput", env=env).ok()
        manage("collectstatic", "--noinput", env=env).ok()
        yield env


@pytest.mark.services
def test_the_production_topology_end_to_end(production: dict[str, str], tmp_path: Path) -> None:
    """Requests answered by gunicorn reach the sockets held by daphne; the worker sends the
    invite e-mail; SIGTERM stops all three processes."""
    running = start_serve(production, tmp_path)
    try:
        running.wait_for(lambda: listening(running.port), "gunicorn did not listen")
        running.wait_for(lambda: listening(running.ws_port), "daphne did not listen")
        running.wait_for(lambda: "celery@" in running.output(), "the worker did not start")
        with httpx.Client(base_url=running.base_url, timeout=10, trust_env=False) as http:
            assert http.get("login").headers["server"].startswith("gunicorn")
            _, owner = sign_up(http, "owner@example.com")
            applicant_id, applicant = sign_up(http, "applicant@example.com")
            salon = new_salon(http, owner)

            with connect(
                f"ws://127.0.0.1:{running.ws_port}/ws/{INVITATIONS}/?token={owner}",
                origin=running.base_url,
                proxy=None,
                open_timeout=WAIT,
            ) as owner_ws:
                owner_ws.send(json.dumps({"action": "ping"}))
                assert json.loads(owner_ws.recv(timeout=WAIT)) == {"type": "pong"}
                asked = http.post(
                    INVITATIONS,
                    json={"salon": salon["id"], "role": "seller"},
                    headers=bearer(applicant),
                )
                assert asked.status_code == 201, asked.text
                frame = json.loads(owner_ws.recv(timeout=WAIT))
                assert frame["type"] == "invitation.created", frame
                assert frame["invitation"]["id"] == asked.json()["id"]
                assert frame["invitation"]["user"] == applicant_id

            # The invite's e-mail is sent by the worker (the console backend prints it there).
            invite(http, owner, salon, "newcomer@example.com", "mechanic")
            pattern = invite_link_pattern(running.base_url)
            running.wait_for(lambda: pattern.search(running.output()), "no invite e-mail")
            assert invite_link(running.output(), "newcomer@example.com", pattern)

            # The dashboard's page opens its sockets on daphne's port. (Its cookies are
            # HTTPS-only with DEBUG off, which httpx honours: they are sent by hand here.)
            form = http.get("login")
            cookies = {"csrftoken": form.cookies["csrftoken"]}
            logged_in = http.post(
                "login",
                data={
                    "csrfmiddlewaretoken": form_csrf(form.text),
                    "username": "owner@example.com",
                    "password": PASSWORD,
                },
                headers={"Cookie": cookie_header(cookies)},
            )
            assert logged_in.status_code == 302, logged_in.text
            cookies["sessionid"] = logged_in.cookies["sessionid"]
            page = http.get("", headers={"Cookie": cookie_header(cookies)})
            assert page.status_code == 200, page.text
            stream = f'data-stream-url="ws://127.0.0.1:{running.ws_port}/ws/{INVITATIONS}/"'
            assert stream in page.text
    finally:
        status = running.stop()
    output = running.output()
    assert status == 0, output
    assert not listening(running.port) and not listening(running.ws_port), output
    assert "Traceback" not in output, output
