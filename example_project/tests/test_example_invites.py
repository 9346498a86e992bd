"""Invites by e-mail under daphne: a salon's owner invites an address over the API, the link
comes out of the console e-mail backend, and the invitee signs up with it
(``POST api/user/registration {password, invite_token}``) or uses the ``/invite/<token>`` page.

The link is read where the console backend prints it: the server's output in ``embedded``; in
``services`` e-mail goes through Celery, and no worker runs here, so ``manage.py
deliver_pending`` (the relay) sends, and prints, it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .support import (
    INVITE,
    PASSWORD,
    Configuration,
    Server,
    bearer,
    form_csrf,
    invite,
    invite_token,
    manage,
    new_salon,
    sign_up,
)

INVITATIONS = "api/invitation_to_auto_salon"
REGISTRATION = "api/user/registration"
ROLES = "api/salon_role"
UNUSABLE = "This invite link is not valid: it is unknown, used, expired or revoked."


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30, trust_env=False) as client:
        yield client


@pytest.fixture
def browser(server: Server) -> Iterator[httpx.Client]:
    """A client that keeps cookies (CSRF, session) like a browser, and does not follow
    redirects by itself."""
    with httpx.Client(base_url=server.base_url, timeout=30, trust_env=False) as client:
        yield client


@pytest.fixture(scope="module")
def owner(server: Server) -> str:
    """The access token of a user who owns the salons of this module."""
    with httpx.Client(base_url=server.base_url, timeout=30, trust_env=False) as client:
        return sign_up(client, "invites-owner@example.com")[1]


def emailed_token(server: Server, configuration: Configuration, address: str) -> str:
    """The token of the accept link in the latest invite e-mail to ``address``."""
    if configuration.redis is not None:
        output = manage("deliver_pending", env=configuration.env).ok().stdout
    else:
        output = server.log()
    return invite_token(output, address)


def invitation(http: httpx.Client, owner: str, pk: int) -> dict[str, Any]:
    response = http.get(f"{INVITATIONS}/{pk}", headers=bearer(owner))
    assert response.status_code == 200, response.text
    return response.json()


def log_in(http: httpx.Client, address: str) -> httpx.Response:
    return http.post("api/auth", json={"email": address, "password": PASSWORD})


def memberships(http: httpx.Client, access: str) -> list[tuple[int, str]]:
    """``(salon, role)`` of each membership of the user of ``access``."""
    me = http.get("api/user/me", headers=bearer(access))
    assert me.status_code == 200, me.text
    response = http.get(ROLES, params={"user": me.json()["id"]}, headers=bearer(access))
    assert response.status_code == 200, response.text
    return sorted((m["salon"], m["role"]) for m in response.json()["results"])


# The invite page, as a browser uses it -----------------------------------------------------------


def page(browser: httpx.Client, token: str) -> httpx.Response:
    return browser.get(f"invite/{token}")


def post(browser: httpx.Client, token: str, action: str, **fields: str) -> httpx.Response:
    """Press ``action``'s button on the page (with the CSRF token a browser would send)."""
    shown = page(browser, token)
    csrf = form_csrf(shown.text) or browser.cookies.get("csrftoken", "")
    data = {"csrfmiddlewaretoken": csrf, "action": action, **fields}
    return browser.post(f"invite/{token}", data=data)


def log_in_on_page(browser: httpx.Client, token: str, address: str) -> None:
    response = post(
        browser, token, "log_in", **{"login-username": address, "login-password": PASSWORD}
    )
    assert response.status_code == 302, response.text
    assert response.headers["location"] == f"/invite/{token}"


def accept_button(html: str) -> bool:
    return 'value="accept"' in html


# Registration with an invite token --------------------------------------------------------------


def test_registration_with_an_invite_token_creates_the_account_and_joins(
    server: Server, configuration: Configuration, http: httpx.Client, owner: str
) -> None:
    salon = new_salon(http, owner)
    pk = invite(http, owner, salon, "Invitee@Example.com", "seller")
    token = emailed_token(server, configuration, "invitee@example.com")
    shown = http.get(f"{INVITE}/{token}")
    assert shown.status_code == 200, shown.text
    assert shown.json()["email"] == "invitee@example.com"

    # Another address than the invite's: refused, naming the field.
    other = http.post(
        REGISTRATION,
        json={"email": "someone@example.com", "password": PASSWORD, "invite_token": token},
    )
    assert other.status_code == 400, other.text
    assert list(other.json()) == ["email"]
    # A token that is no invite's: 404 naming the field.
    unknown = http.post(REGISTRATION, json={"password": PASSWORD, "invite_token": "x" * 43})
    assert unknown.status_code == 404, unknown.text
    assert unknown.json() == {"invite_token": [UNUSABLE], "code": "not_found"}
    # Nothing of it created an account.
    for address in ("someone@example.com", "invitee@example.com"):
        assert log_in(http, address).status_code == 401

    # The password and the token are enough: the account gets the invited address.
    registered = http.post(REGISTRATION, json={"password": PASSWORD, "invite_token": token})
    assert registered.status_code == 201, registered.text
    account = registered.json()
    assert account["email"] == "invitee@example.com"
    tokens = log_in(http, "invitee@example.com")
    assert tokens.status_code == 200, tokens.text
    assert memberships(http, tokens.json()["access"]) == [(salon["id"], "seller")]
    accepted = invitation(http, owner, pk)
    assert (accepted["status"], accepted["user"]) == ("approved", account["id"])

    # The token no longer works, anywhere.
    again = http.post(REGISTRATION, json={"password": PASSWORD, "invite_token": token})
    assert again.status_code == 404, again.text
    assert again.json()["invite_token"] == [UNUSABLE]
    assert http.get(f"{INVITE}/{token}").status_code == 404
    assert http.get(f"invite/{token}").status_code == 404


def test_registration_with_an_invite_token_and_the_email_in_other_case(
    server: Server, configuration: Configuration, http: httpx.Client, owner: str
) -> None:
    salon = new_salon(http, owner)
    invite(http, owner, salon, "casey@example.com", "mechanic")
    token = emailed_token(server, configuration, "casey@example.com")
    body = {"email": "Casey@EXAMPLE.com", "password": PASSWORD, "invite_token": token}
    registered = http.post(REGISTRATION, json=body)
    assert registered.status_code == 201, registered.text
    assert registered.json()["email"] == "casey@example.com"


def test_when_accepting_fails_no_account_is_created(
    server: Server, configuration: Configuration, http: httpx.Client, owner: str
) -> None:
    """The role is filled between the invite and the sign-up: 409, and no account."""
    salon = new_salon(http, owner)
    invite(http, owner, salon, "late@example.com", "mechanic")
    token = emailed_token(server, configuration, "late@example.com")
    _, quick = sign_up(http, "quick@example.com")
    asked = http.post(
        INVITATIONS, json={"salon": salon["id"], "role": "mechanic"}, headers=bearer(quick)
    )
    assert asked.status_code == 201, asked.text
    approved = http.patch(f"{INVITATIONS}/{asked.json()['id']}/approved", headers=bearer(owner))
    assert approved.status_code == 200, approved.text

    refused = http.post(REGISTRATION, json={"password": PASSWORD, "invite_token": token})
    assert refused.status_code == 409, refused.text
    assert refused.json() == {
        "invite_token": ["This role is already taken in this salon."],
        "code": "role_taken",
    }
    assert log_in(http, "late@example.com").status_code == 401


# The /invite/<token> page ------------------------------------------------------------------------


def test_the_page_shows_the_invite_and_get_changes_nothing(
    server: Server,
    configuration: Configuration,
    http: httpx.Client,
    browser: httpx.Client,
    owner: str,
) -> None:
    salon = new_salon(http, owner)
    pk = invite(http, owner, salon, "viewer@example.com", "seller")
    token = emailed_token(server, configuration, "viewer@example.com")

    for _ in range(2):  # a mail scanner, then the invitee
        shown = page(browser, token)
        assert shown.status_code == 200, shown.text
        assert shown.headers["content-type"].startswith("text/html")
        html = shown.text
        assert salon["name"] in html
        assert '<dd id="invite-role">Seller</dd>' in html
        assert '<dd id="invite-inviter">invites-owner@example.com</dd>' in html
        assert '<dd id="invite-email">viewer@example.com</dd>' in html
        # Not logged in: log in or sign up (the address fixed), or decline; no accept button.
        assert not accept_button(html)
        for control in (
            'value="log_in"',
            'value="sign_up"',
            'value="decline"',
            '<label for="id_login-username">',
            '<label for="id_login-password">',
            '<label for="id_signup-password">',
            'id="sign-up-email" value="viewer@example.com" readonly',
            'name="viewport" content="width=device-width, initial-scale=1"',
        ):
            assert control in html, control
        assert "no-store" in shown.headers["cache-control"]
        assert shown.headers["referrer-policy"] == "strict-origin"
    assert invitation(http, owner, pk)["status"] == "pending"
    assert http.get(f"{INVITE}/{token}").status_code == 200


def test_the_invitee_logs_in_on_the_page_and_accepts(
    server: Server,
    configuration: Configuration,
    http: httpx.Client,
    browser: httpx.Client,
    owner: str,
) -> None:
    salon = new_salon(http, owner)
    pk = invite(http, owner, salon, "dana@example.com", "mechanic")
    token = emailed_token(server, configuration, "dana@example.com")
    dana_id, dana = sign_up(http, "dana@example.com")  # an account made after the invite

    wrong = post(
        browser, token, "log_in", **{"login-username": "dana@example.com", "login-password": "no"}
    )
    assert wrong.status_code == 400, wrong.text
    assert "Please enter a correct" in wrong.text
    log_in_on_page(browser, token, "Dana@Example.com")
    shown = page(browser, token)
    assert shown.status_code == 200, shown.text
    assert accept_button(shown.text)
    assert invitation(http, owner, pk)["status"] == "pending"

    accepted = post(browser, token, "accept")
    assert accepted.status_code == 200, accepted.text
    assert f"you are now a member of {salon['name']} as Mechanic" in accepted.text
    assert memberships(http, dana) == [(salon["id"], "mechanic")]
    decided = invitation(http, owner, pk)
    assert (decided["status"], decided["user"]) == ("approved", dana_id)
    gone = page(browser, token)
    assert gone.status_code == 404
    assert UNUSABLE in gone.text


def test_another_account_cannot_accept_and_the_invite_can_be_declined(
    server: Server,
    configuration: Configuration,
    http: httpx.Client,
    browser: httpx.Client,
    owner: str,
) -> None:
    salon = new_salon(http, owner)
    pk = invite(http, owner, salon, "erin@example.com", "seller")
    token = emailed_token(server, configuration, "erin@example.com")
    _, frank = sign_up(http, "frank@example.com")

    log_in_on_page(browser, token, "frank@example.com")
    shown = page(browser, token)
    assert shown.status_code == 200, shown.text
    assert "This invite is for another address" in shown.text
    assert not accept_button(shown.text)
    assert 'value="log_out"' in shown.text

    # Pressing accept anyway (a forged form) is refused, and nothing changes.
    refused = post(browser, token, "accept")
    assert refused.status_code == 403, refused.text
    assert "sent to another e-mail address" in refused.text
    assert invitation(http, owner, pk)["status"] == "pending"
    assert memberships(http, frank) == []
    # Nor does the API let that account accept.
    api = http.post(f"{INVITE}/{token}/accept", headers=bearer(frank))
    assert api.status_code == 403, api.text

    # Logging out brings the log-in and sign-up forms back.
    logged_out = post(browser, token, "log_out")
    assert logged_out.status_code == 302, logged_out.text
    assert 'value="log_in"' in page(browser, token).text

    declined = post(browser, token, "decline")
    assert declined.status_code == 200, declined.text
    assert "You declined the invite" in declined.text
    assert invitation(http, owner, pk)["status"] == "rejected"
    assert page(browser, token).status_code == 404
    assert http.get(f"{INVITE}/{token}").status_code == 404


def test_a_new_person_signs_up_on_the_page_and_joins(
    server: Server,
    configuration: Configuration,
    http: httpx.Client,
    browser: httpx.Client,
    owner: str,
) -> None:
    salon = new_salon(http, owner)
    pk = invite(http, owner, salon, "gina@example.com", "admin")
    token = emailed_token(server, configuration, "gina@example.com")

    weak = post(browser, token, "sign_up", **{"signup-password": "12345"})
    assert weak.status_code == 400, weak.text
    assert "This password is too short" in weak.text
    assert log_in(http, "gina@example.com").status_code == 401

    joined = post(browser, token, "sign_up", **{"signup-password": PASSWORD})
    assert joined.status_code == 200, joined.text
    assert f"you are now a member of {salon['name']} as Admin" in joined.text
    tokens = log_in(http, "gina@example.com")
    assert tokens.status_code == 200, tokens.text
    assert memberships(http, tokens.json()["access"]) == [(salon["id"], "admin")]
    assert invitation(http, owner, pk)["status"] == "approved"
    assert page(browser, token).status_code == 404


def test_a_role_filled_meanwhile_is_a_plain_409_on_the_page(
    server: Server,
    configuration: Configuration,
    http: httpx.Client,
    browser: httpx.Client,
    owner: str,
) -> None:
    salon = new_salon(http, owner)
    hank_invite = invite(http, owner, salon, "hank@example.com", "mechanic")
    hank_token = emailed_token(server, configuration, "hank@example.com")
    invite(http, owner, salon, "ivy@example.com", "mechanic")
    ivy_token = emailed_token(server, configuration, "ivy@example.com")
    sign_up(http, "hank@example.com")
    _, quick = sign_up(http, "quicker@example.com")
    asked = http.post(
        INVITATIONS, json={"salon": salon["id"], "role": "mechanic"}, headers=bearer(quick)
    )
    assert asked.status_code == 201, asked.text
    approved = http.patch(f"{INVITATIONS}/{asked.json()['id']}/approved", headers=bearer(owner))
    assert approved.status_code == 200, approved.text

    # An account accepting: refused, and the invite is rejected (as over the API).
    log_in_on_page(browser, hank_token, "hank@example.com")
    refused = post(browser, hank_token, "accept")
    assert refused.status_code == 409, refused.text
    assert "has been filled meanwhile" in refused.text
    assert invitation(http, owner, hank_invite)["status"] == "rejected"

    # A sign-up that cannot accept creates no account.
    post(browser, ivy_token, "log_out")
    failed = post(browser, ivy_token, "sign_up", **{"signup-password": PASSWORD})
    assert failed.status_code == 409, failed.text
    assert "has been filled meanwhile" in failed.text
    assert log_in(http, "ivy@example.com").status_code == 401


def test_an_unusable_link_is_a_404_page(http: httpx.Client) -> None:
    for token in ("x" * 43, "short", "A" * 300):
        response = http.get(f"invite/{token}")
        assert response.status_code == 404, (token, response.text)
        assert response.headers["content-type"].startswith("text/html")
        assert "This invite link is not valid" in response.text
        assert UNUSABLE in response.text
