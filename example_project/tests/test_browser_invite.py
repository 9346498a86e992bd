"""The invite page (``/invite/<token>``) in Chromium, from the link of the e-mail to the welcome:
with the mouse, with the keyboard alone, and with axe-core's check of every page on the way.

A seeded owner invites an address over the API (``POST api/auth``, then the invite endpoint);
the live server prints the e-mail (console backend) and its link points at the live server.
Each invitee gets a browser context of their own. See ``conftest.py`` for the fixtures.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from .browsers import Account, api_access, expect, tab_to
from .support import PASSWORD, Server, bearer, invite, invite_link, invite_link_pattern, new_salon

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page

pytestmark = pytest.mark.browser

INVITATIONS = "api/invitation_to_auto_salon"

#: The page's controls, as ``browsers.focused`` names them, in their Tab order.
LOG_IN_EMAIL = "#id_login-username"
LOG_IN_PASSWORD = "#id_login-password"
LOG_IN = "button[name=action][value=log_in]"
SIGN_UP_EMAIL = "#sign-up-email"
SIGN_UP_PASSWORD = "#id_signup-password"
SIGN_UP = "button[name=action][value=sign_up]"
ACCEPT = "button[name=action][value=accept]"


def emailed_link(server: Server, address: str) -> str:
    """The accept link of the latest invite e-mail to ``address``: on the live server."""
    link = invite_link(server.log(), address, invite_link_pattern(server.base_url))
    assert link.startswith(f"{server.base_url}/invite/")
    return link


def invited(
    http: httpx.Client, server: Server, owner: Account, salon_name: str, address: str, role: str
) -> tuple[dict[str, Any], int, str]:
    """``owner`` creates a salon and invites ``address`` to it over the API: the salon, the
    invite's pk and the link of its e-mail."""
    access = api_access(http, owner)
    salon = new_salon(http, access, salon_name)
    pk = invite(http, access, salon, address, role)
    return salon, pk, emailed_link(server, address)


def decided(http: httpx.Client, owner: Account, pk: int) -> dict[str, Any]:
    response = http.get(f"{INVITATIONS}/{pk}", headers=bearer(api_access(http, owner)))
    assert response.status_code == 200, response.text
    return response.json()


def assert_welcomed(page: Page, salon: dict[str, Any], role_label: str) -> None:
    expect(page).to_have_title(f"Welcome to {salon['name']} · Auto salon")
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Welcome to {salon['name']}")
    expect(page.get_by_role("status")).to_have_text(
        f"You accepted the invite: you are now a member of {salon['name']} as {role_label}."
    )


def assert_link_gone(page: Page, link: str) -> None:
    response = page.goto(link)
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("This invite link is not valid")


def test_the_invitee_opens_the_emailed_link_signs_up_and_joins(
    live_server: Server,
    live_http: httpx.Client,
    seeded_accounts: dict[str, Account],
    new_context: Callable[[str], BrowserContext],
    assert_accessible: Callable[[Page], None],
    screenshot: Callable[[Page, str], Path],
) -> None:
    owner = seeded_accounts["owner"]
    salon, pk, link = invited(
        live_http, live_server, owner, "Riverside Motors", "rosa@example.com", "seller"
    )
    page = new_context("rosa").new_page()

    response = page.goto(link)
    assert response is not None and response.status == 200
    expect(page).to_have_title("Invite to Riverside Motors · Auto salon")
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "You are invited to join Riverside Motors"
    )
    expect(page.locator("#invite-salon")).to_have_text("Riverside Motors")
    expect(page.locator("#invite-role")).to_have_text("Seller")
    expect(page.locator("#invite-inviter")).to_have_text(owner.email)
    expect(page.locator("#invite-email")).to_have_text("rosa@example.com")
    # Not logged in: no Accept button; the sign-up form has the invited address, fixed.
    expect(page.get_by_role("button", name="Accept", exact=True)).to_have_count(0)
    address = page.get_by_label("E-mail address", exact=True)
    expect(address).to_have_value("rosa@example.com")
    expect(address).not_to_be_editable()
    assert_accessible(page)
    screenshot(page, "invite-page.png")

    # A password the validators refuse: the page says why, and is still accessible.
    page.get_by_label("Choose a password").fill("12345")
    page.get_by_role("button", name="Create account and accept").click()
    expect(page.get_by_text("This password is too short.")).to_be_visible()
    assert decided(live_http, owner, pk)["status"] == "pending"
    assert_accessible(page)

    page.get_by_label("Choose a password").fill(PASSWORD)
    page.get_by_role("button", name="Create account and accept").click()
    assert_welcomed(page, salon, "Seller")
    assert_accessible(page)

    invitation = decided(live_http, owner, pk)
    assert invitation["status"] == "approved"
    rosa = api_access(live_http, Account("rosa@example.com", PASSWORD))
    me = live_http.get("api/user/me", headers=bearer(rosa)).json()
    assert invitation["user"] == me["id"]

    # The link is spent: whoever opens it again sees the same 404 page.
    assert_link_gone(page, link)
    assert_accessible(page)


def test_an_account_holder_logs_in_and_accepts_with_the_keyboard_alone(
    live_server: Server,
    live_http: httpx.Client,
    seeded_accounts: dict[str, Account],
    new_context: Callable[[str], BrowserContext],
    assert_accessible: Callable[[Page], None],
) -> None:
    owner = seeded_accounts["owner"]
    salon, pk, link = invited(
        live_http, live_server, owner, "Keyboard Motors", "kai@example.com", "mechanic"
    )
    registered = live_http.post(
        "api/user/registration", json={"email": "kai@example.com", "password": PASSWORD}
    )
    assert registered.status_code == 201, registered.text
    page = new_context("kai").new_page()
    page.goto(link)

    # The log-in form comes first, its address filled in with the invited one; Enter in the
    # password field submits it.
    assert tab_to(page, LOG_IN_PASSWORD) == [LOG_IN_EMAIL, LOG_IN_PASSWORD]
    expect(page.locator(LOG_IN_EMAIL)).to_have_value("kai@example.com")
    page.keyboard.type(PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Accept the invite")).to_be_visible()
    expect(page.get_by_text("You are logged in as kai@example.com.")).to_be_visible()
    assert_accessible(page)

    # The Accept button is the page's first control.
    assert tab_to(page, ACCEPT) == [ACCEPT]
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert_welcomed(page, salon, "Mechanic")
    assert decided(live_http, owner, pk)["status"] == "approved"


def test_a_new_person_signs_up_and_accepts_with_the_keyboard_alone(
    live_server: Server,
    live_http: httpx.Client,
    seeded_accounts: dict[str, Account],
    new_context: Callable[[str], BrowserContext],
) -> None:
    owner = seeded_accounts["owner"]
    salon, pk, link = invited(
        live_http, live_server, owner, "Tab Key Autos", "noor@example.com", "admin"
    )
    page = new_context("noor").new_page()
    page.goto(link)

    # Past the log-in form and the fixed address to the password of the sign-up form.
    passed = tab_to(page, SIGN_UP_PASSWORD)
    assert passed == [LOG_IN_EMAIL, LOG_IN_PASSWORD, LOG_IN, SIGN_UP_EMAIL, SIGN_UP_PASSWORD]
    page.keyboard.type(PASSWORD)
    # The form's button is next; Enter presses it.
    assert tab_to(page, SIGN_UP) == [SIGN_UP]
    expect(page.locator(":focus")).to_have_text("Create account and accept")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert_welcomed(page, salon, "Admin")
    assert decided(live_http, owner, pk)["status"] == "approved"


def test_the_accessibility_check_names_what_it_finds(
    new_context: Callable[[str], BrowserContext],
    assert_accessible: Callable[[Page], None],
) -> None:
    """The check is no formality: axe-core runs in the page and a violation fails it."""
    page = new_context("checker").new_page()
    page.set_content(
        '<!doctype html><html lang="en"><title>Broken</title><main><h1>Broken</h1>'
        '<form><input type="text" name="nameless"></form></main></html>'
    )
    with pytest.raises(AssertionError) as failed:
        assert_accessible(page)
    assert "- label (critical): Form elements must have labels" in str(failed.value)
    assert 'at input: <input type="text" name="nameless">' in str(failed.value)
