"""Django REST framework: JWT first, then the session; django-filter; pagination; throttling.

JWT comes first so that a request without credentials gets a 401 with a ``WWW-Authenticate``
header (DRF takes that header from the first authentication class). The session lets the
browsable API and Swagger UI work after logging in to the admin.

Request bodies go through ``salon_invitations.parsers``: JSON nested deeper than 64 levels is a
400 like any malformed JSON (not a ``RecursionError``), and a body over Django's
``DATA_UPLOAD_MAX_MEMORY_SIZE`` (2.5 MiB) a 413 ``{"detail": ...}`` instead of Django's HTML
error page. The form parsers keep the browsable API's and Swagger UI's forms working. While
Redis (the throttles' cache) does not answer, requests get a JSON 503 (``configs.exceptions``).

Throttle rates are per client: ``anon`` by IP, ``user`` by account, and the ``auth`` and
``registration`` scopes guard the login and sign-up endpoints. The counts live in Django's
cache: per process on the embedded defaults, shared by every process in Redis when
``REDIS_URL`` is set (``CACHES`` in settings.py).
"""

from configs.extra_conf import env_int, env_str

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "salon_invitations.authentication.JWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": [
        "salon_invitations.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "configs.exceptions.exception_handler",
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": env_int("API_PAGE_SIZE", 20),
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
        "rest_framework.throttling.ScopedRateThrottle",
    ],
    # The client address the throttles count by: REMOTE_ADDR unless NUM_PROXIES is set to the
    # number of proxies in front that append to X-Forwarded-For (a client can send that
    # header itself, so it is not trusted by default).
    "NUM_PROXIES": env_int("NUM_PROXIES", 0),
    "DEFAULT_THROTTLE_RATES": {
        "anon": env_str("THROTTLE_ANON", "100/hour"),
        "user": env_str("THROTTLE_USER", "1000/hour"),
        "auth": env_str("THROTTLE_AUTH", "30/minute"),
        "registration": env_str("THROTTLE_REGISTRATION", "20/hour"),
        # The package's scope for sending and re-sending invites (each one is an e-mail).
        "salon_invitations.invite": env_str("THROTTLE_INVITE", "100/hour"),
    },
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
