# ruff: noqa: RUF001 - the page uses typographic characters (times, dashes) on purpose
"""Topology: HTTP under a WSGI server (gunicorn, 2 workers) against under the ASGI server
(uvicorn, 2 processes), with the same settings and data; 16 clients. Lists (the raw-Django
floor, plain DRF, the package) and creates (package and plain DRF)."""

from __future__ import annotations

import re
from typing import Any

import loadgen
import runner
from runner import SERVERS, Context, fill, fill_rows, ratio, summarise, verdict

from scenarios import write

NAME = "topology"
TOPOLOGY_N = runner.env("BENCH_TOPOLOGY_N", 120 if runner.QUICK else 600)  # per series and round
CLIENTS = 16
PAGE = 20
#: As the example project's Procfile: a worker per core, each running requests in 4 threads
#: (so one waiting for PostgreSQL does not leave its core idle).
THREADS = 4
GUNICORN = (
    "-m gunicorn benchproject.wsgi:application --bind 127.0.0.1:{port} "
    f"--workers {SERVERS} --threads {THREADS} --backlog 4096 --log-level warning"
)
LISTS = {
    "floor": "/floor/invitations",
    "baseline list": "/baseline/invitations",
    "package list": "/api/invitations",
}
KEYS = ("rps", "p50", "p99", "cpu_ms_per_request")
#: The topologies, as measured; the first is the example project's production run.
TOPOLOGIES = ("wsgi", "asgi")
#: The example project's production processes, and its HTTP process served by gunicorn.
PROCFILE = runner.REPO / "example_project" / "Procfile"
PROCFILE_WEB = re.compile(r"^web: gunicorn configs\.wsgi:application ", re.MULTILINE)


def run(ctx: Context) -> dict[str, Any]:
    ctx.grow_to(runner.MAIN_SCALE)
    ctx.results["config"].update(
        topology_requests=TOPOLOGY_N, topology_rounds=runner.TOPOLOGY_ROUNDS
    )
    rounds: dict[str, dict[str, list[dict[str, Any]]]] = {t: {} for t in TOPOLOGIES}
    for r in range(runner.TOPOLOGY_ROUNDS):
        for topology in TOPOLOGIES[:: 1 if r % 2 == 0 else -1]:
            measured = ctx.phase(f"topology {topology} {r + 1}", lambda t=topology: under(ctx, t))
            for series, stats in measured.items():
                rounds[topology].setdefault(series, []).append(stats)
    out: dict[str, Any] = {
        t: {s: summarise(rs, KEYS) for s, rs in series.items()} for t, series in rounds.items()
    }
    out["wsgi_over_asgi"] = {
        s: ratio(out["wsgi"][s].get("rps"), out["asgi"][s].get("rps")) for s in out["wsgi"]
    }
    for t in TOPOLOGIES:
        rps = {s: out[t][s].get("rps") for s in LISTS}
        out[t]["package_over_floor"] = ratio(rps["floor"], rps["package list"])
        out[t]["package_over_baseline"] = ratio(rps["baseline list"], rps["package list"])
    runner.log(f"topology: WSGI ÷ ASGI requests/s {out['wsgi_over_asgi']}")
    return {"topology": out}


def under(ctx: Context, topology: str) -> dict[str, dict[str, Any]]:
    """One round of every series against the topology's servers."""
    if topology == "asgi":
        return series(ctx)
    return ctx.with_servers("-wsgi", {}, lambda: series(ctx), count=1, command=GUNICORN)


def series(ctx: Context) -> dict[str, dict[str, Any]]:
    out = {}
    for name, path in LISTS.items():
        request = loadgen.Req("GET", f"{path}?page_size={PAGE}", ctx.layout.list_manager)
        stats = ctx.measured(
            f"topology {name}", lambda i, r=request: r, TOPOLOGY_N, CLIENTS, warm=8, deadline_s=60
        )
        out[name] = stats
    created = write.creates(ctx, 1)
    out["package create"], out["baseline create"] = created["package"], created["baseline"]
    return out


# The page -------------------------------------------------------------------------------------


SUMMARY = """\
| 7 | HTTP under gunicorn (WSGI) ÷ under uvicorn (ASGI), requests/s, 16 clients \
| production run = the faster | floor {ratios[floor]:2}×, package list {ratios[package list]:2}×, \
package create {ratios[package create]:2}×; the example's `Procfile` serves HTTP by {served_by} \
| {procfile_ok} |
| 1 | list, package ÷ raw-Django floor, time per request (requests/s inverted), gunicorn / uvicorn \
| – | {wsgi[package_over_floor]:2}× / {asgi[package_over_floor]:2}× | |
| 1 | list, package ÷ plain DRF, the same | ≤ 1.0 under the production run's gunicorn \
| {wsgi[package_over_baseline]:2}× / {asgi[package_over_baseline]:2}× | {baseline_ok} |"""
FINDING = """\
**The package's HTTP is {verb} under gunicorn than under uvicorn on the same two cores**: \
{r[package list]:2}× the requests/s for its list and {r[package create]:2}× for its create (the \
raw-Django floor: {r[floor]:2}×). Under an ASGI server Django runs the synchronous views of \
a process one at a time, in one thread, handed over through asgiref; gunicorn's workers run them \
directly, in 4 threads each. A create under gunicorn sends its event through one long-lived \
event loop per process: with asgiref's `async_to_sync` each send started an event loop and a \
Redis connection of its own, and the create was the slower one (0.78× in an earlier run of this \
page). The load generator is Python and shares the two cores, so the margins are smaller than a \
C client would show. The example project's production run (`Procfile`, `make serve`) serves \
HTTP by gunicorn and only the WebSockets by an ASGI server; the events cross from one to the \
other through the Redis channel layer."""


def wsgi_faster(top: dict[str, Any]) -> bool:
    """The package's own traffic decides which topology is the faster."""
    return all((top["wsgi_over_asgi"].get(s) or 0) > 1 for s in ("package list", "package create"))


def summary(results: dict[str, Any]) -> list[str]:
    top = results.get("topology")
    if not top:
        return []
    served_by_wsgi = PROCFILE_WEB.search(PROCFILE.read_text()) is not None
    text = fill(
        SUMMARY,
        ratios=top["wsgi_over_asgi"],
        wsgi=top["wsgi"],
        asgi=top["asgi"],
        served_by="gunicorn (WSGI)" if served_by_wsgi else "an ASGI server",
        procfile_ok=verdict(served_by_wsgi == wsgi_faster(top)),
        baseline_ok=verdict((top["wsgi"].get("package_over_baseline") or 9) <= 1.0),
    )
    return text.splitlines()


def findings(results: dict[str, Any]) -> list[str]:
    top = results.get("topology")
    if not top:
        return []
    return [
        fill(FINDING, verb="faster" if wsgi_faster(top) else "not faster", r=top["wsgi_over_asgi"])
    ]


SECTION = """\
## 7. Topology: HTTP under WSGI or ASGI

The same project, settings and data served two ways, one after the other, {cfg[topology_rounds]} \
rounds alternating which goes first: **WSGI** is `gunicorn benchproject.wsgi:application` with \
{cfg[servers]} workers of {threads} threads each (`--threads`: gunicorn's `gthread` workers), \
**ASGI** is {cfg[servers]} `uvicorn benchproject.asgi:application` processes (as everywhere else \
on this page). {clients} closed-loop clients; lists are a \
manager's page of {page} ({cfg[topology_requests]} requests per series and round); creates as in \
section 2. The **floor** is the plain-DRF baseline's list written in plain Django \
(`bench/baseline/floor.py`: the same user lookup, rows and order, a `values()` page and a \
count, `JsonResponse`): what a list costs without any library layer.

| series | requests/s WSGI | ASGI | WSGI ÷ ASGI | p50 / p99 ms WSGI | ASGI | CPU ms WSGI / ASGI |
|--------|---:|---:|---:|---:|---:|---:|
{rows}

Package ÷ floor (time per request, from requests/s): {wsgi[package_over_floor]:2}× under WSGI, \
{asgi[package_over_floor]:2}× under ASGI; package ÷ plain DRF: {wsgi[package_over_baseline]:2}× / \
{asgi[package_over_baseline]:2}×.
"""
ROW = (
    "| {name} | {wsgi[rps]:0} | {asgi[rps]:0} | {ratio:2}× | {wsgi[p50]:1} / {wsgi[p99]:1} "
    "| {asgi[p50]:1} / {asgi[p99]:1} | {wsgi[cpu_ms_per_request]:2} / "
    "{asgi[cpu_ms_per_request]:2} |"
)


def render(results: dict[str, Any]) -> str:
    top = results.get("topology")
    if not top:
        return ""
    rows = [
        {"name": name, "wsgi": top["wsgi"][name], "asgi": top["asgi"][name], "ratio": ratio}
        for name, ratio in top["wsgi_over_asgi"].items()
    ]
    return fill(
        SECTION, cfg=results["config"], threads=THREADS, clients=CLIENTS, page=PAGE,
        rows=fill_rows(ROW, rows), wsgi=top["wsgi"], asgi=top["asgi"],
    )  # fmt: skip
