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
        topology_requests=TOPOLOGY_N,
        topology_rounds=runner.TOPOLOGY_ROUNDS,
        topology_threads=THREADS,
    )

    def one(topology: str, r: int) -> dict[str, dict[str, Any]]:
        return ctx.phase(f"topology {topology} {r + 1}", lambda: under(ctx, topology))

    rounds = runner.interleaved(TOPOLOGIES, range(runner.TOPOLOGY_ROUNDS), one)
    out: dict[str, Any] = {
        t: {s: summarise([m[s] for m in measured], KEYS) for s in measured[0]}
        for t, measured in rounds.items()
    }
    wsgi, asgi = out["wsgi"], out["asgi"]
    out["wsgi_over_asgi"] = {s: ratio(wsgi[s].get("rps"), asgi[s].get("rps")) for s in wsgi}
    for t in TOPOLOGIES:
        rps = {s: out[t][s].get("rps") for s in LISTS}
        out[t]["package_over_floor"] = ratio(rps["floor"], rps["package list"])
        out[t]["package_over_baseline"] = ratio(rps["baseline list"], rps["package list"])
    runner.log(f"topology: WSGI ÷ ASGI requests/s {out['wsgi_over_asgi']}")
    return {"topology": out}


def under(ctx: Context, topology: str) -> dict[str, dict[str, Any]]:
    """One round of every series against the topology's servers."""
    if topology == "wsgi":  # the same series, against gunicorn
        return ctx.with_servers("-wsgi", {}, lambda: under(ctx, "asgi"), count=1, command=GUNICORN)
    out = {}
    for name, path in LISTS.items():
        request = loadgen.Req("GET", f"{path}?page_size={PAGE}", ctx.layout.list_manager)
        out[name] = ctx.measured(
            f"topology {name}", lambda i, r=request: r, TOPOLOGY_N, CLIENTS, warm=8, deadline_s=60
        )
    created = write.creates(ctx, 1)
    return {**out, "package create": created["package"], "baseline create": created["baseline"]}


# The page -------------------------------------------------------------------------------------

TEMPLATES = runner.templates(NAME)


def threads(results: dict[str, Any]) -> int:
    """gunicorn's threads per worker in the run that gave ``results``."""
    return results["config"].get("topology_threads", THREADS)


def wsgi_faster(top: dict[str, Any]) -> bool:
    """The package's own traffic decides which topology is the faster."""
    return all((top["wsgi_over_asgi"].get(s) or 0) > 1 for s in ("package list", "package create"))


def summary(results: dict[str, Any]) -> list[str]:
    top = results.get("topology")
    if not top:
        return []
    served_by_wsgi = PROCFILE_WEB.search(PROCFILE.read_text()) is not None
    text = fill(
        TEMPLATES["SUMMARY"], **top,
        served_by="gunicorn (WSGI)" if served_by_wsgi else "an ASGI server",
        procfile_ok=verdict(served_by_wsgi == wsgi_faster(top)),
        baseline_ok=verdict((top["wsgi"].get("package_over_baseline") or 9) <= 1.0),
    )  # fmt: skip
    return text.splitlines()


def findings(results: dict[str, Any]) -> list[str]:
    top = results.get("topology")
    if not top:
        return []
    verb = "faster" if wsgi_faster(top) else "not faster"
    return [
        fill(TEMPLATES["FINDING"], verb=verb, r=top["wsgi_over_asgi"], threads=threads(results))
    ]


def render(results: dict[str, Any]) -> str:
    top = results.get("topology")
    if not top:
        return ""
    rows = [
        {"name": name, "wsgi": top["wsgi"][name], "asgi": top["asgi"][name], "ratio": ratio}
        for name, ratio in top["wsgi_over_asgi"].items()
    ]
    return fill(
        TEMPLATES["SECTION"], **top, cfg=results["config"], threads=threads(results),
        clients=CLIENTS, page=PAGE, rows=fill_rows(TEMPLATES["ROW"], rows),
    )  # fmt: skip
