"""The dashboard (``/``) in Chromium: two people, each in a browser context of their own, watch
each other's changes arrive over the WebSocket without reloading their pages.

Every test registers its own users and salon over the API (each role has one holder per salon)
on the session's live server; the restart test has a server of its own. Each page is checked
with axe-core on the way. See ``conftest.py`` for the fixtures.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from itertools import count
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from .browsers import Account, api_access, expect, focus_visible
from .support import (
    PASSWORD,
    Server,
    bearer,
    invite_link,
    invite_link_pattern,
    manage,
    new_salon,
    project_env,
    sqlite_url,
    start_server,
)

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page

pytestmark = pytest.mark.browser

INVITATIONS = "api/invitation_to_auto_salon"
#: What "live" means here: the other page shows a change within this many milliseconds.
LIVE_MS = 2000
#: A phone's viewport, for the pages that are also looked at that narrow.
PHONE = {"width": 390, "height": 844}

_people = count(1)


def register(http: httpx.Client, name: str) -> Account:
    """A new account ``<name>-<n>@example.com`` (registered over the API)."""
    account = Account(f"{name}-{next(_people)}@example.com", PASSWORD)
    registered = http.post(
        "api/user/registration", json={"email": account.email, "password": PASSWORD}
    )
    assert registered.status_code == 201, registered.text
    return account


def owner_with_salon(http: httpx.Client, salon_name: str) -> tuple[Account, dict[str, Any]]:
    owner = register(http, "owner")
    return owner, new_salon(http, api_access(http, owner), salon_name)


def log_in(context: BrowserContext, account: Account) -> Page:
    """Open ``/``, get sent to the log-in page, log in with the keyboard, and wait until the
    dashboard's live updates are on."""
    page = context.new_page()
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login\?next=/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Log in")
    page.get_by_label("E-mail address").fill(account.email)
    page.get_by_label("Password").fill(account.password)
    page.get_by_label("Password").press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")
    expect(page.locator("#live-state")).to_have_attribute("data-state", "open")
    # Marks this document: if the page were reloaded, the mark would be gone.
    page.evaluate("() => { window.notReloaded = true; }")
    return page


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("() => window.notReloaded === true"), "the page was reloaded"


def request_row(page: Page, email: str) -> Any:
    return page.locator("li[id^=request-]", has_text=email)


def ask_to_join(page: Page, salon_name: str, role_label: str) -> None:
    page.get_by_label("Salon", exact=True).select_option(label=salon_name)
    page.locator("#join-role").select_option(label=role_label)
    page.get_by_role("button", name="Send request").click()
    expect(page.locator("#announcer")).to_contain_text("Request sent.")
    expect(page.locator("tr[data-status=pending]", has_text=salon_name)).to_be_visible()


def test_a_request_and_its_approval_arrive_live(
    live_http: httpx.Client,
    new_context: Callable[[str], BrowserContext],
    assert_accessible: Callable[[Page], None],
    screenshot: Callable[[Page, str], Path],
) -> None:
    owner, salon = owner_with_salon(live_http, "Harbour Motors")
    applicant = register(live_http, "applicant")
    owner_page = log_in(new_context("owner"), owner)
    applicant_page = log_in(new_context("applicant"), applicant)
    applicant_page.set_viewport_size(PHONE)
    expect(owner_page.locator("#salon-{}".format(salon["id"]))).to_contain_text(
        "No pending requests."
    )
    assert_accessible(owner_page)
    assert_accessible(applicant_page)

    # The applicant asks; the owner's page shows it without a reload, within LIVE_MS.
    ask_to_join(applicant_page, "Harbour Motors", "Seller")
    row = request_row(owner_page, applicant.email)
    expect(row).to_be_visible(timeout=LIVE_MS)
    expect(row).to_contain_text("asks to join as Seller")
    expect(owner_page.locator("#announcer")).to_contain_text("New request:")
    assert_not_reloaded(owner_page)
    mine = applicant_page.locator("tr[id^=invitation-]", has_text="Harbour Motors")
    expect(mine).to_have_attribute("data-status", "pending")
    assert_accessible(owner_page)
    screenshot(owner_page, "dashboard-owner.png")

    # The owner approves from the page; the applicant's row turns to "Approved".
    row.get_by_role("button", name="Approve").click()
    expect(owner_page.locator("#announcer")).to_contain_text("Request approved.")
    expect(row).to_have_count(0)
    members = owner_page.locator(f"#salon-{salon['id']} tbody tr", has_text=applicant.email)
    expect(members.locator("[data-testid=role]")).to_have_text("Seller")
    expect(mine).to_have_attribute("data-status", "approved", timeout=LIVE_MS)
    expect(mine.locator("[data-testid=status]")).to_have_text("Approved")
    expect(applicant_page.locator("#sections")).to_contain_text("Harbour Motors: Seller")
    assert_not_reloaded(applicant_page)
    assert_accessible(applicant_page)
    screenshot(applicant_page, "dashboard-applicant.png")

    # The server agrees with both pages.
    access = api_access(live_http, owner)
    listed = live_http.get(
        INVITATIONS, params={"salon": salon["id"]}, headers=bearer(access)
    ).json()["results"]
    assert [(item["status"], item["role"]) for item in listed] == [("approved", "seller")]


def test_reject_withdraw_and_refusals_show_on_the_page(
    live_http: httpx.Client,
    new_context: Callable[[str], BrowserContext],
    assert_accessible: Callable[[Page], None],
) -> None:
    owner, _ = owner_with_salon(live_http, "Quarry Motors")
    applicant = register(live_http, "quarry-applicant")
    owner_page = log_in(new_context("owner"), owner)
    applicant_page = log_in(new_context("applicant"), applicant)

    ask_to_join(applicant_page, "Quarry Motors", "Mechanic")
    row = request_row(owner_page, applicant.email)
    expect(row).to_be_visible(timeout=LIVE_MS)
    # With the keyboard alone: Tab to the request's Reject button (the focus visible on every
    # stop on the way), Enter.
    owner_page.locator("body").focus()
    for _ in range(60):
        owner_page.keyboard.press("Tab")
        assert focus_visible(owner_page), owner_page.evaluate("document.activeElement.outerHTML")
        label = owner_page.evaluate("document.activeElement.textContent.trim()")
        if label == f"Reject {applicant.email}":
            break
    else:
        pytest.fail("Tab never reached the Reject button")
    owner_page.keyboard.press("Enter")
    expect(row).to_have_count(0)
    mine = applicant_page.locator("tr[id^=invitation-]", has_text="Quarry Motors")
    expect(mine).to_have_attribute("data-status", "rejected", timeout=LIVE_MS)

    # Asked again, then withdrawn by the applicant: gone from the owner's page at once.
    ask_to_join(applicant_page, "Quarry Motors", "Mechanic")
    expect(row).to_be_visible(timeout=LIVE_MS)
    pending = applicant_page.locator("tr[data-status=pending]", has_text="Quarry Motors")
    pending.get_by_role("button", name="Withdraw").click()
    expect(applicant_page.locator("#announcer")).to_contain_text("Request withdrawn.")
    expect(row).to_have_count(0, timeout=LIVE_MS)

    # A refusal from the API is shown next to the form: a second request while one is pending.
    ask_to_join(applicant_page, "Quarry Motors", "Mechanic")
    applicant_page.get_by_role("button", name="Send request").click()
    error = applicant_page.locator("#join-heading ~ form .form-error")
    expect(error).to_be_visible()
    expect(error).not_to_be_empty()
    assert_accessible(applicant_page)


def test_invite_from_the_dashboard_then_a_role_change(
    live_server: Server,
    live_http: httpx.Client,
    new_context: Callable[[str], BrowserContext],
    assert_accessible: Callable[[Page], None],
) -> None:
    owner, salon = owner_with_salon(live_http, "Meadow Motors")
    owner_page = log_in(new_context("owner"), owner)
    panel = owner_page.locator(f"#salon-{salon['id']}")

    # The API refuses (the owner's own address is a member's): its message, next to the form.
    panel.get_by_label("E-mail address").fill(owner.email)
    panel.get_by_role("button", name="Send invite").click()
    refusal = panel.locator(".form-error").first
    expect(refusal).to_be_visible()
    expect(refusal).to_contain_text("email: ")
    expect(refusal).to_contain_text("member")

    address = f"invited-{next(_people)}@example.com"
    panel.get_by_label("E-mail address").fill(address)
    panel.locator("select[name=role]").first.select_option(label="Admin")
    panel.get_by_role("button", name="Send invite").click()
    expect(owner_page.locator("#announcer")).to_contain_text("Invite sent.")
    expect(panel.get_by_label("E-mail address")).to_have_value("")

    # The invitee follows the e-mailed link, signs up and joins; the owner's member list
    # shows them without a reload.
    link = invite_link(live_server.log(), address, invite_link_pattern(live_server.base_url))
    invitee_context = new_context("invitee")
    invite_page = invitee_context.new_page()
    invite_page.goto(link)
    invite_page.get_by_label("Choose a password").fill(PASSWORD)
    invite_page.get_by_role("button", name="Create account and accept").click()
    expect(invite_page.get_by_role("heading", level=1)).to_have_text("Welcome to Meadow Motors")
    member = panel.locator("tbody tr", has_text=address)
    expect(member.locator("[data-testid=role]")).to_have_text("Admin", timeout=LIVE_MS)
    assert_not_reloaded(owner_page)

    # The invitee's own dashboard (the same browser, logged in by the sign-up); the owner
    # makes them a seller, and their page follows.
    invitee_page = invitee_context.new_page()
    invitee_page.goto("/")
    expect(invitee_page.locator("#live-state")).to_have_attribute("data-state", "open")
    expect(invitee_page.locator("#sections")).to_contain_text("Meadow Motors: Admin")
    # An admin manages: the invitee's page has the salon's panel, without the owner's controls.
    invitee_panel = invitee_page.locator(f"#salon-{salon['id']}")
    expect(invitee_panel).to_contain_text("you are Admin")
    member.get_by_label(f"New role for {address}").select_option(label="Seller")
    member.get_by_role("button", name="Change").click()
    expect(owner_page.locator("#announcer")).to_contain_text("Role changed.")
    expect(member.locator("[data-testid=role]")).to_have_text("Seller")
    expect(invitee_page.locator("#sections")).to_contain_text(
        "Meadow Motors: Seller", timeout=LIVE_MS
    )
    # No longer a manager: the panel is gone from their page.
    expect(invitee_panel).to_have_count(0)
    assert_accessible(owner_page)
    assert_accessible(invitee_page)


def test_the_log_in_page_refuses_a_wrong_password_accessibly(
    live_server: Server,
    new_context: Callable[[str], BrowserContext],
    assert_accessible: Callable[[Page], None],
    screenshot: Callable[[Page, str], Path],
) -> None:
    page = new_context("visitor").new_page()
    page.goto("/")
    assert_accessible(page)
    page.get_by_label("E-mail address").fill("nobody@example.com")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("correct")
    expect(page).to_have_url(re.compile(r"/login$"))
    assert_accessible(page)


# A server restart -------------------------------------------------------------------------------


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A server of this test's own (it is stopped and started again), on a fresh database."""
    env = project_env(DATABASE_URL=sqlite_url(tmp_path), THROTTLE_AUTH="10000/hour")
    manage("migrate", "--noinput", env=env).ok()
    state: dict[str, Any] = {"env": env, "dir": tmp_path}
    state["server"] = start_server("restart", env, tmp_path)
    try:
        yield state
    finally:
        state["server"].stop()


def test_after_a_server_restart_the_page_catches_up_on_what_it_missed(
    own_server: dict[str, Any], browser: Any
) -> None:
    server: Server = own_server["server"]
    env = own_server["env"]
    with httpx.Client(base_url=server.base_url, timeout=30, trust_env=False) as http:
        owner, salon = owner_with_salon(http, "Restart Motors")
        applicant = register(http, "restart-applicant")
    context = browser.new_context(base_url=server.base_url)
    try:
        page = log_in(context, owner)
        states: list[str] = []
        page.expose_function("recordState", lambda state: states.append(state))
        page.evaluate(
            "() => window.salonDashboard.streams[0].on('state', (s) => window.recordState(s))"
        )

        server.stop()
        expect(page.locator("#live-state")).to_have_attribute("data-state", "waiting")
        # While the server is down, the applicant's request is written by another process:
        # its live frame reaches nobody, but it is in the event log.
        manage(
            "shell",
            "-c",
            "from django.contrib.auth import get_user_model\n"
            "from salon_invitations import services\n"
            "from salon_invitations.models import get_salon_model\n"
            f"user = get_user_model().objects.get(email='{applicant.email}')\n"
            f"salon = get_salon_model().objects.get(pk={salon['id']})\n"
            "services.create_invitation(user=user, salon=salon, role='mechanic')\n",
            env=env,
        ).ok()
        time.sleep(1)
        own_server["server"] = start_server(
            "restart-again", env, own_server["dir"], port=server.port
        )

        # The client reconnects by itself (jittered back-off) and resumes from its last id.
        row = request_row(page, applicant.email)
        expect(row).to_be_visible(timeout=20_000)
        expect(page.locator("#live-state")).to_have_attribute("data-state", "open")
        assert_not_reloaded(page)
        assert "waiting" in states and states[-1] == "open", states
    finally:
        context.close()


# DEBUG off --------------------------------------------------------------------------------------


def test_with_debug_off_the_page_loads_its_collected_scripts_and_goes_live(
    tmp_path: Path, browser: Any, assert_accessible: Callable[[Page], None]
) -> None:
    """As the production-style run serves it: ``collectstatic``, ``DEBUG=0``, WhiteNoise with
    hashed names (the import map points at the client's), secure cookies (Chromium keeps them
    for 127.0.0.1, a secure context)."""
    env = project_env(
        DEBUG="0",
        SECRET_KEY="browser-test-" + "x" * 50,
        ALLOWED_HOSTS="127.0.0.1",
        SECURE_SSL_REDIRECT="0",
        DATABASE_URL=sqlite_url(tmp_path),
        STATIC_ROOT=str(tmp_path / "static"),
    )
    manage("migrate", "--noinput", env=env).ok()
    manage("collectstatic", "--noinput", env=env).ok()
    server = start_server("debug-off", env, tmp_path)
    try:
        with httpx.Client(base_url=server.base_url, timeout=30, trust_env=False) as http:
            owner, salon = owner_with_salon(http, "Production Motors")
            applicant = register(http, "production-applicant")
            context = browser.new_context(base_url=server.base_url)
            try:
                scripts: list[str] = []
                context.on(
                    "response",
                    lambda response: (
                        scripts.append(f"{response.status} {response.url}")
                        if response.url.endswith(".js")
                        else None
                    ),
                )
                page = log_in(context, owner)
                assert any(
                    re.search(r"^200 .*/static/salon_invitations/client\.[0-9a-f]{12}\.js$", s)
                    for s in scripts
                ), scripts
                assert any(
                    re.search(r"^200 .*/static/dashboard/dashboard\.[0-9a-f]{12}\.js$", s)
                    for s in scripts
                ), scripts
                assert_accessible(page)
                asked = http.post(
                    INVITATIONS,
                    json={"salon": salon["id"], "role": "seller"},
                    headers=bearer(api_access(http, applicant)),
                )
                assert asked.status_code == 201, asked.text
                expect(request_row(page, applicant.email)).to_be_visible(timeout=LIVE_MS)
                assert_not_reloaded(page)
            finally:
                context.close()
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log_tail(100)


# Token refresh ----------------------------------------------------------------------------------


def test_the_page_renews_its_token_on_the_open_sockets(tmp_path: Path, browser: Any) -> None:
    """Tokens of 20 s: the client sends a new one (``authenticate``) half-way, on both
    sockets, the server accepts it, and the sockets stay open past the first token's end; the
    page asks for a token once per renewal, not once a second."""
    env = project_env(DATABASE_URL=sqlite_url(tmp_path), DASHBOARD_TOKEN_SECONDS="20")
    manage("migrate", "--noinput", env=env).ok()
    server = start_server("token-refresh", env, tmp_path)
    try:
        with httpx.Client(base_url=server.base_url, timeout=30, trust_env=False) as http:
            user = register(http, "refresher")
        context = browser.new_context(base_url=server.base_url)
        try:
            sent: list[tuple[str, dict[str, Any]]] = []
            received: list[tuple[str, dict[str, Any]]] = []
            closed: list[str] = []

            def watch(ws: Any) -> None:
                ws.on("framesent", lambda payload: sent.append((ws.url, json.loads(payload))))
                ws.on(
                    "framereceived",
                    lambda payload: received.append((ws.url, json.loads(payload))),
                )
                ws.on("close", lambda _: closed.append(ws.url))

            def accepted() -> list[str]:
                return [url for url, frame in received if frame.get("type") == "authenticated"]

            page = context.new_page()
            page.on("websocket", watch)
            page.goto("/")
            page.get_by_label("E-mail address").fill(user.email)
            page.get_by_label("Password").fill(user.password)
            page.get_by_label("Password").press("Enter")
            expect(page.locator("#live-state")).to_have_attribute("data-state", "open")
            issued: list[str] = []
            page.on(
                "request",
                lambda request: (
                    issued.append(request.url) if request.url.endswith("/dashboard/token") else None
                ),
            )
            deadline = time.monotonic() + 18
            while time.monotonic() < deadline and len(accepted()) < 2:
                page.wait_for_timeout(250)
            # Past the first token's 20 s: still open, renewed again, without a token storm.
            page.wait_for_timeout(8000)
            assert 1 <= len(issued) <= 3, issued
            renewals = [url for url, frame in sent if frame.get("action") == "authenticate"]
            assert len(renewals) >= 2, sent
            assert sorted(accepted())[:2] == sorted(renewals)[:2], received
            assert any("invitation_to_auto_salon" in url for url in accepted())
            assert any("salon_role" in url for url in accepted())
            assert not [frame for _, frame in received if frame.get("type") == "error"]
            assert closed == []
        finally:
            context.close()
    finally:
        server.stop()


# Failures ---------------------------------------------------------------------------------------


def test_failures_are_shown_on_the_page_not_looped_over(
    live_http: httpx.Client, new_context: Callable[[str], BrowserContext]
) -> None:
    owner, salon = owner_with_salon(live_http, "Fault Motors")
    applicant = register(live_http, "fault-applicant")
    context = new_context("owner")
    page = log_in(context, owner)
    problem = page.locator("#problem")

    # The lists cannot be fetched again: the page says its lists may be out of date.
    page.route("**/dashboard/sections", lambda route: route.fulfill(status=500, body="no"))
    access = api_access(live_http, applicant)
    asked = live_http.post(
        INVITATIONS, json={"salon": salon["id"], "role": "seller"}, headers=bearer(access)
    )
    assert asked.status_code == 201, asked.text
    expect(problem).to_contain_text("could not be updated", timeout=LIVE_MS)
    expect(problem).to_contain_text("500")
    # The next change, with the server answering again, brings the lists back.
    page.unroute("**/dashboard/sections")
    withdrawn = live_http.patch(
        f"{INVITATIONS}/{asked.json()['id']}/cancelled", headers=bearer(access)
    )
    assert withdrawn.status_code == 200, withdrawn.text
    expect(problem).to_be_hidden(timeout=LIVE_MS)
    expect(request_row(page, applicant.email)).to_have_count(0)

    # A request the page still offers but that was decided meanwhile: a clear message, and
    # the page drops the stale buttons.
    page.route("**/dashboard/sections", lambda route: route.abort())
    again = live_http.post(
        INVITATIONS, json={"salon": salon["id"], "role": "seller"}, headers=bearer(access)
    )
    assert again.status_code == 201, again.text
    expect(problem).to_contain_text("cannot be reached", timeout=LIVE_MS)
    page.unroute("**/dashboard/sections")
    page.reload()
    expect(page.locator("#live-state")).to_have_attribute("data-state", "open")
    page.evaluate("() => window.salonDashboard.streams.forEach((client) => client.stop())")
    cancelled = live_http.patch(
        f"{INVITATIONS}/{again.json()['id']}/cancelled", headers=bearer(access)
    )
    assert cancelled.status_code == 200, cancelled.text
    request_row(page, applicant.email).get_by_role("button", name="Approve").click()
    expect(problem).to_be_visible()
    expect(request_row(page, applicant.email)).to_have_count(0)

    # The token endpoint refuses (403, a failed CSRF check): a message, not a reload loop
    # between the dashboard and the log-in page.
    other = context.new_page()
    loads: list[str] = []
    other.on("load", lambda p: loads.append(p.url))
    other.route("**/dashboard/token", lambda route: route.fulfill(status=403, body="{}"))
    other.goto("/")
    expect(other.locator("#problem")).to_contain_text("could not get access", timeout=LIVE_MS)
    other.wait_for_timeout(1500)
    assert len(loads) == 1, loads
    expect(other.locator("#live-state")).to_have_attribute("data-state", "stopped")
    expect(other.locator("#live-state")).to_have_text("Live updates: off")
