"""System checks ``salon_invitations.E0xx`` (SPEC §5): each fires with its id and a hint."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings
from django.core.checks import Error
from django.core.checks.registry import registry
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

from salon_invitations.checks import (
    check_backend_needs,
    check_settings,
    check_sqlite_locking,
    check_swappable_models,
)
from salon_invitations.conf import DEFAULTS
from salon_invitations.models import Invitation
from salon_invitations.policies import RolePolicy


def run_checks():
    return [*check_settings(), *check_swappable_models()]


def ids(errors):
    return [error.id for error in errors]


def assert_only(errors, check_id, count=1):
    """``errors`` are exactly ``count`` errors with ``check_id``, each with a hint."""
    assert ids(errors) == [check_id] * count, [str(e) for e in errors]
    for error in errors:
        assert isinstance(error, Error)
        assert error.hint
        assert error.msg


def with_settings(**values):
    return override_settings(SALON_INVITATIONS=values)


# The default configuration --------------------------------------------------------------------


def test_the_default_configuration_has_no_errors():
    assert run_checks() == []


def test_a_full_valid_configuration_has_no_errors():
    values = {**DEFAULTS, "INVITATION_TTL": timedelta(days=7), "EMAIL_DELIVERY": "celery"}

    with override_settings(SALON_INVITATIONS=values):
        assert run_checks() == []


@pytest.mark.django_db
def test_the_database_checks_warn_only_about_what_mysql_cannot_create():
    issues = {(issue.id, issue.obj) for issue in registry.run_checks(databases=["default"])}

    if connection.features.supports_partial_indexes:
        assert issues == set()
    else:
        # MySQL and MariaDB: no conditional unique constraint, no index condition, no unique
        # constraint on an expression (lower(email)) (docs/faq.md).
        assert issues == {
            ("models.W036", Invitation),
            ("models.W037", Invitation),
            ("models.W044", Invitation),
        }
    # The test settings silence those, so `manage.py check --database default` is clean.
    call_command("check", database=["default"], fail_level="WARNING", stdout=StringIO())


def test_the_checks_are_registered_with_django():
    checks = registry.get_checks()

    assert check_settings in checks
    assert check_swappable_models in checks
    assert check_sqlite_locking in checks
    assert check_backend_needs in checks


# E001: the role table -------------------------------------------------------------------------


def roles_with(**changes):
    return {**DEFAULTS["ROLES"], **changes}


def test_e001_the_role_table_is_not_a_dict():
    with with_settings(ROLES=["superuser", "admin"]):
        assert_only(check_settings(), "salon_invitations.E001")


def test_e001_the_role_table_is_empty():
    with with_settings(ROLES={}):
        errors = check_settings()

    # The owner role is then missing too.
    assert ids(errors) == ["salon_invitations.E001", "salon_invitations.E002"]
    assert all(error.hint for error in errors)


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param("rank 10", id="not-a-dict"),
        pytest.param({"label": "Intern"}, id="no-rank"),
        pytest.param({"rank": "10"}, id="rank-not-int"),
        pytest.param({"rank": True}, id="rank-bool"),
        pytest.param({"rank": 5, "colour": "red"}, id="unknown-key"),
        pytest.param({"rank": 5, "limit": 0}, id="limit-zero"),
        pytest.param({"rank": 5, "limit": "1"}, id="limit-not-int"),
        pytest.param({"rank": 5, "limit": False}, id="limit-bool"),
    ],
)
def test_e001_a_malformed_role(spec):
    with with_settings(ROLES=roles_with(intern=spec)):
        errors = check_settings()

    assert_only(errors, "salon_invitations.E001")
    assert "intern" in errors[0].msg


def test_e001_a_role_name_longer_than_the_column():
    with with_settings(ROLES=roles_with(**{"x" * 33: {"rank": 5}})):
        assert_only(check_settings(), "salon_invitations.E001")


def test_a_role_with_unlimited_holders_is_fine():
    with with_settings(ROLES=roles_with(intern={"rank": 5, "limit": None})):
        assert check_settings() == []


# E002: the owner role -------------------------------------------------------------------------


def test_e002_owner_role_not_in_roles():
    with with_settings(OWNER_ROLE="boss"):
        errors = check_settings()

    assert_only(errors, "salon_invitations.E002")
    assert "boss" in errors[0].msg


def test_owner_role_naming_a_configured_role_is_fine():
    with with_settings(ROLES=roles_with(boss={"rank": 40, "manages": True}), OWNER_ROLE="boss"):
        assert check_settings() == []


# E003: dotted paths ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("PERMISSION_POLICY", "nope.policies.Policy"),
        ("PERMISSION_POLICY", "salon_invitations.policies.Missing"),
        ("PERMISSION_POLICY", "nodots"),
        ("NOTIFICATION_BACKENDS", ["salon_invitations.notifications.LoggingBackend", "nope.B"]),
        ("INVITATION_SERIALIZER", "salon_invitations.serializers.Nope"),
        ("SALON_SERIALIZER", "nope.Serializer"),
        ("MEMBERSHIP_SERIALIZER", "nope.Serializer"),
        ("PERMISSION_POLICY", 42),
    ],
)
def test_e003_a_dotted_path_that_does_not_import(key, value):
    with with_settings(**{key: value}):
        errors = check_settings()

    assert_only(errors, "salon_invitations.E003")
    assert key in errors[0].msg


def test_e003_reports_every_bad_path():
    with with_settings(NOTIFICATION_BACKENDS=["nope.A", "nope.B"], PERMISSION_POLICY="nope.C"):
        assert_only(check_settings(), "salon_invitations.E003", count=3)


def test_e003_notification_backends_must_be_a_list():
    with with_settings(NOTIFICATION_BACKENDS="salon_invitations.notifications.LoggingBackend"):
        errors = check_settings()

    assert_only(errors, "salon_invitations.E003")
    assert "list" in errors[0].msg


def test_importable_paths_and_classes_are_fine():
    values = {
        "PERMISSION_POLICY": RolePolicy,
        "NOTIFICATION_BACKENDS": ["salon_invitations.notifications.LoggingBackend"],
    }
    with override_settings(SALON_INVITATIONS=values):
        assert check_settings() == []


# E004: INVITATION_TTL -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ttl", [7, "7 days", timedelta(0), timedelta(days=-1)], ids=["int", "str", "zero", "negative"]
)
def test_e004_invitation_ttl_is_not_a_positive_timedelta(ttl):
    with with_settings(INVITATION_TTL=ttl):
        assert_only(check_settings(), "salon_invitations.E004")


# E005: EMAIL_DELIVERY -------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["async", "", None])
def test_e005_email_delivery_is_sync_or_celery(value):
    with with_settings(EMAIL_DELIVERY=value):
        assert_only(check_settings(), "salon_invitations.E005")


# E006 / E007: swappable models ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "check_id"),
    [
        ("SALON_INVITATIONS_SALON_MODEL", "salon_invitations.E006"),
        ("SALON_INVITATIONS_MEMBERSHIP_MODEL", "salon_invitations.E007"),
    ],
)
@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("auth.Group", "does not subclass"),
        ("nope.Missing", "not been installed"),
        ("auth.Missing", "not been installed"),
        ("not-a-label", "app_label.model_name"),
    ],
)
def test_e006_e007_a_swapped_model_that_is_wrong(setting, check_id, value, says):
    with override_settings(**{setting: value}):
        errors = check_swappable_models()

    assert_only(errors, check_id)
    assert says in errors[0].msg


def test_the_configured_swappable_models_pass():
    # In the swapped run these are the test app's CustomSalon / CustomMembership.
    assert settings.SALON_INVITATIONS_SALON_MODEL
    assert check_swappable_models() == []


# E008 / E009: the settings dict itself --------------------------------------------------------


@pytest.mark.parametrize("value", ["ROLES", ["ROLES"], 42])
def test_e008_settings_not_a_dict(value):
    with override_settings(SALON_INVITATIONS=value):
        assert_only(check_settings(), "salon_invitations.E008")


def test_e009_an_unknown_key():
    with with_settings(ROLE={}, INVITATION_TTL=None):
        errors = check_settings()

    assert_only(errors, "salon_invitations.E009")
    assert "ROLE" in errors[0].msg
    assert "ROLES" in errors[0].hint


def test_e009_reports_each_unknown_key():
    with with_settings(TTL=1, ROLE={}):
        assert_only(check_settings(), "salon_invitations.E009", count=2)


# E010: positive integers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["MESSAGE_MAX_LENGTH", "EXPIRY_BATCH_SIZE", "DELIVERY_MAX_ATTEMPTS"]
)
@pytest.mark.parametrize("value", [0, -5, "100", True, None], ids=repr)
def test_e010_non_positive_integers(key, value):
    with with_settings(**{key: value}):
        errors = check_settings()

    assert_only(errors, "salon_invitations.E010")
    assert key in errors[0].msg


def test_positive_integers_are_fine():
    with with_settings(MESSAGE_MAX_LENGTH=1, EXPIRY_BATCH_SIZE=10_000):
        assert check_settings() == []


# E011: an INVITATION_TTL that overflows --------------------------------------------------------


@pytest.mark.parametrize("ttl", [timedelta(days=999_999_999), timedelta(days=365 * 101)])
def test_e011_a_ttl_whose_expiry_date_overflows(ttl):
    with with_settings(INVITATION_TTL=ttl):
        errors = check_settings()
    assert_only(errors, "salon_invitations.E011")


def test_a_long_but_storable_ttl_is_fine():
    with with_settings(INVITATION_TTL=timedelta(days=365 * 50)):
        assert check_settings() == []


# E012: QUEUE_TIMEOUT ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -1, 61, "1", None, True], ids=repr)
def test_e012_queue_timeout_out_of_range(value):
    with with_settings(QUEUE_TIMEOUT=value):
        assert_only(check_settings(), "salon_invitations.E012")


@pytest.mark.parametrize("value", [0.2, 1, 60])
def test_queue_timeouts_in_range_are_fine(value):
    with with_settings(QUEUE_TIMEOUT=value):
        assert check_settings() == []


# W001: SQLite without IMMEDIATE transactions ---------------------------------------------------


def _sqlite(**options):
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:", "OPTIONS": options}


@pytest.mark.parametrize(
    "options", [{}, {"transaction_mode": "DEFERRED"}, {"timeout": 20}], ids=repr
)
def test_w001_sqlite_in_deferred_mode(options):
    databases = {**settings.DATABASES, "other": _sqlite(**options)}
    with override_settings(DATABASES=databases):
        warnings = check_sqlite_locking()
    assert [w.id for w in warnings] == ["salon_invitations.W001"]
    assert "'other'" in warnings[0].msg
    assert "IMMEDIATE" in warnings[0].hint


def test_sqlite_in_immediate_mode_and_other_databases_are_fine():
    databases = {
        "default": _sqlite(transaction_mode="immediate", timeout=20),
        "pg": {"ENGINE": "django.db.backends.postgresql", "NAME": "x"},
    }
    with override_settings(DATABASES=databases):
        assert check_sqlite_locking() == []


# Errors do not leak past the override ---------------------------------------------------------


def test_the_checks_read_settings_when_run():
    with with_settings(EMAIL_DELIVERY="async"):
        assert check_settings()
    assert check_settings() == []


# Values of the wrong kind -----------------------------------------------------------------------


def test_an_owner_role_that_is_not_a_string_is_e002_not_a_crash():
    with with_settings(OWNER_ROLE=["superuser"]):
        assert "salon_invitations.E002" in ids(check_settings())


@pytest.mark.parametrize("flag", ["requestable", "manages"])
def test_role_flags_must_be_booleans(flag):
    roles = {name: dict(spec) for name, spec in DEFAULTS["ROLES"].items()}
    roles["admin"][flag] = "no"  # truthy: the role would manage
    with with_settings(ROLES=roles):
        errors = check_settings()
    assert ids(errors) == ["salon_invitations.E001"]
    assert flag in errors[0].msg


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("PERMISSION_POLICY", "salon_invitations.policies.get_policy"),
        ("INVITATION_SERIALIZER", "os.path"),
        ("NOTIFICATION_BACKENDS", ["salon_invitations.notifications.dispatch"]),
        ("PERMISSION_POLICY", RolePolicy.can_decide),
    ],
)
def test_e003_what_is_imported_must_be_a_class(key, value):
    with with_settings(**{key: value}):
        assert ids(check_settings()) == ["salon_invitations.E003"]


def test_w003_channels_backend_without_a_channel_layer():
    with override_settings(CHANNEL_LAYERS={}):
        warnings = check_backend_needs()
    assert [w.id for w in warnings] == ["salon_invitations.W003"]
    assert warnings[0].hint
    assert check_backend_needs() == []


def test_w002_email_backend_without_an_invite_url():
    backends = ["salon_invitations.notifications.EmailBackend"]
    with with_settings(NOTIFICATION_BACKENDS=backends):
        assert [w.id for w in check_backend_needs()] == ["salon_invitations.W002"]
    url = "https://app.example.com/invite/{token}"
    with with_settings(NOTIFICATION_BACKENDS=backends, INVITE_URL=url):
        assert check_backend_needs() == []


@pytest.mark.parametrize("url", ["https://app.example.com/invite/", 42])
def test_e013_an_invite_url_without_the_token(url):
    with with_settings(INVITE_URL=url):
        assert ids(check_settings()) == ["salon_invitations.E013"]


@pytest.mark.parametrize("value", [timedelta(seconds=-1), 60, None])
def test_e014_the_resend_cooldown(value):
    with with_settings(INVITE_RESEND_COOLDOWN=value):
        assert ids(check_settings()) == ["salon_invitations.E014"]
