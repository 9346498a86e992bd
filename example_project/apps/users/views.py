"""Registration, the current user, and the JWT endpoints with their throttle scopes."""

from __future__ import annotations

from typing import Any

from rest_framework import generics, permissions
from rest_framework_simplejwt.views import (
    TokenBlacklistView,
    TokenObtainPairView,
    TokenRefreshView,
)

from apps.users.serializers import RegistrationSerializer, UserSerializer


class RegistrationView(generics.CreateAPIView):
    """Create an account: ``{email, password}`` → 201 ``{id, email}``.

    With ``invite_token`` (the token in an invite's link) the account gets the invited address
    (``email`` may be left out) and joins the salon, in one transaction. An unusable token is a
    404, a role filled meanwhile a 409 (``role_taken``), each naming ``invite_token``.
    """

    serializer_class = RegistrationSerializer
    permission_classes = [permissions.AllowAny]
    authentication_classes: list[Any] = []
    throttle_scope = "registration"


class MeView(generics.RetrieveAPIView):
    """The authenticated user."""

    serializer_class = UserSerializer

    def get_object(self) -> Any:
        return self.request.user


class LoginView(TokenObtainPairView):
    """``{email, password}`` → ``{access, refresh}``."""

    throttle_scope = "auth"


class RefreshView(TokenRefreshView):
    """``{refresh}`` → ``{access, refresh}``; the old refresh token is blacklisted."""

    throttle_scope = "auth"


class LogoutView(TokenBlacklistView):
    """``{refresh}`` → 200; the refresh token is blacklisted and cannot be used again."""

    throttle_scope = "auth"
