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

import loadgen
import runner
import wsclient
from runner import SERVERS, Context, Server, fill, fill_rows, verdict

NAME = "storm"
SOCKETS = runner.env("BENCH_STORM_SOCKETS", 400 if runner.QUICK else 2000)
WINDOW_S = runner.env("BENCH_STORM_WINDOW", 1.0)
CLIENTS = runner.env("BENCH_STORM_CLIENTS", 2)
ROUNDS = runner.env("BENCH_STORM_ROUNDS", runner.ROUNDS)
OPEN_TIMEOUT_S = 30.0  # the client's; longer than the servers' own, so theirs show
FRAME_TIMEOUT_S = 30.0
LEAD_S = 2.0  # between handing the plan to the client processes and the first socket

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
    "connected", "failed", "all_connected_s", "last_open_s", "open_p50", "open_p99", "first_p50",
    "first_p99", "handshakes_per_s_per_process", "server_cpu_ms_per_socket", "start_lag_p99_ms",
    "offered_s", "client_cores",
)  # fmt: skip


def run(ctx: Context) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from rest_framework_simplejwt.tokens import AccessToken

    from salon_invitations import events

    ctx.results["config"].update(
        storm_sockets=SOCKETS, storm_window_s=WINDOW_S, storm_client_processes=CLIENTS,
        storm_rounds=ROUNDS,
    )  # fmt: skip
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < SOCKETS + 256:  # runner.run raised it
        raise RuntimeError(f"the file-descriptor limit is too low for {SOCKETS} sockets")
    # A real simplejwt access token for each socket (distinct users while there are enough;
    # then users again, as a user with several tabs), and the newest event id.
    User = get_user_model()
    users = list(
        User.objects.filter(is_active=True).order_by("pk").values_list("pk", flat=True)[:SOCKETS]
    )
    per_user = {u: str(AccessToken.for_user(User(pk=u))) for u in users}
    tokens = [per_user[users[i % len(users)]] for i in range(SOCKETS)]
    since = events.newest_id()
    out: dict[str, Any] = {}
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(CLIENTS, mp_context=spawn) as pool:
        list(pool.map(_warm, range(CLIENTS)))  # the client processes import websockets now
        for name, command, _settings in CONFIGS:
            tag = f"-storm-{name.split(',')[0]}"
            out[name] = s = ctx.phase(
                f"storm, {name}",
                lambda c=command, t=tag: ctx.with_servers(
                    t, {}, lambda: measure(ctx, pool, tokens, since), command=c
                ),
            )
            runner.log(
                f"storm {name}: {int(s['connected'])} of {SOCKETS} connected, all after "
                f"{s.get('all_connected_s')} s; failures {s['failures']}"
            )
    return {"storm": out}


def _warm(_index: int) -> None:
    import websockets  # noqa: F401


def _client_process(plan: list[tuple[int, float, str]], start_at: float) -> tuple[list, float]:
    """In a client process: run its share of the storm; the attempts and the CPU seconds it
    used."""
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    before = resource.getrusage(resource.RUSAGE_SELF)
    attempts = asyncio.run(
        wsclient.storm(plan, start_at, "resumed", OPEN_TIMEOUT_S, FRAME_TIMEOUT_S)
    )
    after = resource.getrusage(resource.RUSAGE_SELF)
    return attempts, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(ctx: Context, pool: ProcessPoolExecutor, tokens: list[str], since: int) -> dict:
    servers = ctx.servers.servers
    urls = ctx.servers.urls("ws")
    plan = [
        (
            i % SERVERS,
            i * WINDOW_S / SOCKETS,
            f"{urls[i % SERVERS]}{runner.WS_PATH}?token={t}&since={since}",
        )
        for i, t in enumerate(tokens)
    ]
    # Socket i goes to server i % 2 and client process (i // 2) % CLIENTS.
    parts = [
        [p for i, p in enumerate(plan) if (i // SERVERS) % CLIENTS == c] for c in range(CLIENTS)
    ]
    exceptions_before = ctx.servers.log_text().count(runner.ASGI_ERROR)
    rounds = []
    for _round in range(ROUNDS):
        if not ctx.servers.alive():
            raise RuntimeError("a server process died; see bench/results/logs/")
        cpu0 = [s.cpu_seconds() for s in servers]
        start_at = time.monotonic() + LEAD_S
        futures = [pool.submit(_client_process, part, start_at) for part in parts]
        timeout = LEAD_S + WINDOW_S + OPEN_TIMEOUT_S + FRAME_TIMEOUT_S + 60
        outcomes = [f.result(timeout=timeout) for f in futures]
        wall = time.monotonic() - start_at
        server_cpu = [s.cpu_seconds() - c for s, c in zip(servers, cpu0, strict=True)]
        attempts = [a for part, _cpu in outcomes for a in part]
        rounds.append(round_stats(attempts, server_cpu, sum(c for _a, c in outcomes) / wall))
        time.sleep(2.0)  # the servers finish the disconnects
    out = runner.aggregate_rounds(rounds, KEYS)
    failures: Counter[str] = Counter()
    for r in rounds:
        failures.update(r["failure_reasons"])
    out["failures"] = dict(failures.most_common())
    out["connected_per_round"] = [r["connected"] for r in rounds]
    out["per_round"] = rounds
    out["server_exceptions"] = ctx.servers.log_text().count(runner.ASGI_ERROR) - exceptions_before
    return out


def round_stats(attempts: list[Any], server_cpu: list[float], client_cores: float) -> dict:
    ok = [a for a in attempts if a.outcome == "ok"]
    failed = [a for a in attempts if a.outcome != "ok"]
    per_server = []
    for i in range(SERVERS):
        mine = [a for a in ok if a.server == i]
        span = max((a.opened for a in mine), default=0.0) - min(
            (a.started for a in mine), default=0.0
        )
        per_server.append(
            {
                "connected": len(mine),
                "handshakes_per_s": round(len(mine) / span, 1) if span > 0 else None,
                "cpu_ms_per_socket": round(server_cpu[i] * 1000 / max(1, len(mine)), 3),
            }
        )
    rates = [s["handshakes_per_s"] for s in per_server if s["handshakes_per_s"]]
    opened = loadgen.summary_ms([a.opened - a.started for a in ok])
    first = loadgen.summary_ms([a.first - a.started for a in ok])
    lag = loadgen.summary_ms([max(0.0, a.started - a.due) for a in attempts])
    last_open = max((a.opened for a in ok), default=None)
    starts = [a.started for a in attempts]
    return {
        "connected": len(ok),
        "failed": len(failed),
        "failure_reasons": dict(Counter(a.outcome for a in failed)),
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
        "offered_s": round(max(starts) - min(starts), 3),
        "client_cores": round(client_cores, 2),
    }


# The page -------------------------------------------------------------------------------------


def connected(s: dict[str, Any]) -> str:
    """The median connected count, and its range over the rounds if it varied."""
    low, high = s.get("connected_min"), s.get("connected_max")
    spread = fill(" ({low:1}–{high:1})", low=int(low), high=int(high)) if low != high else ""
    return fill("{n:1}", n=int(s["connected"])) + spread


def all_after(s: dict[str, Any], n: int) -> str:
    """When the last socket connected, if every socket of every round did."""
    return fill("{all_connected_s:2} s", **s) if s.get("connected_min") == n else "–"


def storm_config(results: dict[str, Any]) -> dict[str, Any]:
    cfg = results["config"]
    return {
        "n": cfg.get("storm_sockets", SOCKETS),
        "window": cfg.get("storm_window_s", WINDOW_S),
        "servers": cfg["servers"],
        "clients": cfg.get("storm_client_processes", CLIENTS),
        "rounds": cfg.get("storm_rounds", ROUNDS),
    }


SUMMARY = """\
| 6 | reconnect storm, {name}: {n:1} sockets opening within {window:0} s over {servers} processes \
connect | {n:1} of {n:1} | {connected} of {n:1} (median of {s[rounds]} rounds), all connected \
after {all_after} | {ok} |
| 6 | handshakes/s per process, {name} | – | {s[handshakes_per_s_per_process]:0} (handshake \
p99 {s[open_p99]:0} ms) | |"""


def summary(results: dict[str, Any]) -> list[str]:
    storm = results.get("storm")
    if not storm:
        return []
    cfg = storm_config(results)
    rows = []
    for name in (name for name in TARGETS if storm.get(name)):
        s = storm[name]
        ok = verdict(s.get("connected_min") == cfg["n"])
        text = fill(
            SUMMARY,
            **cfg,
            name=name,
            s=s,
            connected=connected(s),
            all_after=all_after(s, cfg["n"]),
            ok=ok,
        )
        rows += text.splitlines()
    return rows


FINDING = """\
**daphne's defaults drop a reconnect storm.** With its listen backlog of 50 and its 5 s
   handshake timeout, {lost:1} of {n:1} sockets opening within {window:0} s did not connect
   (median of {default[rounds]} rounds; over all rounds: {reasons}). With a backlog of 4096 and
   `--websocket_connect_timeout 30`, the settings the WebSocket page gives for reconnect
   storms, {connected} did."""


def reasons(s: dict[str, Any]) -> str:
    return "; ".join(
        fill("{why}: {count:1}", why=why, count=count) for why, count in s["failures"].items()
    )


def findings(results: dict[str, Any]) -> list[str]:
    storm = results.get("storm") or {}
    default, tuned = storm.get("daphne, defaults"), storm.get("daphne")
    if not default or not tuned or not default.get("failed"):
        return []
    failed = {"lost": int(default["failed"]), "default": default, "reasons": reasons(default)}
    return [fill(FINDING, **storm_config(results), **failed, connected=connected(tuned))]


SECTION = """\
## 6. Reconnect storm

After a deploy every client reconnects at once. {n:1} sockets open evenly within {window:0} s,
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
last 101; it cannot exceed the offered {offered:0}/s per process, so a process that keeps up shows
about that. *Server CPU per socket* is the two processes' CPU time during the round (connect,
first frame, close) per connected socket. *Client start lag* is how late the clients began a
socket against the plan: when it stays small the client processes offered the planned rate;
when it grows they could not, because the servers, PostgreSQL and Redis kept the two cores
busy (the clients' own CPU is the last figure, in cores). Everything shares the two cores, so a
server with cores of its own connects a storm faster than these figures say.
"""
ROW = (
    "| {name}: {settings} | {connected} | {why} | {all_after} | {open_p50:0} / {open_p99:0} ms "
    "| {first_p50:0} / {first_p99:0} ms | {handshakes_per_s_per_process:0} "
    "| {server_cpu_ms_per_socket:2} ms | {start_lag_p99_ms:0} ms, {client_cores:2} |"
)


def render(results: dict[str, Any]) -> str:
    storm = results.get("storm")
    if not storm:
        return ""
    cfg = storm_config(results)
    rows = []
    for name, _command, settings in CONFIGS:
        if s := storm.get(name):
            why, after = reasons(s) or "–", all_after(s, cfg["n"])
            rows.append(
                {
                    **s,
                    "name": name,
                    "settings": settings,
                    "connected": connected(s),
                    "why": why,
                    "all_after": after,
                }
            )
    offered = cfg["n"] / cfg["window"] / cfg["servers"]
    return fill(SECTION, **cfg, rows=fill_rows(ROW, rows), offered=offered)
