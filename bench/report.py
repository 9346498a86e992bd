# ruff: noqa: RUF001 - the page uses typographic characters (times, dashes) on purpose
"""Turns ``bench/results/results.json`` into ``docs/benchmarks.md`` and its chart.

    .venv/bin/python bench/report.py [bench/results/results.json]

re-renders the page from saved results without measuring again (a quick run's results are
rendered to ``bench/results/quick.*`` unless ``--docs`` is given).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
DOCS = REPO / "docs"
CHART = DOCS / "img" / "benchmarks.png"

LIST_RATIO_TARGET = 1.25
FANOUT_P99_TARGET_MS = 100.0
FLAT_FACTOR = 1.5  # "flat": p50 at the largest table at most this many times the smallest
SEQ_SCAN = "Seq Scan on salon_invitations_invitation"
LIST_SERIES = ("package manager", "baseline manager", "package requester")
HISTORY = BENCH_DIR / "results" / "history.json"
EXAMPLE_CHANNELS_CONF = REPO / "example_project" / "configs" / "extra_conf" / "channels_conf.py"


def load_history() -> list[dict[str, Any]]:
    try:
        return json.loads(HISTORY.read_text())["runs"]
    except (OSError, ValueError, KeyError):
        return []


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def verdict(ok: bool | None) -> str:
    if ok is None:
        return "not measured"
    return "**met**" if ok else "**missed**"


def key_plan_lines(plan: list[str]) -> list[str]:
    keep = (
        "Scan",
        "BitmapOr",
        "Sort",
        "SubPlan",
        "Filter:",
        "Index Cond",
        "Execution Time",
        "Nested Loop",
        "Limit",
        "Gather",
        "Aggregate",
        "Rows Removed",
    )
    return [line for line in plan if any(k in line for k in keep)]


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
    if not names:
        return "?"
    return "index scan (" + ", ".join(f"`{n}`" for n in sorted(names)) + ")"


def exec_ms(plan: list[str]) -> float | None:
    for line in plan:
        if line.startswith("Execution Time:"):
            return float(line.split(":")[1].split()[0])
    return None


def has_seq_scan(entry: dict[str, Any]) -> bool:
    return any(SEQ_SCAN in "\n".join(entry[k]["plan"]) for k in ("page", "count"))


# Chart ---------------------------------------------------------------------------------------


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    main = str(results["config"]["main_scale"])
    scales = results["scales"]
    sizes = sorted(scales, key=int)
    series = [
        ("package manager", "package", "#d62728"),
        ("baseline manager", "plain DRF baseline", "#1f77b4"),
        ("package requester", "package, requester's list", "#ff7f0e"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))

    ax = axes[0]
    lst = scales[main]["list"]
    xs = list(range(len(series)))
    p50 = [lst[key]["p50"] for key, _label, _color in series]
    p99 = [lst[key]["p99"] for key, _label, _color in series]
    colors = [color for _key, _label, color in series]
    ax.bar([x - 0.2 for x in xs], p50, 0.4, color=colors)
    ax.bar([x + 0.2 for x in xs], p99, 0.4, color=colors, alpha=0.4)
    ax.set_xticks(xs, [label.replace(", ", ",\n") for _k, label, _c in series], fontsize=8)
    ax.set_ylabel("ms per request, 1 client")
    ax.set_title(f"List, page of 50, {int(main):,} invitations\n(solid: p50, light: p99)")
    for x, a, b in zip(xs, p50, p99, strict=True):
        ax.text(x - 0.2, a, f"{a:.1f}", ha="center", va="bottom", fontsize=7)
        ax.text(x + 0.2, b, f"{b:.1f}", ha="center", va="bottom", fontsize=7)

    ax = axes[1]
    rows = [scales[s]["rows"] for s in sizes]
    for key, label, color in series:
        ax.plot(
            rows, [scales[s]["list"][key]["p50"] for s in sizes], "o-", label=label, color=color
        )
    for run in load_history()[-1:]:
        old = run["list_p50_ms"]
        xs_old = sorted(int(k) for k in old)
        ax.plot(
            xs_old,
            [old[str(x)]["package manager"] for x in xs_old],
            "x:",
            color="#7f7f7f",
            label=f"package at {run['commit']} (earlier run)",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("invitations in the table")
    ax.set_ylabel("p50 ms, 1 client")
    ax.set_title("Scale curve: list latency vs table size")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)

    ax = axes[2]
    approve = results.get("approve") or {}
    for kind, label, color in (
        ("different_salons", "approve, different salons", "#9467bd"),
        ("same_salon", "approve, all in one salon", "#8c564b"),
    ):
        levels = approve.get(kind) or {}
        xs2 = sorted(int(k) for k in levels)
        ax.plot(xs2, [levels[str(x)]["rps"] for x in xs2], "o-", label=label, color=color)
    create = results.get("create") or {}
    if create:
        ax.scatter(
            [16], [create["package"]["rps"]], marker="^", color="#d62728", label="create, package"
        )
        ax.scatter(
            [16], [create["baseline"]["rps"]], marker="v", color="#1f77b4", label="create, baseline"
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel("requests/s")
    ax.set_title("Writes: throughput vs clients")
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# Markdown ------------------------------------------------------------------------------------


class Page:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, *parts: str) -> None:
        self.lines.append("".join(parts))

    def para(self, text: str) -> None:
        self.lines.extend([text, ""])

    def text(self) -> str:
        return "\n".join(self.lines).rstrip() + "\n"


def render_markdown(results: dict[str, Any], image: str) -> str:
    m = results["machine"]
    cfg = results["config"]
    main = str(cfg["main_scale"])
    scales = results["scales"]
    sizes = sorted(scales, key=int)
    first, last = sizes[0], sizes[-1]
    lst = scales[main]["list"]
    conc = scales[main].get("list_concurrent") or {}
    create = results.get("create") or {}
    silent = results.get("create_without_notifications") or {}
    approve = results.get("approve") or {}
    diff = approve.get("different_salons") or {}
    same = approve.get("same_salon") or {}
    cont = results.get("contention") or {}
    fan = results.get("fanout") or {}
    pool = results.get("default_pool_idle") or {}
    qc = results.get("query_counts") or {}
    ip = results.get("in_process") or {}
    plans = scales[main]["explain"]
    deadlocks = results.get("deadlocks") or {}

    list_ratio = lst["ratio"]["p50"]
    pkg_seq = has_seq_scan(plans["package manager list"])
    req_seq = has_seq_scan(plans["package requester list"])
    list_counts = {k: v for k, v in qc.items() if k.endswith("list")}
    counts_flat = all(v["page_size_10"] == v["page_size_50"] for v in list_counts.values())
    growth = {
        key: scales[last]["list"][key]["p50"] / scales[first]["list"][key]["p50"]
        for key in LIST_SERIES
    }
    fan_lat = fan.get("latency_from_response_ms") or {}
    fan_p99 = fan_lat.get("p99")
    rows_main = f"{int(main):,}"

    w = Page()
    w("# Benchmarks")
    w("")
    w("Measured by `make bench` (code in `bench/`), which regenerates this page and its chart.")
    w("Everything runs side by side in one run on one machine: the package's endpoints and a")
    w("plain Django REST framework baseline over the same table, on PostgreSQL, under uvicorn")
    w(f"({cfg['servers']} server processes) with the Redis channel layer. On a shared machine")
    w("absolute times drift; the **ratios**, computed from medians over repeated rounds, are")
    w("the numbers to compare.")
    w("")
    if results.get("quick"):
        w('!!! warning "Quick run"')
        w("    These numbers come from `BENCH_QUICK=1` (small sizes). `make bench` runs the")
        w("    documented sizes.")
        w("")

    # Summary ---------------------------------------------------------------------------------
    w("## Summary")
    w("")
    w("| # | what | target | measured | |")
    w("|---|------|--------|----------|-|")
    w(
        f"| 1 | list, page of 50, package ÷ plain DRF, p50, {rows_main} rows "
        f"| ≤ {LIST_RATIO_TARGET} | **{fmt(list_ratio, 2)}×** "
        f"({fmt(lst['package manager']['p50'], 2)} vs {fmt(lst['baseline manager']['p50'], 2)} ms)"
        f" | {verdict(list_ratio is not None and list_ratio <= LIST_RATIO_TARGET)} |"
    )
    counts_text = "; ".join(
        f"{name.removesuffix(' list')}: {row['page_size_10']} / {row['page_size_50']}"
        for name, row in list_counts.items()
    )
    w(
        f"| 1 | queries per list request, page size 10 / 50 | constant | {counts_text} "
        f"| {verdict(counts_flat)} |"
    )
    w(
        "| 1 | EXPLAIN: indexes for the manager's and the requester's list | index scans "
        f"| manager: {plan_uses(plans['package manager list']['page']['plan'])}; requester: "
        f"{plan_uses(plans['package requester list']['page']['plan'])} "
        f"| {verdict(not pkg_seq and not req_seq)} |"
    )
    if create:
        w(
            "| 2 | create, 16 clients over 100 salons, package ÷ plain DRF, requests/s | – "
            f"| {fmt(create['ratio']['rps'], 2)}× ({fmt(create['package']['rps'], 0)} vs "
            f"{fmt(create['baseline']['rps'], 0)} req/s) | |"
        )
    if silent:
        w(
            "| 2 | the same with the notification backends switched off | – "
            f"| {fmt(silent['ratio']['rps'], 2)}× | |"
        )
    if diff:
        top = str(max(int(k) for k in diff))
        scaling = approve.get("scaling_1_to_8")
        w(
            f"| 2 | approve, {top} clients over 100 salons | – "
            f"| {fmt(diff[top]['rps'], 0)} req/s | |"
        )
        w(
            "| 2 | approvals in different salons do not serialise: requests/s, 1 → 8 clients "
            f"| grows | ×{fmt(scaling, 2)} ({fmt(diff['1']['rps'], 0)} → "
            f"{fmt(diff['8']['rps'], 0)}); lock waits in "
            f"{fmt(100 * diff['8']['lock_wait_share'], 1)}% of samples (one salon: ×"
            f"{fmt(approve.get('same_salon_scaling_1_to_8'), 2)}, "
            f"{fmt(100 * same['8']['lock_wait_share'], 1)}%) "
            f"| {verdict(scaling is not None and scaling > 1.2)} |"
        )
    if cont:
        dl = deadlocks.get("pg_stat_database")
        ok = cont["all_correct"] and dl == 0 and not deadlocks.get("in_server_logs")
        w(
            "| 3 | 50 concurrent approvals for one single-holder role | 1 approved, 49 "
            "`role_taken`, no 5xx, no deadlock "
            f"| {'every' if cont['all_correct'] else '**not every**'} round of "
            f"{len(cont['rounds'])}; {dl} deadlocks; wall {fmt(cont['wall_ms_median'], 0)} ms "
            f"| {verdict(ok)} |"
        )
    if fan:
        w(
            f"| 4 | fan-out, {fmt(fan['connections'])} WebSocket clients, "
            f"{fmt(fan.get('rate', cfg.get('fanout_rate')), 0)} events/s: receipt − HTTP "
            "response, p99 "
            f"| < {FANOUT_P99_TARGET_MS:.0f} ms | {fmt(fan_p99, 1)} ms "
            f"(p50 {fmt(fan_lat.get('p50'), 1)} ms) "
            f"| {verdict(fan_p99 is not None and fan_p99 < FANOUT_P99_TARGET_MS)} |"
        )
        for rate, stream in (fan.get("streams") or {}).items():
            if float(rate) == fan.get("rate"):
                continue
            sl = stream["latency_from_response_ms"]
            w(
                f"| 4 | the same at {fmt(float(rate), 0)} events/s | – | p99 "
                f"{fmt(sl.get('p99'), 1)} ms (p50 {fmt(sl.get('p50'), 1)} ms) | |"
            )
        w(
            f"| 4 | frames delivered to non-recipients | 0 | {fan['non_recipient_frames']} "
            f"(missing deliveries: {fan['missing']}) "
            f"| {verdict(fan['non_recipient_frames'] == 0 and fan['missing'] == 0)} |"
        )
        w(
            "| 4 | memory per idle connection, server RSS | – "
            f"| {fmt(fan['memory_per_connection_kib'], 1)} KiB | |"
        )
    w(
        f"| 5 | list p50 from {int(first):,} to {int(last):,} rows | flat "
        f"| package ×{growth['package manager']:.1f}, requester's list "
        f"×{growth['package requester']:.1f}, baseline ×{growth['baseline manager']:.1f} "
        f"| {verdict(growth['package manager'] <= FLAT_FACTOR)} |"
    )
    w("")
    w(f"![List latency, scale curve and write throughput]({image})")
    w("")

    # Findings --------------------------------------------------------------------------------
    w("## Findings")
    w("")
    n = 0
    if pkg_seq or req_seq:
        n += 1
        w(f"{n}. **The invitation list reads the whole table.** The plans below show a")
        w("   sequential scan: an `OR` that contains a sub-select cannot be answered with index")
        w("   scans by PostgreSQL, which filters every row instead, for the page and again for")
        w(
            f"   the paginator's `COUNT(*)`. The list is {fmt(list_ratio, 1)}× the baseline at "
            f"{rows_main} rows and grows ×{growth['package manager']:.1f} from {int(first):,} "
            f"to {int(last):,} rows."
        )
        w("   *Proposed*: read the caller's managed salon ids first and filter with literal ids,")
        w("   `Q(user=user) | Q(salon_id__in=[...ids])`, or only `Q(user=user)` when the caller")
        w("   manages nothing.")
        w("")
    pool_failed = bool(pool) and (
        pool["alive_after_idle"] < pool["connections"] or pool["server_exceptions"] > 0
    )
    if pool_failed:
        n += 1
        w(f"{n}. **The Redis channel layer needs two settings with redis-py 8.** redis-py 8 gives")
        w("   each connection a 5 s socket timeout and each pool at most 100 connections by")
        w('   default; channels-redis 4.3 waits in `BZPOPMIN` for 5 s. With `"hosts": [REDIS_URL]`')
        w("   (the form of the channels-redis documentation),")
        w(
            f"   {fmt(pool['connections'] - pool['alive_after_idle'])} of "
            f"{fmt(pool['connections'])} idle connections died within "
            f"{fmt(pool['idle_seconds'], 0)} s"
        )
        w(
            f"   ({pool['redis_timeouts']} `redis.exceptions.TimeoutError` in the consumer's "
            "receive loop), and disconnecting them all at once raised"
        )
        w(
            f"   {pool['redis_pool_exhausted']} `MaxConnectionsError` in `group_discard`, which "
            "leaves stale channels in the users' groups."
        )
        w("   The benchmark's servers use")
        w('   `{"address": REDIS_URL, "socket_timeout": 15, "max_connections": 2000}`; with it,')
        w(
            f"   {fmt(fan.get('connections_alive_after_idle'))} of {fmt(fan.get('connections'))} "
            f"connections survived {fmt(fan.get('idle_seconds'), 0)} s idle and the servers "
            f"logged {fan.get('server_exceptions', '–')} exception(s)."
        )
        try:
            example_sets_it = "socket_timeout" in EXAMPLE_CHANNELS_CONF.read_text()
        except OSError:
            example_sets_it = False
        if example_sets_it:
            w("   The example project's `configs/extra_conf/channels_conf.py` sets both.")
        else:
            w("   *Proposed*: set both in the example project and document them.")
        w("")
    if create and silent:
        n += 1
        cpu_all = create["package"].get("cpu_ms_per_request")
        cpu_silent = silent["package"].get("cpu_ms_per_request")
        share = 1 - cpu_silent / cpu_all if cpu_all and cpu_silent else None
        pc = ip.get("package create", {})
        pcs = ip.get("package create without notification backends", {})
        bc = ip.get("baseline create", {})
        bcpu = create["baseline"].get("cpu_ms_per_request")
        w(
            f"{n}. **A create costs the servers {fmt(cpu_all, 1)} ms of Python CPU, the "
            f"baseline's {fmt(bcpu, 1)} ms** ({fmt(create['ratio']['cpu_per_request'], 2)}×; "
            f"requests/s {fmt(create['ratio']['rps'], 2)}×, a noisier number)."
        )
        w("   The package's create does more than an insert: it locks the salon row, checks")
        w(
            "   membership, the role's limit and duplicates ("
            f"{qc.get('package create', {}).get('queries', '–')} queries with the transaction"
        )
        w(
            f"   statements, against {qc.get('baseline create', {}).get('queries', '–')}), and "
            "after commit computes the recipients, serialises the"
        )
        w("   invitation and sends it to each over Redis. On servers without notification")
        w(
            f"   backends a create costs {fmt(cpu_silent, 1)} ms, so the notifications are about "
            f"{fmt(100 * share if share is not None else None, 0)}% of it"
        )
        w(
            f"   (requests/s {fmt(silent['ratio']['rps'], 2)}× the baseline there). In-process "
            f"medians: package {fmt(pc.get('p50_ms'), 1)} ms, without backends "
            f"{fmt(pcs.get('p50_ms'), 1)} ms,"
        )
        w(
            f"   baseline {fmt(bc.get('p50_ms'), 1)} ms (in-process each `async_to_sync` starts "
            "an event loop and a Redis"
        )
        w("   connection, which overstates the notifications; profile:")
        w("   `bench/results/profile-create-package.txt`).")
        w("")
    if ip:
        nofilter = ip.get("package without filter backends", {}).get("p50_ms")
        w(
            "In-process (Django test client, no server, no network), median per list request: "
            f"package {fmt(ip.get('package', {}).get('p50_ms'), 2)} ms, the same without its "
            f"filter and ordering backends {fmt(nofilter, 2)} ms, baseline "
            f"{fmt(ip.get('baseline', {}).get('p50_ms'), 2)} ms. pyinstrument profiles: "
            "`bench/results/profile-list-package.txt` and `profile-list-baseline.txt`."
        )
        w("")

    # Machine ---------------------------------------------------------------------------------
    load_before = ", ".join(f"{x:.2f}" for x in results["load_before"])
    load_after = ", ".join(f"{x:.2f}" for x in results["load_after"])
    w("## Machine and versions")
    w("")
    w("| | |")
    w("|-|-|")
    w(f"| date | {m['date']} |")
    w(f"| CPU | {m['cpu_model']}, {m['nproc']} cores (`nproc`) |")
    w(f"| memory | {m['memory_gib']} GiB |")
    w(f"| kernel | {m['kernel']} |")
    w(f"| load average (1, 5, 15 min) before / after | {load_before} / {load_after} |")
    w(f"| Python | {m['python']} |")
    w(f"| Django / DRF | {m['django']} / {m['djangorestframework']} |")
    w(f"| channels / channels-redis | {m['channels']} / {m['channels_redis']} |")
    w(
        f"| uvicorn / uvloop / httptools / websockets | {m['uvicorn']} / {m['uvloop']} / "
        f"{m['httptools']} / {m['websockets']} |"
    )
    w(f"| psycopg | {m['psycopg']} (with its pool) |")
    w(f"| PostgreSQL | {m['postgresql']} |")
    w(f"| Redis | {m['redis']} |")
    w(f"| django-salon-invitations | {m['django_salon_invitations']}, commit {m['commit']} |")
    w(f"| duration of the run | {fmt(results.get('total_seconds'), 0)} s |")
    other = results.get("other_cores") or {}
    if other:
        busy = ", ".join(f"{name} {fmt(cores, 1)}" for name, cores in other.items())
        w(f"| cores used by other processes, per measurement (estimate) | {busy} |")
    w("")

    # Method ----------------------------------------------------------------------------------
    w("## How it is measured")
    w("")
    w("- **Servers**: two `uvicorn benchproject.asgi:application` processes (uvloop,")
    w("  httptools, `websockets`), one per core, on loopback ports. The client alternates")
    w("  between them, so each gets half of the requests and of the WebSocket connections.")
    w("  `DEBUG = False`, PostgreSQL through psycopg's pool as in the example project,")
    w("  `RedisChannelLayer`. The load generator (httpx on asyncio) shares the two cores.")
    w("- **Both sides share** authentication (a benchmark-only header, `X-Bench-User: <id>`,")
    w("  that loads the user with one query: cheap and identical), page-number pagination (50")
    w("  per page, `?page_size=`), the JSON renderer and the one middleware, which reports the")
    w("  time spent in Django as `X-Server-Time-Us`.")
    w("- **Baseline** (`bench/baseline/`): a `ListCreateAPIView` with a `ModelSerializer` of")
    w("  `id, user, salon, role, status, message, reason, decided_by, decided_at, expires_at,")
    w("  created, modified`; the list is `Invitation.objects.filter(salon_id__in=<salons the")
    w('  caller owns or administers>).order_by("-created")`; create saves with')
    w("  `user=request.user`. No policy, filters, domain checks or notifications.")
    w('- **Package**: mounted with `invitation_patterns("api/invitations")`; default policy,')
    w("  django-filter and ordering backends, `ChannelsBackend` notifications. The role table")
    w("  is the default one plus `member` (no holder limit), so that thousands of approvals")
    w("  can succeed; creates ask for `seller`; the contention test uses `seller` (one holder).")
    w("- **Data**: 1,000 salons, each with its owner; 20,000 requesting users. The measured")
    w("  manager owns a salon with 100 invitations at every table size (the page is always")
    w("  full, only the table grows); the measured requester has 100 invitations in 100")
    w("  salons; the rest is spread evenly over the other 999 salons, 20% pending. Seeded with")
    w("  `generate_series` SQL, then `ANALYZE`.")
    w(
        f"- **Repetitions**: each list series runs {cfg['rounds']} rounds of up to "
        f"{cfg['list_requests_per_round']} sequential requests"
    )
    w("  (each round also bounded in time; the request counts are in the tables), interleaved")
    w("  across the series. p50 and p99 are computed per round; the tables show the median")
    w("  over rounds (min–max in brackets). Ratios are package ÷ baseline of those medians.")
    w("  *Server* is the time inside Django (`X-Server-Time-Us`). *Python CPU/request* is the")
    w("  user + system CPU time of the two server processes divided by requests (PostgreSQL's")
    w("  CPU not included), the least noisy number on a shared machine.")
    w("- **WebSockets** authenticate with real simplejwt access tokens (`?token=`) through the")
    w("  package's `JWTAuthMiddleware`. Latency is the time a frame is received minus the time")
    w("  the triggering HTTP response was read, on one monotonic clock in one client process;")
    w("  negative means the frame arrived before the response. Memory per connection is the")
    w("  growth of the server processes' RSS from before connecting to after idling, divided")
    w("  by the connections.")
    w("")

    # 1. List ---------------------------------------------------------------------------------
    w(f"## 1. List: page of 50 as a salon manager ({rows_main} invitations)")
    w("")
    w("One client, sequential requests:")
    w("")
    w("| series | p50 ms (min–max) | p99 ms | server p50 ms | Python CPU/request ms | requests |")
    w("|--------|-----------------:|-------:|--------------:|----------------------:|---------:|")
    for key in LIST_SERIES:
        s = lst[key]
        w(
            f"| {key} | {fmt(s['p50'], 2)} ({fmt(s['p50_min'], 2)}–{fmt(s['p50_max'], 2)}) "
            f"| {fmt(s['p99'], 2)} | {fmt(s['server_p50'], 2)} "
            f"| {fmt(s['cpu_ms_per_request'], 2)} | {s['all_samples']['n']} |"
        )
    w("")
    r = lst["ratio"]
    w(
        f"Package ÷ baseline: p50 **{fmt(r['p50'], 2)}×**, p99 {fmt(r['p99'], 2)}×, server p50 "
        f"{fmt(r['server_p50'], 2)}×, Python CPU/request {fmt(r['cpu_per_request'], 2)}×."
    )
    w("")
    if conc:
        w("Eight concurrent clients:")
        w("")
        w("| series | requests/s | p50 ms | p99 ms |")
        w("|--------|-----------:|-------:|-------:|")
        for key in LIST_SERIES[:2]:
            s = conc[key]
            w(f"| {key} | {fmt(s['rps'], 0)} | {fmt(s['p50'], 2)} | {fmt(s['p99'], 2)} |")
        w("")
        w(f"Throughput package ÷ baseline: {fmt(conc['ratio']['rps'], 2)}×.")
        w("")
    w("### Queries per request")
    w("")
    w("Counted in-process with `CaptureQueriesContext`, authentication included:")
    w("")
    w("| request | page size 10 | page size 50 |")
    w("|---------|-------------:|-------------:|")
    for name, row in list_counts.items():
        w(f"| {name} | {row['page_size_10']} | {row['page_size_50']} |")
    w("")
    w("| write | queries (with BEGIN, SAVEPOINT, COMMIT) |")
    w("|-------|--------:|")
    for name in ("package create", "baseline create", "package approve"):
        if name in qc:
            w(f"| {name} | {qc[name]['queries']} |")
    w("")
    w("### EXPLAIN (ANALYZE, BUFFERS)")
    w("")
    w("Key lines of the plans of the queries the views ran (the full plans are in")
    w("`bench/results/results.json`):")
    w("")
    for name in (
        "package manager list",
        "package requester list",
        "baseline manager list",
    ):
        entry = plans[name]
        w(
            f"**{name}**: page {plan_uses(entry['page']['plan'])}, "
            f"count {plan_uses(entry['count']['plan'])}"
        )
        w("")
        w("```text")
        w("-- the page")
        w.lines.extend(key_plan_lines(entry["page"]["plan"]))
        w("-- the paginator's COUNT(*)")
        w.lines.extend(key_plan_lines(entry["count"]["plan"]))
        w("```")
        w("")
    w("The composite indexes `salon_inv_salon_status` (salon, status, -created) and")
    w("`salon_inv_user` (user, -created) share their leading column with the one-column")
    w("indexes Django creates for the `salon` and `user` foreign keys; the planner may pick")
    w("either for these queries (the names above come from the plans).")
    w("")

    # 2. Writes -------------------------------------------------------------------------------
    if create:
        w("## 2. Create and approve")
        w("")
        w(
            f"Create: 16 clients, spread over 100 salons, {cfg['create_requests_per_round']} "
            f"requests per round and side, {create['package']['rounds']} rounds; and the same "
            "on servers whose notification backends are switched off."
        )
        w("")
        w(
            "| side | requests/s (min–max) | p50 ms | p99 ms | server p50 ms "
            "| Python CPU/request ms |"
        )
        w(
            "|------|---------------------:|-------:|-------:|--------------:|----------------------:|"
        )
        rows = [("package", create["package"]), ("baseline", create["baseline"])]
        if silent:
            rows += [
                ("package, no notifications", silent["package"]),
                ("baseline (same servers)", silent["baseline"]),
            ]
        for side, s in rows:
            w(
                f"| {side} | {fmt(s['rps'], 0)} ({fmt(s['rps_min'], 0)}–{fmt(s['rps_max'], 0)}) "
                f"| {fmt(s['p50'], 2)} | {fmt(s['p99'], 2)} | {fmt(s['server_p50'], 2)} "
                f"| {fmt(s['cpu_ms_per_request'], 2)} |"
            )
        w("")
        w(
            f"Package ÷ baseline: requests/s **{fmt(create['ratio']['rps'], 2)}×**, Python "
            f"CPU/request {fmt(create['ratio']['cpu_per_request'], 2)}×"
            + (
                f"; without notifications {fmt(silent['ratio']['rps'], 2)}× and "
                f"{fmt(silent['ratio']['cpu_per_request'], 2)}×."
                if silent
                else "."
            )
        )
        w("The package's create locks the salon row, checks membership, the role's limit and")
        w("duplicates, saves, and after commit sends `invitation.created` to the requester and")
        w("each manager over Redis; the baseline only inserts.")
        w("")
    if diff:
        w("Approve: spread over 100 salons, and for contrast all in one salon. *Lock waits*:")
        w("share of 5 ms samples of `pg_stat_activity` in which a backend of the benchmark")
        w("database waited for a lock.")
        w("")
        w(
            "| clients | 100 salons req/s | p50 ms | p99 ms | Python CPU/request ms "
            "| lock waits | one salon req/s | lock waits |"
        )
        w("|--:|--:|--:|--:|--:|--:|--:|--:|")
        for level in sorted(diff, key=int):
            d = diff[level]
            s = same.get(level)
            one = f"{fmt(s['rps'], 0)} | {fmt(100 * s['lock_wait_share'], 1)}%" if s else "– | –"
            w(
                f"| {level} | {fmt(d['rps'], 0)} | {fmt(d['p50'], 2)} | {fmt(d['p99'], 2)} "
                f"| {fmt(d['cpu_ms_per_request'], 1)} | {fmt(100 * d['lock_wait_share'], 1)}% "
                f"| {one} |"
            )
        w("")
        cpu1 = diff["1"]["cpu_ms_per_request"]
        ceiling = 1000 * (m["nproc"] or 1) / cpu1 if cpu1 else None
        w(
            f"An approval costs the server processes about {fmt(cpu1, 1)} ms of Python CPU "
            f"(two events, each serialised and sent to its recipients), so {m['nproc']} cores "
            f"could serve at most about {fmt(ceiling, 0)} approvals/s even with PostgreSQL, "
            "Redis and the load generator costing nothing."
        )
        w("")
        w(
            f"From 1 to 8 clients, throughput grows ×{fmt(approve.get('scaling_1_to_8'), 2)} over "
            f"100 salons and ×{fmt(approve.get('same_salon_scaling_1_to_8'), 2)} in one salon."
        )
        w("An approval locks only its own salon's row (`select_for_update`), so approvals in")
        w("different salons do not wait for each other, while in one salon they queue on that")
        w(f"row. With {cfg['servers']} server processes on 2 cores shared with the client and")
        w("PostgreSQL, throughput cannot grow much beyond 2×: the machine is CPU-bound.")
        w("")

    invites = results.get("invites") or {}
    if invites.get("invite") and invites.get("accept"):
        top = diff.get("16") or {}
        w("### Invites beside requests")
        w("")
        w(
            "Invite create (`POST …/invite` by each salon's owner, to a new address) and accept "
            "(`POST …/invite/<token>/accept` by the invited account), 16 clients over 100 "
            f"salons, {invites['invite']['rounds']} rounds; beside them the request direction's "
            "create and approve at 16 clients from above."
        )
        w("")
        w("| operation | requests/s (min–max) | p50 ms | p99 ms | Python CPU/request ms |")
        w("|---|--:|--:|--:|--:|")
        table = [
            ("invite (create)", invites["invite"]),
            ("request (create)", create.get("package") or {}),
            ("accept an invite", invites["accept"]),
            ("approve a request", top),
        ]
        for name, row in table:
            if not row:
                continue
            spread = (
                f" ({fmt(row['rps_min'], 0)}–{fmt(row['rps_max'], 0)})" if "rps_min" in row else ""
            )
            w(
                f"| {name} | {fmt(row['rps'], 0)}{spread} | {fmt(row['p50'], 2)} "
                f"| {fmt(row['p99'], 2)} | {fmt(row['cpu_ms_per_request'], 1)} |"
            )
        w("")
        w(
            "An invite does what a request's create does (salon lock, role, membership and "
            "duplicate checks, one event) plus a token and its digest; an accept does what an "
            "approval does (two events) plus the token lookup."
        )
        w("")

    # 3. Contention ---------------------------------------------------------------------------
    if cont:
        w("## 3. Contention: 50 approvals racing for one single-holder role")
        w("")
        w("Fifty users ask for `seller` (one holder) in one salon; the owner's 50 approvals are")
        w("sent at once over 50 open connections. A fresh salon in each round.")
        w("")
        w("| round | responses | approved | role_taken | 5xx | sellers in the DB | wall ms |")
        w("|------:|-----------|---------:|-----------:|----:|------------------:|--------:|")
        for i, rr in enumerate(cont["rounds"], 1):
            responses = ", ".join(f"{k}: {v}" for k, v in sorted(rr["responses"].items()))
            w(
                f"| {i} | {responses} | {rr['approved']} | {rr['role_taken']} "
                f"| {rr['server_errors']} | {rr['db_seller_holders']} | {fmt(rr['wall_ms'], 0)} |"
            )
        w("")
        w(
            f"Deadlocks in the whole run: {deadlocks.get('pg_stat_database', '–')} "
            f"(`pg_stat_database.deadlocks`), {deadlocks.get('in_server_logs', '–')} in the "
            f"server logs. Median wall time of the 50 approvals: "
            f"{fmt(cont['wall_ms_median'], 0)} ms; they queue on the salon's row lock."
        )
        w("")

    # 4. Fan-out ------------------------------------------------------------------------------
    if fan:
        split = " + ".join(str(c) for c in fan["connections_per_server"])
        streams = fan.get("streams") or {str(cfg.get("fanout_rate")): fan}
        stress_p99 = max(
            (st["latency_from_response_ms"].get("p99") or 0 for st in streams.values()),
            default=0,
        )
        w("## 4. Fan-out over WebSockets")
        w("")
        w(
            f"{fmt(fan['connections'])} connections ({split} on the {cfg['servers']} server "
            f"processes) in {fmt(fan['connections'] // 10)} salons; per salon the owner, an admin "
            "and 8 requesters. Each stream: requesters' creates (recipients: the requester, the "
            "owner, the admin), then the owner's approvals of them, paced at a fixed rate with "
            "at most 8 requests in flight; "
            f"{fmt(fan['events'])} events and {fmt(fan['expected_deliveries'])} expected "
            "deliveries per stream."
        )
        w("")
        w(
            "| events/s | HTTP p50 / p99 ms | receipt − response p50 / p90 / p99 ms "
            "| receipt − request sent p50 / p99 ms | delivered | to non-recipients |"
        )
        w("|---------:|------------------:|------:|------:|------:|------:|")
        for rate, st in streams.items():
            lr, lq, h = (
                st["latency_from_response_ms"],
                st["latency_from_request_ms"],
                st.get("http_ms") or {},
            )
            w(
                f"| {fmt(float(rate), 0)} | {fmt(h.get('p50'), 1)} / {fmt(h.get('p99'), 1)} "
                f"| {fmt(lr.get('p50'), 1)} / {fmt(lr.get('p90'), 1)} / {fmt(lr.get('p99'), 1)} "
                f"| {fmt(lq.get('p50'), 1)} / {fmt(lq.get('p99'), 1)} "
                f"| {fmt(st['delivered'])} of {fmt(st['expected_deliveries'])} "
                f"| **{st['non_recipient_frames']}** |"
            )
        w("")
        w(
            f"Duplicates: {fan['duplicate_frames']}. "
            f"At {fmt(fan.get('rate', cfg.get('fanout_rate')), 0)} events/s, "
            f"{fmt(fan['before_response'])} of {fmt(fan['delivered'])} frames arrived before the "
            "HTTP response was read: the package sends on commit, before the response is written."
            + (
                " When events come faster than the two processes serve them, requests queue and "
                "the event loops that forward frames compete with the request threads for the "
                "CPU and the GIL: that is what the faster stream shows."
                if stress_p99 and fan_p99 and stress_p99 > 2 * max(fan_p99, 1.0)
                else ""
            )
        )
        w(
            f"Connecting took {fmt(fan['connect_seconds'], 1)} s "
            f"({fan['connect_error_count']} errors); after {fmt(fan['idle_seconds'], 0)} s idle "
            f"{fmt(fan['connections_alive_after_idle'])} connections were open; the servers "
            f"logged {fan.get('server_exceptions', '–')} exception(s)."
        )
        w("")
        before, after = sum(fan["rss_kib_before"]), sum(fan["rss_kib_after"])
        w(
            f"Memory: the server processes' RSS grew from {fmt(before / 1024, 1)} MiB to "
            f"{fmt(after / 1024, 1)} MiB, **{fmt(fan['memory_per_connection_kib'], 1)} KiB per "
            "idle connection** (the consumer, uvicorn's `websockets` protocol with"
        )
        w("permessage-deflate, and the channel layer's bookkeeping).")
        w("")
        if pool:
            w(
                f"With the channel layer's default Redis pool (see Findings), "
                f"{fmt(pool['alive_after_idle'])} of {fmt(pool['connections'])} connections "
                f"were open after {fmt(pool['idle_seconds'], 0)} s idle and the servers logged "
                f"{fmt(pool['server_exceptions'])} exception(s), most while disconnecting."
            )
            w("")

    # 5. Scale --------------------------------------------------------------------------------
    w("## 5. Scale curve")
    w("")
    w("The measured manager's salon keeps 100 invitations; only the rest of the table grows.")
    w("p50 ms with one client (p99 in brackets), and the database's execution time of the")
    w("package's two list queries from EXPLAIN ANALYZE:")
    w("")
    w(
        "| invitations | package | baseline | package, requester's list "
        "| the package's list queries |"
    )
    w("|--:|--:|--:|--:|---|")
    for size in sizes:
        s = scales[size]
        cells = [
            f"{fmt(s['list'][key]['p50'], 2)} ({fmt(s['list'][key]['p99'], 1)})"
            for key in LIST_SERIES
        ]
        pkg = s["explain"]["package manager list"]
        w(
            f"| {fmt(s['rows'])} | {' | '.join(cells)} | {plan_uses(pkg['page']['plan'])}: "
            f"{fmt(exec_ms(pkg['page']['plan']), 1)} + {fmt(exec_ms(pkg['count']['plan']), 1)} ms |"
        )
    w("")
    seeded = ", ".join(
        f"{fmt(scales[s]['rows'])} rows in {fmt(scales[s]['seed_seconds'], 1)} s" for s in sizes
    )
    w(f"Seeding (cumulative): {seeded}.")
    w("")

    # History ---------------------------------------------------------------------------------
    history = load_history()
    changes: list[str] = []
    if history:
        w("## Earlier runs")
        w("")
        w("Key numbers of earlier full runs (kept in `bench/results/history.json`), list p50 in")
        w("ms with one client, against this run:")
        w("")
        w(
            "| run | list ÷ baseline | package at "
            + " / ".join(f"{int(x):,}" for x in sizes)
            + " rows | requester's list | create ÷ baseline | plan |"
        )
        w("|---|--:|--:|--:|--:|---|")
        for run in history:
            old = run["list_p50_ms"]
            w(
                f"| {run['date']}, commit {run['commit']} | {fmt(run['list_ratio_p50_main'], 2)}× "
                f"| {' / '.join(fmt(old.get(x, {}).get('package manager'), 1) for x in sizes)} "
                f"| {' / '.join(fmt(old.get(x, {}).get('package requester'), 1) for x in sizes)} "
                f"| {fmt(run.get('create_ratio_rps'), 2)}× | {run['list_plan']} |"
            )
            if run.get("change_after"):
                changes.append(f"Since {run['commit']}: {run['change_after']}.")
        now = " / ".join(fmt(scales[x]["list"]["package manager"]["p50"], 1) for x in sizes)
        now_req = " / ".join(fmt(scales[x]["list"]["package requester"]["p50"], 1) for x in sizes)
        w(
            f"| this run, commit {m['commit']} | {fmt(list_ratio, 2)}× | {now} | {now_req} "
            f"| {fmt(create.get('ratio', {}).get('rps'), 2)}× "
            f"| {plan_uses(plans['package manager list']['page']['plan'])} |"
        )
        w("")
        for change in changes:
            w(change)
        if changes:
            w("")

    # Reproducing -----------------------------------------------------------------------------
    w("## Reproducing")
    w("")
    w("```sh")
    w("make bench                 # the full run, about 15 minutes; rewrites this page")
    w("BENCH_QUICK=1 make bench   # small sizes, a few minutes; writes bench/results/quick.*")
    w("```")
    w("")
    w("It needs PostgreSQL (`PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`; by default")
    w("127.0.0.1:5432 as `postgres`), where it creates and drops the database `salon_bench`")
    w("(`BENCH_DB_NAME`), and Redis (`BENCH_REDIS_URL`, default `redis://127.0.0.1:6379/9`),")
    w("where it only writes and removes keys starting with `salonbench`. Sizes come from")
    w("`BENCH_SCALES`, `BENCH_MAIN_SCALE`, `BENCH_ROUNDS`, `BENCH_FANOUT_CONNECTIONS` and the")
    w("other variables listed in `bench/run.py`. `bench/report.py` renders this page again")
    w("from `bench/results/results.json`. Every server and client the run starts is stopped")
    w("at its end, also when it fails or is interrupted.")
    return w.text()


def render(results: dict[str, Any], *, write_docs: bool) -> list[Path]:
    if write_docs:
        chart(results, CHART)
        md = DOCS / "benchmarks.md"
        md.write_text(render_markdown(results, "img/benchmarks.png"))
        return [CHART, md]
    png = BENCH_DIR / "results" / "quick.png"
    chart(results, png)
    md = BENCH_DIR / "results" / "quick.md"
    md.write_text(render_markdown(results, "quick.png"))
    return [png, md]


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    path = Path(args[0]) if args else BENCH_DIR / "results" / "results.json"
    results = json.loads(path.read_text())
    if results.get("error"):
        print(f"{path} holds a failed run:\n{results['error']}", file=sys.stderr)
        return 1
    write_docs = not results.get("quick") or "--docs" in sys.argv
    for written in render(results, write_docs=write_docs):
        print(f"wrote {written.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
