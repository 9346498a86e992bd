"""Settings for the test suite.

``SALON_TEST_DATABASE`` picks the database: ``sqlite`` (the default, in memory), ``postgres``
(``PGHOST``, ``PGPORT``, ``PGUSER``, ``PGPASSWORD``, ``PGDATABASE``; default
``postgres@127.0.0.1:5432``) or ``mariadb`` (MariaDB or MySQL: ``MYSQL_HOST``, ``MYSQL_PORT``,
``MYSQL_USER``, ``MYSQL_PASSWORD``, ``MYSQL_DATABASE``; default ``root@127.0.0.1:3306``, no
password). The test database is the name prefixed with ``test_``, created and dropped by the run.
"""

import os

import django

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "rest_framework",
    "django_filters",
    "salon_invitations",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

if os.environ.get("SALON_TEST_DATABASE") == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
            "USER": os.environ.get("PGUSER", "postgres"),
            "PASSWORD": os.environ.get("PGPASSWORD", ""),
            "NAME": os.environ.get("PGDATABASE", "salon_invitations"),
        }
    }
elif os.environ.get("SALON_TEST_DATABASE") == "mariadb":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "HOST": os.environ.get("MYSQL_HOST", "127.0.0.1"),
            "PORT": os.environ.get("MYSQL_PORT", "3306"),
            "USER": os.environ.get("MYSQL_USER", "root"),
            "PASSWORD": os.environ.get("MYSQL_PASSWORD", ""),
            "NAME": os.environ.get("MYSQL_DATABASE", "salon_invitations"),
            # Django's recommended isolation level for MySQL: a transaction that waited for the
            # salon lock reads what the previous holder committed.
            "OPTIONS": {"charset": "utf8mb4", "isolation_level": "read committed"},
            "TEST": {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"},
        }
    }
    # MariaDB and MySQL create neither the conditional unique constraints (one pending
    # invitation per user and salon, one pending invite per address and salon) nor the
    # condition of the expiry index. The services refuse those duplicates themselves, under
    # the salon lock (docs/faq.md).
    SILENCED_SYSTEM_CHECKS = ["models.W036", "models.W037", "models.W044"]
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": ":memory:",
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
        }
    }

REST_FRAMEWORK = {
    # A class with a challenge first, so anonymous requests get 401 + WWW-Authenticate.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.BasicAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 20,
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STATIC_URL = "/static/"

#: ``SALON_TEST_CHANNEL_LAYER`` -> the channels-redis layer; anything else: in memory.
REDIS_LAYERS = {
    "redis": "channels_redis.core.RedisChannelLayer",
    "redis-pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
}
if os.environ.get("SALON_TEST_CHANNEL_LAYER") in REDIS_LAYERS:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": REDIS_LAYERS[os.environ["SALON_TEST_CHANNEL_LAYER"]],
            "CONFIG": {
                "hosts": [os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")],
                # One key space per test run, so concurrent runs on one Redis never hear each
                # other (pub/sub channels are shared by every database of a Redis server: the
                # prefix separates those too); the multi-process test hands its servers one
                # shared prefix.
                "prefix": os.environ.get("SALON_TEST_CHANNEL_PREFIX")
                or f"salon-tests-{os.getpid()}",
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

LOCMEM_EMAIL = "django.core.mail.backends.locmem.EmailBackend"
if django.VERSION >= (6, 1):
    MAILERS = {"default": {"BACKEND": LOCMEM_EMAIL}}
else:
    EMAIL_BACKEND = LOCMEM_EMAIL
LANGUAGE_CODE = "en"
