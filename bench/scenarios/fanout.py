"""Fan-out over WebSockets: both channels-redis layers at two socket counts, streams of
creates and approvals at fixed rates, receipt latency, frames/s, delivery to recipients only,
CPU, memory per idle connection, and idle connections with the default Redis pool."""

from __future__ import annotations

import itertools
import time
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
        for n in FANOUT_SOCKETS:
            sessions[f"{layer} {n}"] = ctx.phase(phase_name(layer, n), lambda n=n: session(ctx, n))

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


def phase_name(layer: str, sockets: int) -> str:
    """The phase (of ``results["other_cores"]``) of a session."""
    return f"fan-out, {LAYERS[layer]}, {sockets} sockets"


def fanout_users(ctx: Context, sockets: int) -> tuple[list[int], dict[int, Any], dict[int, str]]:
    """The connecting users (per salon: owner, admin, requesters; one per socket up to the
    seeded 1,000), each salon's (owner, admin, requesters), a simplejwt access token each."""
    layout, per_salon = ctx.layout, seed.FANOUT_REQUESTERS_PER_SALON
    members: dict[int, tuple[int, int, list[int]]] = {}
    for k, salon in enumerate(layout.fanout_salons()[: max(1, sockets // (2 + per_salon))]):
        fans = [layout.fanout_requester(k, j) for j in range(per_salon)]
        members[salon] = (layout.owner_of(salon), layout.fanout_admin(k), fans)
    users = [user for owner, admin, fans in members.values() for user in (owner, admin, *fans)]
    return users, members, dict(zip(users, wsclient.access_tokens(users), strict=True))


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
    in_turn = [users[i % len(users)] for i in range(sockets)]
    pool = wsclient.ClientPool(ctx.servers.urls("ws"), in_turn, tokens, processes=FANOUT_CLIENTS)
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


def cpu_seconds(ctx: Context, pool: Any) -> dict[str, float]:
    """CPU seconds so far of the servers, Redis and the WebSocket client processes."""
    with runner.redis_client() as client:
        info = client.info("cpu")
    redis = float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
    return {"servers": ctx.servers.cpu(), "redis": redis, "clients": pool.cpu_seconds()}


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
            ids = dict(sorted((s.index, s.body["id"]) for s in created.ok))
            decisions = [
                loadgen.Req("PATCH", f"/api/invitations/{i}/approved", members[plan[k][0]][0])
                for k, i in ids.items()
            ]
            approvals = await loadgen.run_paced(clients, decisions, rate)
        finally:
            await clients.aclose()
        return [("created", created, range(len(plan))), ("approved", approvals, list(ids))]

    pool.ask("take")  # forget the frames so far
    cpu0 = cpu_seconds(ctx, pool)
    begin = time.perf_counter()
    requests = ctx.run_async(stream())
    duration = time.perf_counter() - begin
    events, http_errors = [], []
    for kind, result, planned in requests:
        failed = [s for s in result.samples if s.status >= 300]
        http_errors += result.errors + [f"{s.status} {str(s.body)[:200]}" for s in failed]
        for s in result.ok:
            salon, requester = plan[planned[s.index]]
            recipients = frozenset({requester, *members[salon][:2]})
            event = wsclient.Event(f"invitation.{kind}", s.body["id"], recipients, s.sent, s.done)
            events.append(event)
    # Wait (bounded) for the last frames; frames to non-recipients would have come meanwhile.
    deadline = time.perf_counter() + 10
    # A socket that did not connect expects nothing.
    expected = sum(pool.connected[user] for e in events for user in e.recipients)
    while time.perf_counter() < deadline and sum(pool.ask("count")) < expected:
        time.sleep(0.1)
    time.sleep(1.0)
    wall = time.perf_counter() - begin
    cpu1 = cpu_seconds(ctx, pool)
    analysis = wsclient.analyse(events, pool.ask("take"))
    return {
        "rate": rate,
        "events": len(events),
        "seconds": round(duration, 2),
        "frames_per_s": round(analysis["delivered"] / duration, 1),
        # Cores busy on average from the first request to the last frame (and 1 s more).
        "cpu_cores": {who: round((cpu1[who] - cpu0[who]) / wall, 2) for who in cpu0},
        "http_errors": http_errors[:5],
        "http_error_count": len(http_errors),
        "http_ms": loadgen.summary_ms([e.done - e.sent for e in events]),
        **analysis,
    }


# The page -------------------------------------------------------------------------------------

TEMPLATES = runner.templates(NAME)


def sessions(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The sessions of the current settings (not those kept from earlier runs with others),
    each with its ``layer``, ``name`` (the layer's class), ``sockets`` and ``others`` (the cores
    the machine's other processes used meanwhile)."""
    cfg, others, out = results["config"], results.get("other_cores", {}), []
    for key, session in results.get("fanout_sessions", {}).items():
        layer, sockets = key.split()
        if layer in cfg["fanout_layers"] and int(sockets) in cfg["fanout_sockets"]:
            named = {"layer": layer, "name": LAYERS[layer], "sockets": int(sockets)}
            out.append({**session, **named, "others": others.get(phase_name(layer, sockets))})
    return out


def layer_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every measured stream with its session's figures (``layer``, ``name``, ``sockets``...)."""
    return [{**s, **stream} for s in sessions(results) for stream in s["streams"].values()]


def summary(results: dict[str, Any]) -> list[str]:
    if not (fan := results.get("fanout")):
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
    wrong, missing = (sum(r[key] for r in table) for key in ("non_recipient_frames", "missing"))
    ok = verdict(wrong == missing == 0)
    delivery = fill(TEMPLATES["SUMMARY_DELIVERY"], fan=fan, wrong=wrong, missing=missing, ok=ok)
    return rows + delivery.splitlines()


def findings(results: dict[str, Any]) -> list[str]:
    """The default Redis pool's, if its idle connections died or it logged exceptions; pub/sub
    against the core layer at the most sockets and the fastest rate."""
    fan, pool, out = results.get("fanout"), results.get("default_pool_idle"), []
    if not fan:
        return out
    if pool["alive_after_idle"] != pool["connections"] or pool["server_exceptions"]:
        sets_it = EXAMPLE_CONF.is_file() and "socket_timeout" in EXAMPLE_CONF.read_text()
        example = TEMPLATES["EXAMPLE_SETS_IT" if sets_it else "EXAMPLE_PROPOSED"]
        died = pool["connections"] - pool["alive_after_idle"]
        out.append(fill(TEMPLATES["FINDING_POOL"], died=died, pool=pool, fan=fan, example=example))
    by = {(r["layer"], r["sockets"], r["rate"]): r for r in layer_rows(results)}
    most = max((n for _la, n, _r in by), default=0), max((r for *_, r in by), default=0)
    core, pubsub = by.get(("core", *most)), by.get(("pubsub", *most))
    if core and pubsub:
        p99 = [r["latency_from_response_ms"].get("p99") or 0 for r in (pubsub, core)]
        cpu = [r["cpu_cores"]["servers"] + r["cpu_cores"]["redis"] for r in (pubsub, core)]
        verbs = {(True, True): "outran", (False, False): "fell behind"}  # faster, leaner
        verb = verbs.get((p99[0] <= p99[1], cpu[0] <= cpu[1]), "traded with")
        out.append(fill(TEMPLATES["FINDING_LAYERS"], verb=verb, core=core, pubsub=pubsub))
    return out


def render(results: dict[str, Any]) -> str:
    if not (fan := results.get("fanout")):
        return ""
    cfg, measured = results["config"], sessions(results)
    p99 = fan["latency_from_response_ms"].get("p99") or 0
    worst = max(s["latency_from_response_ms"].get("p99") or 0 for s in fan["streams"].values())
    short = [
        fill(TEMPLATES["SHORT_SESSION"], **s) for s in measured if s["connections"] < s["sockets"]
    ]
    return fill(
        TEMPLATES["SECTION"],
        fan=fan,
        cfg=cfg,
        pool=results["default_pool_idle"],
        split=" + ".join(str(c) for c in fan["connections_per_server"]),
        salons=fan["users"] // 10,
        rows=fill_rows(TEMPLATES["STREAM_ROW"], fan["streams"].values()),
        stress=" " + TEMPLATES["STRESS"] if p99 and worst > 2 * max(p99, 1.0) else "",
        rss_before=sum(fan["rss_kib_before"]) / 1024,
        rss_after=sum(fan["rss_kib_after"]) / 1024,
        short_sessions="".join(f"\n{text}\n" for text in short),
        sizes=" and ".join(fmt(n) for n in cfg["fanout_sockets"]),
        connect="; ".join(fill(TEMPLATES["CONNECT"], **s) for s in measured),
        others=" / ".join(fmt(s["others"], 2) for s in measured),
        layer_rows=fill_rows(TEMPLATES["LAYER_ROW"], layer_rows(results)),
    )
