# ruff: noqa: RUF001 - the page uses typographic characters (times, dashes) on purpose
"""Fan-out over WebSockets: 1,000 authenticated connections, streams of creates and approvals
at fixed rates, receipt latency, delivery to recipients only, memory per idle connection, and
the same idle connections with the channel layer's default Redis pool."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import runner
from runner import SERVERS, Context, env_float, env_int, fmt, verdict

NAME = "fanout"
FANOUT_CONNECTIONS = env_int("BENCH_FANOUT_CONNECTIONS", 200 if runner.QUICK else 1000)
FANOUT_EVENTS = env_int("BENCH_FANOUT_EVENTS", 60 if runner.QUICK else 400)  # per stream
FANOUT_RATES = [float(x) for x in os.environ.get("BENCH_FANOUT_RATES", "10,25").split(",")]
FANOUT_IDLE_SECONDS = env_float("BENCH_FANOUT_IDLE", 4.0 if runner.QUICK else 20.0)
P99_TARGET_MS = 100.0
EXAMPLE_CONF = runner.REPO / "example_project" / "configs" / "extra_conf" / "channels_conf.py"


def run(ctx: Context) -> dict[str, Any]:
    ctx.grow_to(runner.MAIN_SCALE)
    ctx.results["config"].update(
        fanout_connections=FANOUT_CONNECTIONS,
        fanout_events=FANOUT_EVENTS,
        fanout_rates=FANOUT_RATES,
        fanout_idle_seconds=FANOUT_IDLE_SECONDS,
    )
    out = {"fanout": ctx.phase("fan-out", lambda: streams(ctx))}
    runner.log(f"fan-out p99 {out['fanout']['latency_from_response_ms']}")
    runner.log("idle connections with the default Redis pool settings")
    out["default_pool_idle"] = default_pool(ctx)
    return out


def fanout_users(
    ctx: Context,
) -> tuple[list[int], dict[int, tuple[int, int, list[int]]], dict[int, str]]:
    """The connecting users (per salon: owner, admin, requesters), the salons' members
    and a real simplejwt access token for each user."""
    import seed
    from django.contrib.auth import get_user_model
    from rest_framework_simplejwt.tokens import AccessToken

    layout = ctx.layout
    per_salon = 2 + seed.FANOUT_REQUESTERS_PER_SALON
    nsalons = max(1, min(seed.FANOUT_SALONS, FANOUT_CONNECTIONS // per_salon))
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

    users, _members, tokens = fanout_users(ctx)
    errors_before = servers.log_text().count("Exception in ASGI application")

    async def scenario() -> dict[str, Any]:
        conns, _connect_s, errors = await wsclient.connect_all(
            servers.ws_urls, users, tokens, path="/ws/api/invitation_to_auto_salon/"
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


def streams(ctx: Context) -> dict[str, Any]:
    import loadgen
    import seed
    import wsclient

    users, members, tokens = fanout_users(ctx)
    salons = list(members)
    nsalons = len(salons)
    per_salon = seed.FANOUT_REQUESTERS_PER_SALON
    errors_before = ctx.servers.log_text().count("Exception in ASGI application")
    creates = FANOUT_EVENTS // 2
    if creates * len(FANOUT_RATES) > nsalons * per_salon:
        raise RuntimeError("not enough fan-out requesters for the requested events")

    def plan_for(stream: int) -> list[tuple[int, int]]:
        """(salon, requester) of each create of one stream, cycling through the salons;
        every stream uses requesters of its own."""
        plan = []
        for e in range(stream * creates, (stream + 1) * creates):
            salon = salons[e % nsalons]
            plan.append((salon, members[salon][2][(e // nsalons) % per_salon]))
        return plan

    async def run_stream(conns: list[Any], rate: float, stream: int) -> dict[str, Any]:
        """Creates (a requester asks), then approvals (the owner decides), at ``rate``
        events/s, at most 8 in flight."""
        plan = plan_for(stream)
        for conn in conns:
            conn.frames = []
        clients = loadgen.Clients(ctx.servers.base_urls, connections=8)
        events: list[wsclient.Event] = []
        http_errors: list[str] = []
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

        begin = time.perf_counter()
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
        duration = time.perf_counter() - begin
        # Wait (bounded) for the last frames.
        deadline = time.perf_counter() + 10
        expected = sum(1 for e in events for c in conns if c.user in e.recipients)
        while time.perf_counter() < deadline:
            if sum(len(c.frames) for c in conns) >= expected:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # frames to non-recipients would have arrived by now
        analysis = wsclient.analyse(events, conns)
        out: dict[str, Any] = {
            "rate": rate,
            "events": len(events),
            "seconds": round(duration, 2),
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

    async def scenario() -> dict[str, Any]:
        rss_before = ctx.servers.rss_kib()
        conns, connect_s, errors = await wsclient.connect_all(
            ctx.servers.ws_urls, users, tokens, path="/ws/api/invitation_to_auto_salon/"
        )
        try:
            await asyncio.sleep(FANOUT_IDLE_SECONDS)  # idle
            rss_after = ctx.servers.rss_kib()
            alive = sum(
                1 for c in conns if c.closed_code is None and c.reader and not c.reader.done()
            )
            streams = {}
            for stream, rate in enumerate(FANOUT_RATES):
                streams[str(rate)] = await run_stream(conns, rate, stream)
            per_server = [sum(1 for c in conns if c.server == i) for i in range(SERVERS)]
        finally:
            await wsclient.close_all(conns)
            await asyncio.sleep(2.0)
        return {
            "connections": len(conns),
            "connections_alive_after_idle": alive,
            "connections_per_server": per_server,
            "connect_seconds": round(connect_s, 2),
            "connect_errors": errors[:5],
            "connect_error_count": len(errors),
            "rss_kib_before": rss_before,
            "rss_kib_after": rss_after,
            "streams": streams,
        }

    raw = ctx.run_async(scenario())
    raw["idle_seconds"] = FANOUT_IDLE_SECONDS
    raw["server_exceptions"] = (
        ctx.servers.log_text().count("Exception in ASGI application") - errors_before
    )
    delta = sum(raw["rss_kib_after"]) - sum(raw["rss_kib_before"])
    raw["memory_per_connection_kib"] = round(delta / max(1, raw["connections"]), 1)
    # The first rate is the headline; every stream is kept under "streams".
    raw.update(raw["streams"][str(FANOUT_RATES[0])])
    return raw


# The whole run --------------------------------------------------------------------------


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
    rows.append(
        f"| 4 | frames delivered to non-recipients | 0 | {fan['non_recipient_frames']} "
        f"(missing deliveries: {fan['missing']}) "
        f"| {verdict(fan['non_recipient_frames'] == 0 and fan['missing'] == 0)} |"
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


def findings(results: dict[str, Any]) -> list[str]:
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
    )
