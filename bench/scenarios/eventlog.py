"""The event log (SPEC §9) in a database of its own: what writing it costs a create and an
approve, the replay of 1,000 events to one socket (daphne), the audit query at 10k-1M rows.
The method is described on the page (``bench/templates/eventlog.md``)."""

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
from unittest import mock

import loadgen
import runner
import seed
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from runner import QUICK, Context, explain, fill, fill_rows, log, sql

NAME = "eventlog"
OWN_DATABASE = True
DB_NAME = runner.env("BENCH_EVENTLOG_DB", f"{runner.DB_NAME}_eventlog")
SIZES = sorted(  # the log grows from one to the next
    runner.env_list("BENCH_EVENTLOG_SIZES", "5000,20000,50000" if QUICK else "10000,100000,1000000")
)
REQUESTS = runner.env("BENCH_EVENTLOG_REQUESTS", 100 if QUICK else 600)
WARM = 20  # requests per variant and operation before the measured ones
QUERIES = runner.env("BENCH_EVENTLOG_QUERIES", 200)
REPLAY_EVENTS, REPLAY_RUNS = 1000, 5
EXPLAIN_RUNS = 21  # EXPLAIN ANALYZE of a statement, for the median of its database time
MEASURED_ROWS = 100  # of each measured salon and user, at every size
PAGE = 51  # CursorPagination's page of 50 plus one to know there is a next page
EVENT_SALONS, EVENT_USERS = 1000, 10_000
CPU_TARGET = 1.15
FLAT_FACTOR = 1.5  # largest/smallest of DB time and buffers at most this: "flat"
TEMPLATES = runner.templates(NAME)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def median3(values: Any) -> float:
    return round(statistics.median(values), 3)


def run(ctx: Context) -> dict[str, Any]:
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "nproc": os.cpu_count(),
        "load_before": os.getloadavg(),
        "config": {"queries": QUERIES, "replay_runs": REPLAY_RUNS},
    }
    try:
        runner.django_setup(DB_NAME)
        users = seed.per_write_salon(2 * (WARM + REQUESTS + 10))
        layout = seed.seed_base(connection, writers=users, approvees=users, contention_rounds=0)
        log(f"write cost: {REQUESTS} requests per variant and operation, ABBA")
        results["write"] = write_cost(layout)
        results["sizes"] = by_size(layout)
    finally:
        runner.close_database(DB_NAME)
    return {"eventlog": {**results, "load_after": os.getloadavg()}}


# 1. What writing the log costs a create and an approve ----------------------------------------
def without_log() -> Any:
    """This process only: no row, no lock, no "dispatched" update; the event gets a fake id."""
    from salon_invitations import events

    fake = itertools.count(10**12)

    def record(event: Any, hook: Any = None) -> None:
        event.id, event.created_at = next(fake), timezone.now()

    return mock.patch.multiple(events, record=record, mark_dispatched=lambda ids: None)


VARIANTS = {"log": contextlib.nullcontext, "no log": without_log}
MEDIANS = ("cpu_ms", "app_ms", "db_ms", "latency_p50_ms")  # of each variant's samples


def write_cost(layout: Any) -> dict[str, Any]:
    """Creates and approvals in process, one at a time, with and without the log: each
    variant's medians and statements (of three more calls), the ratios."""
    from salon_invitations.models import SalonEvent

    salons, client, creates = layout.write_salons(), Client(), itertools.count()
    per_salon = -(-2 * (WARM + REQUESTS + 5) // len(salons))
    users = [layout.approvee_first + a for a in range(per_salon)]
    rows = seed.seed_pending(connection, users=users, salons=salons, role="member")
    rows.sort(key=lambda r: (r[1], r[2]))  # consecutive approvals in different salons
    approvals = iter([(inv, layout.owner_of(salon)) for inv, _u, salon in rows])

    def request(method: str, path: str, user: int, body: dict[str, Any]) -> int:
        call = getattr(client, method)
        headers = {"X-Bench-User": str(user)}
        return call(path, body, content_type="application/json", headers=headers).status_code

    def create() -> int:
        i = next(creates)
        body = {"salon": salons[i % len(salons)], "role": "seller", "message": "Benchmark."}
        return request("post", "/api/invitations", layout.writer_first + i // len(salons), body)

    def approve() -> int:
        inv, owner = next(approvals)
        return request("patch", f"/api/invitations/{inv}/approved", owner, {})

    out: dict[str, Any] = {"requests_per_variant": REQUESTS}
    for op, call, expected in (("create", create, 201), ("approve", approve, 200)):
        samples: dict[str, list[tuple[float, ...]]] = {v: [] for v in VARIANTS}
        events0 = SalonEvent.objects.count()
        gc.collect()
        (pid,) = sql("SELECT pg_backend_pid()")[0]
        schedstat = Path(f"/proc/{pid}/schedstat")  # the backend's CPU time (ns) first
        # One request at a time, the variants in ABBA order, so that the machine's changing
        # load falls on both alike.
        for i in range(2 * (WARM + REQUESTS)):
            variant = list(VARIANTS)[(i + i // 2) % 2]
            with VARIANTS[variant]():
                db0 = int(schedstat.read_text().split()[0])
                cpu0, wall0 = time.process_time(), time.perf_counter()
                status = call()
                cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
                db = int(schedstat.read_text().split()[0]) - db0
            assert status == expected, (op, variant, status)
            if i >= 2 * WARM:  # the columns of MEDIANS
                samples[variant].append((cpu * 1000 + db / 1e6, cpu * 1000, db / 1e6, wall * 1000))
        assert sql("SELECT pg_backend_pid()")[0][0] == pid, "the database connection changed"
        events = (SalonEvent.objects.count() - events0) / (WARM + REQUESTS)
        w, sqls = {}, {}
        for variant, measured in samples.items():
            with VARIANTS[variant](), CaptureQueriesContext(connection) as queries:
                for _ in range(3):
                    call()
            sqls[variant] = [q["sql"][:160] for q in queries.captured_queries[: len(queries) // 3]]
            w[variant] = dict(zip(MEDIANS, map(median3, zip(*measured, strict=True)), strict=True))
            w[variant]["queries_per_request"] = len(queries) / 3
            w[variant]["events"] = events if variant == "log" else 0
        r = runner.ratios(w["log"], w["no log"], cpu="cpu_ms", app_cpu="app_ms", db_cpu="db_ms")
        bare = {re.sub(r"\d+", "N", q) for q in sqls["no log"]}
        w.update(ratio=r, met=r["cpu"] <= CPU_TARGET)
        w["queries_added_by_log"] = [q for q in sqls["log"] if re.sub(r"\d+", "N", q) not in bare]
        out[op] = w
        log(f"{op}: {w['log']['cpu_ms']} vs {w['no log']['cpu_ms']} CPU ms, ratio {w['ratio']}")
    return out


# 2. The log at each size: the audit query and the replay ----------------------------------------
def by_size(layout: Any) -> dict[str, Any]:
    """Grow the log to each of ``SIZES`` rows; measure the audit query and the replay."""
    from salon_invitations.conf import app_settings
    from salon_invitations.models import SalonEvent

    assert app_settings.REPLAY_LIMIT >= REPLAY_EVENTS, "REPLAY_LIMIT below 1,000"
    template = SalonEvent.objects.filter(kind="invitation.created").latest("id").data
    with connection.cursor() as cursor:
        replay_owner = seed.add_users(cursor, "replay-owner", 1)
    (replay_salon,) = sql(  # a salon outside the bulk, and its owner's membership
        "WITH s AS (INSERT INTO salon_invitations_salon (created, modified, name, owner_id)"
        " VALUES (now(), now(), 'replay-owner', %s) RETURNING id)"
        " INSERT INTO salon_invitations_membership (created, modified, user_id, salon_id, role)"
        " SELECT now(), now(), %s, id, 'superuser' FROM s RETURNING salon_id",
        [replay_owner, replay_owner],
    )[0]
    pool, staff = layout.pool_first, layout.requester
    replayed = (pool + EVENT_USERS, REPLAY_EVENTS)
    insert_events(template, 0, REPLAY_EVENTS, (replay_salon, 1), replayed)
    sql(
        "UPDATE salon_invitations_salonevent SET kind = 'invitation.created' WHERE salon_id = %s",
        [replay_salon],
    )
    # The measured readers' own rows, first in the log, so that their page is full at every
    # size (as seed.py's LIST_SALON_ROWS): 100 in each measured salon, 100 about each
    # measured user; the bulk adds its share on top.
    others = pool + EVENT_USERS + REPLAY_EVENTS
    insert_events(template, 0, 10 * MEASURED_ROWS, (layout.salon(0), 10), (others, 1000))
    insert_events(template, 0, 10 * MEASURED_ROWS, (layout.salon(500), 100), (pool, 10))
    User = get_user_model()
    User.objects.filter(pk=staff).update(is_staff=True)
    salon_of = {layout.owner_of(layout.salon(k)): layout.salon(k) for k in range(10)}
    reader_ids = {"manager": list(salon_of), "user": range(pool, pool + 10), "staff": [staff]}
    users = {kind: [User.objects.get(pk=pk) for pk in ids] for kind, ids in reader_ids.items()}
    bulk = (layout.salon_first, EVENT_SALONS), (pool, EVENT_USERS)
    out = {}
    command = "-m daphne -b 127.0.0.1 -p {port} --verbosity 0 benchproject.asgi:application"
    server = runner.Server("daphne-eventlog", {"BENCH_DB_NAME": DB_NAME}, command)
    server.start()
    try:
        for before, size in itertools.pairwise([0, *SIZES]):
            t = time.perf_counter()
            for lo in range(before, size, 250_000):
                insert_events(template, lo, min(size, lo + 250_000), *bulk)
            sql("VACUUM ANALYZE salon_invitations_salonevent")
            rows = sql("SELECT count(*) FROM salon_invitations_salonevent")[0][0]
            log(f"[{size}] {rows} event rows (seeded in {time.perf_counter() - t:.1f}s); audit")
            out[str(size)] = entry = {"audit": audit(users, salon_of)}
            log(f"[{size}] " + ", ".join(f"{k} {v['p50_ms']}" for k, v in entry["audit"].items()))
            entry["replay"] = replay(server, replay_owner)
            log(f"[{size}] replay of {REPLAY_EVENTS}: {entry['replay']['median_ms']} ms")
    finally:
        server.stop()
    return out


def insert_events(template: dict[str, Any], lo: int, hi: int, salons: tuple, users: tuple) -> None:
    """Rows ``lo``..``hi - 1``, with ``salons`` and ``users`` as (first id, count): salon
    ``(7i + i // nusers) % nsalons``, user ``i % nusers`` (every user in many salons, every
    salon's rows spread evenly over the ids), a real event's ``data`` with its own ids."""
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
        {"tpl": json.dumps(template), "s0": salons[0], "ns": salons[1], "u0": users[0],
         "nu": users[1], "lo": lo, "hi": hi},
    )  # fmt: skip


def db_work(statement: str, params: Any = None) -> dict[str, Any]:
    """The plan (``EXPLAIN ANALYZE``), then the database's own work, far less sensitive to the
    machine's load than p50: the median execution ms of ``EXPLAIN_RUNS`` more and the shared
    buffers it touches."""
    plan = explain(statement, params)
    query = "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement
    runs = [sql(query, params)[0][0][0] for _ in range(EXPLAIN_RUNS)]
    execution = median3(run["Execution Time"] for run in runs)
    buffers = runs[-1]["Plan"]["Shared Hit Blocks"] + runs[-1]["Plan"]["Shared Read Blocks"]
    return {"plan": plan, "db_exec_ms": execution, "buffers": buffers}


async def replay_once(url: str) -> tuple[float, int, dict[str, Any]]:
    """Seconds until the frame that ends the replay, the frames before it, that frame."""
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
    """``owner``'s socket with ``since=0``, ``REPLAY_EVENTS`` events to send."""
    from rest_framework_simplejwt.tokens import AccessToken

    from salon_invitations.conf import app_settings
    from salon_invitations.models import SalonEvent
    from salon_invitations.policies import get_policy

    user = get_user_model().objects.get(pk=owner)
    url = f"{server.url('ws')}{runner.WS_PATH}?token={AccessToken.for_user(user)}&since=0"
    # The consumer's query (SalonEventsConsumer._missed), for the plan.
    events = SalonEvent.objects.filter(id__gt=0, kind__startswith="invitation.")
    events = get_policy().replayable_events(user, events).order_by("id")
    query = events.values_list("id", "kind", "data")[: app_settings.REPLAY_LIMIT + 1].query
    work = db_work(*query.sql_with_params())
    asyncio.run(replay_once(url))  # warm-up: imports, pooled connections
    cpu0 = server.cpu_seconds()
    runs = [asyncio.run(replay_once(url)) for _ in range(REPLAY_RUNS)]
    assert all(n == REPLAY_EVENTS and end["type"] == "resumed" for _s, n, end in runs), runs
    cpu = round((server.cpu_seconds() - cpu0) * 1000 / REPLAY_RUNS, 1)
    median = ms(statistics.median(seconds for seconds, _n, _end in runs))
    return {**work, "events": REPLAY_EVENTS, "median_ms": median, "server_cpu_ms_per_replay": cpu}


def audit(users: dict[str, list[Any]], salon_of: dict[int, int]) -> dict[str, Any]:
    """The first page (``since=0``) per reader (the kind its name starts with): the endpoint's
    ORM query (the policy's OR; ``salon``: and that salon) and the endpoint itself through the
    test client."""
    from salon_invitations.models import SalonEvent
    from salon_invitations.policies import get_policy

    client = Client()

    def orm(user: Any, salon: int | None = None) -> list[Any]:
        events = SalonEvent.objects.filter(id__gt=0)
        if salon is not None:
            events = events.filter(salon_id=salon)
        return list(get_policy().visible_events(user, events).order_by("id")[:PAGE])

    def get(user: Any, salon: int | None = None) -> list[Any]:
        path = "/api/salon_events?since=0" + ("" if salon is None else f"&salon={salon}")
        response = client.get(path, headers={"X-Bench-User": str(user.pk)})
        assert response.status_code == 200, response.content[:300]
        return response.json()["results"]

    series = {
        "manager, ORM": orm,
        "user, ORM": orm,
        "staff, ORM": orm,
        "manager, ORM ?salon=": lambda u: orm(u, salon_of[u.pk]),
        "manager, GET": get,
        "manager, GET ?salon=": lambda u: get(u, salon_of[u.pk]),
        "user, GET": get,
        "staff, GET": get,
    }
    for user in 3 * (users["manager"] + users["user"] + users["staff"]):  # warm the caches
        orm(user)
        if user.pk in salon_of:
            orm(user, salon_of[user.pk])
    samples: dict[str, list[tuple[float, int]]] = {name: [] for name in series}
    for i in range(QUERIES):
        for name in runner.rotated(list(series), i):
            readers = users[name.split(",")[0]]
            t = time.perf_counter()
            rows = series[name](readers[i % len(readers)])
            samples[name].append((time.perf_counter() - t, len(rows)))
    out: dict[str, Any] = {}
    for name, call in series.items():
        with CaptureQueriesContext(connection) as queries:
            call(users[name.split(",")[0]][0])
        statement = [q["sql"] for q in queries.captured_queries if "salonevent" in q["sql"]][-1]
        times, counts = zip(*samples[name], strict=True)
        out[name] = {
            "p50_ms": ms(statistics.median(times)),
            "p95_ms": ms(loadgen.percentile(times, 95)),
            "rows_returned": sorted(set(counts)),
            "queries": len(queries),
            **db_work(statement),
        }
    return out


# The page ---------------------------------------------------------------------------------------
def plan_summary(plan: list[str]) -> str:
    """The scan nodes of a plan and its execution time, on one line."""
    nodes = [line.strip().split("  (")[0].lstrip("-> ") for line in plan
             if "Scan" in line or "BitmapOr" in line or "Sort  (" in line]  # fmt: skip
    timing = [line.split(":")[1].strip() for line in plan if line.startswith("Execution Time")]
    return "; ".join(dict.fromkeys(nodes)) + (f" ({timing[0]})" if timing else "")


def size_row(name: str, entries: list[dict[str, Any]]) -> str:
    """A row of the table by size: each size's cell, then largest/smallest of the database's
    time and buffers (p50 follows the machine's load, which changes between sizes): "flat" if
    the buffers and the time are within FLAT_FACTOR (or 0.1 ms: timer noise)."""
    first, last = entries[0], entries[-1]
    db = last["db_exec_ms"] / max(first["db_exec_ms"], 0.001)
    buffers = last["buffers"] / max(first["buffers"], 1)
    steady = db <= FLAT_FACTOR or last["db_exec_ms"] - first["db_exec_ms"] < 0.1
    flat = "flat" if buffers <= FLAT_FACTOR and steady else "**grows**"
    title = fill(TEMPLATES["REPLAY_ROW"], **last) if name == "replay" else name
    cell = TEMPLATES["REPLAY_CELL" if name == "replay" else "AUDIT_CELL"]
    cells = [fill(cell, **e, rows=max(e.get("rows_returned") or [0])) for e in entries]
    growth = fill(TEMPLATES["GROWTH_CELL"], db=db, buffers=buffers, flat=flat)
    return runner.row(title, *cells, growth)


def render(results: dict[str, Any]) -> str:
    if not (results := results.get("eventlog")):
        return ""
    write, sizes = results["write"], list(results["sizes"].values())
    ops = [{**write[op], "op": op} for op in ("create", "approve")]
    for op in ops:
        short = [q.split(" WHERE")[0].split(" (")[0][:60] for q in op["queries_added_by_log"]]
        op.update(verdict=runner.verdict(op["met"]), added=", ".join(f"`{q}`" for q in short))
    series = {name: [s["audit"][name] for s in sizes] for name in sizes[-1]["audit"]}
    series["replay"] = [s["replay"] for s in sizes]
    plans = [{"name": name, "plan": plan_summary(e[-1]["plan"])} for name, e in series.items()]
    heads = [fill(TEMPLATES["SIZE_HEAD"], size=int(size)) for size in results["sizes"]]
    return fill(
        TEMPLATES["SECTION"], **results,
        write_rows=fill_rows(TEMPLATES["WRITE_ROWS"], ops),
        write_ratios=fill_rows(TEMPLATES["WRITE_RATIO"], ops, target=CPU_TARGET),
        salons=EVENT_SALONS, users=EVENT_USERS, measured=MEASURED_ROWS, replay=REPLAY_EVENTS,
        flat=FLAT_FACTOR, explain_runs=EXPLAIN_RUNS, largest=int(list(results["sizes"])[-1]),
        size_heads=" | ".join(heads), size_aligns="---:|" * len(sizes),
        size_rows="\n".join(size_row(name, entries) for name, entries in series.items()),
        plans=fill_rows(TEMPLATES["PLAN"], plans),
    )  # fmt: skip
