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


def seal(token: str) -> str:
    """``token`` encrypted for the outbox: ``"<salt>.<sealed>"``, both URL-safe base64."""
    raw = _decode(token)
    salt = secrets.token_bytes(16)
    key = salted_hmac(_SEAL_SALT, salt, algorithm="sha256").digest()
    sealed = bytes(a ^ b for a, b in zip(raw, key, strict=True))
    return f"{_encode(salt)}.{_encode(sealed)}"


def unseal(value: str) -> Token:
    """The token :func:`seal` encrypted (``ValueError`` when ``value`` is not one)."""
    try:
        salt_text, sealed_text = value.split(".")
        salt, sealed = _decode(salt_text), _decode(sealed_text)
    except (ValueError, TypeError) as exc:
        raise ValueError("not a sealed token") from exc
    key = salted_hmac(_SEAL_SALT, salt, algorithm="sha256").digest()
    if len(sealed) != TOKEN_BYTES:
        raise ValueError("not a sealed token")
    return Token(_encode(bytes(a ^ b for a, b in zip(sealed, key, strict=True))))
