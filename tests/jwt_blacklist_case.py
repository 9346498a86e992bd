"""A WebSocket with a blacklisted JWT is refused (SPEC §4).

Not collected by the main run (no ``test_`` prefix): ``tests/test_consumer.py`` runs it in a
child pytest with ``tests.settings_jwt_blacklist``, where simplejwt's blacklist app is installed.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.apps import apps
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken

from salon_invitations.middleware import JWTAuthMiddlewareStack
from salon_invitations.routing import websocket_urlpatterns
from tests import factories

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.django_db(transaction=True),
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]

application = JWTAuthMiddlewareStack(URLRouter(websocket_urlpatterns))
PATH = "/api/invitation_to_auto_salon/"


async def test_blacklisted_token_is_refused(queries_in_every_thread):
    from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

    assert apps.is_installed("rest_framework_simplejwt.token_blacklist")
    user = await database_sync_to_async(factories.make_user)()
    blacklisted = AccessToken.for_user(user)
    kept = AccessToken.for_user(user)

    def blacklist() -> None:
        outstanding = OutstandingToken.objects.create(
            user=user,
            jti=blacklisted["jti"],
            token=str(blacklisted),
            expires_at=timezone.now() + timedelta(minutes=5),
        )
        BlacklistedToken.objects.create(token=outstanding)

    await database_sync_to_async(blacklist)()

    refused = WebsocketCommunicator(application, f"{PATH}?token={blacklisted}")
    queries_in_every_thread.clear()
    assert await refused.connect() == (True, None)
    assert await refused.receive_output(timeout=1) == {"type": "websocket.close", "code": 4401}
    await refused.disconnect()
    # The user and the blacklist in one statement.
    assert len(queries_in_every_thread) == 1, queries_in_every_thread

    # The same user's other token still connects: the refusal is the blacklist's doing.
    accepted = WebsocketCommunicator(application, f"{PATH}?token={kept}")
    queries_in_every_thread.clear()
    try:
        assert await accepted.connect() == (True, None)
        assert await accepted.receive_nothing(timeout=0.1)
        assert len(queries_in_every_thread) == 1, queries_in_every_thread
    finally:
        await accepted.disconnect()
