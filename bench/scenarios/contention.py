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


def run(ctx: Context) -> dict[str, Any]:
    ctx.grow_to(runner.MAIN_SCALE)
    layout = ctx.layout
    contenders = [layout.contender_first + c for c in range(seed.CONTENDERS)]

    def approvals() -> dict[str, Any]:
        rounds = [
            one_round(ctx, layout.contention_salon(r), contenders)
            for r in range(runner.CONTENTION_ROUNDS)
        ]
        walls = [r["wall_ms"] for r in rounds]
        return {
            "rounds": rounds,
            "wall_ms_median": round(statistics.median(walls), 1),
            "wall_ms_max": max(walls),
            "all_correct": all(
                r["approved"] == 1
                and r["role_taken"] == len(contenders) - 1
                and r["server_errors"] == r["transport_errors"] == 0
                and r["db_seller_holders"] == 1
                for r in rounds
            ),
        }

    out = ctx.phase("contention", approvals)
    runner.log(f"contention correct: {out['all_correct']}")
    return {"contention": out}


def one_round(ctx: Context, salon: int, contenders: list[int]) -> dict[str, Any]:
    """The owner approves each contender's request for ``seller`` in ``salon``, all at once."""
    from django.db import connection

    owner = ctx.layout.owner_of(salon)
    rows = seed.seed_pending(connection, users=contenders, salons=[salon], role="seller")
    connection.close()
    n = len(rows)

    async def fire() -> Any:
        clients = loadgen.Clients(ctx.servers.urls(), connections=n)
        try:
            # Open all connections first, so the approvals start together.
            warm = loadgen.Req("GET", "/api/invitations?page_size=1", owner)
            await loadgen.run_closed_loop(clients, lambda i: warm, n, n)
            return await loadgen.run_closed_loop(
                clients,
                lambda i: loadgen.Req("PATCH", f"/api/invitations/{rows[i][0]}/approved", owner),
                n,
                n,
                keep_body=True,
            )
        finally:
            await clients.aclose()

    with runner.lock_waits(0.002) as waits:
        result = ctx.run_async(fire())
    samples = result.samples
    codes = [
        f"{s.status} {s.body['code']}"
        if isinstance(s.body, dict) and s.body.get("code")
        else str(s.status)
        for s in samples
    ]
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
    ok = ok and not deadlocks.get("in_server_logs")
    every = "every" if cont["all_correct"] else "**not every**"
    return [
        fill(
            TEMPLATES["SUMMARY"],
            **cont,
            every=every,
            count=len(cont["rounds"]),
            deadlocks=deadlocks,
            ok=verdict(ok),
        )
    ]


def render(results: dict[str, Any]) -> str:
    cont = results.get("contention")
    if not cont:
        return ""
    rows = [
        fill(
            TEMPLATES["ROW"],
            **r,
            i=i,
            codes=", ".join(f"{k}: {v}" for k, v in sorted(r["responses"].items())),
        )
        for i, r in enumerate(cont["rounds"], 1)
    ]
    return fill(
        TEMPLATES["SECTION"], **cont, rows="\n".join(rows), deadlocks=results.get("deadlocks")
    )
