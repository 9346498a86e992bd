"""JWT authentication for WebSockets (extra ``jwt``: djangorestframework-simplejwt).

Browsers cannot set an ``Authorization`` header on a WebSocket, so the access token comes as
``?token=<access>`` or as the subprotocol pair ``["bearer", "<access>"]`` (the consumer then
accepts with the ``bearer`` subprotocol, as browsers require). Without a token the user set
by the session middleware stays; with an expired, blacklisted or malformed token the user is
anonymous and the consumer closes the connection with code 4401. The consumer also closes the
socket with 4401 when the token expires, unless the client sent a fresh access token first::

    {"action": "authenticate", "token": "<fresh access token>"}

Wrap it *inside* the session
stack so a token wins over a cookie::

    AuthMiddlewareStack(JWTAuthMiddleware(URLRouter(websocket_urlpatterns)))

or use :func:`JWTAuthMiddlewareStack` which does exactly that.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from django.apps import apps
from django.contrib.auth.models import AnonymousUser

logger = logging.getLogger("salon_invitations")


def token_from_scope(scope: dict[str, Any]) -> str | None:
    """The raw token of ``?token=`` or of the ``["bearer", token]`` subprotocol pair."""
    subprotocols = list(scope.get("subprotocols") or [])
    if "bearer" in subprotocols:
        index = subprotocols.index("bearer")
        if index + 1 < len(subprotocols):
            return subprotocols[index + 1]
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    values = query.get("token")
    return values[0] if values else None


#: Where the middleware records when the access token expires (a Unix timestamp). The consumer
#: closes the socket with 4401 then, unless the client sent a fresh token before.
SCOPE_EXPIRY_KEY = "salon_invitations.token_expires_at"


@database_sync_to_async
def user_for_token(raw: str) -> Any:
    """The active user the access token belongs to, or ``AnonymousUser``."""
    return authenticate_token(raw)[0]


def authenticate_token(raw: str) -> tuple[Any, float | None]:
    """``(user, expires_at)`` for a valid access token, ``(AnonymousUser(), None)`` otherwise.

    ``expires_at`` is the token's ``exp`` claim (a Unix timestamp). Runs queries: call it
    through ``database_sync_to_async`` from async code.
    """
    from rest_framework.exceptions import AuthenticationFailed
    from rest_framework_simplejwt.authentication import JWTAuthentication
    from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
    from rest_framework_simplejwt.settings import api_settings

    auth = JWTAuthentication()
    try:
        # A token is ASCII; anything else (a lone surrogate, say) is simply not one.
        encoded = raw.encode("ascii")
    except (UnicodeError, AttributeError):
        logger.info("WebSocket token refused: not an ASCII string")
        return AnonymousUser(), None
    try:
        token = auth.get_validated_token(encoded)
        if apps.is_installed("rest_framework_simplejwt.token_blacklist"):
            from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken

            jti = token.get(api_settings.JTI_CLAIM)
            blacklist = BlacklistedToken._default_manager
            if blacklist.filter(token__jti=jti).exists():
                return AnonymousUser(), None
        expires_at = token.get("exp")
        return auth.get_user(token), float(expires_at) if expires_at is not None else None
    except (InvalidToken, TokenError, AuthenticationFailed) as exc:
        logger.info("WebSocket token refused: %s", exc)
        return AnonymousUser(), None


class JWTAuthMiddleware:
    """ASGI middleware setting ``scope["user"]`` from a JWT access token, when one is given."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        raw = token_from_scope(scope) if scope.get("type") == "websocket" else None
        if raw is not None:
            user, expires_at = await database_sync_to_async(authenticate_token)(raw)
            scope = dict(scope, user=user, **{SCOPE_EXPIRY_KEY: expires_at})
        return await self.inner(scope, receive, send)


def JWTAuthMiddlewareStack(inner: Any) -> Any:
    """Session auth with a JWT access token taking precedence."""
    return AuthMiddlewareStack(JWTAuthMiddleware(inner))
