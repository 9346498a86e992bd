"""Fan-out over WebSockets: both channels-redis layers at two socket counts, streams of
creates and approvals at fixed rates, receipt latency, frames/s, delivery to recipients only,
CPU, memory per idle connection, and idle connections with the default Redis pool."""

from __future__ import annotations

import contextlib
import itertools
import time
from collections import Counter
from typing import Any

import loadgen
import runner
import seed
import wsclient
from runner import ASGI_ERROR, Context, env, env_list, fill, fill_rows, fmt, verdict

NAME = "fanout"
#: BENCH_CHANNEL_LAYER of the servers -> the layer's class (channels_redis.core / .pubsub)
LAYERS = {"core": "RedisChannelLayer", "pubsub": "RedisPubSubChannelLayer"}
FANOUT_LAYERS = env_list("BENCH_FANOUT_LAYERS", "core,pubsub", str)
FANOUT_SOCKETS = env_list("BENCH_FANOUT_SOCKETS", "200,500" if runner.QUICK else "1000,5000")
FANOUT_EVENTS = env("BENCH_FANOUT_EVENTS", 60 if runner.QUICK else 400)  # per stream
FANOUT_RATES = env_list("BENCH_FANOUT_RATES", "10,25", float)
FANOUT_IDLE_SECONDS = env("BENCH_FANOUT_IDLE", 4.0 if runner.QUICK else 20.0)
FANOUT_CLIENTS = env("BENCH_FANOUT_CLIENTS", 2)  # WebSocket client processes
P99_TARGET_MS = 100.0
EXAMPLE_CONF = runner.REPO / "example_project" / "configs" / "extra_conf" / "channels_conf.py"
_ASKED: set[tuple[int, int]] = set()  # the (salon, requester) pairs the run's streams used


def run(ctx: Context) -> dict[str, Any]:
    ctx.grow_to(runner.MAIN_SCALE)
    ctx.results["config"].update(
        fanout_layers=FANOUT_LAYERS, fanout_sockets=FANOUT_SOCKETS, fanout_events=FANOUT_EVENTS,
        fanout_rates=FANOUT_RATES, fanout_idle_seconds=FANOUT_IDLE_SECONDS,
        fanout_clients=FANOUT_CLIENTS,
    )  # fmt: skip
    sessions: dict[str, Any] = {}

    def measure(layer: str) -> None:
        for sockets in FANOUT_SOCKETS:
            key = f"{layer} {sockets}"
            sessions[key] = ctx.phase(phase_name(key), lambda s=sockets: session(ctx, s))

    for layer in FANOUT_LAYERS:  # "core" is the main servers' layer
        if layer == "core":
            measure(layer)
        else:
            ctx.with_servers(
                f"-{layer}", {"BENCH_CHANNEL_LAYER": layer}, lambda la=layer: measure(la)
            )
    out: dict[str, Any] = {"fanout_sessions": sessions}
    if headline := sessions.get(f"{FANOUT_LAYERS[0]} {FANOUT_SOCKETS[0]}"):
        out["fanout"] = headline
        runner.log(f"fan-out p99 {headline['latency_from_response_ms'].get('p99')} ms")
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
    seeded 1,000), each salon's (owner, admin, requesters), a simplejwt access token each."""
    from django.contrib.auth import get_user_model
    from rest_framework_simplejwt.tokens import AccessToken

    layout, per_salon = ctx.layout, seed.FANOUT_REQUESTERS_PER_SALON
    users: list[int] = []
    members: dict[int, tuple[int, int, list[int]]] = {}
    for k, salon in enumerate(layout.fanout_salons()[: max(1, sockets // (2 + per_salon))]):
        fans = [layout.fanout_requester(k, j) for j in range(per_salon)]
        members[salon] = (layout.owner_of(salon), layout.fanout_admin(k), fans)
        users += [members[salon][0], members[salon][1], *fans]
    User = get_user_model()
    return users, members, {u: str(AccessToken.for_user(User(id=u))) for u in users}


def default_pool(ctx: Context) -> dict[str, Any]:
    """On servers using the channel layer's default Redis pool: connect every fan-out user,
    stay idle, count the connections still open, disconnect all at once; count the servers'
    logged errors."""
    users, _members, tokens = fanout_users(ctx, FANOUT_SOCKETS[0])
    errors_before = ctx.servers.log_text().count(ASGI_ERROR)
    pool = wsclient.ClientPool(ctx.servers.urls("ws"), users, tokens, processes=1)
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
        "server_exceptions": text.count(ASGI_ERROR) - errors_before,
        "redis_timeouts": text.count("redis.exceptions.TimeoutError"),
        "redis_pool_exhausted": text.count("MaxConnectionsError"),
    }


def session(ctx: Context, sockets: int) -> dict[str, Any]:
    """``sockets`` connections (the fan-out users in turn: beyond 1,000 a user has several,
    as with several tabs or devices); idle, then one stream per rate."""
    users, members, tokens = fanout_users(ctx, sockets)
    errors_before = ctx.servers.log_text().count(ASGI_ERROR)
    rss_before = ctx.servers.rss_kib()
    users_in_turn = [users[i % len(users)] for i in range(sockets)]
    pool = wsclient.ClientPool(
        ctx.servers.urls("ws"), users_in_turn, tokens, processes=FANOUT_CLIENTS
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
        "server_exceptions": ctx.servers.log_text().count(ASGI_ERROR) - errors_before,
        "memory_per_connection_kib": round(growth / max(1, pool.connections), 1),
        **streams[str(FANOUT_RATES[0])],  # the first rate is the headline
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
    fans = [fan for _owner, _admin, group in members.values() for fan in group]
    pairs = ((salon, fan) for fan in fans for salon in members if (salon, fan) not in _ASKED)
    plan = list(itertools.islice(pairs, FANOUT_EVENTS // 2))  # a pair asks once in the run
    if len(plan) < FANOUT_EVENTS // 2:
        raise RuntimeError("not enough fan-out requesters for the requested events")
    _ASKED.update(plan)
    body = {"role": "member", "message": "fan-out"}
    asks = [loadgen.Req("POST", "/api/invitations", r, {"salon": s, **body}) for s, r in plan]

    async def stream() -> list[tuple[str, Any, Any]]:
        """The creates, then the approvals of those created: (kind, result, index in plan of
        each request)."""
        clients = loadgen.Clients(ctx.servers.urls(), connections=8)
        try:
            created = await loadgen.run_paced(clients, asks, rate)
            ids = {s.index: s.body["id"] for s in created.samples if s.status < 300}
            approved = sorted(ids)
            decisions = [
                loadgen.Req("PATCH", f"/api/invitations/{ids[k]}/approved", members[plan[k][0]][0])
                for k in approved
            ]
            approvals = await loadgen.run_paced(clients, decisions, rate)
        finally:
            await clients.aclose()
        return [("created", created, range(len(plan))), ("approved", approvals, approved)]

    pool.take()  # forget the frames so far
    cpu0 = cpu_seconds(ctx, pool)
    begin = time.perf_counter()
    requests = ctx.run_async(stream())
    duration = time.perf_counter() - begin
    events: list[wsclient.Event] = []
    http_errors: list[str] = []
    for kind, result, planned in requests:
        http_errors += result.errors
        for s in result.samples:
            if s.status >= 300:
                http_errors.append(f"{s.status} {str(s.body)[:200]}")
                continue
            salon, requester = plan[planned[s.index]]
            recipients = frozenset({requester, *members[salon][:2]})
            event = wsclient.Event(f"invitation.{kind}", s.body["id"], recipients, s.sent, s.done)
            events.append(event)
    # Wait (bounded) for the last frames; frames to non-recipients would have come meanwhile.
    deadline = time.perf_counter() + 10
    sockets_of = Counter(pool.connected)  # a socket that did not connect expects nothing
    expected = sum(sockets_of[user] for e in events for user in e.recipients)
    while time.perf_counter() < deadline and sum(pool.ask("count")) < expected:
        time.sleep(0.1)
    time.sleep(1.0)
    wall = time.perf_counter() - begin
    cpu1 = cpu_seconds(ctx, pool)
    analysis = wsclient.analyse(events, pool.take())
    return {
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
        **analysis,
    }


# The page -------------------------------------------------------------------------------------

TEMPLATES = runner.templates(NAME)


def sessions(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The measured sessions, each with its ``key``, ``layer``, ``name`` (the layer's class)
    and ``sockets``."""
    out, cfg = [], results.get("config", {})
    for key, session in (results.get("fanout_sessions") or {}).items():
        layer, sockets = key.split()
        if layer not in cfg.get("fanout_layers", [layer]) or int(sockets) not in cfg.get(
            "fanout_sockets", [int(sockets)]
        ):
            continue  # kept from an earlier run with other settings
        named = {"key": key, "layer": layer, "name": LAYERS[layer], "sockets": int(sockets)}
        out.append({**session, **named})
    return out


def layer_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every measured stream with its session's ``layer``, ``name`` and ``sockets``."""
    return [
        {**stream, "layer": s["layer"], "name": s["name"], "sockets": s["sockets"]}
        for s in sessions(results)
        for stream in s["streams"].values()
    ]


def summary(results: dict[str, Any]) -> list[str]:
    fan = results.get("fanout")
    if not fan:
        return []
    p99 = fan["latency_from_response_ms"].get("p99")
    ok = verdict(p99 is not None and p99 < P99_TARGET_MS)
    rows = [fill(TEMPLATES["SUMMARY_HEADLINE"], **fan, target=P99_TARGET_MS, ok=ok)]
    others = [s for s in fan["streams"].values() if s["rate"] != fan["rate"]]
    rows += [fill(TEMPLATES["SUMMARY_OTHER_RATE"], **s) for s in others]
    table = layer_rows(results)
    if len(table) > 1:
        by_layer: dict[str, list[str]] = {}
        for r in table:
            by_layer.setdefault(r["name"], []).append(fill(TEMPLATES["SUMMARY_LAYER_P99"], **r))
        layers = "; ".join(f"{name}: {', '.join(cells)}" for name, cells in by_layer.items())
        rows.append(fill(TEMPLATES["SUMMARY_BY_LAYER"], layers=layers))
    wrong = sum(r["non_recipient_frames"] for r in table)
    missing = sum(r["missing"] for r in table)
    ok = verdict(wrong == missing == 0)
    delivery = fill(TEMPLATES["SUMMARY_DELIVERY"], fan=fan, wrong=wrong, missing=missing, ok=ok)
    return rows + delivery.splitlines()


def findings(results: dict[str, Any]) -> list[str]:
    return pool_finding(results) + layer_finding(results)


def pool_finding(results: dict[str, Any]) -> list[str]:
    fan, pool = results.get("fanout"), results.get("default_pool_idle")
    if not fan:
        return []
    if pool["alive_after_idle"] == pool["connections"] and not pool["server_exceptions"]:
        return []
    sets_it = False
    with contextlib.suppress(OSError):
        sets_it = "socket_timeout" in EXAMPLE_CONF.read_text()
    example = TEMPLATES["EXAMPLE_SETS_IT" if sets_it else "EXAMPLE_PROPOSED"]
    died = pool["connections"] - pool["alive_after_idle"]
    return [fill(TEMPLATES["FINDING_POOL"], died=died, pool=pool, fan=fan, example=example)]


def layer_finding(results: dict[str, Any]) -> list[str]:
    """Pub/sub against the core layer at the most sockets and the fastest rate."""
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
    verbs = {(True, True): "outran", (False, False): "fell behind"}  # faster, leaner
    verb = verbs.get((p99_pubsub <= p99_core, cpu_pubsub <= cpu_core), "traded with")
    values = {"verb": verb, "sockets": sockets, "rate": rate, "core": core, "pubsub": pubsub}
    return [fill(TEMPLATES["FINDING_LAYERS"], **values, p99_core=p99_core, p99_pubsub=p99_pubsub)]


def render(results: dict[str, Any]) -> str:
    fan = results.get("fanout")
    if not fan:
        return ""
    cfg = results["config"]
    measured = sessions(results)
    p99 = fan["latency_from_response_ms"].get("p99") or 0
    worst = max(s["latency_from_response_ms"].get("p99") or 0 for s in fan["streams"].values())
    short = [
        fill(TEMPLATES["SHORT_SESSION"], **s, first_error=(s["connect_errors"] or [None])[0])
        for s in measured
        if s["connections"] < s["sockets"]
    ]
    return fill(
        TEMPLATES["SECTION"],
        fan=fan,
        pool=results["default_pool_idle"],
        split=" + ".join(str(c) for c in fan["connections_per_server"]),
        servers=cfg["servers"],
        salons=fan.get("users", fan["connections"]) // 10,
        rows=fill_rows(TEMPLATES["STREAM_ROW"], fan["streams"].values()),
        stress=" " + TEMPLATES["STRESS"] if p99 and worst > 2 * max(p99, 1.0) else "",
        rss_before=sum(fan["rss_kib_before"]) / 1024,
        rss_after=sum(fan["rss_kib_after"]) / 1024,
        short_sessions="".join(f"\n{text}\n" for text in short),
        sizes=" and ".join(fmt(n) for n in cfg.get("fanout_sockets", [])),
        users=fan.get("users", fan["connections"]),
        clients=cfg.get("fanout_clients", 1),
        connect="; ".join(fill(TEMPLATES["CONNECT"], **s) for s in measured),
        others=" / ".join(
            fmt(results.get("other_cores", {}).get(phase_name(s["key"])), 2) for s in measured
        ),
        layer_rows=fill_rows(TEMPLATES["LAYER_ROW"], layer_rows(results)),
    )
