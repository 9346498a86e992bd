# ruff: noqa: RUF001 - the page uses typographic characters (times, dashes) on purpose
"""Fan-out over WebSockets: both channels-redis layers at two socket counts, streams of
creates and approvals at fixed rates, receipt latency, frames/s, delivery to recipients only,
CPU, memory per idle connection, and idle connections with the default Redis pool."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections import Counter
from typing import Any

import runner
from runner import Context, env_float, env_int, fmt, row, verdict

NAME = "fanout"
#: BENCH_CHANNEL_LAYER of the servers -> the layer's class (channels_redis.core / .pubsub)
LAYERS = {"core": "RedisChannelLayer", "pubsub": "RedisPubSubChannelLayer"}
FANOUT_LAYERS = os.environ.get("BENCH_FANOUT_LAYERS", "core,pubsub").split(",")
FANOUT_SOCKETS = [
    int(x)
    for x in os.environ.get("BENCH_FANOUT_SOCKETS", "200,500" if runner.QUICK else "1000,5000")
    .split(",")
]  # fmt: skip
FANOUT_EVENTS = env_int("BENCH_FANOUT_EVENTS", 60 if runner.QUICK else 400)  # per stream
FANOUT_RATES = [float(x) for x in os.environ.get("BENCH_FANOUT_RATES", "10,25").split(",")]
FANOUT_IDLE_SECONDS = env_float("BENCH_FANOUT_IDLE", 4.0 if runner.QUICK else 20.0)
FANOUT_CLIENTS = env_int("BENCH_FANOUT_CLIENTS", 2)  # WebSocket client processes
P99_TARGET_MS = 100.0
PATH = "/ws/api/invitation_to_auto_salon/"
EXAMPLE_CONF = runner.REPO / "example_project" / "configs" / "extra_conf" / "channels_conf.py"
#: The (salon, requester) pairs the run's streams have used.
_ASKED: set[tuple[int, int]] = set()


def run(ctx: Context) -> dict[str, Any]:
    ctx.grow_to(runner.MAIN_SCALE)
    ctx.results["config"].update(
        fanout_layers=FANOUT_LAYERS,
        fanout_sockets=FANOUT_SOCKETS,
        fanout_events=FANOUT_EVENTS,
        fanout_rates=FANOUT_RATES,
        fanout_idle_seconds=FANOUT_IDLE_SECONDS,
        fanout_clients=FANOUT_CLIENTS,
    )
    sessions: dict[str, Any] = {}

    def measure(layer: str) -> None:
        for sockets in FANOUT_SOCKETS:
            key = f"{layer} {sockets}"
            sessions[key] = ctx.phase(phase_name(key), lambda s=sockets: session(ctx, s))

    for layer in FANOUT_LAYERS:
        if layer == "core":  # the main servers' layer
            measure(layer)
        else:
            ctx.with_servers(
                f"-{layer}", {"BENCH_CHANNEL_LAYER": layer}, lambda la=layer: measure(la)
            )
    out: dict[str, Any] = {"fanout_sessions": sessions}
    headline = sessions.get(f"{FANOUT_LAYERS[0]} {FANOUT_SOCKETS[0]}")
    if headline:
        out["fanout"] = headline
        runner.log(f"fan-out p99 {headline['latency_from_response_ms']}")
    runner.log("idle connections with the default Redis pool settings")
    out["default_pool_idle"] = default_pool(ctx)
    return out


def phase_name(key: str) -> str:
    """The phase (of ``results["other_cores"]``) of the session ``"<layer> <sockets>"``."""
    layer, sockets = key.split()
    return f"fan-out, {LAYERS[layer]}, {sockets} sockets"


def fanout_users(
    ctx: Context, sockets: int
) -> tuple[list[int], dict[int, tuple[int, int, list[int]]], dict[int, str]]:
    """The connecting users (per salon: owner, admin, requesters; one per socket up to the
    seeded 1,000), the salons' members and a real simplejwt access token for each user."""
    import seed
    from django.contrib.auth import get_user_model
    from rest_framework_simplejwt.tokens import AccessToken

    layout = ctx.layout
    per_salon = 2 + seed.FANOUT_REQUESTERS_PER_SALON
    nsalons = max(1, min(seed.FANOUT_SALONS, sockets // per_salon))
    users: list[int] = []
    members: dict[int, tuple[int, int, list[int]]] = {}
    for k, salon in enumerate(layout.fanout_salons()[:nsalons]):
        owner, admin = layout.owner_of(salon), layout.fanout_admin(k)
        fans = [layout.fanout_requester(k, j) for j in range(seed.FANOUT_REQUESTERS_PER_SALON)]
        members[salon] = (owner, admin, fans)
        users += [owner, admin, *fans]
    User = get_user_model()
    tokens = {u: str(AccessToken.for_user(User(id=u))) for u in users}
    return users, members, tokens


def idle_check(ctx: Context, servers: Any, idle_s: float) -> dict[str, Any]:
    """Connect every fan-out user, stay idle ``idle_s`` seconds, count the connections
    still open, disconnect all at once; count the servers' logged errors."""
    import wsclient

    users, _members, tokens = fanout_users(ctx, FANOUT_SOCKETS[0])
    errors_before = servers.log_text().count("Exception in ASGI application")

    async def scenario() -> dict[str, Any]:
        conns, _connect_s, errors = await wsclient.connect_all(
            servers.ws_urls, users, tokens, path=PATH
        )
        await asyncio.sleep(idle_s)
        alive = sum(1 for c in conns if c.closed_code is None and c.reader and not c.reader.done())
        await wsclient.close_all(conns)
        await asyncio.sleep(2.0)
        return {
            "connections": len(conns),
            "connect_errors": len(errors),
            "alive_after_idle": alive,
        }

    out = asyncio.run(scenario())
    text = servers.log_text()
    out["idle_seconds"] = idle_s
    out["server_exceptions"] = text.count("Exception in ASGI application") - errors_before
    out["redis_timeouts"] = text.count("redis.exceptions.TimeoutError")
    out["redis_pool_exhausted"] = text.count("MaxConnectionsError")
    return out


def default_pool(ctx: Context) -> dict[str, Any]:
    """The same idle check on servers using the channel layer's default Redis pool."""
    return ctx.with_servers(
        "-defaultpool",
        {"BENCH_REDIS_DEFAULT_POOL": "1"},
        lambda: idle_check(ctx, ctx.servers, FANOUT_IDLE_SECONDS),
    )


def redis_cpu_seconds() -> float:
    import redis

    with redis.Redis.from_url(runner.REDIS_URL, socket_timeout=5) as client:
        info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def session(ctx: Context, sockets: int) -> dict[str, Any]:
    """``sockets`` connections (the fan-out users in turn: beyond 1,000 a user has several,
    as with several tabs or devices) from client processes; idle, then one stream per rate."""
    import wsclient

    users, members, tokens = fanout_users(ctx, sockets)
    errors_before = ctx.servers.log_text().count("Exception in ASGI application")
    rss_before = ctx.servers.rss_kib()
    pool = wsclient.ClientPool(
        ctx.servers.ws_urls,
        [users[i % len(users)] for i in range(sockets)],
        tokens,
        path=PATH,
        processes=FANOUT_CLIENTS,
    )
    try:
        time.sleep(FANOUT_IDLE_SECONDS)
        rss_after = ctx.servers.rss_kib()
        alive = sum(pool.ask("alive"))
        streams = {str(rate): run_stream(ctx, pool, members, rate) for rate in FANOUT_RATES}
    finally:
        pool.close()
        time.sleep(2.0)
        runner.redis_cleanup()
    raw = {
        "connections": pool.connections,
        "users": len(users),
        "connections_alive_after_idle": alive,
        "connections_per_server": pool.per_server,
        "connect_seconds": round(pool.connect_seconds, 2),
        "connect_errors": pool.errors,
        "connect_error_count": pool.error_count,
        "rss_kib_before": rss_before,
        "rss_kib_after": rss_after,
        "streams": streams,
        "idle_seconds": FANOUT_IDLE_SECONDS,
        "server_exceptions": ctx.servers.log_text().count("Exception in ASGI application")
        - errors_before,
    }
    delta = sum(rss_after) - sum(rss_before)
    raw["memory_per_connection_kib"] = round(delta / max(1, pool.connections), 1)
    # The first rate is the headline; every stream is kept under "streams".
    raw.update(streams[str(FANOUT_RATES[0])])
    return raw


def run_stream(
    ctx: Context, pool: Any, members: dict[int, tuple[int, int, list[int]]], rate: float
) -> dict[str, Any]:
    """Creates (a requester asks), then approvals (the owner decides), at ``rate`` events/s,
    at most 8 in flight; then who received which frame when."""
    import loadgen
    import wsclient

    salons = list(members)
    fans = [fan for _owner, _admin, group in members.values() for fan in group]
    pairs = (
        (salons[c % len(salons)], fans[c // len(salons)]) for c in range(len(salons) * len(fans))
    )
    # (salon, requester): a pair asks once in the run (then the requester is a member)
    plan = list(itertools.islice((p for p in pairs if p not in _ASKED), FANOUT_EVENTS // 2))
    if len(plan) < FANOUT_EVENTS // 2:
        raise RuntimeError("not enough fan-out requesters for the requested events")
    _ASKED.update(plan)
    events: list[wsclient.Event] = []
    http_errors: list[str] = []

    async def stream() -> None:
        clients = loadgen.Clients(ctx.servers.base_urls, connections=8)
        sem = asyncio.Semaphore(8)

        async def fire(
            i: int, method: str, path: str, user: int, body: Any, kind: str,
            recipients: frozenset[int],
        ) -> int | None:  # fmt: skip
            async with sem:
                sent = time.perf_counter()
                try:
                    response = await clients.pick(i).request(
                        method, path, headers={"X-Bench-User": str(user)}, json=body
                    )
                except Exception as exc:
                    http_errors.append(repr(exc))
                    return None
                done = time.perf_counter()
                if response.status_code >= 300:
                    http_errors.append(f"{response.status_code} {response.text[:200]}")
                    return None
                inv = response.json()["id"]
                events.append(
                    wsclient.Event(kind, inv, recipients, sent, done, response.status_code)
                )
                return inv

        async def paced(calls: list[tuple[Any, ...]]) -> list[int | None]:
            start = time.perf_counter()
            tasks = []
            for i, call in enumerate(calls):
                await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
                tasks.append(asyncio.create_task(fire(i, *call)))
            return await asyncio.wait_for(asyncio.gather(*tasks), 300)

        try:
            created = await paced(
                [
                    (
                        "POST", "/api/invitations", requester,
                        {"salon": salon, "role": "member", "message": "fan-out"},
                        "invitation.created",
                        frozenset({requester, *members[salon][:2]}),
                    )
                    for salon, requester in plan
                ]
            )  # fmt: skip
            await paced(
                [
                    (
                        "PATCH", f"/api/invitations/{inv}/approved", members[salon][0],
                        None, "invitation.approved",
                        frozenset({requester, *members[salon][:2]}),
                    )
                    for (salon, requester), inv in zip(plan, created, strict=True)
                    if inv is not None
                ]
            )  # fmt: skip
        finally:
            await clients.aclose()

    pool.ask("reset")
    cpu0 = (ctx.servers.cpu(), redis_cpu_seconds(), pool.cpu_seconds())
    begin = time.perf_counter()
    ctx.run_async(stream())
    duration = time.perf_counter() - begin
    # Wait (bounded) for the last frames; frames to non-recipients would have come meanwhile.
    deadline = time.perf_counter() + 10
    sockets_of = Counter(pool.users)
    expected = sum(sockets_of[user] for e in events for user in e.recipients)
    while time.perf_counter() < deadline and sum(pool.ask("count")) < expected:
        time.sleep(0.1)
    time.sleep(1.0)
    wall = time.perf_counter() - begin
    cpu1 = (ctx.servers.cpu(), redis_cpu_seconds(), pool.cpu_seconds())
    analysis = wsclient.analyse(events, pool.collect())
    out: dict[str, Any] = {
        "rate": rate,
        "events": len(events),
        "seconds": round(duration, 2),
        "frames_per_s": round(analysis["delivered"] / duration, 1),
        # Cores busy on average from the first request to the last frame (and 1 s more).
        "cpu_cores": {
            who: round((after - before) / wall, 2)
            for who, before, after in zip(("servers", "redis", "clients"), cpu0, cpu1, strict=True)
        },
        "http_errors": http_errors[:5],
        "http_error_count": len(http_errors),
        "http_ms": loadgen.summary_ms([e.done - e.sent for e in events]),
    }
    for key in ("from_response", "from_request"):
        out[f"latency_{key}_ms"] = loadgen.summary_ms(analysis.pop(key))
    for kind, values in analysis.pop("from_response_by_kind").items():
        out[f"latency_from_response_ms {kind}"] = loadgen.summary_ms(values)
    out.update(analysis)
    return out


# The page -------------------------------------------------------------------------------------


def summary(results: dict[str, Any]) -> list[str]:
    fan, cfg = results.get("fanout"), results["config"]
    if not fan:
        return []
    fan_lat = fan.get("latency_from_response_ms") or {}
    fan_p99 = fan_lat.get("p99")
    rows: list[str] = []
    rows.append(
        f"| 4 | fan-out, {fmt(fan['connections'])} WebSocket clients, "
        f"{fmt(fan.get('rate', cfg.get('fanout_rate')), 0)} events/s: receipt − HTTP "
        "response, p99 "
        f"| < {P99_TARGET_MS:.0f} ms | {fmt(fan_p99, 1)} ms "
        f"(p50 {fmt(fan_lat.get('p50'), 1)} ms) "
        f"| {verdict(fan_p99 is not None and fan_p99 < P99_TARGET_MS)} |"
    )
    for rate, stream in (fan.get("streams") or {}).items():
        if float(rate) == fan.get("rate"):
            continue
        sl = stream["latency_from_response_ms"]
        rows.append(
            f"| 4 | the same at {fmt(float(rate), 0)} events/s | – | p99 "
            f"{fmt(sl.get('p99'), 1)} ms (p50 {fmt(sl.get('p50'), 1)} ms) | |"
        )
    table = layer_rows(results)
    if len(table) > 1:
        rows.append(
            "| 4 | p99 by channel layer, sockets × events/s (section 4) | – | "
            + "; ".join(
                f"{LAYERS[layer]}: "
                + ", ".join(
                    f"{fmt(n)} × {fmt(r['rate'], 0)}/s "
                    f"{fmt(r['latency_from_response_ms'].get('p99'), 0)} ms"
                    for la, n, r in table
                    if la == layer
                )
                for layer in dict.fromkeys(la for la, _n, _r in table)
            )
            + " | |"
        )
    wrong = sum(r["non_recipient_frames"] for _la, _n, r in table)
    missing = sum(r["missing"] for _la, _n, r in table)
    rows.append(
        f"| 4 | frames delivered to non-recipients, every layer and size | 0 | {wrong} "
        f"(missing deliveries: {fmt(missing)}) | {verdict(wrong == 0 and missing == 0)} |"
    )
    rows.append(
        "| 4 | memory per idle connection, server RSS | – "
        f"| {fmt(fan['memory_per_connection_kib'], 1)} KiB | |"
    )
    return rows


FINDING = """\
**The Redis channel layer needs two settings with redis-py 8.** redis-py 8 gives
   each connection a 5 s socket timeout and each pool at most 100 connections by
   default; channels-redis 4.3 waits in `BZPOPMIN` for 5 s. With `"hosts": [REDIS_URL]`
   (the form of the channels-redis documentation),
   {died} of {connections} idle connections died within {idle_s} s
   ({timeouts} `redis.exceptions.TimeoutError` in the consumer's receive loop), and \
disconnecting them all at once raised
   {exhausted} `MaxConnectionsError` in `group_discard`, which leaves stale channels in the \
users' groups.
   The benchmark's servers use
   `{{"address": REDIS_URL, "socket_timeout": 15, "max_connections": 2000}}`; with it,
   {alive} of {fan_connections} connections survived {fan_idle_s} s idle and the servers \
logged {exceptions} exception(s).
   {example}"""


def layer_rows(results: dict[str, Any]) -> list[tuple[str, int, dict[str, Any]]]:
    """(layer, sockets, stream) of every measured configuration, in the run's order."""
    return [
        (key.split()[0], int(key.split()[1]), stream)
        for key, sess in (results.get("fanout_sessions") or {}).items()
        for stream in sess["streams"].values()
    ]


LAYER_FINDING = """\
**RedisPubSubChannelLayer {verb} RedisChannelLayer at {sockets} sockets.** At {rate} events/s
   ({frames} frames/s) the p99 from the HTTP response to the frame was {p99_pubsub} ms with
   pub/sub against {p99_core} ms; the servers used {cpu_pubsub} against {cpu_core} cores, Redis
   {redis_pubsub} against {redis_core}. With pub/sub each process subscribes once to each group
   of its sockets and Redis pushes an event to the processes that have a recipient; with
   `RedisChannelLayer` each `group_send` reads the group's members in Redis, then stores a
   message for each process that has one, which the process pops. Which to choose when:
   [Deployment](deployment.md#which-redis-channel-layer)."""


def layer_finding(results: dict[str, Any]) -> list[str]:
    by = {(la, n, r["rate"]): r for la, n, r in layer_rows(results)}
    sockets = max((n for _la, n, _r in by), default=0)
    rate = max((r for _la, _n, r in by), default=0)
    core, pubsub = by.get(("core", sockets, rate)), by.get(("pubsub", sockets, rate))
    if not core or not pubsub:
        return []
    p99 = {
        k: r["latency_from_response_ms"].get("p99") or 0 for k, r in (("c", core), ("p", pubsub))
    }
    cpu = {
        k: r["cpu_cores"]["servers"] + r["cpu_cores"]["redis"]
        for k, r in (("c", core), ("p", pubsub))
    }
    better = p99["p"] <= p99["c"] and cpu["p"] <= cpu["c"]
    worse = p99["p"] > p99["c"] and cpu["p"] > cpu["c"]
    return [
        LAYER_FINDING.format(
            verb="outran" if better else "fell behind" if worse else "traded with",
            sockets=fmt(sockets),
            rate=fmt(rate, 0),
            frames=fmt(pubsub["frames_per_s"], 0),
            p99_pubsub=fmt(p99["p"], 1),
            p99_core=fmt(p99["c"], 1),
            cpu_pubsub=fmt(pubsub["cpu_cores"]["servers"], 2),
            cpu_core=fmt(core["cpu_cores"]["servers"], 2),
            redis_pubsub=fmt(pubsub["cpu_cores"]["redis"], 2),
            redis_core=fmt(core["cpu_cores"]["redis"], 2),
        )
    ]


def findings(results: dict[str, Any]) -> list[str]:
    return pool_finding(results) + layer_finding(results)


def pool_finding(results: dict[str, Any]) -> list[str]:
    fan, pool = results.get("fanout"), results.get("default_pool_idle")
    if not fan or (
        pool["alive_after_idle"] == pool["connections"] and not pool["server_exceptions"]
    ):
        return []
    try:
        example_sets_it = "socket_timeout" in EXAMPLE_CONF.read_text()
    except OSError:
        example_sets_it = False
    finding = FINDING.format(
        died=fmt(pool["connections"] - pool["alive_after_idle"]),
        connections=fmt(pool["connections"]),
        idle_s=fmt(pool["idle_seconds"], 0),
        timeouts=pool["redis_timeouts"],
        exhausted=pool["redis_pool_exhausted"],
        alive=fmt(fan["connections_alive_after_idle"]),
        fan_connections=fmt(fan["connections"]),
        fan_idle_s=fmt(fan["idle_seconds"], 0),
        exceptions=fan["server_exceptions"],
        example="The example project's `configs/extra_conf/channels_conf.py` sets both."
        if example_sets_it
        else "*Proposed*: set both in the example project and document them.",
    )
    return [finding]


SECTION = """\
## 4. Fan-out over WebSockets

{connections} connections ({split} on the {servers} server processes) in {salons} salons; per \
salon the owner, an admin and 8 requesters. Each stream: requesters' creates (recipients: the \
requester, the owner, the admin), then the owner's approvals of them, paced at a fixed rate \
with at most 8 requests in flight; {events} events and {expected} expected deliveries per \
stream.

| events/s | HTTP p50 / p99 ms | receipt − response p50 / p90 / p99 ms \
| receipt − request sent p50 / p99 ms | delivered | to non-recipients |
|---------:|------------------:|------:|------:|------:|------:|
{rows}

Duplicates: {duplicates}. At {rate} events/s, {before_response} of {delivered} frames arrived \
before the HTTP response was read: the package sends on commit, before the response is \
written.{stress}
Connecting took {connect_s} s ({connect_errors} errors); after {idle_s} s idle {alive} \
connections were open; the servers logged {exceptions} exception(s).

Memory: the server processes' RSS grew from {rss_before} MiB to {rss_after} MiB, \
**{per_connection} KiB per idle connection** (the consumer, uvicorn's `websockets` protocol with
permessage-deflate, and the channel layer's bookkeeping).

With the channel layer's default Redis pool (see Findings), {pool_alive} of {pool_connections} \
connections were open after {pool_idle_s} s idle and the servers logged {pool_exceptions} \
exception(s), most while disconnecting.
{short_sessions}
### The two Redis channel layers

`RedisChannelLayer` (`channels_redis.core`, the servers' layer above) against \
`RedisPubSubChannelLayer` (`channels_redis.pubsub`, `"hosts": [REDIS_URL]`), each with \
{sizes} sockets and the same streams. The salons have {users} users; with more sockets than \
that, a user has several (tabs, devices), and each event reaches that many more. The \
sockets are opened from {clients} client processes of their own (an event loop each, the \
sockets split evenly), \
the HTTP requests from the benchmark's process; all read one monotonic clock. CPU is in cores \
busy on average from the stream's first request to its last frame: the servers, Redis, and \
the WebSocket clients (the clients keep up while theirs stays well under one core per process).

| layer | sockets | events/s | frames/s | receipt − response p50 / p99 ms | missing \
| to non-recipients | CPU: servers / Redis / clients |
|-------|--------:|---------:|---------:|------:|------:|------:|------:|
{layer_rows}

Connecting took {connect}; the machine's other processes used {others} cores meanwhile.
"""
STRESS = (
    " When events come faster than the two processes serve them, requests queue and the event "
    "loops that forward frames compete with the request threads for the CPU and the GIL: that "
    "is what the faster stream shows."
)


def render(results: dict[str, Any]) -> str:
    fan, pool = results.get("fanout"), results["default_pool_idle"]
    if not fan:
        return ""
    rows = []
    for rate, st in fan["streams"].items():
        lr, lq, h = st["latency_from_response_ms"], st["latency_from_request_ms"], st["http_ms"]
        rows.append(
            f"| {fmt(float(rate), 0)} | {fmt(h.get('p50'), 1)} / {fmt(h.get('p99'), 1)} "
            f"| {fmt(lr.get('p50'), 1)} / {fmt(lr.get('p90'), 1)} / {fmt(lr.get('p99'), 1)} "
            f"| {fmt(lq.get('p50'), 1)} / {fmt(lq.get('p99'), 1)} "
            f"| {fmt(st['delivered'])} of {fmt(st['expected_deliveries'])} "
            f"| **{st['non_recipient_frames']}** |"
        )
    p99 = fan["latency_from_response_ms"].get("p99") or 0
    worst = max(st["latency_from_response_ms"].get("p99") or 0 for st in fan["streams"].values())
    return SECTION.format(
        connections=fmt(fan["connections"]),
        split=" + ".join(str(c) for c in fan["connections_per_server"]),
        servers=results["config"]["servers"],
        salons=fmt(fan["connections"] // 10),
        events=fmt(fan["events"]),
        expected=fmt(fan["expected_deliveries"]),
        rows="\n".join(rows),
        duplicates=fan["duplicate_frames"],
        rate=fmt(fan["rate"], 0),
        before_response=fmt(fan["before_response"]),
        delivered=fmt(fan["delivered"]),
        stress=STRESS if p99 and worst > 2 * max(p99, 1.0) else "",
        connect_s=fmt(fan["connect_seconds"], 1),
        connect_errors=fan["connect_error_count"],
        idle_s=fmt(fan["idle_seconds"], 0),
        alive=fmt(fan["connections_alive_after_idle"]),
        exceptions=fan["server_exceptions"],
        rss_before=fmt(sum(fan["rss_kib_before"]) / 1024, 1),
        rss_after=fmt(sum(fan["rss_kib_after"]) / 1024, 1),
        per_connection=fmt(fan["memory_per_connection_kib"], 1),
        pool_alive=fmt(pool["alive_after_idle"]),
        pool_connections=fmt(pool["connections"]),
        pool_idle_s=fmt(pool["idle_seconds"], 0),
        pool_exceptions=fmt(pool["server_exceptions"]),
        short_sessions="".join(
            f"\n{LAYERS[key.split()[0]]}, {key.split()[1]} sockets: only "
            f"{fmt(sess['connections'])} connected ({sess['connect_error_count']} errors: "
            f"{sess['connect_errors'][:1]}).\n"
            for key, sess in results.get("fanout_sessions", {}).items()
            if sess["connections"] < int(key.split()[1])
        ),
        sizes=" and ".join(fmt(n) for n in results["config"].get("fanout_sockets", [])),
        users=fmt(fan.get("users", fan["connections"])),
        clients=results["config"].get("fanout_clients", 1),
        connect="; ".join(
            f"{LAYERS[key.split()[0]]} {fmt(int(key.split()[1]))}: "
            f"{fmt(sess['connect_seconds'], 1)} s"
            for key, sess in results.get("fanout_sessions", {}).items()
        ),
        others=" / ".join(
            fmt(results.get("other_cores", {}).get(phase_name(key)), 2)
            for key in results.get("fanout_sessions", {})
        ),
        layer_rows="\n".join(
            row(
                f"`{LAYERS[la]}`",
                fmt(n),
                fmt(r["rate"], 0),
                fmt(r["frames_per_s"], 1),
                f"{fmt(r['latency_from_response_ms'].get('p50'), 1)} / "
                f"{fmt(r['latency_from_response_ms'].get('p99'), 1)}",
                fmt(r["missing"]),
                f"**{r['non_recipient_frames']}**",
                " / ".join(fmt(r["cpu_cores"][k], 2) for k in ("servers", "redis", "clients")),
            )
            for la, n, r in layer_rows(results)
        ),
    )
