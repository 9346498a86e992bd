"""List: a page of 50 as a salon manager and as a requester, package against plain DRF, one
and eight clients; queries per request, EXPLAIN of the views' queries, in-process times and
profiles. Measured at every table size up to the main one (``scale`` takes the larger ones).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

import loadgen
import runner
import seed
from runner import Context, fill, fill_rows, ratios, rotated, summarise, verdict

NAME = "list"
LIST_N = runner.env("BENCH_LIST_N", 40 if runner.QUICK else 300)  # per round and series, 1 client
LIST_ROUND_SECONDS = runner.env("BENCH_LIST_ROUND_SECONDS", 10.0)  # bound per round and series
LIST_CONC_N = runner.env("BENCH_LIST_CONC_N", 60 if runner.QUICK else 400)  # per round, 8 clients
PROFILE_N = runner.env("BENCH_PROFILE_N", 30 if runner.QUICK else 150)
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


def interleaved(names: Iterable[str], rounds: range, measure: Callable[[str, int], Any]) -> dict:
    """``measure(name, r)`` for every name in every round ``r``, the names' order rotated
    round by round: ``{name: [its results]}``."""
    out: dict[str, list[Any]] = {name: [] for name in names}
    for r in rounds:
        for name in rotated(list(names), r):
            out[name].append(measure(name, r))
    return out


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
    entry["explain"] = {f"{name} list": explained(ctx, name) for name in LISTS}
    return entry


def explained(ctx: Context, name: str) -> dict[str, Any]:
    """EXPLAIN ANALYZE of list ``name``'s queries of the invitation table: its page and count."""
    queries = [q for q in list_queries(ctx, name, 50) if "salon_invitations_invitation" in q]
    kinds = ["count" if "COUNT(*)" in q.upper() else "page" for q in queries]
    return {k: {"sql": q, "plan": runner.explain(q)} for k, q in zip(kinds, queries, strict=True)}


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
    out["ratio"] = ratios(
        out["package manager"], out["baseline manager"], "p50 p99 server_p50",
        cpu_per_request="cpu_ms_per_request", rps="rps",
    )  # fmt: skip
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
        f"{name} list": {
            f"page_size_{size}": len(list_queries(ctx, name, size)) for size in (10, 50)
        }
        for name in LISTS
    }
    # Writes (one each; they use rows reserved for this), counted once the event log's order
    # row exists (the very first event of a database creates it).
    with transaction.atomic():
        events.hold_order()
    layout, salons = ctx.layout, ctx.layout.write_salons()
    writer = layout.writer_first + layout.writers - 1
    ((inv, _u, _s),) = seed.seed_pending(
        connection, users=[writer], salons=[salons[1]], role="member"
    )
    body = {"salon": salons[0], "role": "seller"}
    for name, user, method, path, data in (
        ("package create", writer, "post", PACKAGE, body),
        ("baseline create", writer - 1, "post", BASELINE, body),
        ("package approve", layout.owner_of(salons[1]), "patch", f"{PACKAGE}/{inv}/approved", {}),
    ):
        status, queries = ctx.capture(user, method, path, data)
        out[name] = {"status": status, "queries": len(queries), "sql": queries}
    return out


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
            with profiled(f"profile-list-{name}") as noted:
                for _ in range(PROFILE_N):
                    client.get(path)
            out[name].update(noted)
    salons = layout.write_salons()
    writers = [layout.writer_first + layout.writers - 2 - k for k in range(3)]  # unused pairs
    silent = {**settings.SALON_INVITATIONS, "NOTIFICATION_BACKENDS": []}
    for side, path, writer, context in (
        ("baseline create", BASELINE, writers[0], contextlib.nullcontext()),
        ("package create", PACKAGE, writers[1], profiled("profile-create-package")),
        ("package create without notification backends", PACKAGE, writers[2],
         override_settings(SALON_INVITATIONS=silent)),
    ):  # fmt: skip
        client = ctx.client(writer)

        def create(k: int, client: Any = client, path: str = path) -> Any:
            body = {"salon": salons[2 + k], "role": "seller", "message": "profile"}
            return client.post(path, body, content_type="application/json")

        with context as noted:
            out[side] = timed(create, min(PROFILE_N, len(salons) - 2), 201)
        out[side].update(noted or {})
    return out


def timed(call: Callable[[int], Any], n: int, status: int) -> dict[str, Any]:
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
def profiled(name: str) -> Any:
    """pyinstrument over the block: ``results/<name>.txt``, noted in the yielded dict."""
    from pyinstrument import Profiler

    out: dict[str, str] = {}
    with Profiler(interval=0.0002) as profiler:
        yield out
    target = runner.RESULTS_DIR / f"{'quick-' if runner.QUICK else ''}{name}.txt"
    target.write_text(profiler.output_text(unicode=False, color=False))
    out["profile"] = str(target.relative_to(runner.REPO))


# The page -------------------------------------------------------------------------------------

TEMPLATES = runner.templates(NAME)
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


def key_lines(plan: list[str]) -> str:
    return "\n".join(line for line in plan if any(node in line for node in KEY_PLAN_NODES))


def seq_scan(plans: dict[str, Any]) -> bool:
    """Whether a plan of the package's lists reads the whole table."""
    lists = ("package manager list", "package requester list")
    return any(SEQ_SCAN in "\n".join(plans[n][k]["plan"]) for n in lists for k in ("page", "count"))


def main_scale(results: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    main = results["config"]["main_scale"]
    return int(main), results["scales"][str(main)]


def growth(results: dict[str, Any]) -> dict[str, float]:
    """p50 at the largest table ÷ p50 at the smallest, per series."""
    scales = results["scales"]
    first, last = min(scales, key=int), max(scales, key=int)
    return {k: scales[last]["list"][k]["p50"] / scales[first]["list"][k]["p50"] for k in SERIES}


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
    sizes = sorted(int(size) for size in results["scales"])
    text = fill(
        TEMPLATES["FINDING"], lst=at_main["list"], rows=rows, growth=growth(results),
        first=sizes[0], last=sizes[-1],
    )  # fmt: skip
    return [text]


def render(results: dict[str, Any]) -> str:
    if "scales" not in results:
        return ""
    rows, at_main = main_scale(results)
    lst, conc = at_main["list"], at_main["list_concurrent"]
    one_client = [{"name": k, **lst[k]} for k in SERIES]
    eight_clients = [{"name": k, **conc[k]} for k in SERIES[:2]]
    counts = [{"name": name, **c} for name, c in results["query_counts"].items()]
    reads = [c for c in counts if "list" in c["name"]]
    plans = [
        {"name": name, "page": key_lines(e["page"]["plan"]), "count": key_lines(e["count"]["plan"])}
        | {"page_uses": plan_uses(e["page"]["plan"]), "count_uses": plan_uses(e["count"]["plan"])}
        for name, e in at_main["explain"].items()
    ]
    return fill(
        TEMPLATES["SECTION"], rows=rows, ratio=lst["ratio"], rps=conc["ratio"]["rps"],
        one_client=fill_rows(TEMPLATES["ONE_CLIENT"], one_client),
        eight_clients=fill_rows(TEMPLATES["EIGHT_CLIENTS"], eight_clients),
        list_queries=fill_rows(TEMPLATES["LIST_QUERIES"], reads),
        write_queries=fill_rows(TEMPLATES["WRITE_QUERIES"], [c for c in counts if c not in reads]),
        plans="\n\n".join(fill(TEMPLATES["PLAN"], **plan) for plan in plans),
        ip=results["in_process"],
    )  # fmt: skip
