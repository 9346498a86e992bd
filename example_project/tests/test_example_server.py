"""The example project under daphne, used as a client would: HTTP (httpx) and WebSocket.

Each test runs once per configuration (``embedded``; ``services`` with PostgreSQL and Redis),
against one server per configuration on a fresh database; see ``conftest.py``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from .support import Configuration, Server, bearer, sign_up

INVITATIONS = "api/invitation_to_auto_salon"
ROLES = "api/salon_role"
#: Seconds to wait for a frame that must come.
FRAME_TIMEOUT = 10
#: Seconds during which a frame that must not come is awaited.
SILENCE = 0.5


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    # trust_env=False: a proxy set in the environment must not see loopback requests.
    with httpx.Client(base_url=server.base_url, timeout=10, trust_env=False) as client:
        yield client


@contextmanager
def socket(
    server: Server, path: str, *, token: str | None = None, subprotocol_token: str | None = None
) -> Iterator[ClientConnection]:
    """A WebSocket to ``path``, authenticated by ``?token=`` or the bearer subprotocol pair,
    ready: the server has answered a ping, so the connection is in its group."""
    query = f"?token={token}" if token else ""
    subprotocols = ["bearer", subprotocol_token] if subprotocol_token else None
    with connect(
        f"{server.ws_url}/{path}{query}",
        origin=server.origin,
        subprotocols=subprotocols,
        proxy=None,
        open_timeout=FRAME_TIMEOUT,
        close_timeout=2,
    ) as ws:
        ws.send(json.dumps({"action": "ping"}))
        assert receive(ws) == {"type": "pong"}
        yield ws


def receive(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=FRAME_TIMEOUT))


def assert_silent(ws: ClientConnection) -> None:
    """Nothing was, or is about to be, sent to ``ws``: a ping is answered first and then no
    frame comes for a while."""
    ws.send(json.dumps({"action": "ping"}))
    assert receive(ws) == {"type": "pong"}
    with pytest.raises(TimeoutError):
        frame = ws.recv(timeout=SILENCE)
        pytest.fail(f"unexpected frame {frame}")


def assert_event(ws: ClientConnection, kind: str, invitation: dict[str, Any]) -> dict[str, Any]:
    frame = receive(ws)
    assert frame["type"] == kind, frame
    assert frame["invitation"]["id"] == invitation["id"], frame
    assert frame["invitation"]["status"] == invitation["status"], frame
    assert frame["invitation"]["user"] == invitation["user"], frame
    assert frame["invitation"]["salon"] == invitation["salon"], frame
    return frame


def test_swagger_ui_and_schema(http: httpx.Client) -> None:
    page = http.get("api/doc")
    assert page.status_code == 200, page.text
    assert "text/html" in page.headers["content-type"]
    assert "swagger" in page.text.lower()
    schema = http.get("api/doc/schema", headers={"Accept": "application/vnd.oai.openapi+json"})
    assert schema.status_code == 200, schema.text
    paths = schema.json()["paths"]
    assert "/api/invitation_to_auto_salon/{id}/approved" in paths


def test_static_files_are_served_without_collectstatic(http: httpx.Client) -> None:
    """With DEBUG on (the default) the apps' static files are served from where they are,
    under their own names, and not kept by browsers."""
    page = http.get("api/doc")
    assets = re.findall(r'(?:href|src)="(/static/[^"]+)"', page.text)
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in assets
    for url in [*assets, "/static/admin/css/base.css", "/static/salon_invitations/client.js"]:
        response = http.get(url)
        assert response.status_code == 200, url
        assert response.headers["Cache-Control"].startswith("max-age=0"), response.headers


def test_anonymous_requests_get_401_with_a_challenge(http: httpx.Client) -> None:
    for path in (INVITATIONS, ROLES, "api/auto_salon", "api/user/me"):
        response = http.get(path)
        assert response.status_code == 401, (path, response.text)
        assert response.headers.get("WWW-Authenticate", "").startswith("Bearer"), path


def test_websockets_refuse_foreign_origins_and_anonymous_users(
    server: Server, http: httpx.Client
) -> None:
    _, access = sign_up(http, "origin-check@example.com")
    with pytest.raises(InvalidStatus) as refused:
        connect(
            f"{server.ws_url}/ws/{INVITATIONS}/?token={access}",
            origin="http://evil.example.com",
            proxy=None,
            open_timeout=FRAME_TIMEOUT,
        )
    assert refused.value.response.status_code == 403

    # Anonymous: accepted and closed at once with 4401 (or refused at the handshake).
    try:
        with connect(
            f"{server.ws_url}/ws/{INVITATIONS}/",
            origin=server.origin,
            proxy=None,
            open_timeout=FRAME_TIMEOUT,
            close_timeout=2,
        ) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=FRAME_TIMEOUT)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 4401
    except InvalidStatus as exc:
        assert exc.response.status_code in (401, 403)

    # A path no route serves: refused at the handshake, not a 500.
    for path in ("ws/api/other/", "ws/", "nowhere"):
        with pytest.raises(InvalidStatus) as refused:
            connect(
                f"{server.ws_url}/{path}?token={access}",
                origin=server.origin,
                proxy=None,
                open_timeout=FRAME_TIMEOUT,
            )
        assert refused.value.response.status_code == 403, path

    # An invalid token is anonymous too.
    with connect(
        f"{server.ws_url}/ws/{INVITATIONS}/?token=not-a-jwt",
        origin=server.origin,
        proxy=None,
        open_timeout=FRAME_TIMEOUT,
        close_timeout=2,
    ) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=FRAME_TIMEOUT)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4401


def test_join_request_flow(
    server: Server, http: httpx.Client, configuration: Configuration
) -> None:
    """register → log in → create a salon → another user asks to join as seller → the owner
    hears of it → the owner approves → the requester hears of it → the role is listed."""
    owner_id, owner = sign_up(http, "owner@example.com")
    requester_id, requester = sign_up(http, "seller@example.com")
    _, bystander = sign_up(http, "bystander@example.com")

    # The creator of a salon owns it, with the superuser role.
    created = http.post(
        "api/auto_salon",
        json={"name": "Smoke Motors", "location": "Kyiv"},
        headers=bearer(owner),
    )
    assert created.status_code == 201, created.text
    salon = created.json()
    assert salon["owner"] == owner_id
    assert salon["name"] == "Smoke Motors"
    assert salon["location"] == "Kyiv"
    roles = http.get(ROLES, params={"salon": salon["id"]}, headers=bearer(owner))
    assert roles.status_code == 200, roles.text
    assert [(m["user"], m["salon"], m["role"]) for m in roles.json()["results"]] == [
        (owner_id, salon["id"], "superuser")
    ]

    with (
        socket(server, f"ws/{INVITATIONS}/", token=owner) as owner_ws,
        socket(server, f"{INVITATIONS}/", subprotocol_token=requester) as requester_ws,
        socket(server, f"ws/{ROLES}/", subprotocol_token=requester) as requester_roles_ws,
        socket(server, f"ws/{INVITATIONS}/", token=bystander) as bystander_ws,
    ):
        assert owner_ws.subprotocol is None
        assert requester_ws.subprotocol == "bearer"
        assert requester_roles_ws.subprotocol == "bearer"
        if configuration.redis is not None:
            # The sockets' groups live in the claimed Redis database (channels_redis).
            keys = configuration.redis.key_names()
            assert any(key.startswith("asgi") for key in keys), keys

        # Another user asks to join as seller.
        asked = http.post(
            INVITATIONS,
            json={"salon": salon["id"], "role": "seller", "message": "Hire me"},
            headers=bearer(requester),
        )
        assert asked.status_code == 201, asked.text
        invitation = asked.json()
        assert invitation["status"] == "pending"
        assert invitation["user"] == requester_id
        assert invitation["salon"] == salon["id"]
        assert invitation["role"] == "seller"
        assert invitation["message"] == "Hire me"
        assert invitation["decided_by"] is None

        # The owner (who decides) and the requester hear of it.
        assert_event(owner_ws, "invitation.created", invitation)
        assert_event(requester_ws, "invitation.created", invitation)

        # The requester may not decide their own request; the owner approves it.
        refused = http.patch(
            f"{INVITATIONS}/{invitation['id']}/approved", headers=bearer(requester)
        )
        assert refused.status_code == 403, refused.text
        approved = http.patch(f"{INVITATIONS}/{invitation['id']}/approved", headers=bearer(owner))
        assert approved.status_code == 200, approved.text
        decided = approved.json()
        assert decided["id"] == invitation["id"]
        assert decided["status"] == "approved"
        assert decided["decided_by"] == owner_id
        assert decided["decided_at"]

        # The requester hears of the approval (and of the new membership), so does the owner.
        frame = assert_event(requester_ws, "invitation.approved", decided)
        assert frame["invitation"]["decided_by"] == owner_id
        membership = receive(requester_roles_ws)
        assert membership["type"] == "membership.created", membership
        assert membership["membership"]["user"] == requester_id
        assert membership["membership"]["salon"] == salon["id"]
        assert membership["membership"]["role"] == "seller"
        assert_event(owner_ws, "invitation.approved", decided)

        # Deciding again is a conflict.
        again = http.patch(f"{INVITATIONS}/{invitation['id']}/approved", headers=bearer(owner))
        assert again.status_code == 409, again.text
        assert again.json()["code"] == "already_decided"

        # Nobody else heard anything, and nothing more came.
        assert_silent(bystander_ws)
        assert_silent(owner_ws)
        assert_silent(requester_ws)

    # The role shows up in api/salon_role, for the new member and for the owner.
    # (A member sees every membership of the salons they belong to.)
    expected = sorted([(owner_id, "superuser"), (requester_id, "seller")])
    for token in (requester, owner):
        listed = http.get(ROLES, headers=bearer(token))
        assert listed.status_code == 200, listed.text
        results = listed.json()["results"]
        assert {m["salon"] for m in results} == {salon["id"]}
        assert sorted((m["user"], m["role"]) for m in results) == expected
    mine = http.get(ROLES, params={"user": requester_id}, headers=bearer(requester))
    assert mine.status_code == 200, mine.text
    assert [(m["user"], m["salon"], m["role"]) for m in mine.json()["results"]] == [
        (requester_id, salon["id"], "seller")
    ]
    # The bystander belongs nowhere and sees no invitation.
    for path in (ROLES, INVITATIONS):
        nothing = http.get(path, headers=bearer(bystander))
        assert nothing.status_code == 200, nothing.text
        assert nothing.json()["results"] == [], path
    if configuration.postgres is not None:
        # Everything above was stored in the test's PostgreSQL database.
        rows = configuration.postgres.query(
            "SELECT role FROM salon_invitations_membership ORDER BY id"
        )
        assert rows == [("superuser",), ("seller",)]
    # The invitation as the API now shows it.
    shown = http.get(f"{INVITATIONS}/{invitation['id']}", headers=bearer(requester))
    assert shown.status_code == 200, shown.text
    assert shown.json()["status"] == "approved"
