"""System checks ``salon_invitations.E001``… for misconfiguration, each with a hint."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from salon_invitations.conf import DEFAULTS, IMPORT_STRINGS, app_settings

ROLE_KEYS = {"label", "rank", "limit", "requestable", "manages"}
#: The longest INVITATION_TTL: ``now + ttl`` must stay below ``datetime.max`` for a long while.
MAX_TTL = timedelta(days=365 * 100)


def _error(msg: str, hint: str, id: int) -> Error:
    return Error(msg, hint=hint, id=f"salon_invitations.E{id:03d}")


def _check_roles(role_table: Any) -> list[CheckMessage]:
    if not isinstance(role_table, Mapping) or not role_table:
        return [
            _error(
                'SALON_INVITATIONS["ROLES"] must be a non-empty dict of role name -> options.',
                "See the configuration reference for the default role table.",
                1,
            )
        ]
    errors: list[CheckMessage] = []
    for name, spec in role_table.items():
        if not isinstance(spec, Mapping):
            errors.append(
                _error(f"Role {name!r} must be a dict of options.", "e.g. {'rank': 10}", 1)
            )
            continue
        unknown = set(spec) - ROLE_KEYS
        rank, limit = spec.get("rank"), spec.get("limit")
        if unknown or not isinstance(rank, int) or isinstance(rank, bool):
            errors.append(
                _error(
                    f"Role {name!r} is malformed "
                    f"(unknown keys {sorted(unknown)} or no integer rank).",
                    f"A role takes the keys {sorted(ROLE_KEYS)} and needs an integer 'rank'.",
                    1,
                )
            )
        if limit is not None and (
            not isinstance(limit, int) or isinstance(limit, bool) or limit < 1
        ):
            errors.append(
                _error(
                    f"Role {name!r} has an invalid limit {limit!r}.",
                    "'limit' is a positive integer, or None for unlimited holders.",
                    1,
                )
            )
        for flag in ("requestable", "manages"):
            if flag in spec and not isinstance(spec[flag], bool):
                errors.append(
                    _error(
                        f"Role {name!r} has {flag} = {spec[flag]!r}, which is not True or False.",
                        f"'{flag}' is a boolean.",
                        1,
                    )
                )
        if len(str(name)) > 32:
            errors.append(
                _error(
                    f"Role name {name!r} is longer than 32 characters.",
                    "Use a shorter role name.",
                    1,
                )
            )
    return errors


def _check_ttl(key: str, ttl: Any) -> list[CheckMessage]:
    if ttl is not None and (not isinstance(ttl, timedelta) or ttl <= timedelta(0)):
        return [
            _error(
                f'SALON_INVITATIONS["{key}"] = {ttl!r} is not a positive timedelta.',
                "Use e.g. datetime.timedelta(days=7), or None for invitations that never expire.",
                4,
            )
        ]
    if ttl is not None and ttl > MAX_TTL:
        return [
            _error(
                f'SALON_INVITATIONS["{key}"] = {ttl!r} is too long: the expiry date of a new '
                "invitation would be past the largest date the database can store.",
                "Use at most a few years, or None for invitations that never expire.",
                11,
            )
        ]
    return []


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    user = app_settings.user_settings
    if not isinstance(user, Mapping):
        return [_error("SALON_INVITATIONS must be a dict.", "Set it to a dict, or remove it.", 8)]
    for key in sorted(set(user) - set(DEFAULTS)):
        errors.append(
            _error(
                f'Unknown setting SALON_INVITATIONS["{key}"].',
                f"Known settings: {', '.join(sorted(DEFAULTS))}.",
                9,
            )
        )
    role_table = app_settings.raw("ROLES")
    errors += _check_roles(role_table)
    owner = app_settings.raw("OWNER_ROLE")
    if isinstance(role_table, Mapping) and (not isinstance(owner, str) or owner not in role_table):
        errors.append(
            _error(
                f'SALON_INVITATIONS["OWNER_ROLE"] = {owner!r} is not in ROLES.',
                "Name one of the roles in ROLES; the salon's creator is given it.",
                2,
            )
        )
    for key in sorted(IMPORT_STRINGS):
        value = app_settings.raw(key)
        if key == "NOTIFICATION_BACKENDS" and not isinstance(value, list | tuple):
            # A lone string would be imported as one class and then iterated at commit time.
            errors.append(
                _error(
                    f'SALON_INVITATIONS["{key}"] must be a list of dotted paths, not {value!r}.',
                    "e.g. ['salon_invitations.notifications.ChannelsBackend'], or [] for none.",
                    3,
                )
            )
            continue
        paths = value if isinstance(value, list | tuple) else [value]
        for dotted in paths:
            if not isinstance(dotted, str):
                # conf accepts the class itself as well as its dotted path.
                if not isinstance(dotted, type):
                    errors.append(
                        _error(
                            f'SALON_INVITATIONS["{key}"] = {dotted!r} is neither a dotted path '
                            "nor a class.",
                            "Give the full dotted path of a class, e.g. "
                            "'myproject.policies.MyPolicy'.",
                            3,
                        )
                    )
                continue
            try:
                imported = import_string(dotted)
            except ImportError as exc:
                errors.append(
                    _error(
                        f'SALON_INVITATIONS["{key}"] refers to {dotted!r}, '
                        f"which cannot be imported: {exc}",
                        "Give the full dotted path of a class, e.g. 'myproject.policies.MyPolicy'.",
                        3,
                    )
                )
                continue
            if not isinstance(imported, type):
                errors.append(
                    _error(
                        f'SALON_INVITATIONS["{key}"] refers to {dotted!r}, which is not a class.',
                        "Give the dotted path of a class, e.g. 'myproject.policies.MyPolicy'.",
                        3,
                    )
                )
    for key in ("INVITATION_TTL", "INVITE_TTL"):
        errors += _check_ttl(key, app_settings.raw(key))
    url = app_settings.raw("INVITE_URL")
    if url is not None and (not isinstance(url, str) or "{token}" not in url):
        errors.append(
            _error(
                f'SALON_INVITATIONS["INVITE_URL"] = {url!r} has no "{{token}}".',
                'e.g. "https://app.example.com/invite/{token}", or None for no link.',
                13,
            )
        )
    cooldown = app_settings.raw("INVITE_RESEND_COOLDOWN")
    if not isinstance(cooldown, timedelta) or cooldown < timedelta(0):
        errors.append(
            _error(
                f'SALON_INVITATIONS["INVITE_RESEND_COOLDOWN"] = {cooldown!r} is not a timedelta '
                "of zero or more.",
                "e.g. datetime.timedelta(minutes=1).",
                14,
            )
        )
    for key in ("EMAIL_DELIVERY", "WEBHOOK_DELIVERY"):
        if app_settings.raw(key) not in ("sync", "celery"):
            errors.append(
                _error(
                    f'SALON_INVITATIONS["{key}"] must be "sync" or "celery".',
                    '"celery" needs the celery extra and a running worker.',
                    5,
                )
            )
    errors += _check_webhooks(app_settings.raw("WEBHOOKS"))
    for key in ("MESSAGE_MAX_LENGTH", "EXPIRY_BATCH_SIZE", "DELIVERY_MAX_ATTEMPTS", "REPLAY_LIMIT"):
        value = app_settings.raw(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            errors.append(
                _error(
                    f'SALON_INVITATIONS["{key}"] must be a positive integer.',
                    f"The default is {DEFAULTS[key]}.",
                    10,
                )
            )
    for key, waits in (
        ("QUEUE_TIMEOUT", "A request waits this long for the Celery broker"),
        ("WEBHOOK_TIMEOUT", "One webhook request may take this long"),
    ):
        timeout = app_settings.raw(key)
        if (
            not isinstance(timeout, int | float)
            or isinstance(timeout, bool)
            or not 0 < timeout <= 60
        ):
            errors.append(
                _error(
                    f'SALON_INVITATIONS["{key}"] = {timeout!r} is not a number of seconds '
                    "between 0 and 60.",
                    f"{waits}; the default is {DEFAULTS[key]}.",
                    12,
                )
            )
    return errors


def _is_webhook_url(url: Any) -> bool:
    if not isinstance(url, str) or len(url) > 255 or url != url.strip():
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _check_webhooks(endpoints: Any) -> list[CheckMessage]:
    hint = (
        'A list of {"url": "https://…", "secret": "…", "events": ["invitation.*", …]}; '
        "each URL at most 255 characters, listed once."
    )
    if not isinstance(endpoints, list | tuple):
        return [_error('SALON_INVITATIONS["WEBHOOKS"] must be a list.', hint, 15)]
    errors: list[CheckMessage] = []
    seen: set[str] = set()
    for index, endpoint in enumerate(endpoints):
        where = f'SALON_INVITATIONS["WEBHOOKS"][{index}]'
        if not isinstance(endpoint, Mapping):
            errors.append(_error(f"{where} is not a dict.", hint, 15))
            continue
        url, secret, events = endpoint.get("url"), endpoint.get("secret"), endpoint.get("events")
        problems = []
        if set(endpoint) - {"url", "secret", "events"}:
            problems.append(f"unknown keys {sorted(set(endpoint) - {'url', 'secret', 'events'})}")
        # The URL is never repeated in the message: it may hold credentials.
        if not _is_webhook_url(url):
            problems.append(
                "url is not an http(s) URL with a host (and a valid port), of at "
                "most 255 characters"
            )
        elif url in seen:
            problems.append("url is listed twice")
        else:
            seen.add(str(url))
        if not isinstance(secret, str) or not secret:
            problems.append("secret is not a non-empty string")
        if events is not None and (
            not isinstance(events, list | tuple)
            or not all(isinstance(e, str) and e for e in events)
        ):
            problems.append("events is not a list of event kinds or patterns")
        if problems:
            errors.append(_error(f"{where}: {'; '.join(problems)}.", hint, 15))
    return errors


@register()
def check_sqlite_locking(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """SQLite must take its write lock when a transaction begins, or concurrent writers fail.

    Read from the settings alone (no connection), so it runs with every ``manage.py check``.
    """
    warnings: list[CheckMessage] = []
    for alias, config in settings.DATABASES.items():
        if config.get("ENGINE") != "django.db.backends.sqlite3":
            continue
        options: Mapping[str, Any] = config.get("OPTIONS") or {}  # type: ignore[assignment]
        mode = str(options.get("transaction_mode", "")).upper()
        if mode != "IMMEDIATE":
            warnings.append(
                Warning(
                    f"SQLite database {alias!r} starts transactions in DEFERRED mode: concurrent "
                    'approvals fail with "database is locked" instead of waiting their turn.',
                    hint=f'Set DATABASES["{alias}"]["OPTIONS"] = '
                    '{"transaction_mode": "IMMEDIATE", "timeout": 20} (Django 5.1+).',
                    id="salon_invitations.W001",
                )
            )
    return warnings


def _backend_classes() -> list[type]:
    """The configured notification backends that import (E003 reports the others)."""
    backends = app_settings.raw("NOTIFICATION_BACKENDS")
    if not isinstance(backends, list | tuple):
        return []
    classes = []
    for backend in backends:
        try:
            cls = import_string(backend) if isinstance(backend, str) else backend
        except ImportError:
            continue
        if isinstance(cls, type):
            classes.append(cls)
    return classes


@register()
def check_backend_needs(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """What the enabled backends need: a channel layer, an accept link for invite e-mails."""
    from salon_invitations.notifications import ChannelsBackend, EmailBackend

    warnings: list[CheckMessage] = []
    for cls in _backend_classes():
        if issubclass(cls, EmailBackend) and app_settings.raw("INVITE_URL") is None:
            warnings.append(
                Warning(
                    'EmailBackend is enabled but SALON_INVITATIONS["INVITE_URL"] is not set: '
                    "invite e-mails would carry no accept link.",
                    hint='Set it to your accept page, e.g. "https://app.example.com/invite/{token}".',
                    id="salon_invitations.W002",
                )
            )
        alias = getattr(cls, "channel_layer_alias", "default")
        layers = getattr(settings, "CHANNEL_LAYERS", None) or {}
        if issubclass(cls, ChannelsBackend) and alias not in layers:
            warnings.append(
                Warning(
                    f"{cls.__name__} is enabled but CHANNEL_LAYERS has no {alias!r} layer: "
                    "no event would reach a WebSocket.",
                    hint='Configure one, e.g. CHANNEL_LAYERS = {"default": {"BACKEND": '
                    '"channels.layers.InMemoryChannelLayer"}} (channels_redis in production), '
                    "or remove the backend.",
                    id="salon_invitations.W003",
                )
            )
    return warnings


@register()
def check_swappable_models(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from salon_invitations.models import (
        AbstractMembership,
        AbstractSalon,
        get_membership_model,
        get_salon_model,
    )

    errors: list[CheckMessage] = []
    for getter, base, setting, id in (
        (get_salon_model, AbstractSalon, "SALON_INVITATIONS_SALON_MODEL", 6),
        (get_membership_model, AbstractMembership, "SALON_INVITATIONS_MEMBERSHIP_MODEL", 7),
    ):
        try:
            model = getter()
        except ImproperlyConfigured as exc:
            errors.append(_error(str(exc), f"Point {setting} at an installed model.", id))
            continue
        if not issubclass(model, base):
            errors.append(
                _error(
                    f"{setting} refers to {model._meta.label}, which does not subclass "
                    f"salon_invitations.models.{base.__name__}.",
                    f"Make the model a subclass of {base.__name__}.",
                    id,
                )
            )
    return errors
