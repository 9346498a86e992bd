"""The invite page's forms: log in with the session, or sign up with the invited address."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import password_validation
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from apps.invites import joining
from salon_invitations.models import Invitation


class LogInForm(AuthenticationForm):
    """Django's session log-in form, with an e-mail input and no autofocus (the page's
    heading and the invite come first)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["username"].widget = forms.EmailInput(
            attrs={"autocomplete": "username", "autocapitalize": "none", "maxlength": 254}
        )


class SignUpForm(forms.Form):
    """A password for a new account with the invited address (which is not asked for)."""

    password = forms.CharField(
        label=_("Choose a password"),
        strip=False,
        max_length=128,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=password_validation.password_validators_help_text_html(),
    )

    def __init__(self, invitation: Invitation, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.invitation = invitation

    def clean_password(self) -> str:
        password = self.cleaned_data["password"]
        try:
            joining.validate_new_password(password, self.invitation)
        except ValidationError as exc:
            raise forms.ValidationError(exc.messages) from exc
        return password
