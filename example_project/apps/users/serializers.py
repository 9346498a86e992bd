from __future__ import annotations

from typing import Any

from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from rest_framework import serializers

from apps.users.models import EMAIL_TAKEN, User


class RegistrationSerializer(serializers.ModelSerializer):
    """``{email, password}`` in, ``{id, email}`` out. Django's password validators apply."""

    password = serializers.CharField(
        write_only=True, max_length=128, style={"input_type": "password"}, trim_whitespace=False
    )

    class Meta:
        model = User
        fields = ("id", "email", "password")
        read_only_fields = ("id",)
        # Uniqueness is case-insensitive: checked in validate_email, enforced by the database.
        extra_kwargs = {"email": {"validators": []}}

    def validate_email(self, value: str) -> str:
        email = User.objects.normalize_email(value)
        if User.objects.with_email(email).exists():
            raise serializers.ValidationError(EMAIL_TAKEN, code="unique")
        return email

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # Validated against an unsaved user so the similarity validator sees the e-mail.
        try:
            password_validation.validate_password(attrs["password"], User(email=attrs["email"]))
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"password": list(exc.messages)}) from exc
        return attrs

    def create(self, validated_data: dict[str, Any]) -> User:
        try:
            return User.objects.create_user(**validated_data)
        except IntegrityError:
            # A concurrent sign-up with this address (in any case) got in between
            # validate_email and the INSERT; the unique index on LOWER(email) refused this one.
            if User.objects.with_email(validated_data["email"]).exists():
                raise serializers.ValidationError({"email": [EMAIL_TAKEN]}, code="unique") from None
            raise


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ("id", "email", "is_staff", "date_joined")
        read_only_fields = fields
