"""Contention: 50 approvals racing for one single-holder role in one salon, sent at once over
50 open connections; a fresh salon in each round."""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

import loadgen
import runner
import seed
from runner import Context, fill, verdict

NAME = "contention"
#: Each round's correct outcome: one approval, every other contender's ``role_taken``.
CORRECT = {"approved": 1, "role_taken": seed.CONTENDERS - 1, "server_errors": 0,
           "transport_errors": 0, "db_seller_holders": 1}  # fmt: skip


def run(ctx: Context) -> dict[str, Any]:
    ctx.grow_to(runner.MAIN_SCALE)

    def approvals() -> dict[str, Any]:
        rounds = [one_round(ctx, r) for r in range(runner.CONTENTION_ROUNDS)]
        walls = [r["wall_ms"] for r in rounds]
        return {
            "rounds": rounds,
            "wall_ms_median": round(statistics.median(walls), 1),
            "wall_ms_max": max(walls),
            "all_correct": all(r[k] == v for r in rounds for k, v in CORRECT.items()),
        }

    out = ctx.phase("contention", approvals)
    runner.log(f"contention correct: {out['all_correct']}")
    return {"contention": out}


def one_round(ctx: Context, r: int) -> dict[str, Any]:
    """The owner of round ``r``'s salon approves each contender's request for ``seller`` in
    it, all at once."""
    from django.db import connection

    salon = ctx.layout.contention_salon(r)
    owner = ctx.layout.owner_of(salon)
    contenders = [ctx.layout.contender_first + c for c in range(seed.CONTENDERS)]
    rows = seed.seed_pending(connection, users=contenders, salons=[salon], role="seller")
    connection.close()
    n = len(rows)

    def approve(i: int) -> Any:
        return loadgen.Req("PATCH", f"/api/invitations/{rows[i][0]}/approved", owner)

    async def fire() -> Any:
        clients = loadgen.Clients(ctx.servers.urls(), connections=n)
        try:
            # Open all connections first, so the approvals start together.
            warm = loadgen.Req("GET", "/api/invitations?page_size=1", owner)
            await loadgen.run_closed_loop(clients, lambda i: warm, n, n)
            return await loadgen.run_closed_loop(clients, approve, n, n, keep_body=True)
        finally:
            await clients.aclose()

    with runner.lock_waits(0.002) as waits:
        result = ctx.run_async(fire())
    samples = result.samples
    # Each response's status and its error code, if any ("409 role_taken").
    error = [isinstance(s.body, dict) and s.body.get("code") for s in samples]
    codes = [f"{s.status} {e}" if e else str(s.status) for s, e in zip(samples, error, strict=True)]
    invitations = runner.pg_query(
        "SELECT status, count(*) FROM salon_invitations_invitation "
        "WHERE salon_id = %s AND role = 'seller' GROUP BY status",
        [salon],
    )
    ((holders,),) = runner.pg_query(
        "SELECT count(*) FROM salon_invitations_membership WHERE salon_id = %s AND role = 'seller'",
        [salon],
    )
    return {
        "responses": dict(Counter(codes)),
        "approved": sum(1 for s in samples if s.status == 200),
        "role_taken": codes.count("409 role_taken"),
        "server_errors": sum(1 for s in samples if s.status >= 500),
        "transport_errors": len(result.errors),
        "wall_ms": round((max(s.done for s in samples) - min(s.sent for s in samples)) * 1000, 1),
        "db_invitations": dict(invitations),
        "db_seller_holders": holders,
        "lock_waits": waits,
    }


# The page -------------------------------------------------------------------------------------

TEMPLATES = runner.templates(NAME)


def summary(results: dict[str, Any]) -> list[str]:
    cont, deadlocks = results.get("contention"), results.get("deadlocks") or {}
    if not cont:
        return []
    ok = cont["all_correct"] and deadlocks.get("pg_stat_database") == 0
    ok = verdict(ok and not deadlocks.get("in_server_logs"))
    every = "every" if cont["all_correct"] else "**not every**"
    count = len(cont["rounds"])
    text = fill(TEMPLATES["SUMMARY"], **cont, every=every, count=count, deadlocks=deadlocks, ok=ok)
    return [text]


def render(results: dict[str, Any]) -> str:
    cont = results.get("contention")
    if not cont:
        return ""
    rows = []
    for i, r in enumerate(cont["rounds"], 1):
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(r["responses"].items()))
        rows.append(fill(TEMPLATES["ROW"], **r, i=i, codes=codes))
    return fill(
        TEMPLATES["SECTION"], **cont, rows="\n".join(rows), deadlocks=results.get("deadlocks")
    )
