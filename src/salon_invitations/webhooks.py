"""Webhook bodies, signatures and the HTTP request that delivers them (standard library only).

Each delivery is a ``POST`` of a JSON body ``{"id", "type", "created_at", "data"}`` with the
header::

    X-Salon-Signature: t=1718000000,v1=5257a869e7ec…(64 hex digits)

``t`` is the Unix time of the signing and ``v1`` the hex HMAC-SHA256, keyed with the endpoint's
secret (UTF-8), of the ASCII timestamp, a dot, then the raw body bytes: ``f"{t}.".encode() +
body``. Signing the timestamp with the body lets a receiver refuse old requests replayed by
someone who captured one. A receiver accepts the header if any of its ``v1=`` values matches,
and ignores keys it does not know, so that the scheme can grow without breaking receivers.

A receiver checks the header with :func:`verify` against the body exactly as received, before
parsing it, and deduplicates on ``X-Salon-Event-Id`` (delivery is at least once)::

    from salon_invitations.webhooks import SIGNATURE_HEADER, verify

    def receive(headers, body: bytes) -> int:
        if not verify(["new-secret", "old-secret"], headers.get(SIGNATURE_HEADER, ""), body):
            return 400
        event = json.loads(body)
        ...  # skip it if event["id"] was seen already
        return 200
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

import salon_invitations

SIGNATURE_HEADER = "X-Salon-Signature"
#: At most this much of a response body is read; a snippet of it goes into ``Outcome.error``.
MAX_RESPONSE_BYTES = 64 * 1024
ERROR_SNIPPET_CHARS = 200


def body_for(event_id: int, kind: str, created_at: datetime, data: dict[str, Any]) -> bytes:
    """The JSON body of one event: compact, UTF-8, keys sorted, so always the same bytes.

    ``data`` may hold UUIDs, decimals, dates and lazy translations (``DjangoJSONEncoder``). A
    naive ``created_at`` is taken to be in the default time zone.
    """
    if timezone.is_naive(created_at):
        created_at = timezone.make_aware(created_at)
    return encode(
        {"id": event_id, "type": kind, "created_at": created_at.isoformat(), "data": data}
    )


def encode(document: dict[str, Any]) -> bytes:
    """``document`` as a webhook body: compact UTF-8 JSON with sorted keys."""
    text = json.dumps(
        document, cls=DjangoJSONEncoder, separators=(",", ":"), sort_keys=True, ensure_ascii=False
    )
    return text.encode("utf-8")


def endpoint_secret(url: str) -> str | None:
    """The secret of the configured ``WEBHOOKS`` endpoint at ``url`` (read when sending, so a
    rotated secret applies to retries too); ``None`` when it is no longer configured."""
    from salon_invitations.conf import app_settings

    for endpoint in app_settings.raw("WEBHOOKS") or []:
        if endpoint.get("url") == url:
            return str(endpoint.get("secret") or "")
    return None


def deliver(delivery: Any) -> Outcome:
    """Post one recorded webhook :class:`~salon_invitations.models.Delivery` (never raises)."""
    from salon_invitations.conf import app_settings

    secret = endpoint_secret(delivery.target)
    if not secret:
        return Outcome(False, None, "The endpoint is no longer in WEBHOOKS.", False, 0)
    payload = delivery.payload
    return post(
        delivery.target,
        encode(payload),
        secret=secret,
        event_id=payload["id"],
        kind=payload["type"],
        timeout=float(app_settings.WEBHOOK_TIMEOUT),
        delivery_id=delivery.pk,
    )


def _digest(secret: str, timestamp: str, body: bytes) -> str:
    message = timestamp.encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``X-Salon-Signature`` value for ``body``: ``t=<unix>,v1=<hex>`` (now, by default)."""
    t = str(int(time.time()) if timestamp is None else int(timestamp))
    return f"t={t},v1={_digest(secret, t, body)}"


def verify(
    secret: str | Sequence[str],
    header: str,
    body: bytes,
    *,
    tolerance: int = 300,
    now: float | None = None,
) -> bool:
    """Whether ``header`` is a valid signature of ``body`` made less than ``tolerance`` s ago.

    ``secret`` may be a list: the signature is accepted if any of them made it (rotation).
    Empty secrets never match. A malformed header, a header with no or several ``t=``, a
    timestamp further than ``tolerance`` seconds from ``now`` (in the past or the future)
    all give ``False``; nothing is raised.
    """
    keys = [secret] if isinstance(secret, str) else list(secret)
    if not isinstance(header, str):
        return False
    timestamps: list[str] = []
    signatures: list[str] = []
    for item in header.split(","):
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not value.isascii():
            continue
        if name == "t":
            timestamps.append(value)
        elif name == "v1":
            signatures.append(value.lower())
    if len(timestamps) != 1 or not signatures:
        return False
    timestamp = timestamps[0]
    if not timestamp.isdigit() or len(timestamp) > 12:  # ASCII digits, a plausible time
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance:
        return False
    for key in keys:
        if not key:
            continue
        expected = _digest(key, timestamp, body)
        # Every candidate is compared, so the time taken says nothing about which matched.
        if any([hmac.compare_digest(expected, candidate) for candidate in signatures]):
            return True
    return False


@dataclass(frozen=True)
class Outcome:
    """What became of one delivery attempt.

    ``retry`` says whether trying again later may succeed (timeouts, connection errors, 5xx,
    408, 429); ``error`` is empty on success, else e.g. ``"HTTP 500 Internal Server Error:
    <start of the body>"`` or ``"TimeoutError: timed out"``.
    """

    ok: bool
    status_code: int | None
    error: str
    retry: bool
    duration_ms: int


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """A webhook is never bounced elsewhere: a 3xx stays the answer (an ``HTTPError``)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _user_agent() -> str:
    return f"django-salon-invitations/{getattr(salon_invitations, '__version__', 'dev')}"


def _failure(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        exc = exc.reason
    return f"{type(exc).__name__}: {exc}"


def _status_error(exc: urllib.error.HTTPError) -> str:
    error = f"HTTP {exc.code} {exc.reason}".rstrip()
    location = exc.headers.get("Location") if exc.headers and 300 <= exc.code < 400 else None
    if location:
        error += f" (redirect to {location[:ERROR_SNIPPET_CHARS]} not followed)"
    try:
        snippet = exc.read(MAX_RESPONSE_BYTES)[: ERROR_SNIPPET_CHARS * 4]
    except Exception:
        snippet = b""
    text = " ".join(snippet.decode("utf-8", "replace").split())[:ERROR_SNIPPET_CHARS]
    return f"{error}: {text}" if text else error


def post(
    url: str,
    body: bytes,
    *,
    secret: str,
    event_id: int,
    kind: str,
    timeout: float,
    delivery_id: Any = None,
) -> Outcome:
    """POST a signed ``body`` to ``url`` once; never raises, never follows redirects.

    ``timeout`` bounds each network operation (connecting, each read), in seconds.
    """
    started = time.monotonic()

    def outcome(ok: bool, status: int | None, error: str, retry: bool) -> Outcome:
        elapsed = int((time.monotonic() - started) * 1000)
        return Outcome(ok=ok, status_code=status, error=error, retry=retry, duration_ms=elapsed)

    scheme = urllib.parse.urlsplit(url).scheme.lower() if isinstance(url, str) else ""
    if scheme not in {"http", "https"}:
        # The URL is not repeated: some receivers keep a secret in it.
        return outcome(False, None, f"ValueError: unsupported URL scheme {scheme!r}", False)
    try:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": _user_agent(),
            SIGNATURE_HEADER: sign(secret, body),
            "X-Salon-Event": kind,
            "X-Salon-Event-Id": str(event_id),
            "Idempotency-Key": str(event_id),
        }
        if delivery_id is not None:
            headers["X-Salon-Delivery"] = str(delivery_id)
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        opener = urllib.request.build_opener(_RefuseRedirects)
        with opener.open(request, timeout=timeout) as response:
            status = response.status
            # The receiver has answered 2xx: the event is delivered, whatever the body does.
            with contextlib.suppress(Exception):
                response.read(MAX_RESPONSE_BYTES)
        return outcome(True, status, "", False)
    except urllib.error.HTTPError as exc:
        try:
            retry = exc.code in {408, 429} or exc.code >= 500
            return outcome(False, exc.code, _status_error(exc), retry)
        finally:
            with contextlib.suppress(Exception):
                exc.close()
    except urllib.error.URLError as exc:
        # A reason that is an exception is a network failure; a string, a URL urllib refuses.
        return outcome(False, None, _failure(exc), isinstance(exc.reason, BaseException))
    except http.client.InvalidURL as exc:
        return outcome(False, None, _failure(exc), False)
    except (OSError, http.client.HTTPException) as exc:
        # timeouts while waiting for the answer, resets, TLS errors, garbled responses
        return outcome(False, None, _failure(exc), True)
    except (ValueError, TypeError) as exc:
        # an invalid URL or header value: retrying sends the same
        return outcome(False, None, _failure(exc), False)
    except Exception as exc:
        return outcome(False, None, _failure(exc), True)
