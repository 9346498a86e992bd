"""The package ships a German catalogue; user-facing strings go through gettext."""

import pytest
from django.core import mail
from django.utils import translation
from django.utils.translation import gettext

from salon_invitations import services
from salon_invitations.exceptions import InvalidInvitation
from tests import factories

EMAIL = "salon_invitations.notifications.EmailBackend"


def test_service_errors_are_translated():
    with translation.override("de"):
        assert gettext("This role is already taken in this salon.") == (
            "Diese Rolle ist in diesem Salon bereits vergeben."
        )


@pytest.mark.django_db
def test_a_400_speaks_the_request_language(api, salon, requester):
    factories.add_member(salon, role="seller")

    response = api(requester).post(
        "/api/invitation_to_auto_salon",
        {"salon": salon.pk, "role": "seller"},
        format="json",
        HTTP_ACCEPT_LANGUAGE="de",
    )

    assert response.status_code == 400
    assert response.json() == {"role": ["Diese Rolle ist in diesem Salon bereits vergeben."]}


@pytest.mark.django_db
def test_e_mail_renders_in_german(
    settings, salon, owner, requester, django_capture_on_commit_callbacks
):
    settings.LANGUAGE_CODE = "de"
    settings.SALON_INVITATIONS = {"NOTIFICATION_BACKENDS": [EMAIL]}
    with django_capture_on_commit_callbacks(execute=True):
        invitation = services.create_invitation(user=requester, salon=salon, role="seller")
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        services.approve_invitation(invitation, actor=owner)

    (message,) = mail.outbox
    assert message.subject == f"Willkommen bei {salon.name}"
    assert "wurde genehmigt" in message.body


@pytest.mark.django_db
def test_invalid_invitation_message_is_lazy(salon, requester):
    with pytest.raises(InvalidInvitation) as exc_info, translation.override("de"):
        services.create_invitation(user=requester, salon=salon, role="superuser")
    with translation.override("de"):
        assert "ist keine Rolle" in str(exc_info.value.message)
