# ruff: noqa: RUF001 - the page uses typographic characters (times, dashes) on purpose
"""Writes: create (package against plain DRF, with and without the notification backends),
approve at 1-16 clients over 100 salons and in one salon, and invites (create, accept)."""

from __future__ import annotations

import statistics
from typing import Any

import loadgen
import runner
import seed
from runner import APPROVE_N, APPROVE_ROUNDS, Context, fill, fill_rows, ratio, summarise, verdict

NAME = "write"
INVITE_N = runner.env("BENCH_INVITE_N", 48 if runner.QUICK else 240)  # per round and phase
PACKAGE, BASELINE = "/api/invitations", "/baseline/invitations"


def run(ctx: Context) -> dict[str, Any]:
    ctx.grow_to(runner.MAIN_SCALE)
    out = {
        "create": ctx.phase("create", lambda: creates(ctx)),
        "approve": ctx.phase("approve", lambda: approvals(ctx)),
        "invites": ctx.phase("invites", lambda: invites(ctx)),
    }
    runner.log(
        f"create ratio {out['create']['ratio']}, approve 1->8 {out['approve']['scaling_1_to_8']}"
    )
    out["create_without_notifications"] = silent = ctx.with_servers(
        "-silent", {"BENCH_NO_NOTIFICATIONS": "1"}, lambda: creates(ctx, runner.SILENT_ROUNDS)
    )
    runner.log(f"without notifications: {silent['ratio']}")
    return out


def creates(ctx: Context, rounds_count: int = runner.ROUNDS) -> dict[str, Any]:
    """16 clients, package and baseline alternating round by round; every create has a
    (writer, salon) pair of its own."""
    layout, salons = ctx.layout, ctx.layout.write_salons()
    body = {"role": "seller", "message": "Benchmark request."}
    rounds: dict[str, list[dict[str, Any]]] = {"package": [], "baseline": []}
    sides = [("package", PACKAGE), ("baseline", BASELINE)]
    for r in range(-1, rounds_count):  # round -1 warms both sides up and is not recorded
        for side, path in sides if r % 2 == 0 else sides[::-1]:

            def make(i: int, path: str = path) -> Any:
                writer = layout.writer_first + i // len(salons)
                return loadgen.Req("POST", path, writer, {"salon": salons[i % len(salons)], **body})

            n = runner.CREATE_WARM_N if r < 0 else runner.CREATE_N
            stats = ctx.measured(f"create {side}", make, n, 16, offset=ctx.create_counter)
            ctx.create_counter += n
            if r >= 0:
                rounds[side].append(stats)
    out = {side: summarise(rs) for side, rs in rounds.items()}
    out["ratio"] = runner.ratios(
        out["package"], out["baseline"], "rps p50", cpu_per_request="cpu_ms_per_request"
    )
    return out


def approvals(ctx: Context) -> dict[str, Any]:
    """Approvals at each number of clients, over the write salons (consecutive requests in
    different salons) and all in one salon, sampling the lock waits."""
    from django.db import connection

    layout, salons = ctx.layout, ctx.layout.write_salons()
    per_salon = -(-len(runner.APPROVE_LEVELS) * APPROVE_ROUNDS * APPROVE_N // len(salons))
    users = [layout.approvee_first + a for a in range(per_salon)]
    rows = seed.seed_pending(connection, users=users, salons=salons, role="member")
    rows.sort(key=lambda r: (r[1], salons.index(r[2])))
    users = [layout.approvee_first + a for a in range(ctx.same_salon_approvals())]
    same = seed.seed_pending(connection, users=users, salons=[layout.same_salon()], role="member")
    connection.close()
    out: dict[str, Any] = {}
    for kind, levels, n, pool in (
        ("different_salons", runner.APPROVE_LEVELS, APPROVE_N, rows),
        ("same_salon", runner.SAME_SALON_LEVELS, APPROVE_N // 2, same),
    ):

        def make(i: int, pool: list[tuple[int, int, int]] = pool) -> Any:
            inv, _user, salon = pool[i]
            return loadgen.Req("PATCH", f"{PACKAGE}/{inv}/approved", layout.owner_of(salon))

        per_level: dict[int, list[dict[str, Any]]] = {c: [] for c in levels}
        for r in range(APPROVE_ROUNDS):
            for k, clients in enumerate(levels):
                offset = (r * len(levels) + k) * n
                with runner.lock_waits() as waits:
                    stats = ctx.measured(
                        f"approve {kind} x{clients}", make, n, clients, offset=offset
                    )
                per_level[clients].append({**stats, "lock_waits": waits})
        out[kind] = {
            str(clients): {
                **summarise(rounds),
                "lock_wait_share": round(
                    statistics.median(r["lock_waits"]["share_with_lock_waits"] for r in rounds), 4
                ),
                "max_backends_waiting": max(
                    r["lock_waits"]["max_backends_waiting"] for r in rounds
                ),
            }
            for clients, rounds in per_level.items()
        }
    for name, kind in (("", "different_salons"), ("same_salon_", "same_salon")):
        out[f"{name}scaling_1_to_8"] = ratio(out[kind]["8"].get("rps"), out[kind]["1"].get("rps"))
    return out


def invites(ctx: Context) -> dict[str, Any]:
    """Invites (SPEC §7): create (``POST …/invite`` by salon owners) and accept (``POST
    …/invite/<token>/accept`` by the invitees), 16 clients over the write salons."""
    from django.db import connection

    from salon_invitations import tokens

    layout, salons = ctx.layout, ctx.layout.write_salons()
    per_phase = INVITE_N * (runner.ROUNDS + 1)
    # The invitees of the accept phase: accounts whose addresses the invites are for.
    with connection.cursor() as cursor:
        first = seed.add_users(cursor, "invitee", per_phase)
    new = [tokens.new_token() for _ in range(per_phase)]
    rows = [
        (f"invitee{k}@bench.invalid", salons[k % len(salons)], d) for k, (_t, d) in enumerate(new)
    ]
    seed.seed_invites(connection, rows, owner_of=layout.owner_of)
    connection.close()

    def invite(i: int) -> Any:
        salon = salons[i % len(salons)]
        body = {"salon": salon, "role": "member", "email": f"guest{i}@bench.invalid"}
        return loadgen.Req("POST", f"{PACKAGE}/invite", layout.owner_of(salon), body)

    def accept(i: int) -> Any:
        return loadgen.Req("POST", f"{PACKAGE}/invite/{new[i][0]}/accept", first + i)

    out: dict[str, Any] = {}
    for name, make in (("invite", invite), ("accept", accept)):
        rounds = [
            ctx.measured(name, make, INVITE_N, 16, offset=(r + 1) * INVITE_N)
            for r in range(-1, runner.ROUNDS)  # round -1 warms up and is not recorded
        ]
        out[name] = summarise(rounds[1:])
    return out


# The page -------------------------------------------------------------------------------------

CREATE_SUMMARY = """\
| 2 | create, 16 clients over 100 salons, package ÷ plain DRF, requests/s | ≥ 0.85 \
| {create[ratio][rps]:2}× ({create[package][rps]:0} vs {create[baseline][rps]:0} req/s) | {ok} |"""
# In process, authentication's one query left out (the budgets are the domain's).
STATEMENTS_SUMMARY = """\
| 2 | statements per create / approve, transaction statements and everything after the commit \
included (plain DRF's create: {baseline}) | ≤ 8 / ≤ 10 | {created} / {approved} \
| create {created_ok}, approve {approved_ok} |"""
SILENT_SUMMARY = """\
| 2 | the same with the notification backends switched off | – | {silent[ratio][rps]:2}× | |"""
APPROVE_SUMMARY = """\
| 2 | approve, {top} clients over 100 salons | – | {top_rps:0} req/s | |
| 2 | approvals in different salons do not serialise: requests/s, 1 → 8 clients | grows \
| ×{approve[scaling_1_to_8]:2} ({one[rps]:0} → {eight[rps]:0}); lock waits in \
{eight[lock_wait_share]:%1} of samples (one salon: ×{approve[same_salon_scaling_1_to_8]:2}, \
{same_eight[lock_wait_share]:%1}) | {ok} |"""


def summary(results: dict[str, Any]) -> list[str]:
    create, silent = results.get("create"), results.get("create_without_notifications")
    approve = results.get("approve") or {}
    diff, same = approve.get("different_salons"), approve.get("same_salon")
    rows: list[str] = []
    if create:
        rps = create["ratio"]["rps"]
        rows.append(
            fill(CREATE_SUMMARY, create=create, ok=verdict(rps is not None and rps >= 0.85))
        )
    counts = results.get("query_counts") or {}
    if "package create" in counts:
        created, approved, baseline = (
            counts[name]["queries"] - 1
            for name in ("package create", "package approve", "baseline create")
        )
        ok = {"created_ok": verdict(created <= 8), "approved_ok": verdict(approved <= 10)}
        text = fill(STATEMENTS_SUMMARY, baseline=baseline, created=created, approved=approved, **ok)
        rows.append(text)
    if silent:
        rows.append(fill(SILENT_SUMMARY, silent=silent))
    if diff:
        top = str(max(int(k) for k in diff))
        scaling = approve.get("scaling_1_to_8")
        ok = verdict(scaling is not None and scaling > 1.2)
        levels = {"one": diff["1"], "eight": diff["8"], "same_eight": same["8"]}
        text = fill(
            APPROVE_SUMMARY, top=top, top_rps=diff[top]["rps"], approve=approve, ok=ok, **levels
        )
        rows += text.splitlines()
    return rows


FINDING = """\
**A create costs the servers {cpu:1} ms of Python CPU, the baseline's {baseline_cpu:1} ms** \
({ratio[cpu_per_request]:2}×; requests/s {ratio[rps]:2}×, a noisier number).
   The package's create does more than an insert: it locks the salon row, checks membership,
   the role's limit and duplicates in one statement ({queries} statements with the
   transaction's and authentication's, against {baseline_queries}), and after commit computes
   the recipients, serialises the invitation and sends it to each over Redis. On servers
   without notification backends a create costs {silent_cpu:1} ms, so the notifications are
   about {share:0}% of it (requests/s {silent_rps_ratio:2}× the baseline there). In-process
   medians: package {in_process:1} ms, without backends {in_process_silent:1} ms, baseline
   {in_process_baseline:1} ms (in-process each `async_to_sync` starts an event loop and a Redis
   connection, which overstates the notifications; profile:
   `bench/results/profile-create-package.txt`)."""


def findings(results: dict[str, Any]) -> list[str]:
    create, silent = results.get("create"), results.get("create_without_notifications")
    if not create or "query_counts" not in results:  # the list scenario counts the queries
        return []
    counts = results["query_counts"]
    cpu, silent_cpu = (r["package"]["cpu_ms_per_request"] for r in (create, silent))
    in_process = {k: v["p50_ms"] for k, v in results["in_process"].items()}
    finding = fill(
        FINDING, cpu=cpu, baseline_cpu=create["baseline"]["cpu_ms_per_request"],
        ratio=create["ratio"], queries=counts["package create"]["queries"],
        baseline_queries=counts["baseline create"]["queries"], silent_cpu=silent_cpu,
        share=100 * (1 - silent_cpu / cpu), silent_rps_ratio=silent["ratio"]["rps"],
        in_process=in_process["package create"],
        in_process_silent=in_process["package create without notification backends"],
        in_process_baseline=in_process["baseline create"],
    )  # fmt: skip
    return [finding]


SECTION = """\
## 2. Create and approve

Create: 16 clients, spread over 100 salons, {config[create_requests_per_round]} requests per \
round and side, {create[package][rounds]} rounds; and the same on servers whose notification \
backends are switched off.

| side | requests/s (min–max) | p50 ms | p99 ms | server p50 ms | Python CPU/request ms |
|------|---------------------:|-------:|-------:|--------------:|----------------------:|
{create_rows}

Package ÷ baseline: requests/s **{create[ratio][rps]:2}×**, Python CPU/request \
{create[ratio][cpu_per_request]:2}×; without notifications {silent[ratio][rps]:2}× and \
{silent[ratio][cpu_per_request]:2}×.
The package's create locks the salon row, checks membership, the role's limit and
duplicates, saves, and after commit sends `invitation.created` to the requester and
each manager over Redis; the baseline only inserts.

Approve: spread over 100 salons, and for contrast all in one salon. *Lock waits*:
share of 5 ms samples of `pg_stat_activity` in which a backend of the benchmark
database waited for a lock.

| clients | 100 salons req/s | p50 ms | p99 ms | Python CPU/request ms | lock waits \
| one salon req/s | lock waits |
|--:|--:|--:|--:|--:|--:|--:|--:|
{approve_rows}

An approval costs the server processes about {approve_cpu:1} ms of Python CPU (two events, \
each serialised and sent to its recipients), so {nproc} cores could serve at most about \
{ceiling:0} approvals/s even with PostgreSQL, Redis and the load generator costing nothing.

From 1 to 8 clients, throughput grows ×{approve[scaling_1_to_8]:2} over 100 salons and \
×{approve[same_salon_scaling_1_to_8]:2} in one salon.
An approval locks only its own salon's row (`select_for_update`), so approvals in
different salons do not wait for each other, while in one salon they queue on that
row. With {config[servers]} server processes on 2 cores shared with the client and
PostgreSQL, throughput cannot grow much beyond 2×: the machine is CPU-bound.

### Invites beside requests

Invite create (`POST …/invite` by each salon's owner, to a new address) and accept \
(`POST …/invite/<token>/accept` by the invited account), 16 clients over 100 salons, \
{invites[invite][rounds]} rounds; beside them the request direction's create and approve at \
16 clients from above.

| operation | requests/s (min–max) | p50 ms | p99 ms | Python CPU/request ms |
|---|--:|--:|--:|--:|
{invite_rows}

An invite does what a request's create does (salon lock, role, membership and duplicate \
checks, one event) plus a token and its digest; an accept does what an approval does (two \
events) plus the token lookup.
"""
RPS_SPREAD = "| {name} | {rps:0} ({rps_min:0}–{rps_max:0}) "
CREATE_ROW = RPS_SPREAD + "| {p50:2} | {p99:2} | {server_p50:2} | {cpu_ms_per_request:2} |"
APPROVE_ROW = (
    "| {level} | {rps:0} | {p50:2} | {p99:2} | {cpu_ms_per_request:1} | {lock_wait_share:%1} "
    "| {same[rps]:0} | {same[lock_wait_share]:%1} |"
)
INVITE_ROW = RPS_SPREAD + "| {p50:2} | {p99:2} | {cpu_ms_per_request:1} |"


def render(results: dict[str, Any]) -> str:
    create, silent = results.get("create"), results.get("create_without_notifications")
    if not create:
        return ""
    invites, approve, nproc = results["invites"], results["approve"], results["machine"]["nproc"]
    diff, same = approve["different_salons"], approve["same_salon"]
    cpu1 = diff["1"]["cpu_ms_per_request"]
    sides = (
        ("package", create["package"]),
        ("baseline", create["baseline"]),
        ("package, no notifications", silent["package"]),
        ("baseline (same servers)", silent["baseline"]),
    )
    operations = (
        ("invite (create)", invites["invite"]),
        ("request (create)", create["package"]),
        ("accept an invite", invites["accept"]),
        ("approve a request", diff["16"]),
    )
    return fill(
        SECTION,
        config=results["config"],
        create=create,
        silent=silent,
        create_rows=fill_rows(CREATE_ROW, [{"name": name, **s} for name, s in sides]),
        approve_rows=fill_rows(
            APPROVE_ROW,
            [{"level": k, **diff[k], "same": same.get(k)} for k in sorted(diff, key=int)],
        ),
        approve_cpu=cpu1,
        nproc=nproc,
        ceiling=1000 * (nproc or 1) / cpu1 if cpu1 else None,
        approve=approve,
        invites=invites,
        invite_rows=fill_rows(INVITE_ROW, [{"name": name, **s} for name, s in operations]),
    )
