# ruff: noqa: RUF001 - the page uses typographic characters (times, dashes) on purpose
"""Writes: create (package against plain DRF, with and without the notification backends),
approve at 1-16 clients over 100 salons and in one salon, and invites (create, accept)."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import runner
from runner import (
    APPROVE_LEVELS,
    APPROVE_N,
    APPROVE_ROUNDS,
    CREATE_N,
    CREATE_WARM_N,
    SAME_SALON_LEVELS,
    SILENT_ROUNDS,
    Context,
    LockWaitSampler,
    env_int,
    fmt,
    ratio,
    ratios,
    row,
    summarise,
    verdict,
)

NAME = "write"
WRITES = ("create", "approve")
INVITE_N = env_int("BENCH_INVITE_N", 48 if runner.QUICK else 240)  # per round and phase
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
    out["create_without_notifications"] = ctx.with_servers(
        "-silent", {"BENCH_NO_NOTIFICATIONS": "1"}, lambda: creates(ctx, SILENT_ROUNDS)
    )
    runner.log(f"without notifications: {out['create_without_notifications']['ratio']}")
    return out


def creates(ctx: Context, rounds_count: int = runner.ROUNDS) -> dict[str, Any]:
    """16 clients, package and baseline alternating round by round; every create has a
    (writer, salon) pair of its own."""
    import loadgen

    layout, salons = ctx.layout, ctx.layout.write_salons()

    def maker(path: str) -> Callable[[int], Any]:
        def make(i: int) -> Any:
            body = {
                "salon": salons[i % len(salons)],
                "role": "seller",
                "message": "Benchmark request.",
            }
            return loadgen.Req("POST", path, layout.writer_first + i // len(salons), body)

        return make

    sides = {"package": maker(PACKAGE), "baseline": maker(BASELINE)}
    rounds: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    for r in range(-1, rounds_count):  # round -1 warms both sides up and is not recorded
        for side in list(sides)[:: 1 if r % 2 == 0 else -1]:
            n = CREATE_WARM_N if r < 0 else CREATE_N
            stats = ctx.measured(f"create {side}", sides[side], n, 16, ctx.create_counter)
            ctx.create_counter += n
            if r >= 0:
                rounds[side].append(stats)
    out = {side: summarise(rs) for side, rs in rounds.items()}
    out["ratio"] = ratios(
        out["package"], out["baseline"], rps="rps", p50="p50", cpu_per_request="cpu_ms_per_request"
    )
    return out


def approvals(ctx: Context) -> dict[str, Any]:
    """Approvals at each number of clients, over the write salons (consecutive requests in
    different salons) and all in one salon, sampling the lock waits."""
    import loadgen
    import seed
    from django.db import connection

    layout, salons = ctx.layout, ctx.layout.write_salons()
    per_salon = -(-len(APPROVE_LEVELS) * APPROVE_ROUNDS * APPROVE_N // len(salons))
    users = [layout.approvee_first + a for a in range(per_salon)]
    rows = seed.seed_pending(connection, users=users, salons=salons, role="member")
    rows.sort(key=lambda r: (r[1], salons.index(r[2])))
    users = [layout.approvee_first + a for a in range(ctx.same_salon_approvals())]
    same = seed.seed_pending(connection, users=users, salons=[layout.same_salon()], role="member")
    connection.close()
    out: dict[str, Any] = {}
    for kind, levels, n, pool in (
        ("different_salons", APPROVE_LEVELS, APPROVE_N, rows),
        ("same_salon", SAME_SALON_LEVELS, APPROVE_N // 2, same),
    ):

        def make(i: int, pool: list[tuple[int, int, int]] = pool) -> Any:
            inv, _user, salon = pool[i]
            return loadgen.Req("PATCH", f"{PACKAGE}/{inv}/approved", layout.owner_of(salon))

        per_level: dict[int, list[dict[str, Any]]] = {c: [] for c in levels}
        for r in range(APPROVE_ROUNDS):
            for k, clients in enumerate(levels):
                offset = (r * len(levels) + k) * n
                with LockWaitSampler() as sampler:
                    stats = ctx.measured(f"approve {kind} x{clients}", make, n, clients, offset)
                per_level[clients].append({**stats, "lock_waits": sampler.result()})
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
    import loadgen
    import seed
    from django.db import connection

    from salon_invitations import tokens

    layout, salons = ctx.layout, ctx.layout.write_salons()
    per_phase = INVITE_N * (runner.ROUNDS + 1)
    # The invitees of the accept phase: accounts whose addresses the invites are for.
    with connection.cursor() as cursor:
        first = seed._users(cursor, "invitee", per_phase)
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
            ctx.measured(name, make, INVITE_N, 16, (r + 1) * INVITE_N)
            for r in range(-1, runner.ROUNDS)  # round -1 warms up and is not recorded
        ]
        out[name] = summarise(rounds[1:])
    return out


# The page -------------------------------------------------------------------------------------


def parts(results: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
    approve = results.get("approve") or {}
    return (
        results.get("create") or {},
        results.get("create_without_notifications") or {},
        approve,
        approve.get("different_salons") or {},
        approve.get("same_salon") or {},
    )


def summary(results: dict[str, Any]) -> list[str]:
    create, silent, approve, diff, same = parts(results)
    rows: list[str] = []
    if create:
        rps = create["ratio"]["rps"]
        rows.append(
            "| 2 | create, 16 clients over 100 salons, package ÷ plain DRF, requests/s | ≥ 0.85 "
            f"| {fmt(rps, 2)}× ({fmt(create['package']['rps'], 0)} vs "
            f"{fmt(create['baseline']['rps'], 0)} req/s) "
            f"| {verdict(rps is not None and rps >= 0.85)} |"
        )
    counts = results.get("query_counts") or {}
    if "package create" in counts:
        # In process, authentication's one query left out (the budgets are the domain's).
        created, approved = (counts[f"package {op}"]["queries"] - 1 for op in WRITES)
        baseline = counts["baseline create"]["queries"] - 1
        rows.append(
            "| 2 | statements per create / approve, transaction statements and everything after "
            f"the commit included (plain DRF's create: {baseline}) | ≤ 8 / ≤ 10 "
            f"| {created} / {approved} | create {verdict(created <= 8)}, approve "
            f"{verdict(approved <= 10)} |"
        )
    if silent:
        rows.append(
            "| 2 | the same with the notification backends switched off | – "
            f"| {fmt(silent['ratio']['rps'], 2)}× | |"
        )
    if diff:
        top = str(max(int(k) for k in diff))
        scaling = approve.get("scaling_1_to_8")
        rows.append(
            f"| 2 | approve, {top} clients over 100 salons | – "
            f"| {fmt(diff[top]['rps'], 0)} req/s | |"
        )
        rows.append(
            "| 2 | approvals in different salons do not serialise: requests/s, 1 → 8 clients "
            f"| grows | ×{fmt(scaling, 2)} ({fmt(diff['1']['rps'], 0)} → "
            f"{fmt(diff['8']['rps'], 0)}); lock waits in "
            f"{fmt(100 * diff['8']['lock_wait_share'], 1)}% of samples (one salon: ×"
            f"{fmt(approve.get('same_salon_scaling_1_to_8'), 2)}, "
            f"{fmt(100 * same['8']['lock_wait_share'], 1)}%) "
            f"| {verdict(scaling is not None and scaling > 1.2)} |"
        )
    return rows


FINDING = """\
**A create costs the servers {cpu} ms of Python CPU, the baseline's {baseline_cpu} ms** \
({cpu_ratio}×; requests/s {rps_ratio}×, a noisier number).
   The package's create does more than an insert: it locks the salon row, checks membership,
   the role's limit and duplicates in one statement ({queries} statements with the
   transaction's and authentication's, against {baseline_queries}), and after commit computes
   the recipients, serialises the invitation and sends it to each over Redis. On servers
   without notification backends a create costs {silent_cpu} ms, so the notifications are
   about {share}% of it (requests/s {silent_rps_ratio}× the baseline there). In-process
   medians: package {in_process} ms, without backends {in_process_silent} ms, baseline
   {in_process_baseline} ms (in-process each `async_to_sync` starts an event loop and a Redis
   connection, which overstates the notifications; profile:
   `bench/results/profile-create-package.txt`)."""


def findings(results: dict[str, Any]) -> list[str]:
    create, silent, _approve, _diff, _same = parts(results)
    if not create:
        return []
    qc, ip = results["query_counts"], results["in_process"]
    cpu, silent_cpu = (r["package"]["cpu_ms_per_request"] for r in (create, silent))
    finding = FINDING.format(
        cpu=fmt(cpu, 1),
        baseline_cpu=fmt(create["baseline"]["cpu_ms_per_request"], 1),
        cpu_ratio=fmt(create["ratio"]["cpu_per_request"], 2),
        rps_ratio=fmt(create["ratio"]["rps"], 2),
        queries=qc["package create"]["queries"],
        baseline_queries=qc["baseline create"]["queries"],
        silent_cpu=fmt(silent_cpu, 1),
        share=fmt(100 * (1 - silent_cpu / cpu), 0),
        silent_rps_ratio=fmt(silent["ratio"]["rps"], 2),
        in_process=fmt(ip["package create"]["p50_ms"], 1),
        in_process_silent=fmt(ip["package create without notification backends"]["p50_ms"], 1),
        in_process_baseline=fmt(ip["baseline create"]["p50_ms"], 1),
    )
    return [finding]


SECTION = """\
## 2. Create and approve

Create: 16 clients, spread over 100 salons, {create_n} requests per round and side, \
{create_rounds} rounds; and the same on servers whose notification backends are switched off.

| side | requests/s (min–max) | p50 ms | p99 ms | server p50 ms | Python CPU/request ms |
|------|---------------------:|-------:|-------:|--------------:|----------------------:|
{create_rows}

Package ÷ baseline: requests/s **{rps_ratio}×**, Python CPU/request {cpu_ratio}×; without \
notifications {silent_rps_ratio}× and {silent_cpu_ratio}×.
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

An approval costs the server processes about {approve_cpu} ms of Python CPU (two events, each \
serialised and sent to its recipients), so {nproc} cores could serve at most about {ceiling} \
approvals/s even with PostgreSQL, Redis and the load generator costing nothing.

From 1 to 8 clients, throughput grows ×{scaling} over 100 salons and ×{same_scaling} in one salon.
An approval locks only its own salon's row (`select_for_update`), so approvals in
different salons do not wait for each other, while in one salon they queue on that
row. With {servers} server processes on 2 cores shared with the client and
PostgreSQL, throughput cannot grow much beyond 2×: the machine is CPU-bound.

### Invites beside requests

Invite create (`POST …/invite` by each salon's owner, to a new address) and accept \
(`POST …/invite/<token>/accept` by the invited account), 16 clients over 100 salons, \
{invite_rounds} rounds; beside them the request direction's create and approve at 16 clients \
from above.

| operation | requests/s (min–max) | p50 ms | p99 ms | Python CPU/request ms |
|---|--:|--:|--:|--:|
{invite_rows}

An invite does what a request's create does (salon lock, role, membership and duplicate \
checks, one event) plus a token and its digest; an accept does what an approval does (two \
events) plus the token lookup.
"""


def rps_spread(s: dict[str, Any]) -> str:
    return f"{fmt(s['rps'], 0)} ({fmt(s['rps_min'], 0)}–{fmt(s['rps_max'], 0)})"


def render(results: dict[str, Any]) -> str:
    create, silent, approve, diff, same = parts(results)
    if not create:
        return ""
    invites, m = results["invites"], results["machine"]
    cpu1 = diff["1"]["cpu_ms_per_request"]
    create_rows = [
        row(
            side,
            rps_spread(s),
            *(fmt(s[k], 2) for k in ("p50", "p99", "server_p50")),
            fmt(s["cpu_ms_per_request"], 2),
        )
        for side, s in (
            ("package", create["package"]),
            ("baseline", create["baseline"]),
            ("package, no notifications", silent["package"]),
            ("baseline (same servers)", silent["baseline"]),
        )
    ]
    approve_rows = [
        row(
            level,
            fmt(d["rps"], 0),
            fmt(d["p50"], 2),
            fmt(d["p99"], 2),
            fmt(d["cpu_ms_per_request"], 1),
            f"{fmt(100 * d['lock_wait_share'], 1)}%",
            *((fmt(s["rps"], 0), f"{fmt(100 * s['lock_wait_share'], 1)}%") if s else ("–", "–")),
        )
        for level, d, s in ((k, diff[k], same.get(k)) for k in sorted(diff, key=int))
    ]
    invite_rows = [
        row(
            name, rps_spread(s), fmt(s["p50"], 2), fmt(s["p99"], 2), fmt(s["cpu_ms_per_request"], 1)
        )
        for name, s in (
            ("invite (create)", invites["invite"]),
            ("request (create)", create["package"]),
            ("accept an invite", invites["accept"]),
            ("approve a request", diff["16"]),
        )
    ]
    return SECTION.format(
        create_n=results["config"]["create_requests_per_round"],
        create_rounds=create["package"]["rounds"],
        create_rows="\n".join(create_rows),
        rps_ratio=fmt(create["ratio"]["rps"], 2),
        cpu_ratio=fmt(create["ratio"]["cpu_per_request"], 2),
        silent_rps_ratio=fmt(silent["ratio"]["rps"], 2),
        silent_cpu_ratio=fmt(silent["ratio"]["cpu_per_request"], 2),
        approve_rows="\n".join(approve_rows),
        approve_cpu=fmt(cpu1, 1),
        nproc=m["nproc"],
        ceiling=fmt(1000 * (m["nproc"] or 1) / cpu1 if cpu1 else None, 0),
        scaling=fmt(approve["scaling_1_to_8"], 2),
        same_scaling=fmt(approve["same_salon_scaling_1_to_8"], 2),
        servers=results["config"]["servers"],
        invite_rounds=invites["invite"]["rounds"],
        invite_rows="\n".join(invite_rows),
    )
