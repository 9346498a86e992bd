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

or use :func:`JWTAuthMiddlewareStack`, which does the same and does not read the session's
user when a token is given. A handshake with a token then costs one query (the user, and
whether the token is blacklisted), run in the event loop's thread pool rather than in the
one thread Channels gives ``database_sync_to_async``: see "Reconnect storms" in the WebSocket
documentation.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, cast
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from channels.auth import AuthMiddleware
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.apps import apps
from django.contrib.auth.models import AnonymousUser
from django.db import close_old_connections

logger = logging.getLogger("salon_invitations")


def token_from_scope(scope: dict[str, Any]) -> str | None:
    """The raw token of ``?token=`` or of the ``["bearer", token]`` subprotocol pair."""
    subprotocols = list(scope.get("subprotocols") or [])
    if "bearer" in subprotocols:
        index = subprotocols.index("bearer")
        if index + 1 < len(subprotocols):
            return subprotocols[index + 1]
    # A ``token`` given empty is a token, and refused: never the session's user instead.
    return query_param(scope, "token")


def query_param(scope: dict[str, Any], name: str) -> str | None:
    """The last value of ``name`` in the URL, as Django's ``QueryDict.get`` answers; ``""``
    when given empty (``?since=``), ``None`` when absent."""
    query = scope.get("query_string", b"").decode("latin-1")
    values = parse_qs(query, keep_blank_values=True).get(name)
    return values[-1] if values else None


#: Where the middleware records when the access token expires (a Unix timestamp). The consumer
#: closes the socket with 4401 then, unless the client sent a fresh token before.
SCOPE_EXPIRY_KEY = "salon_invitations.token_expires_at"


def database_read(func: Any) -> Any:
    """``func`` (synchronous, read-only database work) as a coroutine function that runs it in
    the event loop's default thread pool (``ASGI_THREADS`` threads under daphne), closing
    stale connections before and after as Channels' ``database_sync_to_async`` does (with
    ``CONN_MAX_AGE = 0`` or the pool: each call returns its connection).

    ``database_sync_to_async`` runs everything in one thread per process (asgiref's
    thread-sensitive mode, outside a request), so in a reconnect storm every handshake's
    lookup queues behind every other one and behind the consumers' replays. A read needs no
    particular thread: these run side by side, each on a connection of its own (the psycopg
    pool's, returned after each call).
    """

    # Django's close_old_connections, not Channels' name for it, which Channels' test
    # communicators turn off (for the test's own connection; these threads' are not it).
    @functools.wraps(func)
    def closing_stale_connections(*args: Any, **kwargs: Any) -> Any:
        close_old_connections()
        try:
            return func(*args, **kwargs)
        finally:
            close_old_connections()

    return sync_to_async(closing_stale_connections, thread_sensitive=False)


@database_read
def user_for_token(raw: str) -> Any:
    """The active user the access token belongs to, or ``AnonymousUser``."""
    return authenticate_token(raw)[0]


class _UserLookup:
    """Stands in for the user model where simplejwt's ``JWTAuthentication.get_user`` reads it
    (``objects``, ``DoesNotExist``), so that its one query also says, when the blacklist app
    is installed, whether the token is blacklisted: an ``EXISTS`` column of the user's row."""

    BLACKLISTED = "_salon_invitations_blacklisted"

    def __init__(self, jti: Any) -> None:
        from django.contrib.auth import get_user_model
        from django.db.models import Exists

        self.user_model = get_user_model()
        self.blacklist_checked = apps.is_installed("rest_framework_simplejwt.token_blacklist")
        if self.blacklist_checked:
            from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken

            # Not correlated with the user: a token's jti is enough. Kept in the user's row so
            # that both answers come in one round trip.
            blacklisted = Exists(BlacklistedToken._default_manager.filter(token__jti=jti))
            self.objects = self.user_model._default_manager.annotate(
                **{self.BLACKLISTED: blacklisted}
            )
        else:
            self.objects = self.user_model._default_manager.all()
        self.DoesNotExist = self.user_model.DoesNotExist
        self._meta = self.user_model._meta


def authenticate_token(raw: str) -> tuple[Any, float | None]:
    """``(user, expires_at)`` for a valid access token, ``(AnonymousUser(), None)`` otherwise.

    ``expires_at`` is the token's ``exp`` claim (a Unix timestamp). Runs one query (the user,
    and whether the token is blacklisted when simplejwt's blacklist app is installed): call it
    through :func:`database_read` (or ``database_sync_to_async``) from async code.
    """
    from rest_framework.exceptions import AuthenticationFailed
    from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
    from rest_framework_simplejwt.settings import api_settings

    from salon_invitations.authentication import JWTAuthentication

    auth = JWTAuthentication()
    try:
        # A token is ASCII; anything else (a lone surrogate, say) is simply not one.
        encoded = raw.encode("ascii")
    except (UnicodeError, AttributeError):
        logger.info("WebSocket token refused: not an ASCII string")
        return AnonymousUser(), None
    try:
        token = auth.get_validated_token(encoded)
        lookup = _UserLookup(token.get(api_settings.JTI_CLAIM))
        # The claim's form, then simplejwt's own checks (no such user, inactive, password
        # changed) on that one row: get_user reads ``self.user_model`` (``_meta``,
        # ``objects``, ``DoesNotExist``).
        auth.user_model = cast(Any, lookup)
        user = auth.get_user(token)
        if lookup.blacklist_checked and getattr(user, lookup.BLACKLISTED):
            logger.info("WebSocket token refused: blacklisted")
            return AnonymousUser(), None
        expires_at = token.get("exp")
        return user, float(expires_at) if expires_at is not None else None
    except (InvalidToken, TokenError, AuthenticationFailed) as exc:
        logger.info("WebSocket token refused: %s", exc)
        return AnonymousUser(), None
    except (ValueError, TypeError, OverflowError) as exc:
        # A correctly signed token whose claims are not what they must be (a user id that is
        # no id, an expiry past what a date can hold): only the signing key can make one.
        logger.warning("WebSocket token refused: malformed claims (%s)", exc)
        return AnonymousUser(), None


class JWTAuthMiddleware:
    """ASGI middleware setting ``scope["user"]`` from a JWT access token, when one is given."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        raw = token_from_scope(scope) if scope.get("type") == "websocket" else None
        if raw is not None:
            user, expires_at = await database_read(authenticate_token)(raw)
            scope = dict(scope, user=user, **{SCOPE_EXPIRY_KEY: expires_at})
        return await self.inner(scope, receive, send)


class SessionAuthUnlessTokenMiddleware(AuthMiddleware):
    """Channels' ``AuthMiddleware`` (the user of the session cookie), except for a WebSocket
    that gives a token: its user is the token's (``JWTAuthMiddleware``, inside), so the
    session's user is not read. That saves each such handshake a trip to the database thread
    and the session's and user's queries, which a browser that is logged in would otherwise
    cost."""

    async def resolve_scope(self, scope: dict[str, Any]) -> None:
        if scope.get("type") == "websocket" and token_from_scope(scope) is not None:
            return
        await super().resolve_scope(scope)


def JWTAuthMiddlewareStack(inner: Any) -> Any:
    """Session auth with a JWT access token taking precedence (and, when there is one, the
    session's user not even read)."""
    return CookieMiddleware(
        SessionMiddleware(SessionAuthUnlessTokenMiddleware(JWTAuthMiddleware(inner)))
    )
