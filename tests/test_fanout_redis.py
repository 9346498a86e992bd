"""Events cross server processes through Redis (SPEC §4): two daphne servers, one database.

The servers run ``tests.asgi`` on this run's database server, PostgreSQL or MariaDB/MySQL (its
test database, so they see the rows this test commits), and the Redis channel layer under a key
prefix of their own. A change made over HTTP on one server reaches sockets connected to the
other.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings
from rest_framework_simplejwt.tokens import AccessToken
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from salon_invitations.models import Invitation, get_membership_model
from tests import asyncapi_support, factories

pytestmark = [
    pytest.mark.concurrency,
    pytest.mark.django_db(transaction=True),
    # The test settings' SECRET_KEY (the JWT signing key) is deliberately short.
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]

ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT = 20.0
EVENT_TIMEOUT = 5.0
SILENCE = 1.0
INVITATIONS = "/api/invitation_to_auto_salon"
#: database vendor -> (SALON_TEST_DATABASE for tests.settings, its database-name variable)
SERVER_DATABASES = {
    "postgresql": ("postgres", "PGDATABASE"),
    "mysql": ("mariadb", "MYSQL_DATABASE"),
}


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    channel_prefix: str

    def http(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def ws(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def output(self) -> str:
        return f"--- {self.name} (port {self.port}) ---\n" + self.log.read_text(errors="replace")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _stop(server: Server) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=10)


def _wait_until_listening(servers: list[Server]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    for server in servers:
        while True:
            if server.process.poll() is not None:
                pytest.fail(f"{server.name} exited at start-up\n{server.output()}")
            try:
                with socket.create_connection(("127.0.0.1", server.port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"{server.name} not listening after {STARTUP_TIMEOUT}s\n{server.output()}"
                    )
                time.sleep(0.1)


@pytest.fixture
def servers(transactional_db, tmp_path, request) -> Iterator[list[Server]]:
    """Two daphne processes on free ports, stopped (always) before the database is flushed."""
    prefix = f"salon-fanout-{uuid.uuid4().hex}"
    database, name_variable = SERVER_DATABASES[connection.vendor]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": settings.SETTINGS_MODULE,
        "SALON_TEST_DATABASE": database,
        name_variable: connection.settings_dict["NAME"],
        # The layer of this run (the pub/sub one, or by default RedisChannelLayer).
        "SALON_TEST_CHANNEL_LAYER": os.environ.get("SALON_TEST_CHANNEL_LAYER") or "redis",
        "SALON_TEST_CHANNEL_PREFIX": prefix,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    started: list[Server] = []

    def stop_all() -> None:
        for server in started:
            _stop(server)

    request.addfinalizer(stop_all)
    for name in ("server 1", "server 2"):
        port = _free_port()
        log = tmp_path / f"daphne-{port}.log"
        daphne = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
        with log.open("wb") as out:
            process = subprocess.Popen(
                [*daphne, "tests.asgi:application"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        started.append(Server(name, port, process, log, prefix))
    _wait_until_listening(started)
    yield started
    for server in started:
        assert server.process.poll() is None, f"{server.name} died\n{server.output()}"


def logged_id(kind: str) -> int:
    """The event log id of the latest event of ``kind``: what its frames carry."""
    from salon_invitations.models import SalonEvent

    return SalonEvent.objects.filter(kind=kind).latest("id").id


def _receive(sock: ClientConnection, servers: list[Server]) -> Any:
    """The next frame of an invitation socket, checked against docs/asyncapi.yaml (the
    servers run in processes of their own, out of the reach of ``frames_match_asyncapi``)."""
    try:
        frame = json.loads(sock.recv(timeout=EVENT_TIMEOUT))
    except TimeoutError:
        logs = "\n".join(server.output() for server in servers)
        pytest.fail(f"no frame within {EVENT_TIMEOUT}s\n{logs}")
    asyncapi_support.assert_server_frame("invitation", frame)
    return frame


def _assert_silent(sock: ClientConnection) -> None:
    with pytest.raises(TimeoutError):
        sock.recv(timeout=SILENCE)
    sock.send(json.dumps({"action": "ping"}))
    assert json.loads(sock.recv(timeout=EVENT_TIMEOUT)) == {"type": "pong"}


def test_events_reach_sockets_on_other_server_processes(servers, salon, owner, requester):
    one, two = servers
    stranger = factories.make_user("stranger")

    with ExitStack() as stack:

        def open_socket(server: Server, user: Any) -> ClientConnection:
            token = AccessToken.for_user(user)
            return stack.enter_context(
                connect(
                    server.ws(f"{INVITATIONS}/?token={token}"),
                    open_timeout=EVENT_TIMEOUT,
                    close_timeout=2,
                    proxy=None,
                )
            )

        http = stack.enter_context(httpx.Client(timeout=10, trust_env=False))
        owner_on_one = open_socket(one, owner)
        requester_on_two = open_socket(two, requester)
        strangers = [open_socket(one, stranger), open_socket(two, stranger)]

        # The requester asks on server 2; the owner hears it on server 1.
        created = http.post(
            two.http(INVITATIONS),
            json={"salon": salon.pk, "role": "seller", "message": "Across processes"},
            auth=("requester", "pw"),
        )
        assert created.status_code == 201, created.text
        shown = created.json()
        assert (shown["user"], shown["salon"], shown["status"]) == (
            requester.pk,
            salon.pk,
            "pending",
        )
        frame = {
            "id": logged_id("invitation.created"),
            "type": "invitation.created",
            "invitation": shown,
        }
        assert _receive(owner_on_one, servers) == frame
        assert _receive(requester_on_two, servers) == frame

        # The owner approves on server 1; the requester hears it on server 2.
        approved = http.patch(
            one.http(f"{INVITATIONS}/{shown['id']}/approved"), auth=("owner", "pw")
        )
        assert approved.status_code == 200, approved.text
        assert approved.json()["status"] == "approved"
        frame = {
            "id": logged_id("invitation.approved"),
            "type": "invitation.approved",
            "invitation": approved.json(),
        }
        assert _receive(requester_on_two, servers) == frame
        assert _receive(owner_on_one, servers) == frame

        for sock in [owner_on_one, requester_on_two, *strangers]:
            _assert_silent(sock)

    invitation = Invitation.objects.get(pk=shown["id"])
    assert (invitation.status, invitation.decided_by_id) == ("approved", owner.pk)
    membership = get_membership_model()._default_manager.get(salon=salon, user=requester)
    assert membership.role == "seller"


def test_deactivating_a_user_closes_their_sockets_on_every_server(servers, requester):
    """SPEC §4 / hardening: an account that can no longer sign in hears nothing more."""
    one = servers[0]
    with ExitStack() as stack:
        token = AccessToken.for_user(requester)
        sockets = [
            stack.enter_context(
                connect(server.ws(f"{path}/?token={token}"), open_timeout=EVENT_TIMEOUT, proxy=None)
            )
            for server in servers
            for path in (INVITATIONS, "/api/salon_role")
        ]
        for sock in sockets:
            sock.send(json.dumps({"action": "ping"}))
            assert json.loads(sock.recv(timeout=EVENT_TIMEOUT)) == {"type": "pong"}

        layers = dict(settings.CHANNEL_LAYERS)
        layers["default"] = {
            **layers["default"],
            "CONFIG": {**layers["default"]["CONFIG"], "prefix": one.channel_prefix},
        }
        with override_settings(CHANNEL_LAYERS=layers):
            requester.is_active = False
            started = time.monotonic()
            requester.save()

        for sock in sockets:
            with pytest.raises(ConnectionClosed) as closed:
                sock.recv(timeout=EVENT_TIMEOUT)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
        assert time.monotonic() - started < 1.0
