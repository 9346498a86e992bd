"""JWT (djangorestframework-simplejwt): short-lived access tokens, rotated refresh tokens.

Every refresh returns a new refresh token and blacklists the old one, and logout
(``POST api/auth/logout {refresh}``) blacklists the token it is given. Tokens are signed with
``SECRET_KEY``.
"""

from datetime import timedelta

from configs.extra_conf import env_int

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env_int("JWT_ACCESS_MINUTES", 30)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env_int("JWT_REFRESH_DAYS", 7)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": True,
    "AUTH_HEADER_TYPES": ("Bearer",),
}
