from __future__ import annotations

from typing import Any

from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from apps.users.models import User


class RegistrationSerializer(serializers.ModelSerializer):
    """``{email, password}`` in, ``{id, email}`` out. Django's password validators apply."""

    password = serializers.CharField(
        write_only=True, max_length=128, style={"input_type": "password"}, trim_whitespace=False
    )

    class Meta:
        model = User
        fields = ("id", "email", "password")
        read_only_fields = ("id",)
        # Uniqueness is checked case-insensitively in validate_email instead.
        extra_kwargs = {"email": {"validators": []}}

    def validate_email(self, value: str) -> str:
        email = User.objects.normalize_email(value)
        if User.objects.filter(email__iexact=email).exists():
            raise serializers.ValidationError(_("A user with this e-mail address already exists."))
        return email

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # Validated against an unsaved user so the similarity validator sees the e-mail.
        try:
            password_validation.validate_password(attrs["password"], User(email=attrs["email"]))
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"password": list(exc.messages)}) from exc
        return attrs

    def create(self, validated_data: dict[str, Any]) -> User:
        return User.objects.create_user(**validated_data)


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ("id", "email", "is_staff", "date_joined")
        read_only_fields = fields
