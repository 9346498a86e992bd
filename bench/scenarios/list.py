"""List: a page of 50 as a salon manager and as a requester, package against plain DRF, one
and eight clients; queries per request and EXPLAIN of the views' queries. Measured at every
table size up to the main one (``scale`` takes the larger ones).
"""

from __future__ import annotations

import re
from typing import Any

import loadgen
import runner
import seed
from runner import Context, fill, fill_rows, interleaved, ratios, summarise, verdict

NAME = "list"
LIST_N = runner.env("BENCH_LIST_N", 40 if runner.QUICK else 300)  # per round and series, 1 client
LIST_ROUND_SECONDS = runner.env("BENCH_LIST_ROUND_SECONDS", 10.0)  # bound per round and series
LIST_CONC_N = runner.env("BENCH_LIST_CONC_N", 60 if runner.QUICK else 400)  # per round, 8 clients
RATIO_TARGET = 1.25
SEQ_SCAN = "Seq Scan on salon_invitations_invitation"
PACKAGE, BASELINE = "/api/invitations", "/baseline/invitations"
#: The lists measured, counted and explained: name, the layout's user, path.
LISTS = {
    "package manager": ("list_manager", PACKAGE),
    "package requester": ("requester", PACKAGE),
    "baseline manager": ("list_manager", BASELINE),
}
SERIES = ("package manager", "baseline manager", "package requester")  # the page's order


def run(ctx: Context) -> dict[str, Any]:
    ctx.results["config"].update(
        list_requests_per_round=LIST_N, list_concurrent_requests_per_round=LIST_CONC_N
    )
    scales = {str(s): measure(ctx, s) for s in runner.SCALES if s <= runner.MAIN_SCALE}
    main = scales[str(runner.MAIN_SCALE)]
    main["list_concurrent"] = ctx.phase("list, 8 clients", lambda: list_series(ctx, 8))
    runner.log("query counts")
    return {"scales": scales, "query_counts": query_counts(ctx)}


def measure(ctx: Context, scale: int) -> dict[str, Any]:
    """The list with one client and EXPLAIN ANALYZE of each list's queries of the invitation
    table (its page and count), at ``scale`` rows."""
    entry: dict[str, Any] = ctx.grow_to(scale)
    entry["list"] = ctx.phase(f"list {scale}", lambda: list_series(ctx, 1))
    runner.log(f"[{scale}] list ratio p50 {entry['list']['ratio']['p50']}")
    entry["explain"] = {}
    for name in LISTS:
        queries = [q for q in list_queries(ctx, name, 50) if "salon_invitations_invitation" in q]
        entry["explain"][f"{name} list"] = {
            "count" if "COUNT(*)" in q.upper() else "page": {"sql": q, "plan": runner.explain(q)}
            for q in queries
        }
    return entry


def list_series(ctx: Context, clients: int) -> dict[str, Any]:
    """The series, interleaved round by round (one client: also the requester's list)."""
    one = clients == 1
    n, rounds = (LIST_N, runner.ROUNDS) if one else (LIST_CONC_N, min(runner.ROUNDS, 3))

    def series(name: str, _r: int) -> tuple[Any, dict[str, Any]]:
        user, path = LISTS[name]
        req = loadgen.Req("GET", path, getattr(ctx.layout, user))
        return ctx.series(
            f"list {name}", lambda i: req, n, clients, warm=4, deadline_s=LIST_ROUND_SECONDS
        )

    keys = ("p50", "p99", "mean", "server_p50", "server_p99", "rps", "cpu_ms_per_request")
    out: dict[str, Any] = {
        name: {
            **summarise([stats for _result, stats in done], keys),
            "all_samples": loadgen.summary_ms([s.latency for res, _ in done for s in res.ok]),
        }
        for name, done in interleaved(SERIES if one else SERIES[:2], range(rounds), series).items()
    }
    both = out["package manager"], out["baseline manager"]
    out["ratio"] = ratios(*both, "p50 p99 server_p50 rps", cpu_per_request="cpu_ms_per_request")
    return out


def list_queries(ctx: Context, name: str, size: int) -> list[str]:
    """The SQL of one in-process request of list ``name``, page size ``size``."""
    user, path = LISTS[name]
    status, queries = ctx.capture(getattr(ctx.layout, user), "get", f"{path}?page_size={size}")
    assert status == 200, (path, status)
    return queries


def query_counts(ctx: Context) -> dict[str, Any]:
    from django.db import connection, transaction

    from salon_invitations import events

    out: dict[str, Any] = {
        f"{name} list": {f"page_size_{n}": len(list_queries(ctx, name, n)) for n in (10, 50)}
        for name in LISTS
    }
    # Writes (one each; they use rows reserved for this), counted once the event log's order
    # row exists (the very first event of a database creates it).
    with transaction.atomic():
        events.hold_order()
    layout, salons = ctx.layout, ctx.layout.write_salons()
    writer = layout.writer_first + layout.writers - 1
    ((inv, *_),) = seed.seed_pending(connection, users=[writer], salons=[salons[1]], role="member")
    body = {"salon": salons[0], "role": "seller"}
    for name, user, method, path, data in (
        ("package create", writer, "post", PACKAGE, body),
        ("baseline create", writer - 1, "post", BASELINE, body),
        ("package approve", layout.owner_of(salons[1]), "patch", f"{PACKAGE}/{inv}/approved", {}),
    ):
        status, queries = ctx.capture(user, method, path, data)
        out[name] = {"status": status, "queries": len(queries), "sql": queries}
    return out


# The page -------------------------------------------------------------------------------------

TEMPLATES = runner.templates(NAME)
KEY_PLAN_NODES = ("Scan", "BitmapOr", "Sort", "SubPlan", "Filter:", "Index Cond", "Execution Time",
                  "Nested Loop", "Limit", "Gather", "Aggregate", "Rows Removed")  # fmt: skip
#: The indexes a plan reads: of bitmap scans, and of index scans of the invitation table.
INDEXES = re.compile(
    r"Bitmap Index Scan on (salon_inv\S*)| using (salon_inv\S*) on salon_invitations_invitation"
)


def table(template: str, rows: dict[str, dict[str, Any]]) -> str:
    """A table's rows: ``template`` filled with each row's name and figures."""
    return fill_rows(template, [{"name": name, **figures} for name, figures in rows.items()])


def plan_uses(plan: list[str]) -> str:
    """A short description of how a plan reads the invitation table."""
    text = "\n".join(plan)
    if SEQ_SCAN in text:
        return "sequential scan of the whole table"
    names = sorted({bitmap or scan for bitmap, scan in INDEXES.findall(text)})
    return "index scan (" + ", ".join(f"`{n}`" for n in names) + ")" if names else "?"


def described(plan: list[str]) -> dict[str, Any]:
    """How a plan reads the invitation table, its key lines and its execution time (ms)."""
    lines = "\n".join(line for line in plan if any(node in line for node in KEY_PLAN_NODES))
    ms = [float(line.split()[2]) for line in plan if line.startswith("Execution Time:")]
    return {"uses": plan_uses(plan), "lines": lines, "ms": ms[0] if ms else None}


def seq_scan(plans: dict[str, Any]) -> bool:
    """Whether a plan of the package's lists reads the whole table."""
    lists = ("package manager list", "package requester list")
    return any(SEQ_SCAN in "\n".join(plans[n][k]["plan"]) for n in lists for k in ("page", "count"))


def main_scale(results: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    main = results["config"]["main_scale"]
    return int(main), results["scales"][str(main)]


def growth(results: dict[str, Any]) -> dict[str, float]:
    """p50 at the largest table ÷ p50 at the smallest, per series; the sizes (``first``,
    ``last``)."""
    scales = results["scales"]
    first, last = min(scales, key=int), max(scales, key=int)
    p50s = {k: scales[last]["list"][k]["p50"] / scales[first]["list"][k]["p50"] for k in SERIES}
    return {**p50s, "first": int(first), "last": int(last)}


def summary(results: dict[str, Any]) -> list[str]:
    if "scales" not in results:
        return []
    rows, at_main = main_scale(results)
    lst, plans = at_main["list"], at_main["explain"]
    counts = {k: v for k, v in results["query_counts"].items() if k.endswith("list")}
    ratio = lst["ratio"]["p50"]
    text = fill(
        TEMPLATES["SUMMARY"], rows=rows, target=RATIO_TARGET, lst=lst,
        ratio_ok=verdict(ratio is not None and ratio <= RATIO_TARGET),
        counts="; ".join(
            f"{name.removesuffix(' list')}: {c['page_size_10']} / {c['page_size_50']}"
            for name, c in counts.items()
        ),
        counts_ok=verdict(all(v["page_size_10"] == v["page_size_50"] for v in counts.values())),
        manager=plan_uses(plans["package manager list"]["page"]["plan"]),
        requester=plan_uses(plans["package requester list"]["page"]["plan"]),
        indexes_ok=verdict(not seq_scan(plans)),
    )  # fmt: skip
    return text.splitlines()


def findings(results: dict[str, Any]) -> list[str]:
    if "scales" not in results or not seq_scan(main_scale(results)[1]["explain"]):
        return []
    rows, at_main = main_scale(results)
    return [fill(TEMPLATES["FINDING"], lst=at_main["list"], rows=rows, growth=growth(results))]


def render(results: dict[str, Any]) -> str:
    if "scales" not in results:
        return ""
    rows, at_main = main_scale(results)
    lst, conc, counts = at_main["list"], at_main["list_concurrent"], results["query_counts"]
    reads = {name: c for name, c in counts.items() if "list" in name}
    writes = {name: c for name, c in counts.items() if name not in reads}
    plans = "\n\n".join(
        fill(TEMPLATES["PLAN"], name=name, **{k: described(q["plan"]) for k, q in e.items()})
        for name, e in at_main["explain"].items()
    )
    return fill(
        TEMPLATES["SECTION"], rows=rows, ratio=lst["ratio"], rps=conc["ratio"]["rps"], plans=plans,
        one_client=table(TEMPLATES["ONE_CLIENT"], {k: lst[k] for k in SERIES}),
        eight_clients=table(TEMPLATES["EIGHT_CLIENTS"], {k: conc[k] for k in SERIES[:2]}),
        list_queries=table(TEMPLATES["LIST_QUERIES"], reads),
        write_queries=table(TEMPLATES["WRITE_QUERIES"], writes),
    )  # fmt: skip
