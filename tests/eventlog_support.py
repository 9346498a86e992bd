"""What the event-log tests share: a backend that records what it is given, a webhook receiver
(a real HTTP server on 127.0.0.1 that checks every signature and answers from a script), and
small helpers that read the log."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from salon_invitations.models import SalonEvent
from salon_invitations.notifications import BaseBackend, Event
from salon_invitations.webhooks import SIGNATURE_HEADER, verify

CHANNELS = "salon_invitations.notifications.ChannelsBackend"
EMAIL = "salon_invitations.notifications.EmailBackend"
WEBHOOK = "salon_invitations.notifications.WebhookBackend"
RECORDING = "tests.eventlog_support.RecordingBackend"
EXPLODING = "tests.eventlog_support.ExplodingBackend"
BROKEN_DATABASE = "tests.eventlog_support.BrokenDatabaseBackend"
HOOK_SECRET = "whsec-event-log-tests"

#: every event :class:`RecordingBackend` was given while a test runs (cleared per test by
#: the ``recorded`` fixture)
RECORDED: list[Event] = []


class RecordingBackend(BaseBackend):
    """Keeps every event it is given (see :data:`RECORDED`)."""

    def send(self, event: Event) -> None:
        RECORDED.append(event)


class ExplodingBackend(BaseBackend):
    """Fails for every event, as a backend whose service is down does."""

    calls = 0

    def send(self, event: Event) -> None:
        type(self).calls += 1
        raise ConnectionError("the backend's service is down")


# The fixtures are imported by the test modules that use them under these names: the
# parameter names (``recorded``, ``hook_server``) then shadow no import.


@pytest.fixture(name="recorded")
def recorded_fixture() -> Iterator[list[Event]]:
    RECORDED.clear()
    ExplodingBackend.calls = BrokenDatabaseBackend.calls = 0
    try:
        yield RECORDED
    finally:
        RECORDED.clear()


def log(**filters: Any) -> list[SalonEvent]:
    """The event log's rows (matching ``filters``), in id order."""
    return list(SalonEvent.objects.filter(**filters).order_by("id"))


def last_event_id() -> int:
    return SalonEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


# The webhook receiver ---------------------------------------------------------------------------


@dataclass
class Hit:
    """One request the receiver got, and whether its signature verified."""

    path: str
    headers: Message
    body: bytes
    verified: bool
    status: int

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class HookServer:
    """Answers ``POST <path>`` from ``script[path]`` (statuses used in turn, the last one
    repeated; 200 when none), after checking the signature with
    :func:`salon_invitations.webhooks.verify` and the endpoint's secret."""

    def __init__(self, server: ThreadingHTTPServer, secret: str) -> None:
        self.server = server
        self.secret = secret
        self.hits: list[Hit] = []
        self.script: dict[str, list[int]] = {}
        self.lock = threading.Lock()

    def url(self, path: str = "/hook") -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def on(self, path: str) -> list[Hit]:
        return [hit for hit in self.hits if hit.path == path]

    def answer(self, path: str) -> int:
        with self.lock:
            statuses = self.script.get(path) or [200]
            return statuses.pop(0) if len(statuses) > 1 else statuses[0]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        hooks = self.server.hooks
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        verified = verify(hooks.secret, self.headers.get(SIGNATURE_HEADER, ""), body)
        status = hooks.answer(self.path) if verified else 400
        hooks.hits.append(Hit(self.path, self.headers, body, verified, status))
        reply = b'{"ok": true}' if status < 300 else b"try again"
        self.send_response(status)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    hooks: HookServer
    daemon_threads = True


@pytest.fixture(name="hook_server")
def hook_server_fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[HookServer]:
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    server = _Server(("127.0.0.1", 0), _Handler)
    server.hooks = HookServer(server, HOOK_SECRET)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.hooks
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def webhook(url: str, *events: str, secret: str = HOOK_SECRET) -> dict[str, Any]:
    """One ``WEBHOOKS`` entry."""
    entry: dict[str, Any] = {"url": url, "secret": secret}
    if events:
        entry["events"] = list(events)
    return entry


class BrokenDatabaseBackend(BaseBackend):
    """A backend whose own database write fails (here: a row missing a required column)."""

    calls = 0

    def send(self, event: Event) -> None:
        from salon_invitations.models import Delivery

        type(self).calls += 1
        Delivery.objects.create(channel="broken", event_kind=event.kind, payload=None)
