# ruff: noqa: RUF001 - the page uses typographic characters (times, dashes) on purpose
"""Fan-out over WebSockets: both channels-redis layers at two socket counts, streams of
creates and approvals at fixed rates, receipt latency, frames/s, delivery to recipients only,
CPU, memory per idle connection, and idle connections with the default Redis pool."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from typing import Any

import loadgen
import runner
import seed
import wsclient
from runner import Context, env_list, fill, fill_rows, fmt, verdict

NAME = "fanout"
#: BENCH_CHANNEL_LAYER of the servers -> the layer's class (channels_redis.core / .pubsub)
LAYERS = {"core": "RedisChannelLayer", "pubsub": "RedisPubSubChannelLayer"}
FANOUT_LAYERS = env_list("BENCH_FANOUT_LAYERS", "core,pubsub", str)
FANOUT_SOCKETS = env_list("BENCH_FANOUT_SOCKETS", "200,500" if runner.QUICK else "1000,5000")
FANOUT_EVENTS = runner.env("BENCH_FANOUT_EVENTS", 60 if runner.QUICK else 400)  # per stream
FANOUT_RATES = env_list("BENCH_FANOUT_RATES", "10,25", float)
FANOUT_IDLE_SECONDS = runner.env("BENCH_FANOUT_IDLE", 4.0 if runner.QUICK else 20.0)
FANOUT_CLIENTS = runner.env("BENCH_FANOUT_CLIENTS", 2)  # WebSocket client processes
P99_TARGET_MS = 100.0
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
    if headline := sessions.get(f"{FANOUT_LAYERS[0]} {FANOUT_SOCKETS[0]}"):
        out["fanout"] = headline
        runner.log(f"fan-out p99 {headline['latency_from_response_ms']}")
    runner.log("idle connections with the default Redis pool settings")
    env = {"BENCH_REDIS_DEFAULT_POOL": "1"}
    out["default_pool_idle"] = ctx.with_servers("-defaultpool", env, lambda: default_pool(ctx))
    return out


def phase_name(key: str) -> str:
    """The phase (of ``results["other_cores"]``) of the session ``"<layer> <sockets>"``."""
    layer, sockets = key.split()
    return f"fan-out, {LAYERS[layer]}, {sockets} sockets"


def fanout_users(ctx: Context, sockets: int) -> tuple[list[int], dict[int, Any], dict[int, str]]:
    """The connecting users (per salon: owner, admin, requesters; one per socket up to the
    seeded 1,000), each salon's (owner, admin, requesters) and a real simplejwt access token
    for each user."""
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
    return users, members, {u: str(AccessToken.for_user(User(id=u))) for u in users}


def default_pool(ctx: Context) -> dict[str, Any]:
    """On servers using the channel layer's default Redis pool: connect every fan-out user,
    stay idle, count the connections still open, disconnect all at once; count the servers'
    logged errors."""
    users, _members, tokens = fanout_users(ctx, FANOUT_SOCKETS[0])
    errors_before = ctx.servers.log_text().count(runner.ASGI_ERROR)
    pool = wsclient.ClientPool(
        ctx.servers.urls("ws"), users, tokens, path=runner.WS_PATH, processes=1
    )
    time.sleep(FANOUT_IDLE_SECONDS)
    alive = sum(pool.ask("alive"))
    pool.close(batch=None)
    time.sleep(2.0)
    text = ctx.servers.log_text()
    return {
        "connections": pool.connections,
        "connect_errors": pool.error_count,
        "alive_after_idle": alive,
        "idle_seconds": FANOUT_IDLE_SECONDS,
        "server_exceptions": text.count(runner.ASGI_ERROR) - errors_before,
        "redis_timeouts": text.count("redis.exceptions.TimeoutError"),
        "redis_pool_exhausted": text.count("MaxConnectionsError"),
    }


def session(ctx: Context, sockets: int) -> dict[str, Any]:
    """``sockets`` connections (the fan-out users in turn: beyond 1,000 a user has several,
    as with several tabs or devices) from client processes; idle, then one stream per rate."""
    users, members, tokens = fanout_users(ctx, sockets)
    errors_before = ctx.servers.log_text().count(runner.ASGI_ERROR)
    rss_before = ctx.servers.rss_kib()
    pool = wsclient.ClientPool(
        ctx.servers.urls("ws"), [users[i % len(users)] for i in range(sockets)], tokens,
        path=runner.WS_PATH, processes=FANOUT_CLIENTS,
    )  # fmt: skip
    try:
        time.sleep(FANOUT_IDLE_SECONDS)
        rss_after = ctx.servers.rss_kib()
        alive = sum(pool.ask("alive"))
        streams = {str(rate): run_stream(ctx, pool, members, rate) for rate in FANOUT_RATES}
    finally:
        pool.close()
        time.sleep(2.0)
        runner.redis_cleanup()
    growth = sum(rss_after) - sum(rss_before)
    return {
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
        "server_exceptions": ctx.servers.log_text().count(runner.ASGI_ERROR) - errors_before,
        "memory_per_connection_kib": round(growth / max(1, pool.connections), 1),
        # The first rate is the headline; every stream is kept under "streams".
        **streams[str(FANOUT_RATES[0])],
    }


def cpu_seconds(ctx: Context, pool: Any) -> tuple[float, float, float]:
    """CPU seconds so far of the servers, Redis and the WebSocket client processes."""
    with runner.redis_client() as client:
        info = client.info("cpu")
    redis = float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
    return ctx.servers.cpu(), redis, pool.cpu_seconds()


def run_stream(ctx: Context, pool: Any, members: dict[int, Any], rate: float) -> dict[str, Any]:
    """Creates (a requester asks), then approvals (the owner decides), at ``rate`` events/s,
    at most 8 in flight; then who received which frame when."""
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
    recipients = [frozenset({requester, *members[salon][:2]}) for salon, requester in plan]
    events: list[wsclient.Event] = []
    http_errors: list[str] = []

    def record(kind: str, result: Any, planned: list[int]) -> dict[int, int]:
        """The events of the successful requests; their invitations by index of ``plan``."""
        http_errors.extend(result.errors)
        ids = {}
        for s in result.samples:
            if s.status >= 300:
                http_errors.append(f"{s.status} {str(s.body)[:200]}")
                continue
            k = planned[s.index]
            ids[k] = s.body["id"]
            events.append(
                wsclient.Event(kind, s.body["id"], recipients[k], s.sent, s.done, s.status)
            )
        return ids

    async def stream() -> None:
        clients = loadgen.Clients(ctx.servers.urls(), connections=8)
        try:
            asks = [
                loadgen.Req(
                    "POST",
                    "/api/invitations",
                    requester,
                    {"salon": salon, "role": "member", "message": "fan-out"},
                )
                for salon, requester in plan
            ]
            result = await loadgen.run_paced(clients, asks, rate)
            created = record("invitation.created", result, list(range(len(plan))))
            approved = sorted(created)
            decisions = [
                loadgen.Req(
                    "PATCH", f"/api/invitations/{created[k]}/approved", members[plan[k][0]][0]
                )
                for k in approved
            ]
            record(
                "invitation.approved", await loadgen.run_paced(clients, decisions, rate), approved
            )
        finally:
            await clients.aclose()

    pool.ask("reset")
    cpu0 = cpu_seconds(ctx, pool)
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
    cpu1 = cpu_seconds(ctx, pool)
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
    return {**out, **analysis}


# The page -------------------------------------------------------------------------------------


def layer_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every measured stream with its ``layer`` and ``sockets``, in the run's order."""
    return [
        {**stream, "layer": key.split()[0], "sockets": int(key.split()[1])}
        for key, sess in (results.get("fanout_sessions") or {}).items()
        for stream in sess["streams"].values()
    ]


HEADLINE = """\
| 4 | fan-out, {fan[connections]:1} WebSocket clients, {fan[rate]:0} events/s: receipt − HTTP \
response, p99 | < {target:.0f} ms | {latency[p99]:1} ms (p50 {latency[p50]:1} ms) | {ok} |"""
OTHER_RATE = """\
| 4 | the same at {rate:0} events/s | – | p99 {latency_from_response_ms[p99]:1} ms \
(p50 {latency_from_response_ms[p50]:1} ms) | |"""
BY_LAYER = "| 4 | p99 by channel layer, sockets × events/s (section 4) | – | {layers} | |"
DELIVERY = """\
| 4 | frames delivered to non-recipients, every layer and size | 0 | {wrong} \
(missing deliveries: {missing:1}) | {ok} |
| 4 | memory per idle connection, server RSS | – | {fan[memory_per_connection_kib]:1} KiB | |"""


def summary(results: dict[str, Any]) -> list[str]:
    fan = results.get("fanout")
    if not fan:
        return []
    p99 = fan["latency_from_response_ms"].get("p99")
    ok = verdict(p99 is not None and p99 < P99_TARGET_MS)
    rows = [
        fill(
            HEADLINE, fan=fan, latency=fan["latency_from_response_ms"], target=P99_TARGET_MS, ok=ok
        )
    ]
    rows += [fill(OTHER_RATE, **s) for s in fan["streams"].values() if s["rate"] != fan["rate"]]
    table = layer_rows(results)
    if len(table) > 1:
        layers = "; ".join(
            f"{LAYERS[layer]}: "
            + ", ".join(
                fill("{sockets:1} × {rate:0}/s {latency_from_response_ms[p99]:0} ms", **r)
                for r in table
                if r["layer"] == layer
            )
            for layer in dict.fromkeys(r["layer"] for r in table)
        )
        rows.append(fill(BY_LAYER, layers=layers))
    wrong = sum(r["non_recipient_frames"] for r in table)
    missing = sum(r["missing"] for r in table)
    rows += fill(
        DELIVERY, fan=fan, wrong=wrong, missing=missing, ok=verdict(wrong == missing == 0)
    ).splitlines()
    return rows


POOL_FINDING = """\
**The Redis channel layer needs two settings with redis-py 8.** redis-py 8 gives
   each connection a 5 s socket timeout and each pool at most 100 connections by
   default; channels-redis 4.3 waits in `BZPOPMIN` for 5 s. With `"hosts": [REDIS_URL]`
   (the form of the channels-redis documentation),
   {died:1} of {pool[connections]:1} idle connections died within {pool[idle_seconds]:0} s
   ({pool[redis_timeouts]} `redis.exceptions.TimeoutError` in the consumer's receive loop), and \
disconnecting them all at once raised
   {pool[redis_pool_exhausted]} `MaxConnectionsError` in `group_discard`, which leaves stale \
channels in the users' groups.
   The benchmark's servers use
   `{{"address": REDIS_URL, "socket_timeout": 15, "max_connections": 2000}}`; with it,
   {fan[connections_alive_after_idle]:1} of {fan[connections]:1} connections survived \
{fan[idle_seconds]:0} s idle and the servers logged {fan[server_exceptions]} exception(s).
   {example}"""
LAYER_FINDING = """\
**RedisPubSubChannelLayer {verb} RedisChannelLayer at {sockets:1} sockets.** At {rate:0} events/s
   ({pubsub[frames_per_s]:0} frames/s) the p99 from the HTTP response to the frame was \
{p99_pubsub:1} ms with
   pub/sub against {p99_core:1} ms; the servers used {pubsub[cpu_cores][servers]:2} against \
{core[cpu_cores][servers]:2} cores, Redis
   {pubsub[cpu_cores][redis]:2} against {core[cpu_cores][redis]:2}. With pub/sub each process \
subscribes once to each group
   of its sockets and Redis pushes an event to the processes that have a recipient; with
   `RedisChannelLayer` each `group_send` reads the group's members in Redis, then stores a
   message for each process that has one, which the process pops. Which to choose when:
   [Deployment](deployment.md#which-redis-channel-layer)."""


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
    example = (
        "The example project's `configs/extra_conf/channels_conf.py` sets both."
        if example_sets_it
        else "*Proposed*: set both in the example project and document them."
    )
    died = pool["connections"] - pool["alive_after_idle"]
    return [fill(POOL_FINDING, died=died, pool=pool, fan=fan, example=example)]


def layer_finding(results: dict[str, Any]) -> list[str]:
    by = {(r["layer"], r["sockets"], r["rate"]): r for r in layer_rows(results)}
    sockets = max((n for _la, n, _r in by), default=0)
    rate = max((r for _la, _n, r in by), default=0)
    core, pubsub = by.get(("core", sockets, rate)), by.get(("pubsub", sockets, rate))
    if not core or not pubsub:
        return []
    p99_core, p99_pubsub = (r["latency_from_response_ms"].get("p99") or 0 for r in (core, pubsub))
    cpu_core, cpu_pubsub = (
        r["cpu_cores"]["servers"] + r["cpu_cores"]["redis"] for r in (core, pubsub)
    )
    if p99_pubsub <= p99_core and cpu_pubsub <= cpu_core:
        verb = "outran"
    elif p99_pubsub > p99_core and cpu_pubsub > cpu_core:
        verb = "fell behind"
    else:
        verb = "traded with"
    p99 = {"p99_core": p99_core, "p99_pubsub": p99_pubsub}
    return [
        fill(LAYER_FINDING, verb=verb, sockets=sockets, rate=rate, core=core, pubsub=pubsub, **p99)
    ]


SECTION = """\
## 4. Fan-out over WebSockets

{fan[connections]:1} connections ({split} on the {servers} server processes) in {salons:1} \
salons; per salon the owner, an admin and 8 requesters. Each stream: requesters' creates \
(recipients: the requester, the owner, the admin), then the owner's approvals of them, paced \
at a fixed rate with at most 8 requests in flight; {fan[events]:1} events and \
{fan[expected_deliveries]:1} expected deliveries per stream.

| events/s | HTTP p50 / p99 ms | receipt − response p50 / p90 / p99 ms \
| receipt − request sent p50 / p99 ms | delivered | to non-recipients |
|---------:|------------------:|------:|------:|------:|------:|
{rows}

Duplicates: {fan[duplicate_frames]}. At {fan[rate]:0} events/s, {fan[before_response]:1} of \
{fan[delivered]:1} frames arrived before the HTTP response was read: the package sends on \
commit, before the response is written.{stress}
Connecting took {fan[connect_seconds]:1} s ({fan[connect_error_count]} errors); after \
{fan[idle_seconds]:0} s idle {fan[connections_alive_after_idle]:1} connections were open; the \
servers logged {fan[server_exceptions]} exception(s).

Memory: the server processes' RSS grew from {rss_before:1} MiB to {rss_after:1} MiB, \
**{fan[memory_per_connection_kib]:1} KiB per idle connection** (the consumer, uvicorn's \
`websockets` protocol with
permessage-deflate, and the channel layer's bookkeeping).

With the channel layer's default Redis pool (see Findings), {pool[alive_after_idle]:1} of \
{pool[connections]:1} connections were open after {pool[idle_seconds]:0} s idle and the \
servers logged {pool[server_exceptions]:1} exception(s), most while disconnecting.
{short_sessions}
### The two Redis channel layers

`RedisChannelLayer` (`channels_redis.core`, the servers' layer above) against \
`RedisPubSubChannelLayer` (`channels_redis.pubsub`, `"hosts": [REDIS_URL]`), each with \
{sizes} sockets and the same streams. The salons have {users:1} users; with more sockets than \
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
STREAM_ROW = (
    "| {rate:0} | {http_ms[p50]:1} / {http_ms[p99]:1} | {response[p50]:1} / {response[p90]:1} "
    "/ {response[p99]:1} | {latency_from_request_ms[p50]:1} / {latency_from_request_ms[p99]:1} "
    "| {delivered:1} of {expected_deliveries:1} | **{non_recipient_frames}** |"
)
LAYER_ROW = (
    "| `{name}` | {sockets:1} | {rate:0} | {frames_per_s:1} | {response[p50]:1} / "
    "{response[p99]:1} | {missing:1} | **{non_recipient_frames}** | {cpu_cores[servers]:2} / "
    "{cpu_cores[redis]:2} / {cpu_cores[clients]:2} |"
)
SHORT_SESSION = """
{layer}, {sockets} sockets: only {connections:1} connected ({connect_error_count} errors: \
{first_error}).
"""
STRESS = (
    " When events come faster than the two processes serve them, requests queue and the event "
    "loops that forward frames compete with the request threads for the CPU and the GIL: that "
    "is what the faster stream shows."
)


def render(results: dict[str, Any]) -> str:
    fan = results.get("fanout")
    if not fan:
        return ""
    pool, cfg = results["default_pool_idle"], results["config"]
    sessions = {tuple(key.split()): s for key, s in results.get("fanout_sessions", {}).items()}
    p99 = fan["latency_from_response_ms"].get("p99") or 0
    worst = max(st["latency_from_response_ms"].get("p99") or 0 for st in fan["streams"].values())
    streams = [{**s, "response": s["latency_from_response_ms"]} for s in fan["streams"].values()]
    layers = [
        {**r, "name": LAYERS[r["layer"]], "response": r["latency_from_response_ms"]}
        for r in layer_rows(results)
    ]
    short = [
        {**s, "layer": LAYERS[layer], "sockets": n, "first_error": s["connect_errors"][:1]}
        for (layer, n), s in sessions.items()
        if s["connections"] < int(n)
    ]
    return fill(
        SECTION,
        fan=fan,
        pool=pool,
        split=" + ".join(str(c) for c in fan["connections_per_server"]),
        servers=cfg["servers"],
        salons=fan["connections"] // 10,
        rows=fill_rows(STREAM_ROW, streams),
        stress=STRESS if p99 and worst > 2 * max(p99, 1.0) else "",
        rss_before=sum(fan["rss_kib_before"]) / 1024,
        rss_after=sum(fan["rss_kib_after"]) / 1024,
        short_sessions="".join(fill(SHORT_SESSION, **s) for s in short),
        sizes=" and ".join(fmt(n) for n in cfg.get("fanout_sockets", [])),
        users=fan.get("users", fan["connections"]),
        clients=cfg.get("fanout_clients", 1),
        connect="; ".join(
            f"{LAYERS[layer]} {fmt(int(n))}: {fmt(s['connect_seconds'], 1)} s"
            for (layer, n), s in sessions.items()
        ),
        others=" / ".join(
            fmt(results.get("other_cores", {}).get(phase_name(" ".join(key))), 2)
            for key in sessions
        ),
        layer_rows=fill_rows(LAYER_ROW, layers),
    )
