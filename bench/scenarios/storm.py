# ruff: noqa: RUF001 - the page uses typographic characters (dashes) on purpose
"""Reconnect storm: after a deploy every client reconnects at once. 2,000 sockets open within
one second over the two server processes, from several client processes, each with a real
access token and ``?since=`` the newest event, and wait for the 101 and the first frame
(``resumed``); on daphne and uvicorn as the documentation sets them for storms, and on daphne
with its defaults."""

from __future__ import annotations

import functools
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
#: (name, server command, what it is); the first two are the summary's targets.
CONFIGS = [
    ("daphne", DAPHNE_STORM, "backlog 4096, `--websocket_connect_timeout 30`, `-v 0`"),
    ("uvicorn", UVICORN_STORM, "`--backlog 4096`, `--ws websockets-sansio`, no access log"),
    ("daphne, defaults", Server.DAPHNE, "backlog 50, `--websocket_connect_timeout 5`"),
]
PER_ROUND_ONLY = ("failure_reasons", "per_server")  # every other figure: median, min, max


def run(ctx: Context) -> dict[str, Any]:
    from django.contrib.auth import get_user_model

    from salon_invitations import events

    ctx.results["config"].update(
        storm_sockets=SOCKETS, storm_window_s=WINDOW_S, storm_client_processes=CLIENTS,
        storm_rounds=ROUNDS,
    )  # fmt: skip
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < SOCKETS + 256:  # runner.run raised it
        raise RuntimeError(f"the file-descriptor limit is too low for {SOCKETS} sockets")
    # A real access token for each socket (distinct users while there are enough; then users
    # again, as a user with several tabs), and the newest event id.
    users = get_user_model().objects.filter(is_active=True).order_by("pk")
    tokens = wsclient.access_tokens(users.values_list("pk", flat=True)[:SOCKETS])
    tokens = [tokens[i % len(tokens)] for i in range(SOCKETS)]
    since = events.newest_id()
    out: dict[str, Any] = {}
    with ProcessPoolExecutor(CLIENTS, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_warm, range(CLIENTS)))  # the client processes import websockets now
        measured = functools.partial(measure, ctx, pool, tokens, since)
        for name, command, _settings in CONFIGS:
            tag = f"-storm-{name.split(',')[0]}"
            go = functools.partial(ctx.with_servers, tag, {}, measured, command=command)
            out[name] = s = ctx.phase(f"storm, {name}", go)
            runner.log(
                f"storm {name}: {int(s['connected'])} of {SOCKETS} connected, all after "
                f"{s.get('all_connected_s')} s; failures {s['failures']}"
            )
    return {"storm": out}


def _warm(_index: int) -> None:
    import websockets  # noqa: F401


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
        args = (start_at, "resumed", OPEN_TIMEOUT_S, FRAME_TIMEOUT_S)
        futures = [pool.submit(wsclient.storm, part, *args) for part in parts]
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
    lag = [max(0.0, a.started - a.due) for a in attempts]
    last_open = max((a.opened for a in ok), default=None)
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
        "start_lag_p99_ms": loadgen.summary_ms(lag).get("p99"),
        "offered_s": round(max(a.started for a in attempts) - min(a.started for a in attempts), 3),
        "client_cores": round(client_cores, 2),
    }


# The page -------------------------------------------------------------------------------------

TEMPLATES = runner.templates(NAME)


def shown(results: dict[str, Any], name: str) -> dict[str, Any]:
    """The storm's settings and server ``name``'s figures, with the page's connected count (its
    range over the rounds if it varied), when every socket of every round had connected, and
    why sockets did not."""
    cfg, s = results["config"], results["storm"][name]
    n, low, high = cfg["storm_sockets"], s.get("connected_min"), s.get("connected_max")
    spread = f" ({fmt(int(low))}–{fmt(int(high))})" if low != high else ""
    return {
        **cfg,
        **s,
        "name": name,
        "connected": fmt(int(s["connected"])) + spread,
        "all_after": f"{fmt(s.get('all_connected_s'), 2)} s" if low == n else "–",
        "why": "; ".join(f"{why}: {fmt(count)}" for why, count in s["failures"].items()) or "–",
    }


def summary(results: dict[str, Any]) -> list[str]:
    storm, rows = results.get("storm") or {}, []
    for name in (name for name, _command, _settings in CONFIGS[:2] if storm.get(name)):
        values = shown(results, name)
        ok = verdict(values.get("connected_min") == values["storm_sockets"])
        rows += fill(TEMPLATES["SUMMARY"], **values, ok=ok).splitlines()
    return rows


def findings(results: dict[str, Any]) -> list[str]:
    storm = results.get("storm") or {}
    default, tuned = storm.get("daphne, defaults"), storm.get("daphne")
    if not default or not tuned or not default.get("failed"):
        return []
    values = shown(results, "daphne, defaults")
    values["connected"] = shown(results, "daphne")["connected"]
    return [fill(TEMPLATES["FINDING"], **values, lost=int(default["failed"]))]


def render(results: dict[str, Any]) -> str:
    if not results.get("storm"):
        return ""
    cfg = results["config"]
    rows = [
        shown(results, name) | {"settings": settings}
        for name, _command, settings in CONFIGS
        if results["storm"].get(name)
    ]
    offered = cfg["storm_sockets"] / cfg["storm_window_s"] / cfg["servers"]
    return fill(
        TEMPLATES["SECTION"], **cfg, rows=fill_rows(TEMPLATES["ROW"], rows), offered=offered
    )
