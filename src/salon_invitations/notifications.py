"""Events and their delivery.

Every state change made by :mod:`salon_invitations.services` produces one :class:`Event`.
:func:`dispatch` writes it to the event log (:mod:`salon_invitations.events`) in the same
transaction, waits for that transaction to commit (so rolled-back work is never announced), then
sends the matching signal from :mod:`salon_invitations.signals` and runs every backend in
``SALON_INVITATIONS["NOTIFICATION_BACKENDS"]``. A backend that raises is logged and does not
stop the others; the event stays undispatched and the relay runs the backends again later.

Writing a backend::

    from salon_invitations.notifications import BaseBackend

    class SlackBackend(BaseBackend):
        def send(self, event):
            post_to_slack(f"{event.kind}: {event.instance}")
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hashlib
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import translation

from salon_invitations import outbox, roles, tokens
from salon_invitations.conf import app_settings
from salon_invitations.models import active_users
from salon_invitations.outbox import send_email  # noqa: F401 - the historical import place
from salon_invitations.signals import SIGNALS

logger = logging.getLogger("salon_invitations")


@dataclass
class Event:
    """One change: ``kind`` is e.g. ``"invitation.approved"`` or ``"membership.deleted"``."""

    kind: str
    instance: Any
    actor: Any = None
    _recipients: set[Any] | None = field(default=None, repr=False)
    #: The raw token of a new or re-sent invite, for the e-mail to the invitee only. Never
    #: in frames or signals; ``repr`` hides it.
    token: str | None = field(default=None, repr=False)
    #: What the frame and the signal carry besides the object, e.g. ``{"previous_role": …}``.
    extra: dict[str, Any] = field(default_factory=dict)
    #: The event log's id (``SalonEvent.id``) and time, once :func:`dispatch` recorded it.
    id: int | None = None
    created_at: datetime | None = None
    #: ``True`` when the relay runs the backends again for a logged event (see
    #: :func:`salon_invitations.events.relay`); backends that record deliveries skip those
    #: recorded already.
    redelivery: bool = False
    #: ``True`` when :func:`dispatch` logged the event as dispatched already (no backend
    #: needs the relay; see :attr:`BaseBackend.relayed`).
    dispatched: bool = False
    _data: dict[str, Any] | None = field(default=None, repr=False)
    #: Recipients shared by the events of one transaction about the same salon and user.
    _shared: dict[Any, set[Any]] | None = field(default=None, repr=False)

    @property
    def data(self) -> dict[str, Any]:
        """What the frame, the log row and webhooks carry: ``{"<model>": {...}, **extra}``."""
        if self._data is None:
            from salon_invitations.events import json_safe

            self._data = json_safe({self.model: serialize(self), **self.extra})
        return self._data

    @property
    def frame(self) -> dict[str, Any]:
        """The WebSocket frame: ``{"id": …, "type": kind, "<model>": {...}, **extra}``."""
        return {"id": self.id, "type": self.kind, **self.data}

    @property
    def model(self) -> str:
        return self.kind.split(".", 1)[0]

    @property
    def salon_id(self) -> Any:
        return self.instance.salon_id

    @property
    def recipients(self) -> set[Any]:
        """Primary keys of the users allowed to hear of this event, computed once when asked."""
        if self._recipients is None:
            from salon_invitations.policies import get_policy

            key = (self.salon_id, self.instance.user_id)
            shared = self._shared if self._shared is not None else {}
            if key not in shared:
                shared[key] = get_policy().recipients(*key)
            self._recipients = shared[key]
        return self._recipients


class BaseBackend:
    """A notification backend: one method that receives every committed :class:`Event`."""

    #: Whether the relay runs this backend again for an event that a crash (or an outage)
    #: left undelivered. ``False`` for a backend whose readers catch up from the event log
    #: themselves: when no configured backend needs the relay, events are logged as
    #: dispatched in their own transaction, which saves a statement after each commit.
    relayed = True

    def send(self, event: Event) -> None:
        raise NotImplementedError


class LoggingBackend(BaseBackend):
    """Logs every event at INFO level on the ``salon_invitations`` logger (for development)."""

    def send(self, event: Event) -> None:
        logger.info(
            "%s %s pk=%s salon=%s actor=%s",
            event.kind,
            event.model,
            event.instance.pk,
            event.salon_id,
            getattr(event.actor, "pk", None),
        )


#: The event streams a consumer can follow: one per model that has events.
STREAMS = ("invitation", "membership")


def group_name(stream: str, user_id: Any) -> str:
    """The channel-layer group of one user's ``stream`` (``"invitation"`` or ``"membership"``).

    The one place group names are built: the consumer joins it, the backend sends to it.
    Valid for any primary key type (only ASCII letters, digits, ``-``, ``_`` and ``.``, fewer
    than 100 characters) and distinct for distinct keys, so no user hears another's events:
    other characters become ``_xx`` (their UTF-8 bytes in hex), and a key too long for the
    limit is replaced by ``_h`` and its SHA-256 (``_h`` never comes out of the escaping).
    """
    raw = str(user_id)
    key = "".join(
        c
        if c.isascii() and (c.isalnum() or c in "-.")
        else "".join(f"_{byte:02x}" for byte in c.encode("utf-8", "surrogatepass"))
        for c in raw
    )
    name = f"salon_invitations.{stream}.{key}"
    if len(name) >= 100:
        digest = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:48]
        name = f"salon_invitations.{stream}._h{digest}"
    return name


def serialize(event: Event) -> dict[str, Any]:
    """The instance as the REST API represents it (same serializer classes)."""
    from salon_invitations.serializers import (
        invitation_serializer_class,
        membership_serializer_class,
    )

    serializer_class = (
        invitation_serializer_class()
        if event.model == "invitation"
        else membership_serializer_class()
    )
    return dict(serializer_class(event.instance).data)


def _dropped_connection_errors() -> tuple[type[BaseException], ...]:
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
    except ImportError:  # no Redis layer installed
        return (ConnectionError,)
    return (ConnectionError, RedisConnectionError)


async def retrying_dropped_connection(send: Callable[[], Awaitable[Any]]) -> Any:
    """``await send()``, once more if the channel layer's connection turned out to be closed.

    A Redis restart or failover closes every pooled connection; each one fails the command
    that draws it next, and the second try runs on a fresh connection. A second failure is
    raised."""
    try:
        return await send()
    except _dropped_connection_errors() as exc:
        logger.info("Channel layer connection dropped (%s); trying once more", exc)
        return await send()


async def _group_send_all(layer: Any, groups: list[str], message: dict[str, Any]) -> None:
    await asyncio.gather(
        *(
            retrying_dropped_connection(functools.partial(layer.group_send, group, message))
            for group in groups
        )
    )


async def _group_send_within(
    layer: Any, groups: list[str], message: dict[str, Any], timeout: float
) -> None:
    await asyncio.wait_for(_group_send_all(layer, groups, message), timeout)


#: After the channel layer did not answer in time, events skip it this many seconds, so a
#: layer that hangs (a Redis that accepts connections and never answers) costs one request
#: ``QUEUE_TIMEOUT`` instead of every request its socket timeout.
LAYER_PAUSE = 10.0
_layer_down_until = 0.0


_sender: tuple[int, asyncio.AbstractEventLoop] | None = None
_sender_lock = threading.Lock()


def _sender_loop(layer: Any) -> asyncio.AbstractEventLoop | None:
    """The event loop a synchronous caller sends on: ``None`` for asgiref's (an ASGI server's
    request thread, whose server loop the layer already uses), else one long-lived loop in a
    thread of this process's own.

    Outside an ASGI server (a WSGI worker, a Celery task, a management command)
    ``async_to_sync`` would start a new event loop for every send, and ``channels_redis``,
    which keeps its connections per loop, would connect to Redis anew each time. Only for
    layers that keep connections per loop; the in-memory layer's queues belong to the loop
    that made them, so it keeps asgiref's way.
    """
    global _sender
    if not type(layer).__module__.startswith("channels_redis."):
        return None
    from asgiref.sync import SyncToAsync

    server_loop = getattr(SyncToAsync.threadlocal, "main_event_loop", None)
    if server_loop is not None and server_loop.is_running():
        return None
    with _sender_lock:
        if _sender is None or _sender[0] != os.getpid() or _sender[1].is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(
                target=loop.run_forever, name="salon-invitations-sender", daemon=True
            ).start()
            _sender = (os.getpid(), loop)
        return _sender[1]


def send_to_groups(alias: str, groups: list[str], message: dict[str, Any]) -> None:
    """Send ``message`` to ``groups`` of the channel layer ``alias``, waiting at most
    ``QUEUE_TIMEOUT`` seconds. Raises on failure (the caller logs it)."""
    global _layer_down_until
    from channels.layers import get_channel_layer

    layer = get_channel_layer(alias)
    if layer is None or not groups:
        return
    if time.monotonic() < _layer_down_until:
        raise TimeoutError("the channel layer did not answer moments ago; not trying now")
    try:
        timeout = app_settings.QUEUE_TIMEOUT
        loop = _sender_loop(layer)
        if loop is None:
            async_to_sync(_group_send_within)(layer, groups, message, timeout)
        else:
            sending = _group_send_within(layer, groups, message, timeout)
            asyncio.run_coroutine_threadsafe(sending, loop).result(timeout + 1)
    except (TimeoutError, asyncio.TimeoutError, concurrent.futures.TimeoutError):  # one, 3.11+
        _layer_down_until = time.monotonic() + LAYER_PAUSE
        raise


class ChannelsBackend(BaseBackend):
    """Pushes each event to the per-user group of every recipient over the channel layer.

    The consumer in :mod:`salon_invitations.consumer` forwards it to the user's sockets.
    Recipients are the policy's (the requester and the salon's managers at event time); staff
    are not told unless a policy adds them. Set ``channel_layer_alias`` in a subclass to use
    a layer other than ``"default"``.
    """

    channel_layer_alias = "default"
    #: WebSocket clients catch up from the log (``?since=``, ``resume``): a frame lost between
    #: the commit and the channel layer is replayed to them, not relayed.
    relayed = False

    def send(self, event: Event) -> None:
        message = {"type": "salon_invitations.event", "frame": event.frame}
        groups = [group_name(event.model, user_id) for user_id in sorted(event.recipients, key=str)]
        # One hop into the event loop per event, not one per recipient.
        send_to_groups(self.channel_layer_alias, groups, message)


def webhook_endpoints(kind: str) -> list[dict[str, Any]]:
    """The configured ``WEBHOOKS`` entries whose ``events`` patterns match ``kind`` (no
    ``events`` key: every kind; an empty list: none)."""
    return [
        endpoint
        for endpoint in app_settings.raw("WEBHOOKS") or []
        if any(fnmatchcase(kind, pattern) for pattern in endpoint.get("events", ["*"]) or [])
    ]


class WebhookBackend(BaseBackend):
    """Posts every event to the ``WEBHOOKS`` endpoints that subscribe to its kind.

    Each endpoint gets ``{"id", "type", "created_at", "data"}`` signed with its secret (see
    :mod:`salon_invitations.webhooks`), recorded first as a
    :class:`~salon_invitations.models.Delivery` and then sent the ``WEBHOOK_DELIVERY`` way:
    after commit with ``WEBHOOK_TIMEOUT`` (``"sync"``) or by the Celery worker (``"celery"``).
    Timeouts, connection errors, 5xx, 408 and 429 are retried with back-off by the relay, up
    to ``DELIVERY_MAX_ATTEMPTS``; other answers are final. The event id is the idempotency key.
    """

    def send(self, event: Event) -> None:
        if event.id is None or event.created_at is None:
            return  # not logged
        urls = [str(endpoint["url"]) for endpoint in webhook_endpoints(event.kind)]
        if event.redelivery:
            done = outbox.recorded_targets(event.id, "webhook")
            urls = [url for url in urls if url not in done]
        if not urls:
            return
        from rest_framework.fields import DateTimeField

        from salon_invitations.models import Delivery

        body = {
            "id": event.id,
            "type": event.kind,
            # As the audit endpoint renders it.
            "created_at": DateTimeField().to_representation(event.created_at),
            "data": event.data,
        }
        deliveries = [
            outbox.create_once(
                Delivery(
                    channel="webhook",
                    event_id=event.id,
                    event_kind=event.kind,
                    target=url,
                    payload=body,
                ),
                retried=event.redelivery,
            )
            for url in dict.fromkeys(urls)
        ]
        pks = [delivery.pk for delivery in deliveries if delivery is not None]
        outbox.send(pks, mode=app_settings.raw("WEBHOOK_DELIVERY"))


def session_group(session_key: str) -> str:
    """The channel-layer group of the WebSockets a browser session opened (by its cookie, not
    a token): a digest of the key, which is a credential."""
    return "salon_invitations.session." + hashlib.sha256(session_key.encode()).hexdigest()[:48]


def close_session_sockets(session_key: str, *, code: int = 4401, alias: str = "default") -> None:
    """Close the WebSockets authenticated by the session ``session_key``, in every server
    process: sent when the session logs out."""
    send_to_groups(alias, [session_group(session_key)], _close_message(code))


def _close_message(code: int) -> dict[str, Any]:
    return {"type": "salon_invitations.close", "code": code}


def close_user_sockets(user_id: Any, *, code: int = 4401, alias: str = "default") -> None:
    """Close every WebSocket of ``user_id``, in every server process (through the channel layer).

    Sent when an account is deactivated or deleted: its open sockets stop at once instead of
    hearing events until they disconnect.
    """
    groups = [group_name(stream, user_id) for stream in STREAMS]
    send_to_groups(alias, groups, _close_message(code))


@dataclass(frozen=True)
class Addressee:
    """An e-mail recipient without an account (an invitee), or before one is looked up."""

    email: str
    language: str | None = None


class EmailBackend(BaseBackend):
    """E-mails managers about new requests, requesters about decisions, invitees their invite.

    Templates (override them in your project): ``salon_invitations/email/<action>_subject.txt``,
    ``<action>.txt`` and ``<action>.html`` for the actions in :attr:`templates` and
    :attr:`invite_templates`. Messages are rendered in :meth:`language_for` the recipient.
    Each message is recorded in the outbox (:mod:`salon_invitations.outbox`) and sent at once,
    or with ``EMAIL_DELIVERY = "celery"`` queued to the ``salon_invitations.deliver_email``
    task. A failing mail server or broker is logged and the message retried later, never raised.

    An invite's e-mail carries the accept link built from ``INVITE_URL``; the raw token is
    sealed in the outbox until the message is sent (see :mod:`salon_invitations.tokens`).
    """

    #: event kind -> template name, for requests
    templates = {
        "invitation.created": "invitation_created",
        "invitation.approved": "invitation_decided",
        "invitation.rejected": "invitation_decided",
        "invitation.expired": "invitation_decided",
    }
    #: event kind -> template name, for invites (to the invitee's address)
    invite_templates = {
        "invitation.created": "invite",
        "invitation.resent": "invite",
    }

    def template_for(self, event: Event) -> str | None:
        if event.model != "invitation":
            return None
        if getattr(event.instance, "is_invite", False):
            return self.invite_templates.get(event.kind)
        return self.templates.get(event.kind)

    def recipients_for(self, event: Event) -> list[Any]:
        invitation = event.instance
        if getattr(invitation, "is_invite", False):
            return [Addressee(invitation.email)]
        if event.kind == "invitation.created":
            ids = event.recipients - {invitation.user_id}
        else:
            ids = {invitation.user_id}
        # Active accounts only, as for every other way of hearing of an event.
        return [u for u in active_users().filter(pk__in=ids) if getattr(u, "email", "")]

    def language_for(self, user: Any) -> str:
        return getattr(user, "language", None) or settings.LANGUAGE_CODE

    def context_for(self, event: Event, user: Any) -> dict[str, Any]:
        invitation = event.instance
        context = {
            "event": event,
            "invitation": invitation,
            "recipient": user,
            "salon": invitation.salon,
            "status": invitation.status,
        }
        if getattr(invitation, "is_invite", False):
            url = app_settings.raw("INVITE_URL")
            context["accept_url"] = url.format(token=outbox.TOKEN_PLACEHOLDER) if url else ""
            context["inviter"] = invitation.invited_by
            role = roles.get_role(invitation.role)
            context["role_label"] = role.label if role else invitation.role
        return context

    def render(self, event: Event, user: Any) -> dict[str, Any]:
        name = self.template_for(event)
        context = self.context_for(event, user)
        with translation.override(self.language_for(user)):
            subject = render_to_string(f"salon_invitations/email/{name}_subject.txt", context)
            message = {
                "subject": " ".join(subject.split()),
                "body": render_to_string(f"salon_invitations/email/{name}.txt", context),
                "html": render_to_string(f"salon_invitations/email/{name}.html", context),
                "to": [user.email],
            }
        if event.token is not None and "accept_url" in context:
            message["seal"] = tokens.seal(event.token)
        return message

    def send(self, event: Event) -> None:
        if self.template_for(event) is None or getattr(event.instance, "_salon_event_gone", False):
            return
        recipients = self.recipients_for(event)
        if event.redelivery and event.id is not None:
            done = outbox.recorded_targets(event.id, "email")
            recipients = [user for user in recipients if user.email not in done]
        messages = [self.render(event, user) for user in recipients]
        if messages:
            outbox.deliver(
                messages, event_kind=event.kind, event_id=event.id, retried=event.redelivery
            )


def _run_backend(backend_class: type[BaseBackend], event: Event) -> None:
    """Run one backend. Inside a transaction (the relay's), in a savepoint of its own: a
    backend's database error then undoes its own writes only, instead of breaking the
    transaction that holds the other backends' deliveries and the dispatch marks."""
    if transaction.get_connection().in_atomic_block:
        with transaction.atomic():
            backend_class().send(event)
    else:
        backend_class().send(event)


def deliver(event: Event) -> bool:
    """Send the signal and run every backend now; ``True`` when none failed.

    Errors are logged, never raised. A logged event is marked dispatched when every backend
    succeeded; otherwise the relay runs them again. The relay does not send signals again:
    receivers hear of an event once, right after its commit.
    """
    from salon_invitations.policies import current_roles

    with current_roles():  # roles remembered for the request predate the change
        return _deliver(event)


def _deliver(event: Event) -> bool:
    if not event.redelivery:
        signal = SIGNALS[event.kind]
        sender = type(event.instance)
        responses = signal.send_robust(
            sender=sender, **{event.model: event.instance, "actor": event.actor, **event.extra}
        )
        for receiver, response in responses:
            if isinstance(response, Exception):
                logger.error("Receiver %r of %s failed", receiver, event.kind, exc_info=response)
    succeeded = True
    for backend_class in app_settings.NOTIFICATION_BACKENDS:
        try:
            _run_backend(backend_class, event)
        except Exception:
            succeeded = False
            logger.exception("Notification backend %s failed for %s", backend_class, event.kind)
    if event.id is not None and not event.dispatched and (succeeded or event.redelivery):
        # The relay tries once: a backend that keeps failing is logged, and WebSocket clients
        # catch up by replay; e-mails and webhooks, once recorded, retry on their own.
        from salon_invitations.events import mark_dispatched

        try:
            mark_dispatched([event.id])
        except Exception:
            logger.exception("Could not mark event %s dispatched", event.id)
    return succeeded


def send_after_commit(signal: Any, sender: Any, **kwargs: Any) -> None:
    """Send a signal that has no event of its own (``ownership_transferred``) after commit."""

    def send() -> None:
        for receiver, response in signal.send_robust(sender=sender, **kwargs):
            if isinstance(response, Exception):
                logger.error("Receiver %r of %r failed", receiver, signal, exc_info=response)

    transaction.on_commit(send)


def relay_needed() -> bool:
    """Whether a configured backend needs the relay (:attr:`BaseBackend.relayed`)."""
    return any(getattr(b, "relayed", True) for b in app_settings.NOTIFICATION_BACKENDS)


def dispatch(event: Event) -> None:
    """Write ``event`` to the log in the current transaction and deliver it once that
    transaction commits (at once outside one)."""
    from salon_invitations.events import record, transaction_cache

    if event._recipients is None and event._shared is None:
        # The events of one transaction about one salon and user (an approval and the
        # membership it creates) have the same recipients: computed once, after commit.
        event._shared = transaction_cache("recipients")

    def hook() -> None:
        deliver(event)

    record(event, hook)  # outside a transaction the hook runs at once: the row comes first
    transaction.on_commit(hook)
