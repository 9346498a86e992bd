"""Salons, memberships and invitations.

``Salon`` and ``Membership`` are swappable, like ``AUTH_USER_MODEL``: subclass
:class:`AbstractSalon` / :class:`AbstractMembership` in your own app and point
``SALON_INVITATIONS_SALON_MODEL`` / ``SALON_INVITATIONS_MEMBERSHIP_MODEL`` at it before the
project's first ``migrate``. Always fetch them with :func:`get_salon_model` /
:func:`get_membership_model` at call time.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.apps import apps as django_apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.db.models import QuerySet
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from model_utils import Choices, FieldTracker
from model_utils.models import StatusModel, TimeStampedModel

from salon_invitations.conf import app_settings, install_swappable_defaults

install_swappable_defaults()
SALON_MODEL = app_settings.SALON_MODEL
MEMBERSHIP_MODEL = app_settings.MEMBERSHIP_MODEL


class AbstractSalon(TimeStampedModel):
    """An organisation users ask to join. The creator becomes its owner."""

    name = models.CharField(_("name"), max_length=255)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="owned_salons",
        verbose_name=_("owner"),
    )

    class Meta:
        abstract = True
        ordering = ("name", "pk")
        verbose_name = _("salon")
        verbose_name_plural = _("salons")

    def __str__(self) -> str:
        return self.name


class Salon(AbstractSalon):
    class Meta(AbstractSalon.Meta):
        swappable = "SALON_INVITATIONS_SALON_MODEL"


class AbstractMembership(TimeStampedModel):
    """A user's role in one salon. A user holds at most one membership per salon."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="salon_memberships",
        verbose_name=_("user"),
    )
    salon = models.ForeignKey(
        SALON_MODEL,
        on_delete=models.CASCADE,
        related_name="memberships",
        verbose_name=_("salon"),
    )
    role = models.CharField(_("role"), max_length=32)

    class Meta:
        abstract = True
        ordering = ("salon", "pk")
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")
        constraints = [
            models.UniqueConstraint(
                fields=["user", "salon"], name="%(app_label)s_%(class)s_one_per_user_salon"
            ),
        ]
        indexes = [models.Index(fields=["salon", "role"], name="%(class)s_salon_role")]

    def __str__(self) -> str:
        return f"{self.user} — {self.role} @ {self.salon}"


class Membership(AbstractMembership):
    class Meta(AbstractMembership.Meta):
        swappable = "SALON_INVITATIONS_MEMBERSHIP_MODEL"


class Invitation(TimeStampedModel, StatusModel):
    """An invitation to join a salon in a role, in one of two directions.

    ``direction = "request"``: a user asked to join and the salon's managers decide (``user``
    is the requester). ``direction = "invite"``: a manager invited a person by e-mail
    (``email``), who accepts with the token of the e-mail's link; ``user`` is empty until then.
    Only a SHA-256 digest of that token is stored (``token_digest``).
    """

    STATUS = Choices(
        ("pending", _("pending")),
        ("approved", _("approved")),
        ("rejected", _("rejected")),
        ("cancelled", _("cancelled")),
        ("expired", _("expired")),
    )
    DIRECTION = Choices(("request", _("request")), ("invite", _("invite")))
    DECIDED_STATUSES: ClassVar[tuple[str, ...]] = ("approved", "rejected", "cancelled", "expired")

    # Database defaults too, so rows written with SQL of their own (bulk loads) stay valid.
    direction = models.CharField(
        _("direction"),
        max_length=16,
        choices=DIRECTION,
        default=DIRECTION.request,
        db_default=DIRECTION.request,
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="salon_invitations",
        verbose_name=_("user"),
    )
    email = models.CharField(
        _("e-mail address"), max_length=254, blank=True, default="", db_default=""
    )
    salon = models.ForeignKey(
        SALON_MODEL,
        on_delete=models.CASCADE,
        related_name="invitations",
        verbose_name=_("salon"),
    )
    role = models.CharField(_("role"), max_length=32)
    requested_role = models.CharField(
        _("requested role"), max_length=32, blank=True, default="", db_default=""
    )
    message = models.TextField(_("message"), blank=True, default="")
    reason = models.TextField(_("reason"), blank=True, default="")
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("invited by"),
    )
    token_digest = models.CharField(
        _("token digest"), max_length=64, blank=True, default="", db_default="", editable=False
    )
    sent_at = models.DateTimeField(_("invite sent at"), null=True, blank=True, editable=False)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("decided by"),
    )
    decided_at = models.DateTimeField(_("decided at"), null=True, blank=True)
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)

    tracker = FieldTracker(fields=["status"])

    class Meta:
        ordering = ("-created", "-pk")
        verbose_name = _("invitation")
        verbose_name_plural = _("invitations")
        constraints = [
            models.UniqueConstraint(
                fields=["user", "salon"],
                condition=models.Q(status="pending"),
                name="salon_invitations_one_pending_per_user_salon",
                violation_error_message=_("You already have a pending invitation to this salon."),
            ),
            models.UniqueConstraint(
                Lower("email"),
                "salon",
                condition=models.Q(status="pending", direction="invite"),
                name="salon_invitations_one_pending_invite_per_email",
                violation_error_message=_("This address already has a pending invite."),
            ),
            models.CheckConstraint(
                condition=models.Q(status="pending") | models.Q(decided_at__isnull=False),
                name="salon_invitations_decided_has_time",
            ),
            models.CheckConstraint(
                condition=models.Q(direction="invite") | models.Q(user__isnull=False),
                name="salon_invitations_request_has_user",
            ),
            models.CheckConstraint(
                condition=models.Q(direction="request") | ~models.Q(email=""),
                name="salon_invitations_invite_has_email",
            ),
        ]
        indexes = [
            models.Index(fields=["salon", "status", "-created"], name="salon_inv_salon_status"),
            models.Index(fields=["user", "-created"], name="salon_inv_user"),
            models.Index(
                fields=["expires_at"],
                condition=models.Q(status="pending"),
                name="salon_inv_pending_expiry",
            ),
            models.Index(fields=["token_digest"], name="salon_inv_token"),
        ]

    def __str__(self) -> str:
        who = self.user if self.user_id else self.email
        return f"{who} → {self.salon} ({self.role}, {self.status})"

    def __repr__(self) -> str:
        # Never the token digest.
        return f"<Invitation {self.pk} {self.direction} {self.status}>"

    @property
    def is_pending(self) -> bool:
        return self.status == self.STATUS.pending

    @property
    def is_invite(self) -> bool:
        return self.direction == self.DIRECTION.invite

    def save(self, *args: Any, **kwargs: Any) -> None:
        previous = self.tracker.previous("status")
        if self.pk and previous in self.DECIDED_STATUSES and self.tracker.has_changed("status"):
            raise ValueError("A decided invitation cannot change its status.")
        super().save(*args, **kwargs)


class SalonEvent(models.Model):
    """One announced change, written in the same transaction as the change itself.

    The log behind the audit endpoint, the WebSocket replay and the webhooks. ``id`` grows in
    commit order (writers take :class:`EventOrder`'s row lock for their event rows, held until
    they commit), so "every event after ``id``" is a complete answer. ``data`` is what the
    WebSocket frame carries besides ``id`` and ``type`` (``{"invitation": {...}}``, with
    ``previous_role`` for role changes).

    Events outlive what they describe: the salon, the subject and the actor are kept by id
    (no database constraint), and ``manage.py prune_events`` removes old rows.
    """

    id = models.BigAutoField(primary_key=True)
    kind = models.CharField(_("kind"), max_length=64)
    # No single-column indexes on salon and user: the (salon, id) and (user, id) ones serve.
    salon = models.ForeignKey(
        SALON_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("salon"),
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("user"),
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("actor"),
    )
    data = models.JSONField(_("data"), default=dict)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    #: When the backends ran for it; ``None`` until then (the relay's work list).
    dispatched_at = models.DateTimeField(_("dispatched at"), null=True, blank=True)
    #: A new invite's token, sealed, until its e-mail is recorded (never in ``data``).
    secret = models.TextField(blank=True, default="", editable=False)

    class Meta:
        ordering = ("id",)
        verbose_name = _("event")
        verbose_name_plural = _("events")
        indexes = [
            models.Index(fields=["salon", "id"], name="salon_event_salon"),
            models.Index(fields=["user", "id"], name="salon_event_user"),
            models.Index(fields=["dispatched_at", "id"], name="salon_event_undispatched"),
            models.Index(fields=["created_at"], name="salon_event_created"),
        ]

    def __str__(self) -> str:
        return f"#{self.id} {self.kind}"

    def __repr__(self) -> str:
        return f"<SalonEvent {self.id} {self.kind}>"

    @property
    def frame(self) -> dict[str, Any]:
        """The WebSocket frame of this event: ``{"id", "type", **data}``."""
        return {"id": self.id, "type": self.kind, **self.data}


class EventOrder(models.Model):
    """One row whose lock orders the event log: a transaction that writes events updates it
    first and holds its lock until it commits, so event ids are handed out in commit order."""

    id = models.PositiveSmallIntegerField(primary_key=True)
    #: The largest id ``prune_events`` deleted: a replay from before it cannot be complete.
    pruned_through = models.BigIntegerField(default=0)

    class Meta:
        verbose_name = _("event order")

    def __str__(self) -> str:
        return f"event order {self.id}"


class Delivery(TimeStampedModel):
    """One outgoing message (an e-mail) recorded before it is sent, and where it stands.

    Nothing is lost when the mail server or the Celery broker is down: a message that could not
    be sent stays ``pending`` with its next attempt scheduled, for the relay
    (:func:`salon_invitations.outbox.deliver_due`) to send again, at most
    ``DELIVERY_MAX_ATTEMPTS`` times; then it is ``failed``.
    """

    STATUS = Choices(("pending", _("pending")), ("sent", _("sent")), ("failed", _("failed")))

    channel = models.CharField(_("channel"), max_length=16, default="email")
    event = models.ForeignKey(
        SalonEvent,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="deliveries",
        verbose_name=_("event"),
    )
    #: The e-mail address or the webhook URL.
    target = models.CharField(_("target"), max_length=255, blank=True, default="")
    event_kind = models.CharField(_("event"), max_length=64, blank=True, default="")
    payload = models.JSONField(_("payload"))
    status = models.CharField(_("status"), max_length=16, choices=STATUS, default=STATUS.pending)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    last_error = models.TextField(_("last error"), blank=True, default="")
    next_attempt_at = models.DateTimeField(_("next attempt at"), default=timezone.now)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)

    class Meta:
        ordering = ("-created", "-pk")
        verbose_name = _("delivery")
        verbose_name_plural = _("deliveries")
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="salon_delivery_due"),
        ]
        constraints = [
            # At least once, never twice: the relay re-running an event's backends finds what
            # was recorded already.
            models.UniqueConstraint(
                fields=["event", "channel", "target"], name="salon_delivery_once_per_target"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.channel} {self.event_kind} → {', '.join(self.recipients)} ({self.status})"

    @property
    def recipients(self) -> list[str]:
        if self.channel != "email":
            return [self.target]
        to = self.payload.get("to") if isinstance(self.payload, dict) else None
        return [str(address) for address in to or []]


class DeliveryAttempt(models.Model):
    """One try at sending a :class:`Delivery`: when, how long, and what came back."""

    delivery = models.ForeignKey(
        Delivery, on_delete=models.CASCADE, related_name="attempt_log", verbose_name=_("delivery")
    )
    at = models.DateTimeField(_("at"), default=timezone.now)
    ok = models.BooleanField(_("succeeded"), default=False)
    status_code = models.PositiveIntegerField(_("status code"), null=True, blank=True)
    error = models.TextField(_("error"), blank=True, default="")
    duration_ms = models.PositiveIntegerField(_("duration (ms)"), default=0)

    class Meta:
        ordering = ("at", "pk")
        verbose_name = _("delivery attempt")
        verbose_name_plural = _("delivery attempts")

    def __str__(self) -> str:
        outcome = "ok" if self.ok else (self.error or str(self.status_code))
        return f"{self.at:%Y-%m-%d %H:%M:%S} {outcome}"


def _get_swappable(setting_value: str, setting_name: str) -> type[models.Model]:
    try:
        return django_apps.get_model(setting_value, require_ready=False)
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"{setting_name} must be of the form 'app_label.model_name'"
        ) from exc
    except LookupError as exc:
        raise ImproperlyConfigured(
            f"{setting_name} refers to model '{setting_value}' that has not been installed"
        ) from exc


def get_salon_model() -> type[AbstractSalon]:
    """The active salon model (``SALON_INVITATIONS_SALON_MODEL``)."""
    return _get_swappable(app_settings.SALON_MODEL, "SALON_INVITATIONS_SALON_MODEL")  # type: ignore[return-value]


def get_membership_model() -> type[AbstractMembership]:
    """The active membership model (``SALON_INVITATIONS_MEMBERSHIP_MODEL``)."""
    return _get_swappable(app_settings.MEMBERSHIP_MODEL, "SALON_INVITATIONS_MEMBERSHIP_MODEL")  # type: ignore[return-value]


def active_users() -> QuerySet[Any]:
    """The user model's rows that may act and hear of events: ``is_active`` where it is a field.

    A custom user model without an ``is_active`` column counts every user as active.
    """
    User = get_user_model()
    users = User._default_manager.all()
    if any(f.name == "is_active" for f in User._meta.concrete_fields):
        users = users.filter(is_active=True)
    return users
