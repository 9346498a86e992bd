"""Registration under daphne: one account per e-mail address, whatever its case, even when the
sign-ups race (SQLite in ``embedded``, PostgreSQL in ``services``)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from .support import PASSWORD, Configuration, Server, manage

REGISTRATION = "api/user/registration"
#: One address in ten spellings.
SPELLINGS = [
    "Ann@X.com",
    "ann@x.com",
    "ANN@X.COM",
    "ann@X.COM",
    "Ann@x.com",
    "aNN@x.com",
    "ANN@x.com",
    "anN@X.com",
    "AnN@x.cOm",
    "aNn@X.Com",
]

ACCOUNTS = (
    "import json; "
    "from django.contrib.auth import get_user_model; "
    "print(json.dumps(list(get_user_model()._default_manager"
    ".filter(email__iexact={email!r}).values_list('email', flat=True))))"
)


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30, trust_env=False) as client:
        yield client


def accounts(configuration: Configuration, email: str) -> list[str]:
    """The addresses stored for ``email``, compared case-insensitively."""
    result = manage("shell", "-c", ACCOUNTS.format(email=email), env=configuration.env).ok()
    return json.loads(result.stdout.splitlines()[-1])


def test_parallel_sign_ups_with_one_address_make_one_account(
    server: Server, configuration: Configuration
) -> None:
    start = threading.Barrier(len(SPELLINGS))

    def register(email: str) -> httpx.Response:
        with httpx.Client(base_url=server.base_url, timeout=60, trust_env=False) as client:
            start.wait(timeout=30)
            return client.post(REGISTRATION, json={"email": email, "password": PASSWORD})

    with ThreadPoolExecutor(len(SPELLINGS)) as pool:
        responses = list(pool.map(register, SPELLINGS))

    outcome = [(r.status_code, r.text[:200]) for r in responses]
    assert sorted(r.status_code for r in responses) == [201] + [400] * 9, outcome
    (created,) = [r for r in responses if r.status_code == 201]
    for refused in responses:
        if refused.status_code == 400:
            assert refused.json() == {
                "email": ["A user with this e-mail address already exists."]
            }, outcome
    assert accounts(configuration, "ann@x.com") == [created.json()["email"]]

    # Whatever the spelling, logging in finds that one account.
    for email in ("ann@x.com", "ANN@X.COM"):
        with httpx.Client(base_url=server.base_url, timeout=30, trust_env=False) as client:
            tokens = client.post("api/auth", json={"email": email, "password": PASSWORD})
            assert tokens.status_code == 200, tokens.text
            me = client.get(
                "api/user/me", headers={"Authorization": f"Bearer {tokens.json()['access']}"}
            )
            assert me.json()["id"] == created.json()["id"]


def test_addresses_are_stored_trimmed_with_the_domain_in_lower_case(
    http: httpx.Client, configuration: Configuration
) -> None:
    response = http.post(
        REGISTRATION, json={"email": "  Bob.Smith@Example.COM ", "password": PASSWORD}
    )
    assert response.status_code == 201, response.text
    assert response.json()["email"] == "Bob.Smith@example.com"
    again = http.post(REGISTRATION, json={"email": "bob.smith@EXAMPLE.com", "password": PASSWORD})
    assert again.status_code == 400, again.text
    assert again.json() == {"email": ["A user with this e-mail address already exists."]}
    assert accounts(configuration, "bob.smith@example.com") == ["Bob.Smith@example.com"]
