"""JWT authentication for the REST API that reads a token's user id claim as strictly as the
WebSocket handshake does.

``rest_framework_simplejwt.authentication.JWTAuthentication`` looks the user up with whatever
the signed token's user id claim holds, so the database makes ``1.5``, ``true`` or ``"01"``
user 1 and a value it cannot read (``"1e0"``) is a server error. Only the signing key's holder
can make such a token; this class still answers each of them 401 like any invalid token::

    REST_FRAMEWORK = {
        "DEFAULT_AUTHENTICATION_CLASSES": [
            "salon_invitations.authentication.JWTAuthentication",
            ...
        ],
    }
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from rest_framework_simplejwt.authentication import JWTAuthentication as SimpleJWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.settings import api_settings


def is_user_id(user_model: Any, value: Any) -> bool:
    """Whether ``value`` is a user id in the form simplejwt writes it: the id field's own value
    (an ``int`` for an integer key) or its canonical string (``str(pk)``)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return False
    field = user_model._meta.get_field(api_settings.USER_ID_FIELD)
    try:
        parsed = field.to_python(value)
    except (ValidationError, ValueError, TypeError, OverflowError):
        return False
    return parsed == value if isinstance(value, int) else str(parsed) == value


class JWTAuthentication(SimpleJWTAuthentication):
    """simplejwt's ``JWTAuthentication``, refusing (401) a token whose user id claim is not a
    user id as simplejwt writes one."""

    def get_user(self, validated_token: Any) -> Any:
        claim = validated_token.get(api_settings.USER_ID_CLAIM)
        if not is_user_id(self.user_model, claim):
            raise InvalidToken(f"The {api_settings.USER_ID_CLAIM} claim is not a user id.")
        return super().get_user(validated_token)


try:
    from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
except ImportError:  # pragma: no cover - drf-spectacular is optional
    pass
else:

    class JWTAuthenticationScheme(SimpleJWTScheme):
        """drf-spectacular describes this class as it does simplejwt's (``jwtAuth``)."""

        target_class = "salon_invitations.authentication.JWTAuthentication"
