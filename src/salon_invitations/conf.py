"""The package's settings: one object that reads ``settings.SALON_INVITATIONS`` when used.

Every value has a default in :data:`DEFAULTS`. Values are looked up on access and cached
until Django's ``setting_changed`` signal fires, so ``override_settings`` works in tests.
Dotted paths listed in :data:`IMPORT_STRINGS` are imported on access.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string
from django.utils.translation import gettext_lazy as _

SALON_MODEL_SETTING = "SALON_INVITATIONS_SALON_MODEL"
MEMBERSHIP_MODEL_SETTING = "SALON_INVITATIONS_MEMBERSHIP_MODEL"
DEFAULT_SALON_MODEL = "salon_invitations.Salon"
DEFAULT_MEMBERSHIP_MODEL = "salon_invitations.Membership"

DEFAULTS: dict[str, Any] = {
    # The role table (SPEC §2): name -> label, rank, limit (None = unlimited),
    # requestable (may be asked for in an invitation), manages (decides invitations).
    "ROLES": {
        "superuser": {
            "label": _("Superuser"),
            "rank": 30,
            "limit": 1,
            "requestable": False,
            "manages": True,
        },
        "admin": {
            "label": _("Admin"),
            "rank": 20,
            "limit": 1,
            "requestable": True,
            "manages": True,
        },
        "seller": {
            "label": _("Seller"),
            "rank": 10,
            "limit": 1,
            "requestable": True,
            "manages": False,
        },
        "mechanic": {
            "label": _("Mechanic"),
            "rank": 10,
            "limit": 1,
            "requestable": True,
            "manages": False,
        },
    },
    # The role given to the creator of a salon. Never requestable.
    "OWNER_ROLE": "superuser",
    # Dotted path of the class that answers who may see / create / decide / delete.
    "PERMISSION_POLICY": "salon_invitations.policies.RolePolicy",
    # Dotted paths of the notification backends run after every committed change.
    "NOTIFICATION_BACKENDS": ["salon_invitations.notifications.ChannelsBackend"],
    # A timedelta: new invitations expire this long after creation. None: never.
    "INVITATION_TTL": None,
    # "sync" sends e-mail in the request's on-commit hook; "celery" queues it.
    "EMAIL_DELIVERY": "sync",
    # Seconds a request waits for the Celery broker to take an e-mail before leaving it to the
    # relay (EMAIL_DELIVERY = "celery").
    "QUEUE_TIMEOUT": 1.0,
    # Attempts per e-mail (the first one and the relay's retries) before it is marked failed.
    "DELIVERY_MAX_ATTEMPTS": 6,
    # The accept link of invite e-mails, with "{token}" where the token goes, e.g.
    # "https://app.example.com/invite/{token}". None: invite e-mails carry no link.
    "INVITE_URL": None,
    # A timedelta: invites expire this long after they are (re-)sent. None: never.
    "INVITE_TTL": timedelta(days=7),
    # A timedelta: the shortest time between two e-mails of one invite (resend).
    "INVITE_RESEND_COOLDOWN": timedelta(minutes=1),
    # Webhook endpoints of WebhookBackend: [{"url": "https://…", "secret": "…",
    # "events": ["invitation.*", "membership.created"]}] ("events" defaults to every kind).
    "WEBHOOKS": [],
    # "sync" posts webhooks in the request's on-commit hook; "celery" queues them.
    "WEBHOOK_DELIVERY": "sync",
    # Seconds one webhook request may take.
    "WEBHOOK_TIMEOUT": 3.0,
    # Most events a WebSocket replay sends; a client further behind gets "resync_required".
    "REPLAY_LIMIT": 1000,
    # Longest accepted invitation message and rejection reason, in characters.
    "MESSAGE_MAX_LENGTH": 1000,
    # Serializer classes used by the views (dotted paths), for projects that add fields.
    "INVITATION_SERIALIZER": "salon_invitations.serializers.InvitationSerializer",
    "SALON_SERIALIZER": "salon_invitations.serializers.SalonSerializer",
    "MEMBERSHIP_SERIALIZER": "salon_invitations.serializers.MembershipSerializer",
    # How many invitations the expiry job updates per transaction.
    "EXPIRY_BATCH_SIZE": 500,
}

#: The most addresses one bulk invite takes (``POST …/invite`` with ``emails``).
MAX_INVITE_BATCH = 100

IMPORT_STRINGS = frozenset(
    {
        "PERMISSION_POLICY",
        "NOTIFICATION_BACKENDS",
        "INVITATION_SERIALIZER",
        "SALON_SERIALIZER",
        "MEMBERSHIP_SERIALIZER",
    }
)


def _import(value: Any) -> Any:
    if isinstance(value, str):
        return import_string(value)
    if isinstance(value, list | tuple):
        return [_import(item) for item in value]
    return value


class AppSettings:
    """Attribute access to ``settings.SALON_INVITATIONS`` with :data:`DEFAULTS` filled in."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    @property
    def user_settings(self) -> dict[str, Any]:
        return getattr(settings, "SALON_INVITATIONS", None) or {}

    def raw(self, name: str) -> Any:
        """The configured value, without importing dotted paths."""
        if name not in DEFAULTS:
            raise AttributeError(f"Invalid salon_invitations setting: {name!r}")
        return self.user_settings.get(name, DEFAULTS[name])

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._cache[name]
        except KeyError:
            pass
        value = self.raw(name)
        if name in IMPORT_STRINGS:
            value = _import(value)
        self._cache[name] = value
        return value

    @property
    def SALON_MODEL(self) -> str:
        return getattr(settings, SALON_MODEL_SETTING, DEFAULT_SALON_MODEL)

    @property
    def MEMBERSHIP_MODEL(self) -> str:
        return getattr(settings, MEMBERSHIP_MODEL_SETTING, DEFAULT_MEMBERSHIP_MODEL)

    @property
    def invitation_ttl(self) -> timedelta | None:
        return self.raw("INVITATION_TTL")

    #: Incremented on every :meth:`reload`: what is built from the settings (a serializer's
    #: fields) is built again when it changes.
    generation = 0

    def reload(self) -> None:
        self._cache.clear()
        self.generation += 1
        from salon_invitations import roles

        roles.get_roles.cache_clear()


app_settings = AppSettings()


def install_swappable_defaults() -> None:
    """Give the two swappable-model settings their defaults on ``django.conf.settings``.

    Django's migration autodetector reads a swappable setting straight from
    ``django.conf.settings`` (``settings.SALON_INVITATIONS_SALON_MODEL``), as it does
    ``AUTH_USER_MODEL``, whose default lives in Django's global settings. Filling the default in
    (only where a project did not set it) lets projects that never swap still run
    ``makemigrations`` for models with a foreign key to a salon. Called when the models load.
    """
    for name, default in (
        (SALON_MODEL_SETTING, DEFAULT_SALON_MODEL),
        (MEMBERSHIP_MODEL_SETTING, DEFAULT_MEMBERSHIP_MODEL),
    ):
        if not hasattr(settings, name):
            setattr(settings, name, default)


@receiver(setting_changed)
def _reload_settings(*, setting: str, **kwargs: Any) -> None:
    if setting == "SALON_INVITATIONS":
        app_settings.reload()
