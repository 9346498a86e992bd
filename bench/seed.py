"""Seeding of the benchmark database with set-based SQL (``generate_series``), fast enough for
a million invitations in well under a minute.

The layout (who owns which salon, which rows each benchmark uses) is fixed by :class:`Layout`
and built once; later steps only add rows. Row ``i`` of the bulk data goes to salon
``bulk[i % len(bulk)]`` and pool user ``(i // len(bulk)) % POOL_USERS``, so (user, salon) pairs
never repeat and the one-pending-per-pair constraint holds at any size.

All ids are read back from the database (and checked to be contiguous where the SQL relies on
it) rather than assumed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

SALONS = 1000
POOL_USERS = 20_000
LIST_SALON_ROWS = 100  # invitations of the measured manager's salon, at every table size
REQUESTER_ROWS = 100  # invitations of the measured requester, one per salon
FANOUT_SALONS = 100
FANOUT_REQUESTERS_PER_SALON = 8  # + owner + admin = 10 connections per salon
WRITE_SALONS = 100
CONTENDERS = 50

INSERT_INVITATIONS = """INSERT INTO salon_invitations_invitation
    (created, modified, status, status_changed, user_id, salon_id, role, message, reason,
     decided_by_id, decided_at, expires_at)"""
# Invitations i = lo .. hi - 1, created ``step`` apart from 2024-01-01 (c), the status (st)
# cycling by ``i * spread``; user, salon, role, reason, decider and decision time are SQL of i,
# st, c and the parameters.
GENERATED = f"""{INSERT_INVITATIONS}
    SELECT c, c, st, c, {{user}}, {{salon}}, {{role}}, 'Hello, I would like to join your salon.',
           {{reason}}, {{decided_by}}, CASE WHEN st = 'pending' THEN NULL ELSE {{decided_at}} END,
           NULL
    FROM (SELECT i, timestamptz '2024-01-01' + i * interval '{{step}}' AS c,
                 (ARRAY['pending','pending','rejected','rejected','rejected','rejected',
                        'cancelled','cancelled','expired','expired'])[1 + (i * {{spread}}) %% 10]
                 AS st
          FROM generate_series(%(lo)s, %(hi)s - 1) AS i) s"""
ROLES = "(ARRAY['seller','mechanic','admin'])[1 + i %% 3]"


def insert_generated(cursor: Any, lo: int, hi: int, params: dict[str, Any], **sql: str) -> None:
    """Invitations ``lo`` to ``hi - 1`` of ``GENERATED`` with its blanks ``sql``."""
    sql = {"role": ROLES, "reason": "''", "decided_at": "c", **sql}
    cursor.execute(GENERATED.format(**sql), {**params, "lo": lo, "hi": hi})


@dataclass
class Layout:
    owner_first: int = 0
    salon_first: int = 0
    pool_first: int = 0
    requester: int = 0
    writer_first: int = 0
    writers: int = 0
    approvee_first: int = 0
    approvees: int = 0
    admin_first: int = 0
    fan_first: int = 0
    contender_first: int = 0
    contention_rounds: int = 0
    bulk_rows: int = 0  # bulk invitations inserted so far
    extra: dict[str, Any] = field(default_factory=dict)

    def salon(self, index: int) -> int:
        """The id of the salon of index ``index`` (0-based)."""
        return self.salon_first + index

    def owner_of(self, salon_id: int) -> int:
        return self.owner_first + (salon_id - self.salon_first)

    @property
    def list_manager(self) -> int:
        """The owner of the measured salon, the first."""
        return self.owner_of(self.salon(0))

    def same_salon(self) -> int:
        return self.salon(600)

    def contention_salon(self, round_index: int) -> int:
        return self.salon(700 + round_index)

    def fanout_salons(self) -> list[int]:
        return [self.salon(800 + k) for k in range(FANOUT_SALONS)]

    def write_salons(self) -> list[int]:
        return [self.salon(900 + k) for k in range(WRITE_SALONS)]

    def fanout_admin(self, k: int) -> int:
        return self.admin_first + k

    def fanout_requester(self, k: int, j: int) -> int:
        return self.fan_first + k * FANOUT_REQUESTERS_PER_SALON + j


def add_users(cursor: Any, prefix: str, count: int) -> int:
    """Insert ``count`` users named ``prefix<n>``; return the first id (ids are contiguous)."""
    cursor.execute(
        """
        INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email,
                               is_staff, is_active, date_joined)
        SELECT '!', false, %s || g, '', '', %s || g || '@bench.invalid', false, true, now()
        FROM generate_series(0, %s - 1) AS g
        RETURNING id
        """,
        [prefix, prefix, count],
    )
    return _contiguous(cursor, count)


def _contiguous(cursor: Any, count: int) -> int:
    """The first of the ``count`` ids the statement returned, checked to be contiguous."""
    ids = sorted(row[0] for row in cursor.fetchall())
    assert ids[-1] - ids[0] + 1 == count, "ids not contiguous"
    return ids[0]


def seed_base(connection: Any, *, writers: int, approvees: int, contention_rounds: int) -> Layout:
    """Users, salons with their owners, the fan-out admins, the measured manager's and
    requester's invitations. No bulk rows yet."""
    layout = Layout(writers=writers, approvees=approvees, contention_rounds=contention_rounds)
    with connection.cursor() as cursor:
        layout.owner_first = add_users(cursor, "owner", SALONS)
        layout.pool_first = add_users(cursor, "pool", POOL_USERS)
        layout.requester = add_users(cursor, "requester", 1)
        layout.writer_first = add_users(cursor, "writer", writers)
        layout.approvee_first = add_users(cursor, "approvee", approvees)
        layout.admin_first = add_users(cursor, "admin", FANOUT_SALONS)
        layout.fan_first = add_users(cursor, "fan", FANOUT_SALONS * FANOUT_REQUESTERS_PER_SALON)
        layout.contender_first = add_users(cursor, "contender", CONTENDERS)

        cursor.execute(
            """
            INSERT INTO salon_invitations_salon (created, modified, name, owner_id)
            SELECT now(), now(), 'Salon ' || g, %s + g FROM generate_series(0, %s - 1) AS g
            RETURNING id
            """,
            [layout.owner_first, SALONS],
        )
        layout.salon_first = _contiguous(cursor, SALONS)
        # The owners (the role that manages everything) of every salon, and one admin (also a
        # manager) in each fan-out salon.
        for role, first_user, first_salon, count in (
            ("superuser", layout.owner_first, layout.salon_first, SALONS),
            ("admin", layout.admin_first, layout.fanout_salons()[0], FANOUT_SALONS),
        ):
            cursor.execute(
                """
                INSERT INTO salon_invitations_membership (created, modified, user_id, salon_id,
                                                          role)
                SELECT now(), now(), %s + g, %s + g, %s FROM generate_series(0, %s - 1) g
                """,
                [first_user, first_salon, role, count],
            )
        # The measured manager's salon: LIST_SALON_ROWS invitations by distinct pool users,
        # spread over the same period as the bulk rows.
        manager = {"pool": layout.pool_first, "salon": layout.salon(0)}
        insert_generated(
            cursor, 0, LIST_SALON_ROWS, {**manager, "owner": layout.list_manager},
            step="3 hours", spread="7", user="%(pool)s + i", salon="%(salon)s",
            decided_by="CASE WHEN st = 'pending' THEN NULL ELSE %(owner)s END",
        )  # fmt: skip
        # The measured requester: one invitation in each of REQUESTER_ROWS salons.
        requester = {"user": layout.requester, "salon": layout.salon(1)}
        insert_generated(
            cursor, 0, REQUESTER_ROWS, requester, step="3 hours", spread="3",
            user="%(user)s", salon="%(salon)s + i", role="'seller'", decided_by="NULL",
        )  # fmt: skip
    return layout


def grow_bulk(connection: Any, layout: Layout, total_rows: int, batch: int = 250_000) -> float:
    """Add bulk invitations until the table holds about ``total_rows``; return seconds taken.

    Foreign-key triggers are skipped for the load (``session_replication_role = replica``):
    the rows are consistent by construction. Then ``ANALYZE``.
    """
    start = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM salon_invitations_invitation")
        present = cursor.fetchone()[0]
        target_bulk = layout.bulk_rows + max(0, total_rows - present)
        first_salon, nsalons = layout.salon(1), SALONS - 1  # all but the measured salon
        cursor.execute("SET session_replication_role = replica")
        try:
            params = {"pool": layout.pool_first, "ns": nsalons, "nu": POOL_USERS}
            params.update(s0=first_salon, o0=layout.owner_of(first_salon))
            rejected = "CASE WHEN st = 'rejected' THEN {} ELSE {} END"
            for lo in range(layout.bulk_rows, target_bulk, batch):
                insert_generated(
                    cursor, lo, min(target_bulk, lo + batch), params, step="10 seconds",
                    spread="7", user="%(pool)s + ((i / %(ns)s) %% %(nu)s)",
                    salon="%(s0)s + (i %% %(ns)s)", decided_at="c + interval '1 hour'",
                    reason=rejected.format("'Not now, sorry.'", "''"),
                    decided_by=rejected.format("%(o0)s + (i %% %(ns)s)", "NULL"),
                )  # fmt: skip
            layout.bulk_rows = target_bulk
        finally:
            cursor.execute("SET session_replication_role = DEFAULT")
        cursor.execute("ANALYZE")
    return time.perf_counter() - start


def seed_pending(
    connection: Any, *, users: list[int], salons: list[int], role: str, message: str = ""
) -> list[tuple[int, int, int]]:
    """One pending invitation for every (user, salon) pair. Returns ``(id, user_id,
    salon_id)`` sorted by id."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            {INSERT_INVITATIONS}
            SELECT now(), now(), 'pending', now(), u, s, %s, %s, '', NULL, NULL, NULL
            FROM unnest(%s::bigint[]) WITH ORDINALITY AS uu(u, un)
            CROSS JOIN unnest(%s::bigint[]) WITH ORDINALITY AS ss(s, sn)
            ORDER BY un, sn
            RETURNING id, user_id, salon_id
            """,
            [role, message, users, salons],
        )
        return sorted(cursor.fetchall())


def seed_invites(connection: Any, rows: list[tuple[str, int, str]], *, owner_of: Any) -> None:
    """Pending invites ``(email, salon_id, token digest)`` from each salon's owner."""
    with connection.cursor() as cursor:
        cursor.executemany(
            """
            INSERT INTO salon_invitations_invitation
                (created, modified, status, status_changed, direction, email, user_id,
                 salon_id, role, requested_role, message, reason, invited_by_id, token_digest,
                 sent_at, decided_by_id, decided_at, expires_at)
            VALUES (now(), now(), 'pending', now(), 'invite', %s, NULL, %s, 'member', 'member',
                    '', '', %s, %s, now(), NULL, NULL, now() + interval '7 days')
            """,
            [(email, salon, owner_of(salon), digest) for email, salon, digest in rows],
        )


def table_size(connection: Any) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM salon_invitations_invitation")
        return int(cursor.fetchone()[0])


def per_write_salon(total: int) -> int:
    """The users each write salon needs for ``total`` creates or approvals."""
    return math.ceil(total / WRITE_SALONS) + 2
