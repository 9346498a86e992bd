"""The settings object (SPEC §5): read lazily, overridable in tests, dotted paths imported."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils.module_loading import import_string

from salon_invitations import roles
from salon_invitations.conf import DEFAULTS, AppSettings, app_settings
from salon_invitations.notifications import LoggingBackend
from salon_invitations.policies import RolePolicy
from salon_invitations.serializers import InvitationSerializer


class CustomPolicy(RolePolicy):
    pass


def test_without_user_settings_every_value_is_its_default():
    assert getattr(settings, "SALON_INVITATIONS", None) is None
    for name in DEFAULTS:
        assert app_settings.raw(name) == DEFAULTS[name]
    assert app_settings.EXPIRY_BATCH_SIZE == 500
    assert app_settings.OWNER_ROLE == "superuser"
    assert app_settings.INVITATION_TTL is None
    assert app_settings.invitation_ttl is None


def test_settings_are_read_when_used_not_when_the_object_is_made():
    fresh = AppSettings()

    with override_settings(SALON_INVITATIONS={"EXPIRY_BATCH_SIZE": 7}):
        assert fresh.EXPIRY_BATCH_SIZE == 7
        assert fresh.user_settings == {"EXPIRY_BATCH_SIZE": 7}


def test_override_settings_changes_a_cached_value_and_resets_after():
    assert app_settings.EXPIRY_BATCH_SIZE == 500  # now cached

    with override_settings(SALON_INVITATIONS={"EXPIRY_BATCH_SIZE": 3, "EMAIL_DELIVERY": "celery"}):
        assert app_settings.EXPIRY_BATCH_SIZE == 3
        assert app_settings.EMAIL_DELIVERY == "celery"
        assert app_settings.MESSAGE_MAX_LENGTH == 1000  # not overridden: the default

    assert app_settings.EXPIRY_BATCH_SIZE == 500
    assert app_settings.EMAIL_DELIVERY == "sync"


def test_override_settings_changes_the_invitation_ttl():
    with override_settings(SALON_INVITATIONS={"INVITATION_TTL": timedelta(days=3)}):
        assert app_settings.invitation_ttl == timedelta(days=3)
    assert app_settings.invitation_ttl is None


def test_override_settings_changes_the_role_table_and_resets_after():
    assert roles.get_role("intern") is None
    assert [r.name for r in roles.requestable_roles()] == ["admin", "seller", "mechanic"]
    table = {
        **DEFAULTS["ROLES"],
        "intern": {"label": "Intern", "rank": 5, "limit": None},
    }

    with override_settings(SALON_INVITATIONS={"ROLES": table}):
        intern = roles.get_role("intern")
        assert intern is not None
        assert (intern.label, intern.rank, intern.limit) == ("Intern", 5, None)
        assert intern.requestable is True  # the default
        assert intern.manages is False  # the default
        assert [r.name for r in roles.requestable_roles()] == [
            "admin",
            "seller",
            "mechanic",
            "intern",
        ]
        assert roles.get_role("seller").outranks(intern)

    assert roles.get_role("intern") is None
    assert "intern" not in roles.get_roles()


def test_the_owner_role_follows_the_setting():
    table = {**DEFAULTS["ROLES"], "boss": {"rank": 99, "limit": 1, "manages": True}}

    with override_settings(SALON_INVITATIONS={"ROLES": table, "OWNER_ROLE": "boss"}):
        assert roles.owner_role().name == "boss"
        assert "boss" not in [r.name for r in roles.requestable_roles()]
        assert set(roles.managing_role_names()) == {"superuser", "admin", "boss"}

    assert roles.owner_role().name == "superuser"


def test_the_default_role_table():
    table = roles.get_roles()

    assert list(table) == ["superuser", "admin", "seller", "mechanic"]
    assert {name: role.rank for name, role in table.items()} == {
        "superuser": 30,
        "admin": 20,
        "seller": 10,
        "mechanic": 10,
    }
    assert {role.limit for role in table.values()} == {1}
    assert roles.managing_role_names() == ["superuser", "admin"]
    assert [r.name for r in roles.requestable_roles()] == ["admin", "seller", "mechanic"]
    assert roles.role_choices()[0] == ("superuser", "Superuser")


def test_an_unknown_attribute_raises_attribute_error():
    with pytest.raises(AttributeError, match="NOT_A_SETTING"):
        app_settings.NOT_A_SETTING  # noqa: B018
    with pytest.raises(AttributeError):
        app_settings.raw("NOT_A_SETTING")
    with pytest.raises(AttributeError):
        app_settings._private  # noqa: B018
    assert not hasattr(app_settings, "NOT_A_SETTING")


def test_dotted_paths_are_imported():
    assert app_settings.PERMISSION_POLICY is RolePolicy
    assert app_settings.INVITATION_SERIALIZER is InvitationSerializer
    assert app_settings.raw("PERMISSION_POLICY") == "salon_invitations.policies.RolePolicy"


def test_dotted_paths_from_user_settings_are_imported():
    values = {
        "PERMISSION_POLICY": "tests.test_conf.CustomPolicy",
        "NOTIFICATION_BACKENDS": ["salon_invitations.notifications.LoggingBackend"],
    }

    with override_settings(SALON_INVITATIONS=values):
        assert app_settings.PERMISSION_POLICY is CustomPolicy
        backends = app_settings.NOTIFICATION_BACKENDS
        assert backends == [LoggingBackend]

    assert app_settings.PERMISSION_POLICY is RolePolicy
    backends = app_settings.NOTIFICATION_BACKENDS
    assert backends == [import_string(path) for path in DEFAULTS["NOTIFICATION_BACKENDS"]]


def test_a_class_is_accepted_in_place_of_its_dotted_path():
    with override_settings(SALON_INVITATIONS={"PERMISSION_POLICY": CustomPolicy}):
        assert app_settings.PERMISSION_POLICY is CustomPolicy


def test_a_bad_dotted_path_fails_when_used():
    with override_settings(SALON_INVITATIONS={"PERMISSION_POLICY": "nope.Policy"}):
        with pytest.raises(ImportError):
            app_settings.PERMISSION_POLICY  # noqa: B018
        assert app_settings.raw("PERMISSION_POLICY") == "nope.Policy"


def test_non_package_settings_do_not_clear_the_cache():
    app_settings.EXPIRY_BATCH_SIZE  # noqa: B018 - fill the cache
    assert "EXPIRY_BATCH_SIZE" in app_settings._cache

    with override_settings(PAGE_SIZE_FOR_SOMETHING_ELSE=1):
        assert "EXPIRY_BATCH_SIZE" in app_settings._cache


def test_swappable_model_settings_are_read_from_the_top_level_settings():
    assert app_settings.SALON_MODEL == settings.SALON_INVITATIONS_SALON_MODEL
    assert app_settings.MEMBERSHIP_MODEL == settings.SALON_INVITATIONS_MEMBERSHIP_MODEL

    with override_settings(
        SALON_INVITATIONS_SALON_MODEL="myapp.Shop",
        SALON_INVITATIONS_MEMBERSHIP_MODEL="myapp.Staff",
    ):
        assert app_settings.SALON_MODEL == "myapp.Shop"
        assert app_settings.MEMBERSHIP_MODEL == "myapp.Staff"
