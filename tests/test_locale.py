"""The package ships German and Ukrainian catalogues; user-facing strings go through gettext."""

# Ukrainian text is Cyrillic, not letters mistaken for Latin ones.
# ruff: noqa: RUF001

import ast
import gettext as gettext_module
import re
import shutil
from pathlib import Path

import pytest
from django.core import mail
from django.core.management import call_command
from django.utils import translation
from django.utils.translation import gettext

import salon_invitations
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


# Ukrainian ---------------------------------------------------------------------------------------


def test_service_errors_are_translated_into_ukrainian():
    with translation.override("uk"):
        assert gettext("This role is already taken in this salon.") == (
            "Цю роль у цьому салоні вже зайнято."
        )


@pytest.mark.django_db
def test_a_400_speaks_ukrainian(api, salon, requester):
    factories.add_member(salon, role="seller")

    response = api(requester).post(
        "/api/invitation_to_auto_salon",
        {"salon": salon.pk, "role": "seller"},
        format="json",
        HTTP_ACCEPT_LANGUAGE="uk",
    )

    assert response.status_code == 400
    assert response.json() == {"role": ["Цю роль у цьому салоні вже зайнято."]}


# The invite e-mail -------------------------------------------------------------------------------

INVITE_MAIL = {
    "de": {
        "subject": "Einladung, Salon A als Verkäufer beizutreten",
        "body": [
            "owner lädt Sie ein, Salon A als Verkäufer beizutreten.",
            "Um die Einladung anzunehmen oder abzulehnen, öffnen Sie diesen Link:",
            "Wenn Sie diese Einladung nicht erwartet haben, ignorieren Sie bitte diese E-Mail.",
        ],
        "html": "Einladung annehmen oder ablehnen",
    },
    "uk": {
        "subject": "Запрошення до салону Salon A як Продавець",
        "body": [
            "owner запрошує Вас приєднатися до салону Salon A як Продавець.",
            "Щоб прийняти або відхилити запрошення, відкрийте це посилання:",
            "Якщо Ви не очікували цього запрошення, просто проігноруйте цей лист.",
        ],
        "html": "Прийняти або відхилити запрошення",
    },
}


@pytest.mark.django_db
@pytest.mark.parametrize("language", sorted(INVITE_MAIL))
def test_the_invite_e_mail_renders_in_the_site_language(
    language, settings, salon, owner, mailoutbox, django_capture_on_commit_callbacks
):
    settings.LANGUAGE_CODE = language
    settings.SALON_INVITATIONS = {
        "NOTIFICATION_BACKENDS": [EMAIL],
        "INVITE_URL": "https://app.example.com/invite/{token}",
    }
    with django_capture_on_commit_callbacks(execute=True):
        services.invite(salon=salon, email="new@example.com", role="seller", invited_by=owner)

    (message,) = mailoutbox
    expected = INVITE_MAIL[language]
    assert message.subject == expected["subject"]
    for line in expected["body"]:
        assert line in message.body
    assert "https://app.example.com/invite/" in message.body
    assert expected["html"] in message.alternatives[0][0]


# The catalogues ----------------------------------------------------------------------------------

LOCALE = Path(salon_invitations.__file__).parent / "locale"
LANGUAGES = ["de", "uk"]
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")


def unquote(text: str) -> str:
    """The text of a PO string (the quotes and escapes of a C string)."""
    return ast.literal_eval(text)


def read_po(path: Path) -> list[dict]:
    """The entries of a PO file, each with its ``msgid``, ``msgstr`` (a list: one string, or
    one per plural form) and ``flags``; obsolete (``#~``) entries left out."""
    entries = []
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        entry: dict = {"flags": set()}
        key = None
        for line in block.strip().splitlines():
            if line.startswith("#,"):
                entry["flags"].update(flag.strip() for flag in line[2:].split(","))
            elif line.startswith("#"):
                continue
            elif line.startswith('"'):
                entry[key] += unquote(line)
            else:
                key, value = line.split(" ", 1)
                entry[key] = unquote(value)
        if "msgid" not in entry:
            continue
        forms = sorted(k for k in entry if k.startswith("msgstr"))  # msgstr or msgstr[0], ...
        entry["msgstr"] = [entry.pop(k) for k in forms]
        entries.append(entry)
    return entries


def nplurals(header: str) -> int:
    return int(re.search(r"nplurals=(\d+)", header).group(1))


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_message_is_translated(language):
    header, *entries = read_po(LOCALE / language / "LC_MESSAGES" / "django.po")
    assert header["msgid"] == "" and f"Language: {language}\n" in header["msgstr"][0]
    assert "fuzzy" not in header["flags"]
    assert entries
    for entry in entries:
        msgid = entry["msgid"]
        assert "fuzzy" not in entry["flags"], f"{language}: fuzzy {msgid!r}"
        expected = nplurals(header["msgstr"][0]) if "msgid_plural" in entry else 1
        assert len(entry["msgstr"]) == expected, f"{language}: plural forms of {msgid!r}"
        for msgstr in entry["msgstr"]:
            assert msgstr.strip(), f"{language}: untranslated {msgid!r}"
            if "python-format" in entry["flags"]:
                assert set(PLACEHOLDER.findall(msgstr)) == set(PLACEHOLDER.findall(msgid)), (
                    f"{language}: placeholders of {msgid!r}"
                )


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_compiled_catalogue_matches_its_source(language):
    directory = LOCALE / language / "LC_MESSAGES"
    with (directory / "django.mo").open("rb") as mo:
        compiled = gettext_module.GNUTranslations(mo)
    for entry in read_po(directory / "django.po")[1:]:
        if "msgid_plural" in entry:
            for n in range(30):
                translated = compiled.ngettext(entry["msgid"], entry["msgid_plural"], n)
                assert translated == entry["msgstr"][compiled.plural(n)]
        else:
            assert compiled.gettext(entry["msgid"]) == entry["msgstr"][0], (
                f"{language}: run msgfmt again ({entry['msgid']!r})"
            )


@pytest.mark.skipif(shutil.which("xgettext") is None, reason="GNU gettext is not installed")
def test_the_catalogues_have_every_message_of_the_package(tmp_path, monkeypatch):
    """makemessages on a copy of the package finds no message the catalogues lack."""
    copy = tmp_path / "salon_invitations"
    shutil.copytree(LOCALE.parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.chdir(copy)
    call_command("makemessages", locale=["de"], verbosity=0)

    extracted = {e["msgid"] for e in read_po(copy / "locale/de/LC_MESSAGES/django.po")[1:]}
    for language in LANGUAGES:
        path = LOCALE / language / "LC_MESSAGES" / "django.po"
        catalogued = {e["msgid"] for e in read_po(path)[1:]}
        assert extracted - catalogued == set(), f"{language} lacks these messages"
        assert catalogued - extracted == set(), f"{language} has messages no longer used"
