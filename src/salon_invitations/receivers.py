"""Signal receivers the app connects in ``AppConfig.ready()``.

They route removals that Django would otherwise do silently through ``CASCADE`` through the
services, so every removed invitation and membership is announced, and they close the
WebSockets of accounts that can no longer sign in and of sessions that logged out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_delete

from salon_invitations import services
from salon_invitations.exceptions import Gone
from salon_invitations.models import get_salon_model
from salon_invitations.notifications import close_session_sockets, close_user_sockets

logger = logging.getLogger("salon_invitations")

DISPATCH_PREFIX = "salon_invitations.receivers."


def salon_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    """Any deletion of a salon (a project's own code, a cascade) goes through the services."""
    try:
        locked = services.base.lock_salon(instance.pk)
    except Gone:
        return
    services.remove_salon_records(locked)


def user_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    services.remove_user_records(instance)


def _close_after_commit(close: Callable[[], None], whose: str) -> None:
    def closing() -> None:
        try:
            close()
        except Exception:
            logger.exception("Could not close the WebSockets of %s", whose)

    transaction.on_commit(closing)


def logged_out(sender: Any, request: Any, **kwargs: Any) -> None:
    """The WebSockets the session opened by its cookie close with it (Django sends the signal
    before it clears the session)."""
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if session_key:
        close = partial(close_session_sockets, session_key)
        _close_after_commit(close, "a session that logged out")


def user_saved(sender: Any, instance: Any, update_fields: Any = None, **kwargs: Any) -> None:
    if update_fields is not None and "is_active" not in update_fields:
        return
    if getattr(instance, "is_active", True) is False:
        _close_after_commit(partial(close_user_sockets, instance.pk), f"user {instance.pk}")


def user_gone(sender: Any, instance: Any, **kwargs: Any) -> None:
    _close_after_commit(partial(close_user_sockets, instance.pk), f"user {instance.pk}")


def connect() -> None:
    """Connect the receivers to the active user and salon models (idempotent)."""
    user_model = settings.AUTH_USER_MODEL
    pre_delete.connect(
        salon_deleted, sender=get_salon_model(), dispatch_uid=DISPATCH_PREFIX + "salon_deleted"
    )
    pre_delete.connect(
        user_deleted, sender=user_model, dispatch_uid=DISPATCH_PREFIX + "user_deleted"
    )
    post_save.connect(user_saved, sender=user_model, dispatch_uid=DISPATCH_PREFIX + "user_saved")
    post_delete.connect(user_gone, sender=user_model, dispatch_uid=DISPATCH_PREFIX + "user_gone")
    user_logged_out.connect(logged_out, dispatch_uid=DISPATCH_PREFIX + "logged_out")
