# ruff: noqa: RUF001 - the page uses typographic characters (times, dashes) on purpose
"""Contention: 50 approvals racing for one single-holder role in one salon, sent at once over
50 open connections; a fresh salon in each round."""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

import runner
from runner import CONTENTION_ROUNDS, Context, LockWaitSampler, fmt, verdict

NAME = "contention"


def run(ctx: Context) -> dict[str, Any]:
    ctx.grow_to(runner.MAIN_SCALE)
    out = ctx.phase("contention", lambda: approvals(ctx))
    runner.log(f"contention correct: {out['all_correct']}")
    return {"contention": out}


def approvals(ctx: Context) -> dict[str, Any]:
    import seed

    layout = ctx.layout
    contenders = [layout.contender_first + c for c in range(seed.CONTENDERS)]
    rounds = [
        one_round(ctx, layout.contention_salon(r), contenders) for r in range(CONTENTION_ROUNDS)
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


def one_round(ctx: Context, salon: int, contenders: list[int]) -> dict[str, Any]:
    """The owner approves each contender's request for ``seller`` in ``salon``, all at once."""
    import loadgen
    import seed
    from django.db import connection

    owner = ctx.layout.owner_of(salon)
    rows = seed.seed_pending(connection, users=contenders, salons=[salon], role="seller")
    connection.close()
    n = len(rows)

    async def fire() -> Any:
        clients = loadgen.Clients(ctx.servers.base_urls, connections=n)
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

    with LockWaitSampler(0.002) as sampler:
        result = ctx.run_async(fire())
    samples = result.samples
    first, last = min(s.sent for s in samples), max(s.done for s in samples)
    codes = [
        f"{s.status} {s.body['code']}"
        if isinstance(s.body, dict) and s.body.get("code")
        else str(s.status)
        for s in samples
    ]
    db_status = runner.pg_query(
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
        "wall_ms": round((last - first) * 1000, 1),
        "db_invitations": dict(db_status),
        "db_seller_holders": holders,
        "lock_waits": sampler.result(),
    }


# The page -------------------------------------------------------------------------------------


def summary(results: dict[str, Any]) -> list[str]:
    cont, deadlocks = results.get("contention"), results.get("deadlocks") or {}
    if not cont:
        return []
    dl = deadlocks.get("pg_stat_database")
    ok = cont["all_correct"] and dl == 0 and not deadlocks.get("in_server_logs")
    return [
        "| 3 | 50 concurrent approvals for one single-holder role | 1 approved, 49 "
        "`role_taken`, no 5xx, no deadlock "
        f"| {'every' if cont['all_correct'] else '**not every**'} round of "
        f"{len(cont['rounds'])}; {dl} deadlocks; wall {fmt(cont['wall_ms_median'], 0)} ms "
        f"| {verdict(ok)} |"
    ]


SECTION = """\
## 3. Contention: 50 approvals racing for one single-holder role

Fifty users ask for `seller` (one holder) in one salon; the owner's 50 approvals are
sent at once over 50 open connections. A fresh salon in each round.

| round | responses | approved | role_taken | 5xx | sellers in the DB | wall ms |
|------:|-----------|---------:|-----------:|----:|------------------:|--------:|
{rows}

Deadlocks in the whole run: {deadlocks} (`pg_stat_database.deadlocks`), {in_logs} in the server \
logs. Median wall time of the 50 approvals: {wall} ms; they queue on the salon's row lock.
"""


def render(results: dict[str, Any]) -> str:
    cont, deadlocks = results.get("contention"), results.get("deadlocks") or {}
    if not cont:
        return ""
    rows = [
        f"| {i} | {', '.join(f'{k}: {v}' for k, v in sorted(r['responses'].items()))} "
        f"| {r['approved']} | {r['role_taken']} | {r['server_errors']} "
        f"| {r['db_seller_holders']} | {fmt(r['wall_ms'], 0)} |"
        for i, r in enumerate(cont["rounds"], 1)
    ]
    return SECTION.format(
        rows="\n".join(rows),
        deadlocks=deadlocks.get("pg_stat_database", "–"),
        in_logs=deadlocks.get("in_server_logs", "–"),
        wall=fmt(cont["wall_ms_median"], 0),
    )
