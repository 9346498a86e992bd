# ruff: noqa: RUF001 - the page uses typographic characters (times, dashes) on purpose
"""Scale curve: the list at the table sizes above the main one (the list scenario measures the
others; run after the writes, the table only grows), and earlier runs against this one."""

from __future__ import annotations

import json
from typing import Any

import runner
from runner import Context, Page, fmt, verdict

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


def findings(results: dict[str, Any]) -> list[str]:
    return []


def render(results: dict[str, Any]) -> str:
    scales = results.get("scales") or {}
    sizes = sorted(scales, key=int)
    if len(sizes) < 2:
        return ""
    m, main = results["machine"], str(results["config"]["main_scale"])
    list_ratio = scales[main]["list"]["ratio"]["p50"]
    plans = scales[main]["explain"]
    create = results.get("create") or {}
    w = Page()
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
            f"{fmt(s['list'][key]['p50'], 2)} ({fmt(s['list'][key]['p99'], 1)})" for key in SERIES
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

    return w.text()
