"""The event log: every announced change as a :class:`~salon_invitations.models.SalonEvent` row.

:func:`salon_invitations.notifications.dispatch` writes the row in the transaction that makes
the change (:func:`record`), so a rolled-back change leaves nothing, and a committed one is
never forgotten: the backends run after commit and mark the row dispatched; when a process dies
in between, or a backend fails (the channel layer is down), :func:`relay` runs them again later
(``manage.py deliver_events``, the ``salon_invitations.deliver_pending`` task).

Ids are handed out in commit order. A transaction that writes events first updates the single
:class:`~salon_invitations.models.EventOrder` row and so holds its lock until it commits;
the next writer's ids are therefore larger than every id already visible. Readers that ask for
"everything after id N" (the audit endpoint, the WebSocket replay) never miss an event that
commits later with a smaller id. The lock is taken at a transaction's first event, after the
salon's lock, and held only until commit.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, connections, router, transaction
from django.db.models import F, QuerySet
from django.db.models.functions import Greatest
from django.utils import timezone

from salon_invitations import tokens
from salon_invitations.models import EventOrder, SalonEvent

if TYPE_CHECKING:
    from salon_invitations.notifications import Event

logger = logging.getLogger("salon_invitations")

#: Undispatched events younger than this are left to the request that wrote them.
RELAY_GRACE = timedelta(seconds=30)
#: Events removed per statement by :func:`prune`.
PRUNE_BATCH = 5000


def json_safe(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` as it reads back from JSON, so live frames equal replayed ones."""
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder))


def hold_order(using: str | None = None) -> None:
    """Take the lock that orders event ids, until the current transaction ends (once per
    transaction; see the module docstring). Call it inside ``transaction.atomic()``."""
    using = using or router.db_for_write(SalonEvent)
    if not _order_held(using):
        _update_order_row(using, id=1)
        _order_taken(using)


def _order_held(using: str) -> bool:
    """Whether the current transaction holds the order lock already."""
    connection = connections[using]
    held = getattr(connection, "_salon_event_order", None)
    return (
        connection.in_atomic_block
        and held is not None
        and held[0] is connection.run_on_commit
        and tuple(connection.savepoint_ids)[: len(held[1])] == held[1]
    )


def _order_taken(using: str) -> None:
    # ``run_on_commit`` is replaced when the transaction ends, and a savepoint that is rolled
    # back drops the lock with it: both make the marker stale.
    connection = connections[using]
    if not connection.in_atomic_block:  # autocommit: the lock went with the statement
        return
    marker = (connection.run_on_commit, tuple(connection.savepoint_ids))
    connection._salon_event_order = marker  # type: ignore[attr-defined]


def _update_order_row(using: str, **values: Any) -> None:
    """Update the :class:`EventOrder` row (locking it), creating it first if it is missing."""
    rows = EventOrder.objects.using(using).filter(pk=1)
    if rows.update(**values):
        return
    try:
        with transaction.atomic(using=using):
            EventOrder.objects.using(using).create(pk=1)
    except IntegrityError:  # another transaction created it first
        pass
    rows.update(**values)


def newest_id() -> int:
    """The largest event id in the log (0 when it is empty): every event up to it has been
    committed, so "the events after it" is everything still to come."""
    return SalonEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def pruned_through() -> int:
    """The largest event id :func:`prune` deleted (0: none)."""
    return EventOrder.objects.filter(pk=1).values_list("pruned_through", flat=True).first() or 0


def transaction_cache(name: str, using: str | None = None) -> dict[Any, Any]:
    """A dict that lives as long as the current transaction (a fresh one in the next).

    For values that every part of one change may share (the recipients of its events). Like
    the order lock's marker, it is tied to the connection's list of on-commit hooks, which is
    replaced when a transaction ends; outside a transaction every call gets a new dict.
    """
    connection = connections[using or router.db_for_write(SalonEvent)]
    if not connection.in_atomic_block:
        return {}
    caches: tuple[list[Any], dict[str, dict[Any, Any]]] | None = getattr(
        connection, "_salon_transaction_caches", None
    )
    if caches is None or caches[0] is not connection.run_on_commit:
        caches = (connection.run_on_commit, {})
        connection._salon_transaction_caches = caches  # type: ignore[attr-defined]
    return caches[1].setdefault(name, {})


def record(event: Event, hook: Any = None) -> None:
    """Write ``event`` to the log in the current transaction; give it its ``id``.

    Inside :func:`batched` the row is written at the end of the block with the others
    (``hook`` is the event's on-commit hook: an event whose hook a rolled-back savepoint
    dropped is not written). When no configured backend needs the relay (``relayed``), the
    row is written as dispatched: nothing is left to mark after commit.
    """
    using = router.db_for_write(SalonEvent)
    batch = getattr(connections[using], "_salon_event_batch", None)
    if batch is not None:
        batch.append((event, hook))
        return
    with transaction.atomic(using=using, savepoint=False):
        _write([event], using)


def _write(pending: list[Event], using: str) -> None:
    """Insert the rows of ``pending`` (in one statement), after taking the order lock."""
    from salon_invitations.notifications import relay_needed

    dispatched = not relay_needed()
    now = timezone.now()
    rows = [
        SalonEvent(
            kind=event.kind,
            salon_id=event.instance.salon_id,
            user_id=event.instance.user_id,
            actor_id=getattr(event.actor, "pk", None),
            data=event.data,
            dispatched_at=now if dispatched else None,
            secret=tokens.seal(event.token) if event.token and not dispatched else "",
        )
        for event in pending
    ]
    if _order_held(using) or not _insert_taking_order(rows, using):
        hold_order(using)  # held already, or taken here
        if len(rows) == 1:
            rows[0].save(using=using, force_insert=True)
        else:
            SalonEvent.objects.using(using).bulk_create(rows)
    for event, row in zip(pending, rows, strict=True):
        event.id = row.id
        event.created_at = row.created_at
        event.dispatched = dispatched


def _insert_taking_order(rows: list[SalonEvent], using: str) -> bool:
    """On PostgreSQL, take the order lock and insert ``rows`` in one statement: the lock is
    then held for one round trip less, and the change costs one statement less. Returns
    ``False``, having done nothing, on other databases and when the order row is missing.

    The rows are selected from the ``UPDATE`` that takes the lock (a data-modifying ``WITH``),
    so no row exists, and no id is drawn from the sequence, before the lock is held.
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        return False
    fields = _event_fields()
    params = [
        [field.get_db_prep_save(field.pre_save(row, True), connection) for row in rows]
        for field in fields
    ]
    with connection.cursor() as cursor:
        cursor.execute(_insert_taking_order_sql(using), params)
        ids = [id_ for (id_,) in cursor.fetchall()]
    if not ids:  # no order row yet: nothing was inserted
        return False
    _order_taken(using)
    for row, id_ in zip(rows, ids, strict=True):
        row.id = id_
        row._state.adding, row._state.db = False, using
    return True


def _event_fields() -> list[Any]:
    """The columns an event row is inserted with (all but the id)."""
    return [field for field in SalonEvent._meta.concrete_fields if not field.primary_key]


@functools.cache
def _insert_taking_order_sql(using: str) -> str:
    """The statement of :func:`_insert_taking_order` for the database ``using`` (its text
    depends on the models only: written once per process)."""
    connection = connections[using]
    quote = connection.ops.quote_name
    fields = _event_fields()
    columns = ", ".join(quote(field.column) for field in fields)
    # Typed arrays, one per column (as Django's bulk insert on PostgreSQL): the statement has
    # the same text whatever the number of rows.
    arrays = ", ".join(
        f"(%s)::{str(field.db_type(connection)).split('(')[0]}[]" for field in fields
    )
    order, pk = quote(EventOrder._meta.db_table), quote(EventOrder._meta.pk.column)
    return (
        f"WITH taken AS (UPDATE {order} SET {pk} = 1 WHERE {pk} = 1 RETURNING 1) "
        f"INSERT INTO {quote(SalonEvent._meta.db_table)} ({columns}) "
        f"SELECT event.* FROM taken, UNNEST({arrays}) AS event "
        f"RETURNING {quote(SalonEvent._meta.pk.column)}"
    )


@contextmanager
def batched(using: str | None = None) -> Iterator[None]:
    """Inside a transaction: the events dispatched in the block are written to the log
    together, in one ``INSERT``, when it ends without an error (one statement instead of one
    per event; the order lock is taken then). Nested blocks join the outer one; on databases
    that cannot return the ids of a bulk insert, events are written one by one as usual."""
    using = using or router.db_for_write(SalonEvent)
    connection = connections[using]
    if (
        getattr(connection, "_salon_event_batch", None) is not None
        or not connection.features.can_return_rows_from_bulk_insert
    ):
        yield
        return
    batch: list[tuple[Event, Any]] = []
    connection._salon_event_batch = batch  # type: ignore[attr-defined]
    try:
        yield
    finally:
        connection._salon_event_batch = None  # type: ignore[attr-defined]
    hooks = {id(entry[1]) for entry in connection.run_on_commit}  # (savepoints, hook, robust)
    pending = [event for event, hook in batch if hook is None or id(hook) in hooks]
    if pending:
        _write(pending, using)


def mark_dispatched(ids: list[int]) -> None:
    """The backends ran for these events: the relay leaves them, and any sealed token goes."""
    if ids:
        SalonEvent.objects.filter(pk__in=ids).update(dispatched_at=timezone.now(), secret="")


def rebuild(row: SalonEvent) -> Event:
    """An :class:`~salon_invitations.notifications.Event` for a logged row, for the relay.

    The instance is read again (with the status the event recorded); one deleted since is
    rebuilt from the row's ids alone, which is enough for the channel layer and webhooks.
    """
    from salon_invitations.models import Invitation, get_membership_model
    from salon_invitations.notifications import Event

    model_name = row.kind.split(".", 1)[0]
    model: Any = Invitation if model_name == "invitation" else get_membership_model()
    represented = row.data.get(model_name) or {}
    instance: Any = model._default_manager.filter(pk=represented.get("id")).first()
    if instance is None:
        instance = model(pk=represented.get("id"), salon_id=row.salon_id, user_id=row.user_id)
        instance._state.adding = False
        instance._salon_event_gone = True
    elif model_name == "invitation" and "status" in represented:
        instance.status = represented["status"]
    extra = {key: value for key, value in row.data.items() if key != model_name}
    actor = None
    if row.actor_id is not None:
        actor = get_user_model()._default_manager.filter(pk=row.actor_id).first()
    return Event(
        row.kind,
        instance,
        actor=actor,
        token=tokens.unseal(row.secret) if row.secret else None,
        extra=extra,
        id=row.id,
        created_at=row.created_at,
        redelivery=True,
        _data=row.data,
    )


def undispatched(now: datetime | None = None) -> QuerySet[SalonEvent]:
    """Events whose backends have not run, past :data:`RELAY_GRACE`."""
    cutoff = (now or timezone.now()) - RELAY_GRACE
    return SalonEvent.objects.filter(dispatched_at__isnull=True, created_at__lte=cutoff)


def relay(*, now: datetime | None = None, limit: int = 500) -> int:
    """Run the backends again for events a crash or an outage left undispatched.

    At least once: an event whose backends ran but whose row could not be marked is sent
    again; e-mails and webhooks already recorded for it are not recorded twice, and WebSocket
    clients drop frames whose ``id`` they have seen. Safe to run in several processes at once
    (rows are claimed with ``SKIP LOCKED`` where the database has it). Returns how many events
    were relayed.
    """
    from salon_invitations.notifications import deliver

    with transaction.atomic():
        rows = list(undispatched(now).select_for_update(skip_locked=True).order_by("id")[:limit])
        for row in rows:
            try:
                event = rebuild(row)
            except Exception:
                logger.exception("Could not rebuild event %s for the relay", row.pk)
                continue
            deliver(event)
    return len(rows)


def prune(older_than: timedelta, *, now: datetime | None = None) -> int:
    """Delete events (with their deliveries and attempts) older than ``older_than``."""
    cutoff = (now or timezone.now()) - older_than
    removed = 0
    while True:
        ids = list(
            SalonEvent.objects.filter(created_at__lt=cutoff)
            .order_by("id")
            .values_list("id", flat=True)[:PRUNE_BATCH]
        )
        if not ids:
            return removed
        with transaction.atomic():
            SalonEvent.objects.filter(pk__in=ids).delete()
            using = router.db_for_write(SalonEvent)
            _update_order_row(using, pruned_through=Greatest(F("pruned_through"), ids[-1]))
        removed += len(ids)
