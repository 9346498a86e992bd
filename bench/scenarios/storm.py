# ruff: noqa: RUF001 - the page uses typographic characters (dashes) on purpose
"""Reconnect storm: after a deploy every client reconnects at once. 2,000 sockets open within
one second over the two server processes, from several client processes, each with a real
access token and ``?since=`` the newest event, and wait for the 101 and the first frame
(``resumed``); on daphne and uvicorn as the documentation sets them for storms, and on daphne
with its defaults."""

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
from runner import SERVERS, Context, Server, fill, fill_rows, fmt, verdict

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
PER_ROUND_ONLY = ("failure_reasons", "per_server")  # every other figure: median, min, max


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
    users = User.objects.filter(is_active=True).order_by("pk").values_list("pk", flat=True)
    tokens = [str(AccessToken.for_user(User(pk=u))) for u in users[:SOCKETS]]
    tokens = [tokens[i % len(tokens)] for i in range(SOCKETS)]
    since = events.newest_id()
    out: dict[str, Any] = {}
    with ProcessPoolExecutor(CLIENTS, mp_context=multiprocessing.get_context("spawn")) as pool:
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
    servers, urls = ctx.servers.servers, ctx.servers.urls("ws")
    # Socket i goes to server i % 2 and client process (i // 2) % CLIENTS.
    parts: list[list[tuple[int, float, str]]] = [[] for _ in range(CLIENTS)]
    for i, token in enumerate(tokens):
        url = f"{urls[i % SERVERS]}{runner.WS_PATH}?token={token}&since={since}"
        parts[(i // SERVERS) % CLIENTS].append((i % SERVERS, i * WINDOW_S / SOCKETS, url))
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
    failures = sum((Counter(r["failure_reasons"]) for r in rounds), Counter())
    return {
        **runner.aggregate_rounds(rounds, tuple(k for k in rounds[0] if k not in PER_ROUND_ONLY)),
        "failures": dict(failures.most_common()),
        "connected_per_round": [r["connected"] for r in rounds],
        "per_round": rounds,
        "server_exceptions": ctx.servers.log_text().count(runner.ASGI_ERROR) - exceptions_before,
    }


def round_stats(attempts: list[Any], server_cpu: list[float], client_cores: float) -> dict:
    ok = [a for a in attempts if a.outcome == "ok"]
    failed = Counter(a.outcome for a in attempts if a.outcome != "ok")
    per_server = []
    for i, cpu in enumerate(server_cpu):
        mine = [a for a in ok if a.server == i]
        span = max(a.opened for a in mine) - min(a.started for a in mine) if mine else 0.0
        rate = round(len(mine) / span, 1) if span > 0 else None
        cpu_ms = round(cpu * 1000 / max(1, len(mine)), 3)
        per_server.append(
            {"connected": len(mine), "handshakes_per_s": rate, "cpu_ms_per_socket": cpu_ms}
        )
    rates = [s["handshakes_per_s"] for s in per_server if s["handshakes_per_s"]]
    opened = loadgen.summary_ms([a.opened - a.started for a in ok])
    first = loadgen.summary_ms([a.first - a.started for a in ok])
    lag = loadgen.summary_ms([max(0.0, a.started - a.due) for a in attempts])
    last_open = max((a.opened for a in ok), default=None)
    starts = [a.started for a in attempts]
    return {
        "connected": len(ok),
        "failed": failed.total(),
        "failure_reasons": dict(failed),
        "all_connected_s": round(last_open, 3) if not failed and last_open else None,
        "last_open_s": round(last_open, 3) if last_open is not None else None,
        **{f"open_{q}": opened.get(q) for q in ("p50", "p99")},
        **{f"first_{q}": first.get(q) for q in ("p50", "p99")},
        "per_server": per_server,
        "handshakes_per_s_per_process": round(sum(rates) / len(rates), 1) if rates else None,
        "server_cpu_ms_per_socket": round(sum(server_cpu) * 1000 / max(1, len(ok)), 3),
        "start_lag_p99_ms": lag.get("p99"),
        "offered_s": round(max(starts) - min(starts), 3),
        "client_cores": round(client_cores, 2),
    }


# The page -------------------------------------------------------------------------------------

TEMPLATES = runner.templates(NAME)


def storm_config(results: dict[str, Any]) -> dict[str, Any]:
    cfg = results["config"]
    return {
        "n": cfg.get("storm_sockets", SOCKETS),
        "window": cfg.get("storm_window_s", WINDOW_S),
        "servers": cfg["servers"],
        "clients": cfg.get("storm_client_processes", CLIENTS),
        "rounds": cfg.get("storm_rounds", ROUNDS),
    }


def shown(s: dict[str, Any], n: int) -> dict[str, Any]:
    """A server's figures with the page's connected count (its range over the rounds if it
    varied), when every socket of every round had connected, and why sockets did not."""
    low, high = s.get("connected_min"), s.get("connected_max")
    spread = f" ({fmt(int(low))}–{fmt(int(high))})" if low != high else ""
    return {
        **s,
        "connected": fmt(int(s["connected"])) + spread,
        "all_after": f"{fmt(s.get('all_connected_s'), 2)} s" if low == n else "–",
        "why": "; ".join(f"{why}: {fmt(count)}" for why, count in s["failures"].items()) or "–",
    }


def summary(results: dict[str, Any]) -> list[str]:
    storm, rows = results.get("storm") or {}, []
    for name in [name for name in TARGETS if storm.get(name)]:
        cfg = storm_config(results)
        values = cfg | shown(storm[name], cfg["n"])
        ok = verdict(storm[name].get("connected_min") == cfg["n"])
        rows += fill(TEMPLATES["SUMMARY"], **values, name=name, ok=ok).splitlines()
    return rows


def findings(results: dict[str, Any]) -> list[str]:
    storm = results.get("storm") or {}
    default, tuned = storm.get("daphne, defaults"), storm.get("daphne")
    if not default or not tuned or not default.get("failed"):
        return []
    cfg = storm_config(results)
    values = cfg | shown(default, cfg["n"]) | {"connected": shown(tuned, cfg["n"])["connected"]}
    return [fill(TEMPLATES["FINDING"], **values, lost=int(default["failed"]))]


def render(results: dict[str, Any]) -> str:
    storm = results.get("storm")
    if not storm:
        return ""
    cfg = storm_config(results)
    rows = [
        {**shown(storm[name], cfg["n"]), "name": name, "settings": settings}
        for name, _command, settings in CONFIGS
        if storm.get(name)
    ]
    offered = cfg["n"] / cfg["window"] / cfg["servers"]
    return fill(
        TEMPLATES["SECTION"], **cfg, rows=fill_rows(TEMPLATES["ROW"], rows), offered=offered
    )
