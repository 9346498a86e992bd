"""Settings of the example project around ``salon_invitations``.

Everything that differs between a laptop and production comes from the environment. With no
environment at all the project runs on its embedded development defaults: SQLite in
``example_project/db.sqlite3``, the in-memory channel layer, eager Celery and console e-mail.

Production needs at least ``DEBUG=0``, ``SECRET_KEY``, ``ALLOWED_HOSTS``, ``DATABASE_URL`` and
``REDIS_URL``; ``manage.py check --deploy`` then reports nothing. With DEBUG off, run
``manage.py collectstatic --noinput`` (same environment) before starting the server.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

import salon_invitations
from configs.extra_conf import REDIS_URL, env_bool, env_float, env_int, env_list, env_str
from configs.extra_conf.celery_conf import *  # noqa: F403
from configs.extra_conf.channels_conf import *  # noqa: F403
from configs.extra_conf.email_conf import *  # noqa: F403
from configs.extra_conf.jwt_conf import *  # noqa: F403
from configs.extra_conf.rest_conf import *  # noqa: F403

BASE_DIR = Path(__file__).resolve().parent.parent  # example_project/

# Core ------------------------------------------------------------------------------------------

DEBUG = env_bool("DEBUG", True)

_DEV_SECRET_KEY = "django-insecure-example-project-only-for-local-development"
SECRET_KEY = env_str("SECRET_KEY", _DEV_SECRET_KEY if DEBUG else "")
if not SECRET_KEY:
    raise ImproperlyConfigured("Set the SECRET_KEY environment variable when DEBUG is off.")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    # ``manage.py runserver`` leaves static files to WhiteNoise, as in production; it wraps
    # daphne's runserver, listed next, which serves the ASGI application (HTTP + WebSocket).
    "whitenoise.runserver_nostatic",
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt",
    "rest_framework_simplejwt.token_blacklist",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI assets served locally, no CDN needed
    "django_celery_beat",
    # The project's apps come before the package, so their templates (for instance
    # ``salon_invitations/email/*.txt``) would override the package's.
    "apps.users",
    "apps.auto_salon",
    "apps.invites",
    "apps.dashboard",
    "salon_invitations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files, before anything else touches the request (sessions, CSRF, …).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "configs.urls"
WSGI_APPLICATION = "configs.wsgi.application"
ASGI_APPLICATION = "configs.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database --------------------------------------------------------------------------------------
# DATABASE_URL, e.g. postgres://user:password@host:5432/name; a SQLite file when unset.
# Options in the URL's query string (?sslmode=require) are kept.

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}", conn_max_age=0
    ),
}
_DB_OPTIONS = DATABASES["default"].setdefault("OPTIONS", {})
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE transactions take the write lock at BEGIN, and the busy timeout makes
    # concurrent writers queue instead of failing with "database is locked".
    _DB_OPTIONS.update(transaction_mode="IMMEDIATE", timeout=20)
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Persistent connections do not suit ASGI (each request may run in another thread):
    # psycopg's pool shares connections instead. The pool needs CONN_MAX_AGE = 0.
    # Sizing: README, "Database connections". Each HTTP request's synchronous code runs in a
    # thread of its own, so the pool is what bounds the requests using the database at once;
    # the default follows ASGI_THREADS (daphne's thread pool; Python's default size when
    # unset), plus a few. A request that finds the pool empty for DB_POOL_TIMEOUT seconds
    # fails rather than waiting psycopg's default 30 s.
    _THREADS = env_int(
        "ASGI_THREADS",
        min(32, (getattr(os, "process_cpu_count", os.cpu_count)() or 1) + 4),
    )
    _POOL_MAX_SIZE = env_int("DB_POOL_MAX_SIZE", _THREADS + 4)
    _POOL_MIN_SIZE = env_int("DB_POOL_MIN_SIZE", min(2, _POOL_MAX_SIZE))
    if not 0 <= _POOL_MIN_SIZE <= _POOL_MAX_SIZE or _POOL_MAX_SIZE < 1:
        raise ImproperlyConfigured(
            f"The database pool needs 0 <= DB_POOL_MIN_SIZE <= DB_POOL_MAX_SIZE and "
            f"DB_POOL_MAX_SIZE >= 1 (min {_POOL_MIN_SIZE}, max {_POOL_MAX_SIZE})."
        )
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    _DB_OPTIONS["pool"] = {
        "min_size": _POOL_MIN_SIZE,
        "max_size": _POOL_MAX_SIZE,
        "timeout": env_float("DB_POOL_TIMEOUT", 5.0),
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Users -----------------------------------------------------------------------------------------

AUTH_USER_MODEL = "users.User"
LOGIN_URL = "dashboard-login"
LOGIN_REDIRECT_URL = "dashboard"
# Lifetime of the access tokens the dashboard's page gets (its script asks for a new one a
# minute before the end); keep it short: a token outlives the session it came from.
DASHBOARD_TOKEN_SECONDS = env_int("DASHBOARD_TOKEN_SECONDS", 300)
# Where the dashboard's page opens its WebSockets: empty for the page's own origin (one server,
# or a proxy that sends /ws/ to the ASGI server), else the ASGI server's ws:// or wss:// root,
# as when HTTP and WebSockets are served by separate processes on separate ports (README,
# "Production-style run").
WEBSOCKET_URL = env_str("WEBSOCKET_URL", "").rstrip("/")
if WEBSOCKET_URL and not WEBSOCKET_URL.startswith(("ws://", "wss://")):
    raise ImproperlyConfigured(
        f"WEBSOCKET_URL must start with ws:// or wss:// (or be empty), not {WEBSOCKET_URL!r}."
    )

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Internationalisation, static and media files --------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Where ``collectstatic`` gathers the files that WhiteNoise serves while DEBUG is off.
STATIC_ROOT = Path(env_str("STATIC_ROOT") or BASE_DIR / "staticfiles")
MEDIA_URL = "media/"
MEDIA_ROOT = BASE_DIR / "media"

# Static files are served by WhiteNoise (MIDDLEWARE). While DEBUG is on it serves the apps'
# files from where they are, changes included, without ``collectstatic``. With DEBUG off it
# serves STATIC_ROOT, which ``manage.py collectstatic`` fills before the server starts: each
# file also under a name with a hash of its content, which browsers may cache for good, and
# compressed. ``{% static %}`` then names the hashed files, read from the manifest
# (``staticfiles.json``): a page naming a file that was not collected fails with "Missing
# staticfiles manifest entry" instead of linking to a 404.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        ),
    },
}

# Cache: the throttles' counts. Shared by every server process in Redis when REDIS_URL is set
# (otherwise each process counts on its own, and N processes allow N times the rate).
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "example",
            # A Redis that stalls fails a request within a second (a JSON 503:
            # configs.exceptions), not after redis-py's default wait.
            "OPTIONS": {"socket_timeout": 1, "socket_connect_timeout": 1},
        }
    }

# salon_invitations ------------------------------------------------------------------------------
# The swap must be decided before the first ``migrate``: the package's tables point at it.

SALON_INVITATIONS_SALON_MODEL = "auto_salon.AutoSalon"

# One webhook endpoint when WEBHOOK_URL is set (signed with WEBHOOK_SECRET).
WEBHOOK_URL = env_str("WEBHOOK_URL", "")

SALON_INVITATIONS = {
    "NOTIFICATION_BACKENDS": [
        "salon_invitations.notifications.ChannelsBackend",
        "salon_invitations.notifications.EmailBackend",
        *(["salon_invitations.notifications.WebhookBackend"] if WEBHOOK_URL else []),
        *(["salon_invitations.notifications.LoggingBackend"] if DEBUG else []),
    ],
    "WEBHOOKS": (
        [{"url": WEBHOOK_URL, "secret": env_str("WEBHOOK_SECRET", ""), "events": ["*"]}]
        if WEBHOOK_URL
        else []
    ),
    # With Redis, webhooks are posted by the Celery worker (with retries), not the request.
    "WEBHOOK_DELIVERY": "celery" if REDIS_URL else "sync",
    "INVITATION_TTL": timedelta(days=env_int("INVITATION_TTL_DAYS", 14)),
    # The accept link of invite e-mails: the project's /invite/<token> page.
    "INVITE_URL": env_str("INVITE_URL", "http://127.0.0.1:8000/invite/{token}"),
    "INVITE_TTL": timedelta(days=env_int("INVITE_TTL_DAYS", 7)),
    "INVITE_RESEND_COOLDOWN": timedelta(seconds=env_int("INVITE_RESEND_COOLDOWN_SECONDS", 60)),
    # With Redis, e-mail goes out from the Celery worker (with retries), not from the request.
    "EMAIL_DELIVERY": "celery" if REDIS_URL else "sync",
}

# OpenAPI (drf-spectacular) -----------------------------------------------------------------------

SPECTACULAR_SETTINGS = {
    "TITLE": "Auto salon invitations API",
    "DESCRIPTION": (
        "Example project of django-salon-invitations: users ask to join an auto salon in a "
        "role; the salon's owner or admin approves or rejects. Log in with `POST /api/auth` "
        "and use the access token as `Authorization: Bearer <access>`."
    ),
    "VERSION": salon_invitations.__version__,
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Logging ----------------------------------------------------------------------------------------

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    # Invite links carry their token in the path: keep it out of request and access logs.
    "filters": {
        "redact_invite_tokens": {"()": "salon_invitations.log_filters.RedactInviteTokens"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact_invite_tokens"],
        },
    },
    "loggers": {
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.channels.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "daphne": {"handlers": ["console"], "level": "WARNING", "propagate": False},
        "salon_invitations": {
            "handlers": ["console"],
            "level": env_str("SALON_LOG_LEVEL", "INFO" if DEBUG else "WARNING"),
            "propagate": False,
        },
    },
}

# Security (production) ------------------------------------------------------------------------
# With DEBUG off the site is served over HTTPS only. Behind a proxy that terminates TLS set
# SECURE_PROXY_SSL_HEADER=1 (the proxy must set X-Forwarded-Proto).

if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    if env_bool("SECURE_PROXY_SSL_HEADER", False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 60 * 60 * 24 * 365)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
