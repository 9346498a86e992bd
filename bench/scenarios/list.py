# ruff: noqa: RUF001 - the page uses typographic characters (times, dashes) on purpose
"""List: a page of 50 as a salon manager and as a requester, package against plain DRF, one
and eight clients; queries per request, EXPLAIN of the views' queries, in-process times and
profiles. Measured at every table size up to the main one (``scale`` takes the larger ones).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterator
from typing import Any

import runner
from runner import Context, env_float, env_int, fmt, ratios, row, summarise, verdict

NAME = "list"
LIST_N = env_int("BENCH_LIST_N", 40 if runner.QUICK else 300)  # per round and series, 1 client
LIST_ROUND_SECONDS = env_float("BENCH_LIST_ROUND_SECONDS", 10.0)  # bound per round and series
LIST_CONC_N = env_int("BENCH_LIST_CONC_N", 60 if runner.QUICK else 400)  # per round, 8 clients
PROFILE_N = env_int("BENCH_PROFILE_N", 30 if runner.QUICK else 150)
RATIO_TARGET = 1.25
SERIES = ("package manager", "baseline manager", "package requester")
SEQ_SCAN = "Seq Scan on salon_invitations_invitation"
PACKAGE, BASELINE = "/api/invitations", "/baseline/invitations"
# The lists whose queries are counted and explained: (name, layout's user, path).
LISTS = (
    ("package manager list", "list_manager", PACKAGE),
    ("package requester list", "requester", PACKAGE),
    ("baseline manager list", "list_manager", BASELINE),
)


def run(ctx: Context) -> dict[str, Any]:
    ctx.results["config"].update(
        list_requests_per_round=LIST_N, list_concurrent_requests_per_round=LIST_CONC_N
    )
    out: dict[str, Any] = {"scales": {}}
    for scale in [s for s in runner.SCALES if s <= runner.MAIN_SCALE]:
        out["scales"][str(scale)] = entry = measure(ctx, scale)
    entry["list_concurrent"] = ctx.phase("list, 8 clients", lambda: list_series(ctx, 8))
    runner.log("query counts, in-process profile")
    out["query_counts"] = query_counts(ctx)
    out["in_process"] = profile(ctx)
    return out


def measure(ctx: Context, scale: int) -> dict[str, Any]:
    """The list with one client and the EXPLAIN of its queries, at ``scale`` rows."""
    entry: dict[str, Any] = ctx.grow_to(scale)
    entry["list"] = ctx.phase(f"list {scale}", lambda: list_series(ctx, 1))
    runner.log(f"[{scale}] list ratio p50 {entry['list']['ratio']['p50']}")
    entry["explain"] = explain(ctx)
    return entry


def list_series(ctx: Context, clients: int) -> dict[str, Any]:
    """The series, interleaved round by round (one client: also the requester's list)."""
    import loadgen

    layout = ctx.layout
    series = {
        "package manager": (PACKAGE, layout.list_manager),
        "baseline manager": (BASELINE, layout.list_manager),
        "package requester": (PACKAGE, layout.requester),
    }
    names = list(series)[: 3 if clients == 1 else 2]
    n, rounds_count = (LIST_N, runner.ROUNDS) if clients == 1 else (LIST_CONC_N, 3)
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(min(runner.ROUNDS, rounds_count)):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            request = loadgen.Req("GET", *series[name])
            result, stats = ctx.series(
                lambda i, request=request: request,
                n,
                clients,
                warm=4,
                deadline_s=LIST_ROUND_SECONDS,
            )
            ctx.check(f"list {name}", result, stats, deadline_ok=True)
            rounds[name].append(stats)
            samples[name].extend(s.latency for s in result.ok)
    keys = ("p50", "p99", "mean", "server_p50", "server_p99", "rps", "cpu_ms_per_request")
    out: dict[str, Any] = {
        name: {**summarise(rounds[name], keys), "all_samples": loadgen.summary_ms(samples[name])}
        for name in names
    }
    out["ratio"] = ratios(
        out["package manager"],
        out["baseline manager"],
        p50="p50",
        p99="p99",
        server_p50="server_p50",
        cpu_per_request="cpu_ms_per_request",
        rps="rps",
    )
    return out


def query_counts(ctx: Context) -> dict[str, Any]:
    import seed
    from django.db import connection

    layout = ctx.layout
    out: dict[str, Any] = {}
    for name, user, path in LISTS:
        out[name] = {}
        for size in (10, 50):
            status, queries = ctx.capture(getattr(layout, user), "get", f"{path}?page_size={size}")
            assert status == 200, (name, status)
            out[name][f"page_size_{size}"] = len(queries)
    # Writes (one each; they use rows reserved for this), counted once the event log's order
    # row exists (the very first event of a database creates it).
    from django.db import transaction

    from salon_invitations import events

    with transaction.atomic():
        events.hold_order()
    salons = layout.write_salons()
    writer = layout.writer_first + layout.writers - 1
    ((inv_id, _u, _s),) = seed.seed_pending(
        connection, users=[writer], salons=[salons[1]], role="member"
    )
    body = {"salon": salons[0], "role": "seller"}
    for name, user, method, path, data in (
        ("package create", writer, "post", PACKAGE, body),
        ("baseline create", writer - 1, "post", BASELINE, body),
        (
            "package approve",
            layout.owner_of(salons[1]),
            "patch",
            f"{PACKAGE}/{inv_id}/approved",
            {},
        ),
    ):
        status, queries = ctx.capture(user, method, path, data)
        out[name] = {"status": status, "queries": len(queries), "sql": queries}
    return out


def explain(ctx: Context) -> dict[str, Any]:
    plans: dict[str, Any] = {}
    for name, user, path in LISTS:
        status, queries = ctx.capture(getattr(ctx.layout, user), "get", f"{path}?page_size=50")
        assert status == 200, (name, status)
        plans[name] = {
            "count" if "COUNT(*)" in sql.upper() else "page": {
                "sql": sql,
                "plan": runner.explain(sql),
            }
            for sql in queries
            if "salon_invitations_invitation" in sql
        }
    return plans


def profile(ctx: Context) -> dict[str, Any]:
    """In process (no server, no network): time per request of the manager's list and of
    creates, package and baseline; pyinstrument profiles of the package's and the baseline's
    list and of the package's create."""
    from django.conf import settings
    from django.test.utils import override_settings

    layout, out = ctx.layout, {}
    for name, path in (
        ("package", PACKAGE),
        ("baseline", BASELINE),
        ("package without filter backends", "/diag/no-filter-backends/invitations"),
    ):
        client = ctx.client(layout.list_manager)
        for _ in range(10):
            client.get(path)
        out[name] = timed(lambda k, c=client, p=path: c.get(p), PROFILE_N, 200)
        if "without" not in name:
            with profiled(f"profile-list-{name}", out[name]):
                for _ in range(PROFILE_N):
                    client.get(path)
    salons = layout.write_salons()
    writers = [layout.writer_first + layout.writers - 2 - k for k in range(3)]  # unused pairs
    silent = override_settings(
        SALON_INVITATIONS={**settings.SALON_INVITATIONS, "NOTIFICATION_BACKENDS": []}
    )
    for side, path, writer, context in (
        ("baseline create", BASELINE, writers[0], contextlib.nullcontext()),
        ("package create", PACKAGE, writers[1], contextlib.nullcontext()),
        ("package create without notification backends", PACKAGE, writers[2], silent),
    ):
        client, out[side] = ctx.client(writer), {}

        def create(k: int, client: Any = client, path: str = path) -> Any:
            body = {"salon": salons[2 + k], "role": "seller", "message": "profile"}
            return client.post(path, body, content_type="application/json")

        watch = profiled("profile-create-package", out[side]) if side == "package create" else None
        with context, watch or contextlib.nullcontext():
            out[side].update(timed(create, min(PROFILE_N, len(salons) - 2), 201))
    return out


def timed(call: Any, n: int, status: int) -> dict[str, Any]:
    """Mean and median ms of ``call(k)`` for k < n, one after the other."""
    times = []
    for k in range(n):
        start = time.perf_counter()
        response = call(k)
        times.append(time.perf_counter() - start)
        assert response.status_code == status, (response.status_code, response.content)
    return {
        "mean_ms": round(statistics.fmean(times) * 1000, 3),
        "p50_ms": round(statistics.median(times) * 1000, 3),
    }


@contextlib.contextmanager
def profiled(name: str, entry: dict[str, Any]) -> Iterator[None]:
    """pyinstrument over the block: ``results/<name>.txt``, noted in ``entry``."""
    from pyinstrument import Profiler

    with Profiler(interval=0.0002) as profiler:
        yield
    target = runner.RESULTS_DIR / f"{'quick-' if runner.QUICK else ''}{name}.txt"
    target.write_text(profiler.output_text(unicode=False, color=False))
    entry["profile"] = str(target.relative_to(runner.REPO))


# The page -------------------------------------------------------------------------------------

KEY_PLAN_NODES = ("Scan", "BitmapOr", "Sort", "SubPlan", "Filter:", "Index Cond", "Execution Time",
                  "Nested Loop", "Limit", "Gather", "Aggregate", "Rows Removed")  # fmt: skip


def plan_uses(plan: list[str]) -> str:
    """A short description of how a plan reads the invitation table."""
    if SEQ_SCAN in "\n".join(plan):
        return "sequential scan of the whole table"
    names = set()
    for line in plan:
        if "Bitmap Index Scan on " in line:
            names.add(line.split("Bitmap Index Scan on ", 1)[1].split()[0])
        elif " using " in line and " on salon_invitations_invitation" in line:
            names.add(line.split(" using ", 1)[1].split(" on ", 1)[0])
    names = {n for n in names if n.startswith("salon_inv")}
    return "index scan (" + ", ".join(f"`{n}`" for n in sorted(names)) + ")" if names else "?"


def seq_scan(plans: dict[str, Any]) -> bool:
    """Whether a plan of the package's lists reads the whole table."""
    lists = ("package manager list", "package requester list")
    return any(SEQ_SCAN in "\n".join(plans[n][k]["plan"]) for n in lists for k in ("page", "count"))


def main_scale(results: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    main = str(results["config"]["main_scale"])
    return main, results["scales"][main]


def growth(results: dict[str, Any]) -> dict[str, float]:
    """p50 at the largest table ÷ p50 at the smallest, per series."""
    scales = results["scales"]
    first, last = min(scales, key=int), max(scales, key=int)
    return {k: scales[last]["list"][k]["p50"] / scales[first]["list"][k]["p50"] for k in SERIES}


def summary(results: dict[str, Any]) -> list[str]:
    if "scales" not in results:
        return []
    main, at_main = main_scale(results)
    lst, plans = at_main["list"], at_main["explain"]
    list_ratio = lst["ratio"]["p50"]
    counts = {k: v for k, v in results["query_counts"].items() if k.endswith("list")}
    counts_flat = all(v["page_size_10"] == v["page_size_50"] for v in counts.values())
    counts_text = "; ".join(
        f"{name.removesuffix(' list')}: {c['page_size_10']} / {c['page_size_50']}"
        for name, c in counts.items()
    )
    return [
        f"| 1 | list, page of 50, package ÷ plain DRF, p50, {int(main):,} rows "
        f"| ≤ {RATIO_TARGET} | **{fmt(list_ratio, 2)}×** "
        f"({fmt(lst['package manager']['p50'], 2)} vs {fmt(lst['baseline manager']['p50'], 2)} ms)"
        f" | {verdict(list_ratio is not None and list_ratio <= RATIO_TARGET)} |",
        f"| 1 | queries per list request, page size 10 / 50 | constant | {counts_text} "
        f"| {verdict(counts_flat)} |",
        "| 1 | EXPLAIN: indexes for the manager's and the requester's list | index scans "
        f"| manager: {plan_uses(plans['package manager list']['page']['plan'])}; requester: "
        f"{plan_uses(plans['package requester list']['page']['plan'])} "
        f"| {verdict(not seq_scan(plans))} |",
    ]


def findings(results: dict[str, Any]) -> list[str]:
    if "scales" not in results or not seq_scan(main_scale(results)[1]["explain"]):
        return []
    main, at_main = main_scale(results)
    sizes = sorted(results["scales"], key=int)
    return [
        "**The invitation list reads the whole table.** The plans below show a\n"
        "   sequential scan: an `OR` that contains a sub-select cannot be answered with index\n"
        "   scans by PostgreSQL, which filters every row instead, for the page and again for\n"
        f"   the paginator's `COUNT(*)`. The list is {fmt(at_main['list']['ratio']['p50'], 1)}× "
        f"the baseline at {int(main):,} rows and grows ×{growth(results)['package manager']:.1f} "
        f"from {int(sizes[0]):,} to {int(sizes[-1]):,} rows."
    ]


SECTION = """\
## 1. List: page of 50 as a salon manager ({rows} invitations)

One client, sequential requests:

| series | p50 ms (min–max) | p99 ms | server p50 ms | Python CPU/request ms | requests |
|--------|-----------------:|-------:|--------------:|----------------------:|---------:|
{one_client}

Package ÷ baseline: p50 **{p50}×**, p99 {p99}×, server p50 {server_p50}×, Python \
CPU/request {cpu_per_request}×.

Eight concurrent clients:

| series | requests/s | p50 ms | p99 ms |
|--------|-----------:|-------:|-------:|
{eight_clients}

Throughput package ÷ baseline: {rps}×.

### Queries per request

Counted in-process with `CaptureQueriesContext`, authentication included:

| request | page size 10 | page size 50 |
|---------|-------------:|-------------:|
{list_queries}

| write | queries (with BEGIN, SAVEPOINT, COMMIT) |
|-------|--------:|
{write_queries}

### EXPLAIN (ANALYZE, BUFFERS)

Key lines of the plans of the queries the views ran (the full plans are in
`bench/results/results.json`):

{plans}
The composite indexes `salon_inv_salon_status` (salon, status, -created) and
`salon_inv_user` (user, -created) share their leading column with the one-column
indexes Django creates for the `salon` and `user` foreign keys; the planner may pick
either for these queries (the names above come from the plans).

In-process (Django test client, no server, no network), median per list request: package \
{in_process} ms, the same without its filter and ordering backends {no_filters} ms, baseline \
{in_process_baseline} ms. pyinstrument profiles: `bench/results/profile-list-package.txt` and \
`profile-list-baseline.txt`.
"""
PLAN = """\
**{name}**: page {page_uses}, count {count_uses}

```text
-- the page
{page}
-- the paginator's COUNT(*)
{count}
```
"""


def render(results: dict[str, Any]) -> str:
    if "scales" not in results:
        return ""
    main, at_main = main_scale(results)
    lst, conc, plans = at_main["list"], at_main["list_concurrent"], at_main["explain"]
    qc, ip = results["query_counts"], results["in_process"]
    one_client = [
        row(
            key,
            f"{fmt(s['p50'], 2)} ({fmt(s['p50_min'], 2)}–{fmt(s['p50_max'], 2)})",
            *(fmt(s[k], 2) for k in ("p99", "server_p50", "cpu_ms_per_request")),
            s["all_samples"]["n"],
        )
        for key, s in ((key, lst[key]) for key in SERIES)
    ]
    eight_clients = [
        row(key, fmt(conc[key]["rps"], 0), fmt(conc[key]["p50"], 2), fmt(conc[key]["p99"], 2))
        for key in SERIES[:2]
    ]
    plan_text = [
        PLAN.format(
            name=name,
            page_uses=plan_uses(entry["page"]["plan"]),
            count_uses=plan_uses(entry["count"]["plan"]),
            page="\n".join(key_lines(entry["page"]["plan"])),
            count="\n".join(key_lines(entry["count"]["plan"])),
        )
        for name, entry in plans.items()
    ]
    return SECTION.format(
        rows=f"{int(main):,}",
        one_client="\n".join(one_client),
        **{key: fmt(value, 2) for key, value in lst["ratio"].items() if key != "rps"},
        eight_clients="\n".join(eight_clients),
        rps=fmt(conc["ratio"]["rps"], 2),
        list_queries="\n".join(
            row(name, c["page_size_10"], c["page_size_50"])
            for name, c in qc.items()
            if "list" in name
        ),
        write_queries="\n".join(row(n, c["queries"]) for n, c in qc.items() if "list" not in n),
        plans="\n".join(plan_text),
        in_process=fmt(ip["package"]["p50_ms"], 2),
        no_filters=fmt(ip["package without filter backends"]["p50_ms"], 2),
        in_process_baseline=fmt(ip["baseline"]["p50_ms"], 2),
    )


def key_lines(plan: list[str]) -> list[str]:
    return [line for line in plan if any(node in line for node in KEY_PLAN_NODES)]
