"""Webhook bodies, signatures and delivery, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import salon_invitations
from salon_invitations import webhooks
from salon_invitations.webhooks import SIGNATURE_HEADER, Outcome, body_for, post, sign, verify

SECRET = "whsec-test-secret"
CREATED_AT = datetime(2025, 3, 1, 12, 30, 5, 123456, tzinfo=timezone.utc)
DATA = {"invitation": {"id": 4, "status": "approved", "role": "seller", "salon": 1}}


@dataclass
class Reply:
    status: int = 200
    body: bytes = b'{"received": true}'
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # before the answer
    stall: float = 0.0  # in the middle of the body


@dataclass
class Received:
    method: str
    path: str
    headers: Message
    body: bytes


class Receiver:
    """What the test server heard, and what it answers on each path (200 by default)."""

    def __init__(self, server: ThreadingHTTPServer) -> None:
        self.server = server
        self.requests: list[Received] = []
        self.replies: dict[str, Reply] = {}
        self.release = threading.Event()  # ends every delayed answer at teardown

    def url(self, path: str = "/hook") -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}{path}"


class Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        self._answer()

    def do_GET(self) -> None:
        self._answer()

    def _answer(self) -> None:
        receiver = self.server.receiver
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        receiver.requests.append(Received(self.command, self.path, self.headers, body))
        reply = receiver.replies.get(self.path, Reply())
        if reply.delay:
            receiver.release.wait(reply.delay)
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body) + (1000 if reply.stall else 0)))
        self.end_headers()
        self.wfile.write(reply.body)
        if reply.stall:
            self.wfile.flush()
            receiver.release.wait(reply.stall)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    receiver: Receiver

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that gave up (the timeout test) breaks the pipe; nothing to report


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    server = _Server(("127.0.0.1", 0), Handler)
    server.receiver = Receiver(server)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.receiver
    finally:
        server.receiver.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def deliver(
    url: str,
    body: bytes | None = None,
    *,
    event_id: int = 42,
    kind: str = "invitation.approved",
    timeout: float = 2.0,
    delivery_id: object = None,
) -> Outcome:
    if body is None:
        body = body_for(event_id, kind, CREATED_AT, DATA)
    return post(
        url,
        body,
        secret=SECRET,
        event_id=event_id,
        kind=kind,
        timeout=timeout,
        delivery_id=delivery_id,
    )


# The body


def test_body_round_trips_with_id_type_and_created_at():
    body = body_for(42, "invitation.approved", CREATED_AT, DATA)

    assert json.loads(body) == {
        "id": 42,
        "type": "invitation.approved",
        "created_at": "2025-03-01T12:30:05.123456+00:00",
        "data": DATA,
    }


def test_body_is_compact_sorted_utf8_and_the_same_bytes_for_the_same_content():
    data = {"b": 1, "a": {"name": "Salon Éclair ✂"}}
    reordered = {"a": {"name": "Salon Éclair ✂"}, "b": 1}

    body = body_for(1, "membership.created", CREATED_AT, data)

    assert body == body_for(1, "membership.created", CREATED_AT, reordered)
    assert b" " not in body.replace("Salon Éclair ✂".encode(), b"")
    assert "Salon Éclair ✂".encode() in body
    assert body.index(b'"created_at"') < body.index(b'"data"') < body.index(b'"id"')


def test_body_serializes_uuids_decimals_and_datetimes_in_data():
    key = uuid.uuid4()
    data = {"key": key, "price": Decimal("12.50"), "at": CREATED_AT}

    document = json.loads(body_for(1, "membership.created", CREATED_AT, data))

    assert document["data"] == {"key": str(key), "price": "12.50", "at": "2025-03-01T12:30:05.123Z"}


def test_created_at_keeps_its_offset_and_a_naive_one_is_made_aware():
    paris = timezone(timedelta(hours=1))
    aware = json.loads(body_for(1, "x.y", CREATED_AT.astimezone(paris), {}))
    naive = json.loads(body_for(1, "x.y", CREATED_AT.replace(tzinfo=None), {}))

    assert aware["created_at"] == "2025-03-01T13:30:05.123456+01:00"
    assert naive["created_at"] == "2025-03-01T12:30:05.123456+00:00"  # TIME_ZONE = "UTC"


# Signing and verifying


def test_sign_is_hmac_sha256_of_timestamp_dot_body():
    import hashlib
    import hmac

    header = sign(SECRET, b'{"a":1}', timestamp=1700000000)

    digest = hmac.new(SECRET.encode(), b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={digest}"


def test_sign_uses_the_current_time_by_default():
    t = int(sign(SECRET, b"{}").split(",")[0].removeprefix("t="))

    assert abs(t - time.time()) < 5


def test_verify_accepts_what_it_signed_and_refuses_a_tampered_body_or_wrong_secret():
    body = body_for(1, "invitation.created", CREATED_AT, DATA)
    header = sign(SECRET, body)

    assert verify(SECRET, header, body)
    assert not verify(SECRET, header, body.replace(b'"approved"', b'"rejected"'))
    assert not verify(SECRET, header, body + b" ")
    assert not verify("another-secret", header, body)


@pytest.mark.parametrize("age", [-301, 301, 10_000])
def test_verify_refuses_a_timestamp_outside_the_tolerance(age):
    header = sign(SECRET, b"{}", timestamp=1_700_000_000)

    assert not verify(SECRET, header, b"{}", now=1_700_000_000 + age)
    assert verify(SECRET, header, b"{}", now=1_700_000_000 + age, tolerance=abs(age))


def test_verify_accepts_a_timestamp_within_the_tolerance():
    header = sign(SECRET, b"{}", timestamp=1_700_000_000)

    assert verify(SECRET, header, b"{}", now=1_700_000_300)
    assert verify(SECRET, header, b"{}", now=1_699_999_700)


def test_verify_accepts_any_secret_of_a_list_for_rotation():
    body = b'{"id":1}'
    signed_with_old = sign("old-secret", body)

    assert verify(["new-secret", "old-secret"], signed_with_old, body)
    assert verify(("new-secret", "old-secret"), signed_with_old, body)
    assert not verify(["new-secret"], signed_with_old, body)
    assert not verify([], signed_with_old, body)


def test_verify_never_accepts_an_empty_secret():
    assert not verify("", sign("", b"{}"), b"{}")
    assert not verify(["", ""], sign("", b"{}"), b"{}")


def test_verify_reads_several_v1_values_and_ignores_unknown_keys():
    body = b"{}"
    t, good = sign(SECRET, body, timestamp=int(time.time())).split(",")
    bad = "v1=" + "0" * 64

    assert verify(SECRET, f"{t},{bad},v0=whatever,{good},scheme=v9", body)
    assert verify(SECRET, f" {good.upper().replace('V1', 'v1')} , {t} ", body)
    assert not verify(SECRET, f"{t},{bad}", body)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        "t=,v1=",
        "=,=,,",
        "v1=" + "a" * 64,
        "t=1700000000",
        "t=abc,v1=" + "a" * 64,
        "t=-1700000000,v1=" + "a" * 64,
        "t=1700000000,t=1700000000,v1=" + "a" * 64,
        "t=\u0661\u0667" + "\u0660" * 8 + ",v1=" + "a" * 64,  # Arabic-Indic digits
        "t=" + "9" * 5000 + ",v1=" + "a" * 64,
        "t=1700000000,v1=é" + "a" * 63,
        "t=1700000000,v1=\x00",
    ],
)
def test_verify_returns_false_for_malformed_headers(header):
    assert verify(SECRET, header, b"{}", now=1_700_000_000) is False


def test_verify_returns_false_for_a_missing_header():
    assert verify(SECRET, None, b"{}") is False  # type: ignore[arg-type]


def test_verify_needs_the_header_s_own_timestamp():
    good = sign(SECRET, b"{}", timestamp=1_700_000_000)
    moved = good.replace("t=1700000000", "t=1700000001")

    assert not verify(SECRET, moved, b"{}", now=1_700_000_000)


# Delivery


def test_a_2xx_is_ok_and_the_receiver_can_verify_what_it_got(receiver):
    body = body_for(42, "invitation.approved", CREATED_AT, DATA)

    outcome = deliver(receiver.url(), body)

    assert outcome == Outcome(
        ok=True, status_code=200, error="", retry=False, duration_ms=outcome.duration_ms
    )
    assert 0 <= outcome.duration_ms < 2000
    [request] = receiver.requests
    assert request.method == "POST"
    assert request.body == body
    assert json.loads(request.body)["data"] == DATA
    assert verify(SECRET, request.headers[SIGNATURE_HEADER], request.body)
    assert not verify("another-secret", request.headers[SIGNATURE_HEADER], request.body)


def test_the_request_carries_the_event_headers(receiver):
    delivery_id = uuid.uuid4()

    deliver(receiver.url(), event_id=42, kind="membership.updated", delivery_id=delivery_id)

    headers = receiver.requests[0].headers
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == f"django-salon-invitations/{salon_invitations.__version__}"
    assert headers["X-Salon-Event"] == "membership.updated"
    assert headers["X-Salon-Event-Id"] == "42"
    assert headers["Idempotency-Key"] == "42"
    assert headers["X-Salon-Delivery"] == str(delivery_id)
    assert headers[SIGNATURE_HEADER].startswith("t=")


def test_the_user_agent_says_dev_without_a_version(receiver, monkeypatch):
    monkeypatch.delattr(salon_invitations, "__version__")

    deliver(receiver.url())

    headers = receiver.requests[0].headers
    assert headers["User-Agent"] == "django-salon-invitations/dev"
    assert "X-Salon-Delivery" not in headers


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_every_2xx_is_ok(receiver, status):
    receiver.replies["/hook"] = Reply(status, body=b"" if status == 204 else b"thanks")

    outcome = deliver(receiver.url())

    assert (outcome.ok, outcome.status_code, outcome.error, outcome.retry) == (
        True,
        status,
        "",
        False,
    )


@pytest.mark.parametrize(
    ("status", "retry"),
    [
        *[(500, True), (502, True), (503, True), (408, True), (429, True)],
        *[(400, False), (401, False), (403, False), (404, False), (410, False), (422, False)],
    ],
)
def test_a_failed_status_is_retried_only_when_it_may_pass_later(receiver, status, retry):
    receiver.replies["/hook"] = Reply(status, body=b"nope")

    outcome = deliver(receiver.url())

    assert not outcome.ok
    assert outcome.status_code == status
    assert outcome.retry is retry
    assert outcome.error.startswith(f"HTTP {status} ")
    assert outcome.error.endswith(": nope")
    assert len(receiver.requests) == 1


def test_an_error_keeps_at_most_200_characters_of_the_response(receiver):
    receiver.replies["/hook"] = Reply(500, body=b"x" * 200_000)

    outcome = deliver(receiver.url())

    assert outcome.retry
    assert outcome.error == "HTTP 500 Internal Server Error: " + "x" * 200


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_not_followed_nor_retried(receiver, status):
    target = receiver.url("/elsewhere")
    receiver.replies["/hook"] = Reply(status, headers={"Location": target})

    outcome = deliver(receiver.url())

    assert not outcome.ok
    assert outcome.status_code == status
    assert outcome.retry is False
    assert f"redirect to {target} not followed" in outcome.error
    assert [request.path for request in receiver.requests] == ["/hook"]


def test_a_timeout_is_retried(receiver):
    receiver.replies["/slow"] = Reply(delay=5.0)

    outcome = deliver(receiver.url("/slow"), timeout=0.5)

    assert not outcome.ok
    assert outcome.status_code is None
    assert outcome.retry is True
    assert "timed out" in outcome.error
    assert outcome.error.startswith("TimeoutError: ")
    assert 400 <= outcome.duration_ms < 4000


@pytest.mark.parametrize(("status", "ok"), [(200, True), (503, False)])
def test_a_response_body_that_stalls_does_not_change_the_outcome(receiver, status, ok):
    receiver.replies["/hook"] = Reply(status, body=b"partial", stall=5.0)

    outcome = deliver(receiver.url(), timeout=0.5)

    assert (outcome.ok, outcome.status_code, outcome.retry) == (ok, status, not ok)
    assert outcome.error == ("" if ok else "HTTP 503 Service Unavailable")
    assert outcome.duration_ms < 4000


def test_a_refused_connection_is_retried():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port any more.

    outcome = deliver(f"http://127.0.0.1:{port}/hook", timeout=2.0)

    assert not outcome.ok
    assert outcome.status_code is None
    assert outcome.retry is True
    assert outcome.error.startswith("ConnectionRefusedError: ")


def test_a_tls_failure_is_retried(receiver):
    # TLS to a plain HTTP server: the handshake fails.
    outcome = deliver(receiver.url().replace("http://", "https://"))

    assert not outcome.ok
    assert outcome.retry is True
    assert "SSL" in outcome.error


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://127.0.0.1/hook",
        "127.0.0.1/hook",
        "http:///hook",
        "http://127.0.0.1:port/hook",
    ],
)
def test_an_unusable_url_fails_at_once_without_retry(url):
    outcome = deliver(url)

    assert not outcome.ok
    assert outcome.retry is False
    assert "passwd" not in outcome.error


def test_a_header_value_that_cannot_be_sent_fails_without_retry(receiver):
    outcome = deliver(receiver.url(), kind="invitation.created\r\nX-Injected: 1")

    assert not outcome.ok
    assert outcome.retry is False
    assert outcome.error.startswith("ValueError: ")
    assert receiver.requests == []


def test_post_never_raises_and_retries_what_it_does_not_know(receiver, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(webhooks, "sign", broken)

    outcome = deliver(receiver.url())

    assert (outcome.ok, outcome.retry, outcome.error) == (False, True, "RuntimeError: boom")
