"""``salon_invitations.authentication.JWTAuthentication``: simplejwt's, refusing (401) a signed
token whose user id claim is not a user id as simplejwt writes one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIRequestFactory
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.tokens import AccessToken

from salon_invitations.authentication import JWTAuthentication
from tests import factories

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]


def _authenticate(user: Any, claim: Callable[[Any], Any]) -> Any:
    token = AccessToken.for_user(user)
    token.payload["user_id"] = claim(user)
    request = APIRequestFactory().get("/", HTTP_AUTHORIZATION=f"Bearer {token}")
    return JWTAuthentication().authenticate(request)


@pytest.mark.parametrize(
    "claim",
    [lambda user: user.pk, lambda user: str(user.pk)],
    ids=["int", "string"],
)
def test_a_user_id_as_simplejwt_writes_it_authenticates(claim):
    user = factories.make_user()
    authenticated, _ = _authenticate(user, claim)
    assert authenticated == user


@pytest.mark.parametrize(
    "claim",
    [
        lambda user: user.pk + 0.5,
        lambda user: float(user.pk),
        lambda user: True,
        lambda user: f" {user.pk}",
        lambda user: f"0{user.pk}",
        lambda user: f"{user.pk}e0",
        lambda user: str(user.pk).translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")),
        lambda user: [user.pk],
        lambda user: None,
    ],
    ids=[
        "float",
        "whole_float",
        "true",
        "padded",
        "zero_led",
        "exponent",
        "arabic",
        "list",
        "null",
    ],
)
def test_a_user_id_in_any_other_form_is_an_invalid_token(claim):
    user = factories.make_user()
    with pytest.raises(InvalidToken):
        _authenticate(user, claim)
