"""E-mail: SMTP from ``EMAIL_HOST`` & co.; printed to the console when ``EMAIL_HOST`` is unset.

From Django 6.1 the same values configure the default entry of ``MAILERS`` (the ``EMAIL_*``
transport settings are deprecated there); before 6.1 they are the classic settings.
"""

import django

from configs.extra_conf import env_bool, env_int, env_str

EMAIL_HOST = env_str("EMAIL_HOST")
_SMTP = {
    "host": EMAIL_HOST,
    "username": env_str("EMAIL_HOST_USER"),
    "password": env_str("EMAIL_HOST_PASSWORD"),
    "port": env_int("EMAIL_PORT", 587),
    "use_tls": env_bool("EMAIL_USE_TLS", True),
    "timeout": env_int("EMAIL_TIMEOUT", 10),
}
_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend"
)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Auto salon <noreply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

if django.VERSION >= (6, 1):
    MAILERS = {"default": {"BACKEND": _BACKEND, "OPTIONS": _SMTP if EMAIL_HOST else {}}}
    del EMAIL_HOST
else:
    EMAIL_BACKEND = _BACKEND
    EMAIL_HOST_USER = _SMTP["username"]
    EMAIL_HOST_PASSWORD = _SMTP["password"]
    EMAIL_PORT = _SMTP["port"]
    EMAIL_USE_TLS = _SMTP["use_tls"]
    EMAIL_TIMEOUT = _SMTP["timeout"]
