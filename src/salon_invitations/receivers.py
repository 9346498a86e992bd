"""Signal receivers the app connects in ``AppConfig.ready()``.

They route removals that Django would otherwise do silently through ``CASCADE`` through the
services, so every removed invitation and membership is announced, and they close the
WebSockets of accounts that can no longer sign in.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_delete

from salon_invitations import services
from salon_invitations.exceptions import Gone
from salon_invitations.models import get_salon_model
from salon_invitations.notifications import close_user_sockets

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


def _close_after_commit(user_id: Any) -> None:
    def close() -> None:
        try:
            close_user_sockets(user_id)
        except Exception:
            logger.exception("Could not close the WebSockets of user %s", user_id)

    transaction.on_commit(close)


def user_saved(sender: Any, instance: Any, update_fields: Any = None, **kwargs: Any) -> None:
    if update_fields is not None and "is_active" not in update_fields:
        return
    if getattr(instance, "is_active", True) is False:
        _close_after_commit(instance.pk)


def user_gone(sender: Any, instance: Any, **kwargs: Any) -> None:
    _close_after_commit(instance.pk)


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
