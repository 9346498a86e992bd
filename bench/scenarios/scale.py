# ruff: noqa: RUF001 - the page uses typographic characters (times, dashes) on purpose
"""Scale curve: the list at the table sizes above the main one (the list scenario measures the
others; run after the writes, the table only grows), and earlier runs against this one."""

from __future__ import annotations

import json
from typing import Any

import runner
from runner import Context, fmt, row, verdict

from scenarios.list import SERIES, growth, measure, plan_uses

NAME = "scale"
FLAT_FACTOR = 1.5  # "flat": p50 at the largest table at most this many times the smallest
HISTORY = runner.BENCH_DIR / "results" / "history.json"


def run(ctx: Context) -> dict[str, Any]:
    larger = [s for s in runner.SCALES if s > runner.MAIN_SCALE]  # the list measures the others
    return {"scales": {str(scale): measure(ctx, scale) for scale in larger}}


def load_history() -> list[dict[str, Any]]:
    try:
        return json.loads(HISTORY.read_text())["runs"]
    except (OSError, ValueError, KeyError):
        return []


def exec_ms(plan: list[str]) -> float | None:
    for line in plan:
        if line.startswith("Execution Time:"):
            return float(line.split(":")[1].split()[0])
    return None


# The page -------------------------------------------------------------------------------------


def summary(results: dict[str, Any]) -> list[str]:
    sizes = sorted(results.get("scales") or {}, key=int)
    if len(sizes) < 2:
        return []
    first, last, g = sizes[0], sizes[-1], growth(results)
    return [
        f"| 5 | list p50 from {int(first):,} to {int(last):,} rows | flat "
        f"| package ×{g['package manager']:.1f}, requester's list "
        f"×{g['package requester']:.1f}, baseline ×{g['baseline manager']:.1f} "
        f"| {verdict(g['package manager'] <= FLAT_FACTOR)} |"
    ]


SECTION = """\
## 5. Scale curve

The measured manager's salon keeps 100 invitations; only the rest of the table grows.
p50 ms with one client (p99 in brackets), and the database's execution time of the
package's two list queries from EXPLAIN ANALYZE:

| invitations | package | baseline | package, requester's list | the package's list queries |
|--:|--:|--:|--:|---|
{rows}

Seeding (cumulative): {seeded}.

## Earlier runs

Key numbers of earlier full runs (kept in `bench/results/history.json`), list p50 in
ms with one client, against this run:

| run | list ÷ baseline | package at {sizes} rows | requester's list | create ÷ baseline | plan |
|---|--:|--:|--:|--:|---|
{history}
"""


def render(results: dict[str, Any]) -> str:
    scales = results.get("scales") or {}
    sizes = sorted(scales, key=int)
    if len(sizes) < 2:
        return ""
    main = scales[str(results["config"]["main_scale"])]
    rows = []
    for s in (scales[size] for size in sizes):
        cells = [f"{fmt(s['list'][k]['p50'], 2)} ({fmt(s['list'][k]['p99'], 1)})" for k in SERIES]
        page, count = (s["explain"]["package manager list"][k]["plan"] for k in ("page", "count"))
        queries = f"{plan_uses(page)}: {fmt(exec_ms(page), 1)} + {fmt(exec_ms(count), 1)} ms"
        rows.append(row(fmt(s["rows"]), *cells, queries))

    def p50s(run: dict[str, Any], key: str) -> str:
        return " / ".join(fmt(run["list_p50_ms"].get(x, {}).get(key), 1) for x in sizes)

    this_run = {
        "date": "this run",
        "commit": results["machine"]["commit"],
        "list_p50_ms": {x: {k: scales[x]["list"][k]["p50"] for k in SERIES} for x in sizes},
        "list_ratio_p50_main": main["list"]["ratio"]["p50"],
        "create_ratio_rps": (results.get("create") or {}).get("ratio", {}).get("rps"),
        "list_plan": plan_uses(main["explain"]["package manager list"]["page"]["plan"]),
    }
    runs = [*load_history(), this_run]
    history = [
        row(
            f"{run['date']}, commit {run['commit']}",
            f"{fmt(run['list_ratio_p50_main'], 2)}×",
            p50s(run, "package manager"),
            p50s(run, "package requester"),
            f"{fmt(run.get('create_ratio_rps'), 2)}×",
            run["list_plan"],
        )
        for run in runs
    ]
    changes = [f"Since {r['commit']}: {r['change_after']}." for r in runs if r.get("change_after")]
    return SECTION.format(
        rows="\n".join(rows),
        seeded=", ".join(
            f"{fmt(scales[s]['rows'])} rows in {fmt(scales[s]['seed_seconds'], 1)} s" for s in sizes
        ),
        sizes=" / ".join(f"{int(x):,}" for x in sizes),
        history="\n".join([*history, "", *changes]),
    )
