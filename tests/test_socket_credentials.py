"""Open WebSockets outlive neither their credentials nor their account.

A JWT-authenticated socket is closed with 4401 when its access token expires, unless the client
sent a fresh token (``{"action": "authenticate", "token": ...}``); deactivating or deleting an
account closes its sockets, and logging out those its session opened; inactive accounts hear
nothing and cannot be approved.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from datetime import timedelta
from importlib import import_module
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import get_user_model, logout
from django.http import HttpRequest
from rest_framework_simplejwt.tokens import AccessToken

from salon_invitations import services
from salon_invitations.consumer import SalonEventsConsumer
from salon_invitations.exceptions import Conflict
from salon_invitations.models import Invitation
from salon_invitations.policies import get_policy
from tests import factories
from tests.test_consumer import (
    INVITATIONS,
    REFUSED,
    ROLES,
    application,
    assert_refused,
    open_socket,
    session_cookie,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]


def short_token(user: Any, seconds: float) -> str:
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=timedelta(seconds=seconds))
    return str(token)


async def connect_with(token: str, path: str = INVITATIONS) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, f"{path}?token={token}")
    connected, _ = await communicator.connect()
    assert connected is True
    return communicator


async def assert_closed(socket: WebsocketCommunicator, timeout: float) -> None:
    """Closed by the server with 4401; then the client side goes too, so the consumer stops
    listening on the channel layer before this test's event loop ends."""
    assert await socket.receive_output(timeout=timeout) == REFUSED
    await socket.disconnect()


async def ping(socket: WebsocketCommunicator) -> None:
    await socket.send_json_to({"action": "ping"})
    assert await socket.receive_json_from(timeout=2) == {"type": "pong"}


@pytest.mark.asyncio
async def test_socket_closes_with_4401_when_its_token_expires(requester):
    socket = await connect_with(short_token(requester, 1.5))
    await ping(socket)  # open and answering while the token is valid
    started = time.monotonic()
    await assert_closed(socket, timeout=4)
    assert time.monotonic() - started < 3


@pytest.mark.asyncio
async def test_a_fresh_token_keeps_the_socket_open(salon, requester):
    socket = await connect_with(short_token(requester, 1.5))
    fresh = AccessToken.for_user(requester)
    await socket.send_json_to({"action": "authenticate", "token": str(fresh)})
    assert await socket.receive_json_from(timeout=2) == {
        "type": "authenticated",
        "expires_at": float(fresh["exp"]),
    }
    await asyncio.sleep(2.5)  # past the first token's expiry
    await ping(socket)
    # ... and it still hears its events.
    await database_sync_to_async(factories.make_invitation)(salon=salon, user=requester)
    frame = await socket.receive_json_from(timeout=2)
    assert frame["type"] == "invitation.created"
    await socket.disconnect()


@pytest.mark.asyncio
async def test_a_fresh_short_token_moves_the_deadline(requester):
    socket = await connect_with(short_token(requester, 60))
    await socket.send_json_to({"action": "authenticate", "token": short_token(requester, 1)})
    assert (await socket.receive_json_from(timeout=2))["type"] == "authenticated"
    await assert_closed(socket, timeout=3)


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(None, id="missing"),
        pytest.param(42, id="not-a-string"),
        pytest.param("not-a-jwt", id="garbage"),
        pytest.param("other-user", id="another-users-token"),
        pytest.param("\ud800", id="lone-surrogate"),
        pytest.param("é" * 50, id="not-ascii"),
    ],
)
@pytest.mark.asyncio
async def test_a_bad_token_is_refused_and_the_deadline_stays(requester, token):
    if token == "other-user":
        stranger = await database_sync_to_async(factories.make_user)("stranger")
        token = str(AccessToken.for_user(stranger))
    socket = await connect_with(short_token(requester, 1.5))
    frame = (
        {"action": "authenticate"} if token is None else {"action": "authenticate", "token": token}
    )
    await socket.send_json_to(frame)
    answer = await socket.receive_json_from(timeout=2)
    assert (answer["type"], answer["code"]) == ("error", "invalid_token")
    await assert_closed(socket, timeout=3)


@pytest.mark.asyncio
async def test_session_sockets_have_no_token_deadline(requester):
    async with AsyncExitStack() as stack:
        socket = await open_socket(stack, requester)  # a one-hour token
        await ping(socket)
        assert await socket.receive_nothing(timeout=0.5)


@pytest.mark.parametrize("how", ["deactivated", "deleted"])
@pytest.mark.asyncio
async def test_deactivating_or_deleting_the_account_closes_its_sockets(requester, how):
    sockets = [
        await connect_with(str(AccessToken.for_user(requester)), path)
        for path in (INVITATIONS, ROLES)
    ]
    other = await connect_with(
        str(AccessToken.for_user(await database_sync_to_async(factories.make_user)("other")))
    )

    def close_account() -> None:
        if how == "deleted":
            requester.delete()
        else:
            requester.is_active = False
            requester.save()

    started = time.monotonic()
    await database_sync_to_async(close_account)()
    for socket in sockets:
        await assert_closed(socket, timeout=1)
    assert time.monotonic() - started < 1
    await ping(other)  # somebody else's socket is untouched
    await other.disconnect()


@pytest.mark.asyncio
async def test_logging_out_closes_the_sockets_that_session_opened(requester):
    cookies = [await session_cookie(requester) for _ in range(2)]  # two browsers
    by_session = [await connect_with_cookie(cookie) for cookie in cookies]
    by_token = await connect_with(str(AccessToken.for_user(requester)))

    await database_sync_to_async(log_out_session)(requester, cookies[0])
    await assert_closed(by_session[0], timeout=1)
    for socket in (by_session[1], by_token):  # the other browser's, and the token's
        await ping(socket)
        await socket.disconnect()
    refused = WebsocketCommunicator(application, INVITATIONS, headers=[(b"cookie", cookies[0])])
    await assert_refused(refused)  # the session is gone


@pytest.mark.asyncio
async def test_logging_out_while_the_socket_joins_its_groups_closes_it(requester, monkeypatch):
    """The logout's close goes to the session's group before the socket is in it; the socket
    reads its session again once it has joined."""
    cookie = await session_cookie(requester)
    join_all = SalonEventsConsumer._join_all

    async def logged_out_meanwhile(consumer, groups):
        await database_sync_to_async(log_out_session)(requester, cookie)
        await join_all(consumer, groups)

    monkeypatch.setattr(SalonEventsConsumer, "_join_all", logged_out_meanwhile)
    communicator = WebsocketCommunicator(application, INVITATIONS, headers=[(b"cookie", cookie)])
    connected, _ = await communicator.connect()
    assert connected is True  # accepted, so that the client sees why it is closed
    await assert_closed(communicator, timeout=2)


def log_out_session(user: Any, cookie: bytes) -> None:
    """Django's ``logout()`` for the session of the ``Cookie`` header ``cookie``."""
    request = HttpRequest()
    request.session = import_module(settings.SESSION_ENGINE).SessionStore(
        cookie.decode().split("=", 1)[1]
    )
    request.user = user
    logout(request)


async def connect_with_cookie(cookie: bytes) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, INVITATIONS, headers=[(b"cookie", cookie)])
    connected, _ = await communicator.connect()
    assert connected is True
    return communicator


@pytest.mark.asyncio
async def test_saving_an_active_user_closes_nothing(requester):
    socket = await connect_with(str(AccessToken.for_user(requester)))
    requester.first_name = "Renamed"
    await database_sync_to_async(requester.save)()
    assert await socket.receive_nothing(timeout=0.5)
    await socket.disconnect()


def test_inactive_accounts_are_never_recipients(salon, owner, admin_member, requester):
    get_user_model().objects.filter(pk__in=[admin_member.pk, requester.pk]).update(is_active=False)
    assert get_policy().recipients(salon.pk, requester.pk) == {owner.pk}


def test_approving_an_inactive_users_request_is_409_and_leaves_it_pending(
    api, salon, owner, requester
):
    invitation = factories.make_invitation(salon=salon, user=requester)
    get_user_model().objects.filter(pk=requester.pk).update(is_active=False)

    response = api(owner).patch(f"/api/invitation_to_auto_salon/{invitation.pk}/approved")

    assert response.status_code == 409, response.content
    assert response.json()["code"] == "inactive_user"
    invitation.refresh_from_db()
    assert invitation.status == Invitation.STATUS.pending
    assert not salon.memberships.filter(user=requester).exists()
    with pytest.raises(Conflict):
        services.approve_invitation(invitation, actor=owner)
