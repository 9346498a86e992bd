# ruff: noqa: RUF001 - the section uses the multiplication sign on purpose
"""The event log (SPEC §9): what writing it costs, replay, and the audit query at scale.

Self-contained (``OWN_DATABASE``; ``run.py`` runs it in a process of its own): creates the
PostgreSQL database ``BENCH_EVENTLOG_DB`` (default ``salon_bench_eventlog``, dropped at the
end unless ``BENCH_KEEP_DB=1``), seeds it with ``seed.seed_base`` and measures.

1. Write cost: ``POST /api/invitations`` (create) and ``PATCH …/approved`` (approve) in
   process with the Django test client, with the log and without it (``record`` and
   ``mark_dispatched`` of :mod:`salon_invitations.events` patched in this process only: the
   event gets a fake id). Requests of the two variants alternate (ABBA); CPU per request is
   this process's CPU plus that of its PostgreSQL backend (``/proc/<pid>/schedstat``).
2. Replay: a daphne process (PostgreSQL, Redis layer); the owner of a salon with 1,000
   events connects with ``?since=0``; time from connect to ``resumed``.
3. Audit query: ``visible_events(user, …).filter(id__gt=0).order_by("id")[:51]`` at each
   size of the log (rows written with ``generate_series``), for a manager, a plain user and
   staff, beside the query shape that keeps the manager's page flat (``audit_union``).

Environment: ``BENCH_EVENTLOG_SIZES`` (10000,100000,1000000), ``BENCH_EVENTLOG_REQUESTS``
(600 per variant and operation),
``BENCH_EVENTLOG_QUERIES`` (200 per user kind and size), PG*, ``BENCH_REDIS_URL``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import os
import re
import statistics
import time
from pathlib import Path
from typing import Any

import runner
from runner import Context, log, pg_admin

NAME = "eventlog"
OWN_DATABASE = True
DB_NAME = os.environ.get("BENCH_EVENTLOG_DB", "salon_bench_eventlog")
QUICK = runner.QUICK
DEFAULT_SIZES = "5000,20000,50000" if QUICK else "10000,100000,1000000"
SIZES = [int(x) for x in os.environ.get("BENCH_EVENTLOG_SIZES", DEFAULT_SIZES).split(",")]
REQUESTS = int(os.environ.get("BENCH_EVENTLOG_REQUESTS", "100" if QUICK else "600"))
WARM = 20  # requests per variant and operation before the measured ones
QUERIES = int(os.environ.get("BENCH_EVENTLOG_QUERIES", "200"))
REPLAY_EVENTS, REPLAY_RUNS = 1000, 5
MEASURED_ROWS = 100  # of each measured salon and user, at every size
PAGE = 51  # CursorPagination's page of 50 plus one to know there is a next page
EVENT_SALONS, EVENT_USERS = 1000, 10_000
CPU_TARGET = 1.15
FLAT_FACTOR = 1.5  # as report.py: p50 at the largest size at most this times the smallest


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def sql(statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


# 1. What writing the log costs a create and an approve ---------------------------------------


@contextlib.contextmanager
def without_log() -> Any:
    """This process only: no row, no lock, no "dispatched" update; the event gets a fake id."""
    from django.utils import timezone

    from salon_invitations import events

    fake = itertools.count(10**12)

    def record(event: Any) -> None:
        event.id, event.created_at = next(fake), timezone.now()

    saved = events.record, events.mark_dispatched
    events.record, events.mark_dispatched = record, lambda ids: None
    try:
        yield
    finally:
        events.record, events.mark_dispatched = saved


def backend_cpu_ns() -> tuple[int, int]:
    (pid,) = sql("SELECT pg_backend_pid()")[0]
    return pid, int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


def write_cost(layout: Any) -> dict[str, Any]:
    import seed
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from salon_invitations.models import SalonEvent

    salons = layout.write_salons()
    client = Client()
    creates = itertools.count()
    per_variant = WARM + REQUESTS + 5
    users = [layout.approvee_first + a for a in range(-(-2 * per_variant // len(salons)))]
    rows = seed.seed_pending(connection, users=users, salons=salons, role="member")
    rows.sort(key=lambda r: (r[1], r[2]))  # consecutive approvals in different salons
    approvals = iter([(inv, layout.owner_of(salon)) for inv, _u, salon in rows])

    def create() -> int:
        i = next(creates)
        salon = salons[i % len(salons)]
        writer = layout.writer_first + i // len(salons)
        return client.post(
            "/api/invitations", {"salon": salon, "role": "seller", "message": "Benchmark."},
            content_type="application/json", headers={"X-Bench-User": str(writer)},
        ).status_code  # fmt: skip

    def approve() -> int:
        inv, owner = next(approvals)
        return client.patch(
            f"/api/invitations/{inv}/approved", {}, content_type="application/json",
            headers={"X-Bench-User": str(owner)},
        ).status_code  # fmt: skip

    ops = {"create": (create, 201), "approve": (approve, 200)}
    variants = {"log": contextlib.nullcontext, "no log": without_log}
    out: dict[str, Any] = {"requests_per_variant": REQUESTS, "warm_up": WARM}
    for op, (call, expected) in ops.items():
        samples: dict[str, list[tuple[float, float, float]]] = {v: [] for v in variants}
        events0 = SalonEvent.objects.count()
        gc.collect()
        pid, _ns = backend_cpu_ns()
        schedstat = Path(f"/proc/{pid}/schedstat")
        # One request at a time, the variants in ABBA order, so that the machine's changing
        # load falls on both alike.
        for i in range(2 * (WARM + REQUESTS)):
            variant = list(variants)[(i + i // 2) % 2]
            with variants[variant]():
                db0 = int(schedstat.read_text().split()[0])
                cpu0, wall0 = time.process_time(), time.perf_counter()
                status = call()
                cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
                db = int(schedstat.read_text().split()[0]) - db0
            assert status == expected, (op, variant, status)
            if i >= 2 * WARM:
                samples[variant].append((cpu * 1000, db / 1e6, wall * 1000))
        assert backend_cpu_ns()[0] == pid, "the database connection changed"
        events = SalonEvent.objects.count() - events0
        entry: dict[str, Any] = {}
        for variant, rows in samples.items():
            with variants[variant](), CaptureQueriesContext(connection) as ctx:
                for _ in range(3):
                    call()
            total = [app + db for app, db, _w in rows]
            entry[variant] = {
                "cpu_ms": round(statistics.median(total), 3),
                "cpu_ms_mean": round(statistics.fmean(total), 3),
                "app_ms": round(statistics.median(r[0] for r in rows), 3),
                "db_ms": round(statistics.median(r[1] for r in rows), 3),
                "latency_p50_ms": round(statistics.median(r[2] for r in rows), 3),
                "queries_per_request": len(ctx.captured_queries) / 3,
                "events": events / (WARM + REQUESTS) if variant == "log" else 0,
                "sql": [q["sql"][:160] for q in ctx.captured_queries[: len(ctx) // 3]],
            }
        log_, bare = entry["log"], entry["no log"]
        quarter = REQUESTS // 4
        entry["ratio"] = {
            "cpu": round(log_["cpu_ms"] / bare["cpu_ms"], 3),
            "cpu_mean": round(log_["cpu_ms_mean"] / bare["cpu_ms_mean"], 3),
            "app_cpu": round(log_["app_ms"] / bare["app_ms"], 3),
            "db_cpu": round(log_["db_ms"] / bare["db_ms"], 3),
            "latency": round(log_["latency_p50_ms"] / bare["latency_p50_ms"], 3),
            # The median ratio in each quarter of the run: how steady the figure is.
            "cpu_by_quarter": [
                round(
                    statistics.median(a + d for a, d, _w in samples["log"][q : q + quarter])
                    / statistics.median(a + d for a, d, _w in samples["no log"][q : q + quarter]),
                    3,
                )
                for q in range(0, quarter * 4, quarter)
            ],
        }
        entry["met"] = entry["ratio"]["cpu"] <= CPU_TARGET
        bare_shapes = {re.sub(r"\d+", "N", q) for q in bare["sql"]}
        extra = [q for q in log_["sql"] if re.sub(r"\d+", "N", q) not in bare_shapes]
        entry["queries_added_by_log"] = extra
        out[op] = entry
    return out


# Rows of the log, fast -------------------------------------------------------------------------


def add_salon(owner_name: str) -> tuple[int, int]:
    """A salon of its own (outside the bulk) and its owner: (salon id, owner id)."""
    (owner,) = sql(
        "INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email,"
        " is_staff, is_active, date_joined) VALUES ('!', false, %s, '', '', '', false, true,"
        " now()) RETURNING id",
        [owner_name],
    )[0]
    (salon,) = sql(
        "INSERT INTO salon_invitations_salon (created, modified, name, owner_id)"
        " VALUES (now(), now(), %s, %s) RETURNING id",
        [owner_name, owner],
    )[0]
    sql(
        "INSERT INTO salon_invitations_membership (created, modified, user_id, salon_id, role)"
        " VALUES (now(), now(), %s, %s, 'superuser')",
        [owner, salon],
    )
    return salon, owner


def insert_events(template: dict[str, Any], lo: int, hi: int, *, salon0: int, nsalons: int,
                  user0: int, nusers: int) -> None:  # fmt: skip
    """Rows ``lo``..``hi - 1``: salon ``(7i + i // nusers) % nsalons``, user ``i % nusers``
    (every user in many salons, every salon's rows spread evenly over the ids), a real
    event's ``data`` with its own ids."""
    sql(
        """
        INSERT INTO salon_invitations_salonevent
            (kind, salon_id, user_id, actor_id, data, created_at, dispatched_at, secret)
        SELECT (ARRAY['invitation.created', 'invitation.approved', 'membership.created',
                      'invitation.rejected'])[1 + i %% 4],
               s, u, u,
               jsonb_set(jsonb_set(jsonb_set(%(tpl)s::jsonb, '{invitation,id}', to_jsonb(i)),
                                   '{invitation,salon}', to_jsonb(s)),
                         '{invitation,user}', to_jsonb(u)),
               c, c, ''
        FROM (SELECT i, %(s0)s + (7 * i + i / %(nu)s) %% %(ns)s AS s, %(u0)s + i %% %(nu)s AS u,
                     timestamptz '2024-01-01' + i * interval '10 seconds' AS c
              FROM generate_series(%(lo)s, %(hi)s - 1) AS i) g
        """,
        {"tpl": json.dumps(template), "s0": salon0, "ns": nsalons, "u0": user0,
         "nu": nusers, "lo": lo, "hi": hi},
    )  # fmt: skip


# 2. Replay of 1,000 events to one socket -----------------------------------------------------


def daphne() -> runner.Server:
    server = runner.Server(
        "daphne-eventlog",
        {"BENCH_DB_NAME": DB_NAME},
        "-m daphne -b 127.0.0.1 -p {port} --verbosity 0 benchproject.asgi:application",
    )
    server.start()
    return server


async def replay_once(url: str) -> tuple[float, int, dict[str, Any]]:
    import websockets

    start = time.perf_counter()
    async with websockets.connect(url, ping_interval=None, max_queue=None) as ws:
        frames = 0
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
            if frame.get("type") in ("resumed", "resync_required", "error"):
                return time.perf_counter() - start, frames, frame
            frames += 1


def replay(server: runner.Server, owner: int) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from rest_framework_simplejwt.tokens import AccessToken

    token = AccessToken.for_user(get_user_model()(id=owner))
    url = f"ws://127.0.0.1:{server.port}/ws/api/invitation_to_auto_salon/?token={token}&since=0"
    from salon_invitations.models import SalonEvent
    from salon_invitations.policies import get_policy

    # The consumer's query (SalonEventsConsumer._missed), for the plan.
    user = get_user_model().objects.get(pk=owner)
    events = SalonEvent.objects.filter(id__gt=0, kind__startswith="invitation.")
    events = get_policy().replayable_events(user, events).order_by("id")
    query = events.values_list("id", "kind", "data")[: REPLAY_EVENTS + 1]
    plan = explain(query)
    db_exec_ms, buffers = db_work(*query.query.sql_with_params())
    asyncio.run(replay_once(url))  # warm-up: imports, pooled connections
    times, cpu0 = [], server.cpu_seconds()
    for _ in range(REPLAY_RUNS):
        seconds, frames, last = asyncio.run(replay_once(url))
        assert frames == REPLAY_EVENTS and last["type"] == "resumed", (frames, last)
        times.append(seconds)
    return {
        "events": REPLAY_EVENTS,
        "median_ms": ms(statistics.median(times)),
        "runs_ms": [ms(t) for t in times],
        "server_cpu_ms_per_replay": round((server.cpu_seconds() - cpu0) * 1000 / REPLAY_RUNS, 1),
        "db_exec_ms": db_exec_ms,
        "buffers": buffers,
        "plan": plan,
    }


# 3. The audit query at 10k, 100k and 1M rows ------------------------------------------------


def audit_union(user: Any, since: int = 0) -> Any:
    """The candidate shape: one ``ORDER BY id LIMIT 51`` per branch (each an index range scan
    of ``(user_id, id)`` or ``(salon_id, id)``), then the first 51 ids of their union."""
    from salon_invitations.models import SalonEvent
    from salon_invitations.policies import get_policy

    policy = get_policy()
    base = SalonEvent.objects.filter(id__gt=since).order_by("id")
    if user.is_staff or user.is_superuser:
        return base[:PAGE]
    managed = policy._managed_salon_ids(user)
    branches = [base.filter(user=user)] + [base.filter(salon_id=s) for s in managed]
    ids = branches[0].values("id")[:PAGE]
    if len(branches) > 1:
        ids = ids.union(*(b.values("id")[:PAGE] for b in branches[1:]))
    return SalonEvent.objects.filter(id__in=ids).order_by("id")[:PAGE]


def audit_or(user: Any, salon: int | None = None, since: int = 0) -> Any:
    """The endpoint's query: the policy's OR (``salon=``: and that salon)."""
    from salon_invitations.models import SalonEvent
    from salon_invitations.policies import get_policy

    events = SalonEvent.objects.filter(id__gt=since)
    if salon is not None:
        events = events.filter(salon_id=salon)
    return get_policy().visible_events(user, events).order_by("id")[:PAGE]


def audit_salon_only(user: Any, salon: int, since: int = 0) -> Any:
    """``salon=`` of a salon ``user`` manages: that salon's rows are all visible, so the
    policy's OR can go (anything else: the OR as before)."""
    from salon_invitations.models import SalonEvent
    from salon_invitations.policies import get_policy

    if salon not in get_policy()._managed_salon_ids(user):
        return audit_or(user, salon, since)
    return SalonEvent.objects.filter(id__gt=since, salon_id=salon).order_by("id")[:PAGE]


def explain(qs: Any) -> list[str]:
    return explain_sql(*qs.query.sql_with_params())


def explain_sql(statement: str, params: Any = None) -> list[str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
        return [row[0] for row in cursor.fetchall()]


def db_work(statement: str, params: Any = None, runs: int = 21) -> tuple[float, int]:
    """Median execution ms of ``runs`` ``EXPLAIN ANALYZE`` and the shared buffers the plan
    touches: the database's own work, far less sensitive to the machine's load than p50."""
    from django.db import connection

    times, buffers = [], 0
    with connection.cursor() as cursor:
        for _ in range(runs):
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, params)
            (plan,) = cursor.fetchone()[0]
            times.append(plan["Execution Time"])
            buffers = plan["Plan"]["Shared Hit Blocks"] + plan["Plan"]["Shared Read Blocks"]
    return round(statistics.median(times), 3), buffers


def audit(users: dict[str, list[Any]], salon_of: dict[int, int]) -> dict[str, Any]:
    """p50/p95 of the first page (``since=0``) per user kind: the ORM query, the candidate
    shape for managers, and the endpoint itself through the test client."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()

    def get(query: str = "") -> Any:
        def call(user: Any) -> list[Any]:
            path = "/api/salon_events?since=0" + query.format(salon=salon_of.get(user.pk))
            response = client.get(path, headers={"X-Bench-User": str(user.pk)})
            assert response.status_code == 200, response.content[:300]
            return response.json()["results"]

        return call

    series: dict[str, tuple[str, Any]] = {
        "manager, ORM": ("manager", lambda u: list(audit_or(u))),
        "manager, ORM, per-branch shape": ("manager", lambda u: list(audit_union(u))),
        "user, ORM": ("user", lambda u: list(audit_or(u))),
        "staff, ORM": ("staff", lambda u: list(audit_or(u))),
        "manager, ORM ?salon=": ("manager", lambda u: list(audit_or(u, salon_of[u.pk]))),
        "manager, ORM ?salon=, salon only": (
            "manager",
            lambda u: list(audit_salon_only(u, salon_of[u.pk])),
        ),
        "manager, GET": ("manager", get()),
        "manager, GET ?salon=": ("manager", get("&salon={salon}")),
        "user, GET": ("user", get()),
        "staff, GET": ("staff", get()),
    }
    for _ in range(3):  # warm the caches; the candidate shape must give the same page
        for user in users["manager"] + users["user"] + users["staff"]:
            assert [e.id for e in audit_or(user)] == [e.id for e in audit_union(user)]
            if user.pk in salon_of:
                salon = salon_of[user.pk]
                assert list(audit_or(user, salon)) == list(audit_salon_only(user, salon))
    names = list(series)
    times: dict[str, list[float]] = {name: [] for name in names}
    counts: dict[str, set[int]] = {name: set() for name in names}
    for i in range(QUERIES):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            kind, call = series[name]
            user = users[kind][i % len(users[kind])]
            t = time.perf_counter()
            rows = call(user)
            times[name].append(time.perf_counter() - t)
            counts[name].add(len(rows))
    out: dict[str, Any] = {}
    for name in names:
        kind, call = series[name]
        with CaptureQueriesContext(connection) as ctx:
            call(users[kind][0])
        (statement,) = [q["sql"] for q in ctx.captured_queries if "salonevent" in q["sql"]][-1:]
        out[name] = {
            "p50_ms": ms(statistics.median(times[name])),
            "p95_ms": ms(pct(times[name], 0.95)),
            "rows_returned": sorted(counts[name]),
            "queries": len(ctx.captured_queries),
            "plan": explain_sql(statement),
        }
        out[name]["db_exec_ms"], out[name]["buffers"] = db_work(statement)
    return out


# The whole scenario ---------------------------------------------------------------------------


def measure(results: dict[str, Any]) -> None:
    os.environ.update(DJANGO_SETTINGS_MODULE="benchproject.settings", BENCH_NO_POOL="1",
                      BENCH_DB_NAME=DB_NAME)  # fmt: skip
    import django

    django.setup()
    import seed
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    from salon_invitations.conf import app_settings
    from salon_invitations.models import SalonEvent

    call_command("migrate", verbosity=0)
    per_variant = WARM + REQUESTS + 10
    layout = seed.seed_base(
        connection,
        writers=seed.writers_needed(2 * per_variant),
        approvees=seed.approvees_needed(2 * per_variant),
        contention_rounds=0,
    )
    log(f"write cost: {REQUESTS} requests per variant and operation, ABBA")
    results["write"] = write_cost(layout)
    for op in ("create", "approve"):
        w = results["write"][op]
        log(f"{op}: {w['log']['cpu_ms']} vs {w['no log']['cpu_ms']} CPU ms, ratio {w['ratio']}")

    assert app_settings.REPLAY_LIMIT >= REPLAY_EVENTS, "REPLAY_LIMIT below 1,000"
    template = SalonEvent.objects.filter(kind="invitation.created").latest("id").data
    replay_salon, replay_owner = add_salon("replay-owner")
    insert_events(template, 0, REPLAY_EVENTS, salon0=replay_salon, nsalons=1,
                  user0=layout.pool_first + EVENT_USERS, nusers=REPLAY_EVENTS)  # fmt: skip
    sql(
        "UPDATE salon_invitations_salonevent SET kind = 'invitation.created' WHERE salon_id = %s",
        [replay_salon],
    )
    # The measured readers' own rows, first in the log, so that their page is full at every
    # size (as seed.py's LIST_SALON_ROWS): 100 in each measured salon, 100 about each
    # measured user; the bulk adds its share on top.
    insert_events(template, 0, 10 * MEASURED_ROWS, salon0=layout.salon(0), nsalons=10,
                  user0=layout.pool_first + EVENT_USERS + REPLAY_EVENTS, nusers=1000)  # fmt: skip
    insert_events(template, 0, 10 * MEASURED_ROWS, salon0=layout.salon(500), nsalons=100,
                  user0=layout.pool_first, nusers=10)  # fmt: skip
    User = get_user_model()
    staff = User.objects.get(pk=layout.requester)
    staff.is_staff = True
    staff.save(update_fields=["is_staff"])
    users = {
        "manager": [User.objects.get(pk=layout.owner_of(layout.salon(k))) for k in range(10)],
        "user": [User.objects.get(pk=layout.pool_first + k) for k in range(10)],
        "staff": [staff],
    }
    salon_of = {layout.owner_of(layout.salon(k)): layout.salon(k) for k in range(10)}
    results["sizes"], done = {}, 0
    server = daphne()
    try:
        for size in SIZES:
            t = time.perf_counter()
            for lo in range(done, size, 250_000):
                insert_events(template, lo, min(size, lo + 250_000),
                              salon0=layout.salon_first, nsalons=EVENT_SALONS,
                              user0=layout.pool_first, nusers=EVENT_USERS)  # fmt: skip
            done = size
            sql("VACUUM ANALYZE salon_invitations_salonevent")
            rows = sql("SELECT count(*) FROM salon_invitations_salonevent")[0][0]
            log(f"[{size}] {rows} event rows (seeded in {time.perf_counter() - t:.1f}s); audit")
            entry = {"rows": rows, "audit": audit(users, salon_of)}
            log(f"[{size}] " + ", ".join(f"{k} {v['p50_ms']}" for k, v in entry["audit"].items()))
            entry["replay"] = replay(server, replay_owner)
            log(f"[{size}] replay of {REPLAY_EVENTS}: {entry['replay']['median_ms']} ms")
            results["sizes"][str(size)] = entry
    finally:
        server.stop()
    first, last = results["sizes"][str(SIZES[0])], results["sizes"][str(SIZES[-1])]
    results["growth"] = {
        key: {
            field: round(last["audit"][key][field] / max(first["audit"][key][field], 0.001), 2)
            for field in ("p50_ms", "db_exec_ms", "buffers")
        }
        for key in first["audit"]
    }


# The page's section ------------------------------------------------------------------------


def plan_summary(plan: list[str]) -> str:
    """The scan nodes of a plan and its execution time, on one line."""
    nodes = [line.strip().split("  (")[0].lstrip("-> ") for line in plan
             if "Scan" in line or "BitmapOr" in line or "Sort  (" in line]  # fmt: skip
    timing = [line.split(":")[1].strip() for line in plan if line.startswith("Execution Time")]
    return "; ".join(dict.fromkeys(nodes)) + (f" ({timing[0]})" if timing else "")


def growth_cell(entries: list[dict[str, Any]]) -> str:
    """Largest/smallest of the database's execution time and buffers (p50 follows the load
    of the machine, which changes between sizes). "flat": the buffers within FLAT_FACTOR and
    the execution time within FLAT_FACTOR or within 0.1 ms (timer noise below that)."""
    first, last = entries[0], entries[-1]
    db = last["db_exec_ms"] / max(first["db_exec_ms"], 0.001)
    buffers = last["buffers"] / max(first["buffers"], 1)
    steady = db <= FLAT_FACTOR or last["db_exec_ms"] - first["db_exec_ms"] < 0.1
    flat = "flat" if buffers <= FLAT_FACTOR and steady else "**grows**"
    return f"DB {db:.1f}×, buffers {buffers:.1f}× ({flat})"


def summary(results: dict[str, Any]) -> list[str]:
    return []


def findings(results: dict[str, Any]) -> list[str]:
    return []


def render(results: dict[str, Any]) -> str:
    results = results.get("eventlog") or {}
    if not results:
        return ""
    w = results["write"]
    sizes = list(results["sizes"])
    first, last = results["sizes"][sizes[0]], results["sizes"][sizes[-1]]
    lines = [
        "## Event log",
        "",
        f"Measured {results['date']} on {results['nproc']} cores shared with other work "
        f"(load {results['load_before'][0]:.1f} before, {results['load_after'][0]:.1f} after) "
        "by `bench/scenarios/eventlog.py`. CPU per request is the Django process's CPU plus its "
        "PostgreSQL backend's (`/proc/<pid>/schedstat`), in process with the test client; "
        "absolute times are this slow, shared machine's, the ratios are what to read.",
        "",
        f"### Writing the log: create and approve ({w['requests_per_variant']} requests per "
        "variant, one at a time, the variants alternating ABBA)",
        "",
        '"Without the log" patches `events.record` and `events.mark_dispatched` in the '
        'benchmark process (no row, no `EventOrder` lock, no "dispatched" update; the '
        "event gets a fake id). Everything else, the Redis channel layer included, runs in "
        "both.",
        "",
        "| | CPU ms/request (median) | Python | PostgreSQL | p50 ms | queries/request "
        "| events/request |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for op in ("create", "approve"):
        for variant in ("log", "no log"):
            e = w[op][variant]
            lines.append(
                f"| {op}, {'with' if variant == 'log' else 'without'} the log | {e['cpu_ms']:.1f} "
                f"| {e['app_ms']:.1f} | {e['db_ms']:.1f} | {e['latency_p50_ms']:.1f} "
                f"| {e['queries_per_request']:g} | {e['events']:g} |"
            )
    lines.append("")
    for op in ("create", "approve"):
        r = w[op]["ratio"]
        lines.append(
            f"- {op}: CPU with/without **{r['cpu']:.3f}×** (means {r['cpu_mean']:.3f}×; by "
            f"quarter of the run {', '.join(f'{q:.2f}' for q in r['cpu_by_quarter'])}; "
            f"Python {r['app_cpu']:.3f}×, PostgreSQL "
            f"{r['db_cpu']:.3f}×) — target ≤ {CPU_TARGET}×: "
            f"{'**met**' if w[op]['met'] else '**missed**'}. Added statements: "
            + ", ".join(
                f"`{q.split(' WHERE')[0].split(' (')[0][:60]}`"
                for q in w[op]["queries_added_by_log"]
            )
            + "."
        )
    lines += [
        "",
        "### Audit list and replay by size of the log",
        "",
        "First page (`since=0`, 50 rows + 1) per reader; the rows are spread over "
        f"{EVENT_SALONS:,} salons and {EVENT_USERS:,} users, and the measured salons and "
        f"users have {MEASURED_ROWS} rows of their own at every size (full pages). "
        "p50 / p95 in ms, "
        f"{results['config']['queries']} queries per series, series interleaved. Replay: a "
        f"salon owner's socket with `?since=0` and {REPLAY_EVENTS:,} events to send, "
        f"connect → `resumed`, daphne, median of {REPLAY_RUNS}. Each cell: p50 / p95 ms "
        "in process (ORM or test client); DB = median execution ms of 21 `EXPLAIN ANALYZE` of "
        "the statement and the shared buffers it touches; rows on the page. The machine's "
        "load changes between sizes, so flatness is judged on DB time and buffers (flat: "
        f"buffers within {FLAT_FACTOR}×, DB time within {FLAT_FACTOR}× or 0.1 ms).",
        "",
        "*per-branch shape*: the first 51 ids of each branch (`user_id = me`, and "
        "`salon_id = s` for each managed salon) by `ORDER BY id LIMIT 51` on the `(user, id)` "
        "and `(salon, id)` indexes, then the rows of the first 51 of their union. *salon "
        "only*: with `salon=<a salon the reader manages>`, `salon_id = s` without the "
        "policy's OR (every row of it is visible anyway).",
        "",
        "| | " + " | ".join(f"{int(s):,} rows" for s in sizes) + " | largest/smallest |",
        "|---|" + "---:|" * (len(sizes) + 1),
    ]
    for name in first["audit"]:
        entries = [results["sizes"][s]["audit"][name] for s in sizes]
        cells = [
            f"{e['p50_ms']:.1f} / {e['p95_ms']:.1f} · DB {e['db_exec_ms']:.2f}, "
            f"{e['buffers']:,} buf · {max(e['rows_returned'])} rows"
            for e in entries
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {growth_cell(entries)} |")
    entries = [results["sizes"][s]["replay"] for s in sizes]
    cells = [
        f"{e['median_ms']:.0f} ms · server CPU {e['server_cpu_ms_per_replay']:.0f} ms · "
        f"DB {e['db_exec_ms']:.2f}, {e['buffers']:,} buf"
        for e in entries
    ]
    lines.append(
        f"| replay of {REPLAY_EVENTS:,} events | "
        + " | ".join(cells)
        + f" | {growth_cell(entries)} |"
    )
    lines += ["", f"Plans at {int(sizes[-1]):,} rows:", ""]
    for name, entry in last["audit"].items():
        lines.append(f"- {name}: {plan_summary(entry['plan'])}")
    lines.append(f"- replay: {plan_summary(last['replay']['plan'])}")
    if results.get("notes"):
        lines += ["", *results["notes"]]
    return "\n".join(lines) + "\n"


def run(ctx: Context) -> dict[str, Any]:
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "nproc": os.cpu_count(),
        "load_before": os.getloadavg(),
        "config": {
            "sizes": SIZES,
            "requests": REQUESTS,
            "queries": QUERIES,
            "replay_runs": REPLAY_RUNS,
            "target_cpu_ratio": CPU_TARGET,
        },
    }
    pg_admin(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
    pg_admin(f'CREATE DATABASE "{DB_NAME}"')
    try:
        measure(results)
    finally:
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        if not os.environ.get("BENCH_KEEP_DB"):
            pg_admin(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
    results["load_after"] = os.getloadavg()
    return {"eventlog": results}
