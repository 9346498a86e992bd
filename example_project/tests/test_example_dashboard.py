"""The dashboard's HTTP side (``/``, ``login``, ``logout``, ``dashboard/token``,
``dashboard/sections``) under daphne, as a browser's requests would reach it. What it does in a
real browser (live updates, buttons, accessibility) is tested by ``test_browser_dashboard.py``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from .support import (
    Server,
    bearer,
    log_in,
    manage,
    page_csrf,
    project_env,
    sign_up,
    sqlite_url,
    start_server,
)

INVITATIONS = "api/invitation_to_auto_salon"


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=10, trust_env=False) as client:
        yield client


def test_anonymous_visitors_are_sent_to_the_log_in_page(http: httpx.Client) -> None:
    home = http.get("")
    assert home.status_code == 302
    assert home.headers["location"] == "/login?next=/"
    assert http.get("dashboard/sections").status_code == 401
    # No session, no CSRF token: refused before anything else.
    assert http.post("dashboard/token").status_code == 403
    page = http.get("login")
    assert page.status_code == 200
    assert 'type="email"' in page.text and 'type="password"' in page.text
    assert 'autocomplete="username"' in page.text


def test_log_in_token_and_log_out(server: Server, http: httpx.Client) -> None:
    user_id, _ = sign_up(http, "board-user@example.com")

    wrong = log_in(http, "board-user@example.com", password="not-the-password")
    assert wrong.status_code == 400
    assert "correct" in wrong.text  # Django's "Please enter a correct email address and password"

    done = log_in(http, "board-user@example.com")
    assert done.status_code == 302 and done.headers["location"] == "/"
    home = http.get("")
    assert home.status_code == 200
    assert "board-user@example.com" in home.text
    # The page loads the package's client through an import map, and its own module.
    client_url = re.search(r'"salon-invitations/client": "([^"]+)"', home.text)
    assert client_url and client_url.group(1).startswith("/static/salon_invitations/client")
    script = http.get(client_url.group(1))
    assert script.status_code == 200
    assert "export class SalonEventsClient" in script.text
    assert re.search(r'data-since="\d+"', home.text)

    # A token only with the page's CSRF token.
    assert http.post("dashboard/token").status_code == 403
    issued = http.post("dashboard/token", headers={"X-CSRFToken": page_csrf(http)})
    assert issued.status_code == 200, issued.text
    assert issued.headers["cache-control"].startswith("max-age=0")
    token = issued.json()
    assert 240 <= token["expires_at"] - time.time() <= 300
    assert token["expires_in"] == 300
    me = http.get("api/user/me", headers=bearer(token["access"]))
    assert me.status_code == 200 and me.json()["id"] == user_id
    with connect(
        f"{server.ws_url}/ws/{INVITATIONS}/",
        origin=server.origin,
        subprotocols=["bearer", token["access"]],
        proxy=None,
        open_timeout=10,
    ) as ws:
        assert ws.subprotocol == "bearer"
        ws.send(json.dumps({"action": "ping"}))
        assert json.loads(ws.recv(timeout=10)) == {"type": "pong"}

    csrf = page_csrf(http)
    out = http.post("logout", data={"csrfmiddlewaretoken": csrf})
    assert out.status_code == 302 and out.headers["location"] == "/login"
    assert http.get("dashboard/sections").status_code == 401
    assert http.get("").status_code == 302


@pytest.mark.parametrize(
    "target",
    [
        "https://elsewhere.example/",
        "//elsewhere.example/",
        "/\\elsewhere.example",
        "x",
        "dashboard-logout",
        "javascript:alert(1)",
    ],
)
def test_log_in_goes_to_next_only_on_this_site(http: httpx.Client, target: str) -> None:
    email = f"board-redirect-{abs(hash(target))}@example.com"
    sign_up(http, email)
    done = log_in(http, email, next=target)
    assert done.status_code == 302 and done.headers["location"] == "/"
    # Logged in already, the log-in page sends on the same way.
    again = http.get("login", params={"next": target})
    assert again.status_code == 302 and again.headers["location"] == "/"
    assert http.get("login", params={"next": "/api/doc"}).headers["location"] == "/api/doc"


def test_the_log_in_throttle_counts_the_connecting_address(tmp_path: Path) -> None:
    """A client cannot reset its count by sending X-Forwarded-For (NUM_PROXIES is 0)."""
    env = project_env(DATABASE_URL=sqlite_url(tmp_path), THROTTLE_AUTH="3/minute")
    manage("migrate", "--noinput", env=env).ok()
    server = start_server("throttle", env, tmp_path)
    try:
        with httpx.Client(base_url=server.base_url, timeout=10, trust_env=False) as http:
            statuses = []
            for n in range(5):
                answer = log_in(
                    http,
                    "nobody@example.com",
                    password="wrong",
                    headers={"X-Forwarded-For": f"10.0.0.{n}"},
                )
                statuses.append(answer.status_code)
            assert statuses == [400, 400, 400, 429, 429]
            assert "Too many attempts" in answer.text
            assert int(answer.headers["retry-after"]) > 0
    finally:
        server.stop()


def test_sections_show_a_manager_the_pending_requests(http: httpx.Client) -> None:
    _, owner = sign_up(http, "board-owner@example.com")
    _, applicant = sign_up(http, "board-applicant@example.com")
    salon = http.post("api/auto_salon", json={"name": "Board Motors"}, headers=bearer(owner))
    assert salon.status_code == 201, salon.text
    asked = http.post(
        INVITATIONS, json={"salon": salon.json()["id"], "role": "seller"}, headers=bearer(applicant)
    )
    assert asked.status_code == 201, asked.text
    request_id = asked.json()["id"]

    log_in(http, "board-owner@example.com")
    sections = http.get("dashboard/sections")
    assert sections.status_code == 200
    row = re.search(rf'<li id="request-{request_id}">(.*?)</li>', sections.text, re.S)
    assert row, sections.text
    assert "board-applicant@example.com" in row.group(1)
    assert f"/{INVITATIONS}/{request_id}/approved" in row.group(1)
    assert "Board Motors" in sections.text
    # Only what the API would take: no invite to, and no change of, the owner's role.
    assert 'value="superuser"' not in sections.text

    # The applicant's own page lists the request as pending, and no manager's controls.
    http.cookies.clear()
    log_in(http, "board-applicant@example.com")
    mine = http.get("dashboard/sections").text
    assert re.search(rf'id="invitation-{request_id}" data-status="pending"', mine)
    assert "/approved" not in mine


#: Run by ``manage.py shell``: the statements ``state.build`` costs an owner of two salons, with
#: few and with many members and pending requests, as JSON.
DASHBOARD_QUERIES = """
import json
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from apps.dashboard import state
from salon_invitations import services
from salon_invitations.models import get_membership_model

User = get_user_model()
Membership = get_membership_model()._default_manager
owner = User.objects.create_user(email="counted-owner@example.com", password="x")
salons = [services.create_salon(owner=owner, name=f"Counted {n}") for n in range(2)]
counts = []
for round_ in range(2):
    for salon in salons:
        for n in range(1 if round_ == 0 else 6):
            tag = f"{round_}-{salon.pk}-{n}@example.com"
            member = User.objects.create_user(email="m" + tag, password="x")
            Membership.create(salon=salon, user=member, role=f"extra{n}")
            asker = User.objects.create_user(email="a" + tag, password="x")
            services.create_invitation(user=asker, salon=salon, role="mechanic")
    with CaptureQueriesContext(connection) as captured:
        board = state.build(owner)
    counts.append({
        "queries": len(captured.captured_queries),
        "members": sum(len(panel.members) for panel in board.managed),
        "pending": sum(len(panel.pending) for panel in board.managed),
    })
print(json.dumps(counts))
"""


def test_the_dashboard_costs_the_same_queries_for_many_rows(tmp_path: Path) -> None:
    """No query per row: the policy's answers for every row come from the roles it read once."""
    env = project_env(DATABASE_URL=sqlite_url(tmp_path))
    manage("migrate", "--noinput", env=env).ok()
    out = manage("shell", "-c", DASHBOARD_QUERIES, env=env).ok().stdout.splitlines()[-1]
    few, many = json.loads(out)
    assert many["members"] > few["members"] and many["pending"] > few["pending"], (few, many)
    assert few["queries"] == many["queries"], (few, many)
    # since, mine, memberships, roles, salons; pending and members per managed salon.
    assert many["queries"] <= 5 + 2 * 2, many


#: Run by ``manage.py shell``: what the dashboard offers a staff member of a salon, as JSON.
STAFF_OFFERS = """
import json
from django.contrib.auth import get_user_model
from apps.dashboard import state
from salon_invitations import services
from salon_invitations.models import get_membership_model

User = get_user_model()
owner = User.objects.create_user(email="offers-owner@example.com", password="x")
staff = User.objects.create_user(email="offers-staff@example.com", password="x", is_staff=True)
salon = services.create_salon(owner=owner, name="Offers Motors")
get_membership_model()._default_manager.create(salon=salon, user=staff, role="seller")
[panel] = state.build(staff).managed
print(json.dumps({
    "invite": [name for name, _ in panel.invite_roles],
    "changes": {m.membership.user.email: [n for n, _ in m.role_options] for m in panel.members},
}))
"""


def test_staff_are_offered_only_what_the_api_would_take(tmp_path: Path) -> None:
    """The policy lets staff do anything, but the owner's role is neither invited to nor
    changed: only a transfer moves it (services.changes_only_by_transfer)."""
    env = project_env(DATABASE_URL=sqlite_url(tmp_path))
    manage("migrate", "--noinput", env=env).ok()
    offers = json.loads(manage("shell", "-c", STAFF_OFFERS, env=env).ok().stdout.splitlines()[-1])
    assert offers["invite"] == ["admin", "seller", "mechanic"]
    assert offers["changes"]["offers-owner@example.com"] == []
    assert offers["changes"]["offers-staff@example.com"] == []  # nobody changes their own
