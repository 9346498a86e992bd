"""Invite tokens: random, stored only as a digest, sealed while an e-mail waits to be sent.

A token is 32 random bytes from :mod:`secrets`, written URL-safe (43 characters). The database
keeps only its SHA-256 digest, so a leaked table holds no usable link. Looking an invite up by
token hashes the token and finds the digest; the digest is then compared with
:func:`hmac.compare_digest`.

The raw token has to reach the invitee's e-mail, which may be sent later by a worker or the
relay. Until then the outbox keeps it *sealed*: XOR-ed with a one-time key derived from
``SECRET_KEY`` and a random salt of its own (HMAC-SHA256), and the sealed value is erased
once the e-mail is sent. Without ``SECRET_KEY`` the database alone never yields a token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from django.conf import settings
from django.utils.crypto import salted_hmac

TOKEN_BYTES = 32
_SEAL_SALT = "salon_invitations.tokens.seal"


class Token(str):
    """A raw token. Its ``repr`` never shows the value, so it stays out of logs and tracebacks."""

    def __repr__(self) -> str:
        return "<Token ***>"


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_token() -> tuple[Token, str]:
    """A fresh ``(token, digest)`` pair."""
    token = Token(_encode(secrets.token_bytes(TOKEN_BYTES)))
    return token, digest(token)


def digest(token: str) -> str:
    """The SHA-256 hex digest stored for ``token``."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def matches(token: str, stored_digest: str) -> bool:
    """Constant-time comparison of ``token``'s digest with a stored one."""
    return bool(stored_digest) and hmac.compare_digest(digest(token), stored_digest)


def _secrets() -> list[str]:
    return [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]


def _keys(salt: bytes, secret: str) -> tuple[bytes, bytes]:
    """The one-time pad and the integrity key of one sealed value."""
    pad = salted_hmac(_SEAL_SALT, salt, secret=secret, algorithm="sha256").digest()
    tag_key = salted_hmac(_SEAL_SALT + ".tag", salt, secret=secret, algorithm="sha256").digest()
    return pad, tag_key


def seal(token: str) -> str:
    """``token`` encrypted for the outbox: ``"<salt>.<sealed>.<tag>"``, URL-safe base64.

    The tag lets :func:`unseal` refuse a value sealed under another ``SECRET_KEY`` instead of
    turning it into a wrong token (and an e-mail with a dead link).
    """
    raw = _decode(token)
    salt = secrets.token_bytes(16)
    pad, tag_key = _keys(salt, settings.SECRET_KEY)
    sealed = bytes(a ^ b for a, b in zip(raw, pad, strict=True))
    tag = hmac.new(tag_key, sealed, hashlib.sha256).digest()[:16]
    return f"{_encode(salt)}.{_encode(sealed)}.{_encode(tag)}"


def unseal(value: str) -> Token:
    """The token :func:`seal` encrypted, under ``SECRET_KEY`` or one of
    ``SECRET_KEY_FALLBACKS``; ``ValueError`` when ``value`` is not one or the key is gone."""
    try:
        salt_text, sealed_text, tag_text = value.split(".")
        salt, sealed, tag = _decode(salt_text), _decode(sealed_text), _decode(tag_text)
    except (ValueError, TypeError, AttributeError) as exc:
        raise ValueError("not a sealed token") from exc
    if len(sealed) != TOKEN_BYTES:
        raise ValueError("not a sealed token")
    for secret in _secrets():
        pad, tag_key = _keys(salt, secret)
        if hmac.compare_digest(hmac.new(tag_key, sealed, hashlib.sha256).digest()[:16], tag):
            return Token(_encode(bytes(a ^ b for a, b in zip(sealed, pad, strict=True))))
    raise ValueError("sealed under a SECRET_KEY that is no longer configured")
