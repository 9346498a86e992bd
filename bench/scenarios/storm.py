# ruff: noqa: RUF001 - the page uses typographic characters (times, dashes) on purpose
"""Reconnect storm: after a deploy every client reconnects at once. 2,000 sockets open within
one second, alternating between the two server processes, each with a real simplejwt access
token in the query string and ``?since=`` the newest event, as the JavaScript client
reconnects; each waits for the consumer's accept (the 101) and for its first frame
(``resumed``). Measured on daphne and on uvicorn with the settings the documentation gives
for storms, and on daphne with its defaults.

The sockets are opened by several client processes (``BENCH_STORM_CLIENTS``, 2 by default),
so the client is less likely to be what limits the rate; how late each socket started against
its plan, and the clients' CPU, are reported to show whether it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import resource
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import runner
from runner import SERVERS, Context, Server, aggregate_rounds, env_float, env_int, fmt, verdict

NAME = "storm"
SOCKETS = env_int("BENCH_STORM_SOCKETS", 400 if runner.QUICK else 2000)
WINDOW_S = env_float("BENCH_STORM_WINDOW", 1.0)
CLIENTS = env_int("BENCH_STORM_CLIENTS", 2)
ROUNDS = env_int("BENCH_STORM_ROUNDS", runner.ROUNDS)
OPEN_TIMEOUT_S = 30.0  # the client's; longer than the servers' own, so theirs show
FRAME_TIMEOUT_S = 30.0
LEAD_S = 2.0  # between handing the plan to the client processes and the first socket
PATH = "/ws/api/invitation_to_auto_salon/"

# The settings docs/websocket.md ("Reconnect storms") gives for storms; no access log (``-v
# 0``), as the benchmark's uvicorn.
DAPHNE_STORM = (
    "-m daphne -e tcp:port={port}:interface=127.0.0.1:backlog=4096 "
    "--websocket_connect_timeout 30 -v 0 benchproject.asgi:application"
)
# uvicorn's own default WebSocket protocol (``--ws auto``), which sets no time limit on a
# handshake; ``--ws websockets``, the other scenarios', gives one 10 s.
UVICORN_STORM = Server.UVICORN.replace("--ws websockets", "--ws websockets-sansio")
#: (name, server command, what it is); the first two are the measured targets.
CONFIGS = [
    ("daphne", DAPHNE_STORM, "backlog 4096, `--websocket_connect_timeout 30`, `-v 0`"),
    ("uvicorn", UVICORN_STORM, "`--backlog 4096`, `--ws websockets-sansio`, no access log"),
    ("daphne, defaults", Server.DAPHNE, "backlog 50, `--websocket_connect_timeout 5`"),
]
TARGETS = ("daphne", "uvicorn")
KEYS = (
    "connected",
    "failed",
    "all_connected_s",
    "last_open_s",
    "open_p50",
    "open_p99",
    "first_p50",
    "first_p99",
    "handshakes_per_s_per_process",
    "server_cpu_ms_per_socket",
    "start_lag_p99_ms",
    "offered_s",
    "client_cores",
)


def run(ctx: Context) -> dict[str, Any]:
    ctx.results["config"].update(
        storm_sockets=SOCKETS,
        storm_window_s=WINDOW_S,
        storm_client_processes=CLIENTS,
        storm_rounds=ROUNDS,
    )
    tokens, since = tokens_and_since(ctx)
    out: dict[str, Any] = {}
    raise_fd_limit()
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(CLIENTS, mp_context=spawn) as pool:
        list(pool.map(_warm, range(CLIENTS)))  # the client processes import websockets now
        for name, command, _settings in CONFIGS:
            out[name] = ctx.phase(
                f"storm, {name}",
                lambda name=name, command=command: ctx.with_servers(
                    f"-storm-{name.split(',')[0]}",
                    {},
                    lambda: measure(ctx, pool, tokens, since),
                    command=command,
                ),
            )
            runner.log(
                f"storm {name}: {int(out[name]['connected'])} of {SOCKETS} connected, all after "
                f"{out[name].get('all_connected_s')} s; failures {out[name]['failures']}"
            )
    return {"storm": out}


def raise_fd_limit() -> None:
    """Sockets are file descriptors: raise this process's limit (the servers and client
    processes it starts inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4 * SOCKETS + 1024
    if soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < SOCKETS + 256:
        raise RuntimeError(f"the file-descriptor limit is too low for {SOCKETS} sockets")


def tokens_and_since(ctx: Context) -> tuple[list[str], int]:
    """A real simplejwt access token for each socket (distinct users while there are
    enough; then users again, as a user with several tabs), and the newest event id."""
    from django.contrib.auth import get_user_model
    from rest_framework_simplejwt.tokens import AccessToken

    from salon_invitations import events

    User = get_user_model()
    users = list(
        User.objects.filter(is_active=True).order_by("pk").values_list("pk", flat=True)[:SOCKETS]
    )
    per_user = {u: str(AccessToken.for_user(User(pk=u))) for u in users}
    return [per_user[users[i % len(users)]] for i in range(SOCKETS)], events.newest_id()


def _warm(_index: int) -> int:
    import websockets  # noqa: F401

    return 0


def _client_process(
    plan: list[tuple[int, float, str]], start_at: float
) -> tuple[list[tuple[Any, ...]], float]:
    """In a client process: run its share of the storm; the attempts and the CPU seconds it
    used."""
    import wsclient

    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    before = resource.getrusage(resource.RUSAGE_SELF)
    attempts = asyncio.run(
        wsclient.storm(
            plan,
            start_at,
            first_frame="resumed",
            open_timeout=OPEN_TIMEOUT_S,
            frame_timeout=FRAME_TIMEOUT_S,
        )
    )
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    rows = [(a.server, a.due, a.started, a.opened, a.first, a.outcome) for a in attempts]
    return rows, cpu


def measure(ctx: Context, pool: ProcessPoolExecutor, tokens: list[str], since: int) -> dict:
    servers = ctx.servers
    urls = servers.ws_urls
    plan = [
        (i % SERVERS, i * WINDOW_S / SOCKETS, f"{urls[i % SERVERS]}{PATH}?token={t}&since={since}")
        for i, t in enumerate(tokens)
    ]
    # Socket i goes to server i % 2 and client process (i // 2) % CLIENTS.
    parts = [
        [p for i, p in enumerate(plan) if (i // SERVERS) % CLIENTS == c] for c in range(CLIENTS)
    ]
    exceptions_before = servers.log_text().count("Exception in ASGI application")
    rounds = []
    for _round in range(ROUNDS):
        if not servers.alive():
            raise RuntimeError("a server process died; see bench/results/logs/")
        cpu0 = [s.cpu_seconds() for s in servers.servers]
        start_at = time.monotonic() + LEAD_S
        futures = [pool.submit(_client_process, part, start_at) for part in parts]
        outcomes = [f.result(timeout=LEAD_S + WINDOW_S + OPEN_TIMEOUT_S + FRAME_TIMEOUT_S + 60)
                    for f in futures]  # fmt: skip
        wall = time.monotonic() - start_at
        server_cpu = [s.cpu_seconds() - c for s, c in zip(servers.servers, cpu0, strict=True)]
        rows = [row for part_rows, _cpu in outcomes for row in part_rows]
        rounds.append(round_stats(rows, server_cpu, sum(c for _r, c in outcomes) / wall))
        time.sleep(2.0)  # the servers finish the disconnects
    out = aggregate_rounds(rounds, KEYS)
    failures: Counter[str] = Counter()
    for r in rounds:
        failures.update(r["failure_reasons"])
    out["failures"] = dict(failures.most_common())
    out["connected_per_round"] = [r["connected"] for r in rounds]
    out["per_round"] = rounds
    out["server_exceptions"] = (
        servers.log_text().count("Exception in ASGI application") - exceptions_before
    )
    return out


def round_stats(rows: list[tuple[Any, ...]], server_cpu: list[float], client_cores: float) -> dict:
    import loadgen

    ok = [r for r in rows if r[5] == "ok"]
    failed = [r for r in rows if r[5] != "ok"]
    per_server = []
    for i in range(SERVERS):
        mine = [r for r in ok if r[0] == i]
        span = max((r[3] for r in mine), default=0.0) - min((r[2] for r in mine), default=0.0)
        per_server.append(
            {
                "connected": len(mine),
                "handshakes_per_s": round(len(mine) / span, 1) if span > 0 else None,
                "cpu_ms_per_socket": round(server_cpu[i] * 1000 / max(1, len(mine)), 3),
            }
        )
    rates = [s["handshakes_per_s"] for s in per_server if s["handshakes_per_s"]]
    opened = loadgen.summary_ms([r[3] - r[2] for r in ok])
    first = loadgen.summary_ms([r[4] - r[2] for r in ok])
    lag = loadgen.summary_ms([max(0.0, r[2] - r[1]) for r in rows])
    last_open = max((r[3] for r in ok), default=None)
    return {
        "connected": len(ok),
        "failed": len(failed),
        "failure_reasons": dict(Counter(r[5] for r in failed)),
        "all_connected_s": round(last_open, 3) if not failed and last_open else None,
        "last_open_s": round(last_open, 3) if last_open is not None else None,
        "open_p50": opened.get("p50"),
        "open_p99": opened.get("p99"),
        "first_p50": first.get("p50"),
        "first_p99": first.get("p99"),
        "per_server": per_server,
        "handshakes_per_s_per_process": round(sum(rates) / len(rates), 1) if rates else None,
        "server_cpu_ms_per_socket": round(sum(server_cpu) * 1000 / max(1, len(ok)), 3),
        "start_lag_p99_ms": lag.get("p99"),
        "offered_s": round(max(r[2] for r in rows) - min(r[2] for r in rows), 3),
        "client_cores": round(client_cores, 2),
    }


# The page -------------------------------------------------------------------------------------


def _connected(s: dict[str, Any]) -> str:
    low, high = s.get("connected_min"), s.get("connected_max")
    text = f"{fmt(int(s['connected']))}"
    if low is not None and low != high:
        text += f" ({fmt(int(low))}–{fmt(int(high))})"
    return text


def _all_after(s: dict[str, Any], n: int) -> str:
    """When the last socket connected, if every socket of every round did."""
    if s.get("connected_min") != n:
        return "–"
    return f"{fmt(s.get('all_connected_s'), 2)} s"


def summary(results: dict[str, Any]) -> list[str]:
    storm, cfg = results.get("storm"), results["config"]
    if not storm:
        return []
    n = cfg.get("storm_sockets", SOCKETS)
    window = cfg.get("storm_window_s", WINDOW_S)
    rows = []
    for name in TARGETS:
        s = storm.get(name)
        if not s:
            continue
        every_round = s.get("connected_min") == n
        rows.append(
            f"| 6 | reconnect storm, {name}: {fmt(n)} sockets opening within "
            f"{fmt(window, 0)} s over {cfg['servers']} processes connect "
            f"| {fmt(n)} of {fmt(n)} | {_connected(s)} of {fmt(n)} (median of "
            f"{s['rounds']} rounds), all connected after {_all_after(s, n)} "
            f"| {verdict(every_round)} |"
        )
        rows.append(
            f"| 6 | handshakes/s per process, {name} | – "
            f"| {fmt(s.get('handshakes_per_s_per_process'), 0)} (101 p99 "
            f"{fmt(s.get('open_p99'), 0)} ms) | |"
        )
    return rows


FINDING = """\
**daphne's defaults drop a reconnect storm.** With its listen backlog of 50 and its 5 s
   handshake timeout, {lost} of {n} sockets opening within {window} s did not connect
   (median of {rounds} rounds; over all rounds: {reasons}). With a backlog of 4096 and
   `--websocket_connect_timeout 30`, the settings the WebSocket page gives for reconnect
   storms, {connected} did."""


def findings(results: dict[str, Any]) -> list[str]:
    storm = results.get("storm") or {}
    default, tuned = storm.get("daphne, defaults"), storm.get("daphne")
    if not default or not tuned or not default.get("failed"):
        return []
    n = results["config"].get("storm_sockets", SOCKETS)
    reasons = "; ".join(f"{why}: {fmt(count)}" for why, count in default["failures"].items())
    return [
        FINDING.format(
            lost=fmt(int(default["failed"])),
            n=fmt(n),
            window=fmt(results["config"].get("storm_window_s", WINDOW_S), 0),
            rounds=default["rounds"],
            reasons=reasons,
            connected=_connected(tuned),
        )
    ]


SECTION = """\
## 6. Reconnect storm

After a deploy every client reconnects at once. {n} sockets open evenly within {window} s,
alternating between the {servers} server processes, from {clients} client processes; each has
a real access token in the query string and `?since=` the newest event id, as the JavaScript
client reconnects. A socket *connects* when the server's 101 arrives (the consumer accepted:
the token was checked and the socket joined its user's group) and its first frame, `resumed`,
follows. Medians of {rounds} rounds (min–max of the connected count in brackets).

| server, settings | connected | not connected, why (all rounds) | all connected after \
| 101 p50 / p99 | `resumed` p50 / p99 | handshakes/s per process | server CPU per socket \
| client start lag p99, client cores |
|---|--:|---|--:|--:|--:|--:|--:|--:|
{rows}

How it is measured: times are taken on one monotonic clock shared by the client processes;
latencies run from the moment a client began its TCP connection. *Handshakes/s per process* is
the sockets a process accepted divided by the time from its first connection attempt to its
last 101; it cannot exceed the offered {offered} per process, so a process that keeps up shows
about that. *Server CPU per socket* is the two processes' CPU time during the round (connect,
first frame, close) per connected socket. *Client start lag* is how late the clients began a
socket against the plan: when it stays small the client processes offered the planned rate;
when it grows they could not, because the servers, PostgreSQL and Redis kept the two cores
busy (the clients' own CPU is the last figure, in cores). Everything shares the two cores, so a
server with cores of its own connects a storm faster than these figures say.
"""


def render(results: dict[str, Any]) -> str:
    storm, cfg = results.get("storm"), results["config"]
    if not storm:
        return ""
    n = cfg.get("storm_sockets", SOCKETS)
    window = cfg.get("storm_window_s", WINDOW_S)
    rows = []
    for name, _command, settings in CONFIGS:
        s = storm.get(name)
        if not s:
            continue
        why = "; ".join(f"{reason}: {fmt(count)}" for reason, count in s["failures"].items())
        rows.append(
            f"| {name}: {settings} | {_connected(s)} | {why or '–'} "
            f"| {_all_after(s, n)} "
            f"| {fmt(s.get('open_p50'), 0)} / {fmt(s.get('open_p99'), 0)} ms "
            f"| {fmt(s.get('first_p50'), 0)} / {fmt(s.get('first_p99'), 0)} ms "
            f"| {fmt(s.get('handshakes_per_s_per_process'), 0)} "
            f"| {fmt(s.get('server_cpu_ms_per_socket'), 2)} ms "
            f"| {fmt(s.get('start_lag_p99_ms'), 0)} ms, {fmt(s.get('client_cores'), 2)} |"
        )
    return SECTION.format(
        n=fmt(n),
        window=fmt(window, 0),
        servers=cfg["servers"],
        clients=cfg.get("storm_client_processes", CLIENTS),
        rounds=cfg.get("storm_rounds", ROUNDS),
        rows="\n".join(rows),
        offered=f"{fmt(n / window / cfg['servers'], 0)}/s",
    )
