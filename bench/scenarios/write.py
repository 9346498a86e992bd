"""Writes: create (package against plain DRF, with and without the notification backends),
approve at 1-16 clients over 100 salons and in one salon, and invites (create, accept)."""

from __future__ import annotations

import statistics
from typing import Any

import loadgen
import runner
import seed
from runner import APPROVE_N, APPROVE_ROUNDS, Context, fill, ratio, summarise, verdict

from scenarios.list import BASELINE, PACKAGE, table

NAME = "write"
INVITE_N = runner.env("BENCH_INVITE_N", 48 if runner.QUICK else 240)  # per round and phase
CREATE_BODY = {"role": "seller", "message": "Benchmark request."}


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


def creates(ctx: Context, rounds: int = runner.ROUNDS) -> dict[str, Any]:
    """16 clients, package and baseline alternating round by round (round -1 warms both up
    and is not recorded); every create has a (writer, salon) pair of its own."""
    layout, salons = ctx.layout, ctx.layout.write_salons()
    paths = {"package": PACKAGE, "baseline": BASELINE}

    def series(side: str, r: int) -> dict[str, Any]:
        def make(i: int) -> Any:
            body = {"salon": salons[i % len(salons)], **CREATE_BODY}
            return loadgen.Req("POST", paths[side], layout.writer_first + i // len(salons), body)

        n = runner.CREATE_WARM_N if r < 0 else runner.CREATE_N
        stats = ctx.measured(f"create {side}", make, n, 16, offset=ctx.create_counter)
        ctx.create_counter += n
        return stats

    measured = runner.interleaved(paths, range(-1, rounds), series)
    out = {side: summarise(rs[1:]) for side, rs in measured.items()}
    out["ratio"] = runner.ratios(
        out["package"], out["baseline"], "rps p50", cpu_per_request="cpu_ms_per_request"
    )
    return out


def approvals(ctx: Context) -> dict[str, Any]:
    """Approvals at each number of clients, over the write salons (consecutive requests in
    different salons) and all in one salon, sampling the lock waits."""
    from django.db import connection

    layout, salons = ctx.layout, ctx.layout.write_salons()

    def pending(count: int, salons: list[int]) -> list[tuple[int, int, int]]:
        users = [layout.approvee_first + a for a in range(count)]
        return seed.seed_pending(connection, users=users, salons=salons, role="member")

    per_salon = -(-len(runner.APPROVE_LEVELS) * APPROVE_ROUNDS * APPROVE_N // len(salons))
    rows = sorted(pending(per_salon, salons), key=lambda r: (r[1], salons.index(r[2])))
    same = pending(ctx.same_salon_approvals(), [layout.same_salon()])
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
                what, offset = f"approve {kind} x{clients}", (r * len(levels) + k) * n
                with runner.lock_waits() as waits:
                    stats = ctx.measured(what, make, n, clients, offset=offset)
                per_level[clients].append({**stats, "lock_waits": waits})
        out[kind] = {str(clients): with_lock_waits(rounds) for clients, rounds in per_level.items()}
    for name, kind in (("", "different_salons"), ("same_salon_", "same_salon")):
        out[f"{name}scaling_1_to_8"] = ratio(out[kind]["8"].get("rps"), out[kind]["1"].get("rps"))
    return out


def with_lock_waits(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """``summarise(rounds)`` with the median share of samples with lock waits, and the most
    backends that waited at once."""
    waits = [r["lock_waits"] for r in rounds]
    return {
        **summarise(rounds),
        "lock_wait_share": round(statistics.median(w["share_with_lock_waits"] for w in waits), 4),
        "max_backends_waiting": max(w["max_backends_waiting"] for w in waits),
    }


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
    n = INVITE_N
    for name, make in (("invite", invite), ("accept", accept)):  # round 0 warms up, unrecorded
        rounds = [ctx.measured(name, make, n, 16, offset=r * n) for r in range(runner.ROUNDS + 1)]
        out[name] = summarise(rounds[1:])
    return out


# The page -------------------------------------------------------------------------------------

TEMPLATES = runner.templates(NAME)


def summary(results: dict[str, Any]) -> list[str]:
    create, approve = results.get("create"), results.get("approve")
    counts = results.get("query_counts") or {}
    rows: list[str] = []
    if create:
        ok = verdict((create["ratio"]["rps"] or 0) >= 0.85)
        rows.append(fill(TEMPLATES["CREATE_SUMMARY"], create=create, ok=ok))
    if "package create" in counts:
        # In process, authentication's one query left out (the budgets are the domain's).
        q = {name: c["queries"] - 1 for name, c in counts.items() if "queries" in c}
        ok = {"create": q["package create"] <= 8, "approve": q["package approve"] <= 10}
        ok = {k: verdict(met) for k, met in ok.items()}
        rows.append(fill(TEMPLATES["STATEMENTS_SUMMARY"], q=q, ok=ok))
    if approve:  # measured with the creates without notifications (the same run)
        diff, same = approve["different_salons"], approve["same_salon"]
        top = str(max(int(k) for k in diff))
        text = fill(
            TEMPLATES["SILENT_APPROVE_SUMMARY"], silent=results["create_without_notifications"],
            approve=approve, top=top, top_rps=diff[top]["rps"], one=diff["1"], eight=diff["8"],
            same_eight=same["8"], ok=verdict((approve["scaling_1_to_8"] or 0) > 1.2),
        )  # fmt: skip
        rows += text.splitlines()
    return rows


def findings(results: dict[str, Any]) -> list[str]:
    create, silent = results.get("create"), results.get("create_without_notifications")
    if not create or "query_counts" not in results:  # the list scenario counts the queries
        return []
    cpu, silent_cpu = (r["package"]["cpu_ms_per_request"] for r in (create, silent))
    share = 100 * (1 - silent_cpu / cpu)
    return [fill(TEMPLATES["FINDING"], **results, silent=silent, share=share)]


def render(results: dict[str, Any]) -> str:
    create, silent = results.get("create"), results.get("create_without_notifications")
    if not create:
        return ""
    invites, approve, nproc = results["invites"], results["approve"], results["machine"]["nproc"]
    diff, same = approve["different_salons"], approve["same_salon"]
    cpu1 = diff["1"]["cpu_ms_per_request"]
    sides = {
        "package": create["package"],
        "baseline": create["baseline"],
        "package, no notifications": silent["package"],
        "baseline (same servers)": silent["baseline"],
    }
    operations = {
        "invite (create)": invites["invite"], "request (create)": create["package"],
        "accept an invite": invites["accept"], "approve a request": diff["16"],
    }  # fmt: skip
    levels = {k: {**diff[k], "same": same.get(k)} for k in sorted(diff, key=int)}
    return fill(
        TEMPLATES["SECTION"], config=results["config"], create=create, silent=silent,
        approve=approve, invites=invites, approve_cpu=cpu1, nproc=nproc,
        ceiling=1000 * (nproc or 1) / cpu1 if cpu1 else None,
        create_rows=table(TEMPLATES["CREATE_ROW"], sides),
        approve_rows=table(TEMPLATES["APPROVE_ROW"], levels),
        invite_rows=table(TEMPLATES["INVITE_ROW"], operations),
    )  # fmt: skip
