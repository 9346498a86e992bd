"""Scale curve: the list at the table sizes above the main one (the list scenario measures the
others; run after the writes, the table only grows), and earlier runs against this one."""

from __future__ import annotations

import json
from typing import Any

import runner
from runner import Context, fill, fill_rows, fmt, verdict

from scenarios.list import SERIES, described, growth, measure, plan_uses

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


# The page -------------------------------------------------------------------------------------

TEMPLATES = runner.templates(NAME)


def summary(results: dict[str, Any]) -> list[str]:
    if len(results.get("scales") or {}) < 2:
        return []
    g = growth(results)
    return [fill(TEMPLATES["SUMMARY"], g=g, ok=verdict(g["package manager"] <= FLAT_FACTOR))]


def render(results: dict[str, Any]) -> str:
    scales = results.get("scales") or {}
    sizes = sorted(scales, key=int)
    if len(sizes) < 2:
        return ""
    rows = []
    for s in (scales[size] for size in sizes):  # with the plans of the package's list
        plans = s["explain"]["package manager list"]
        rows.append({**s, **{k: described(q["plan"]) for k, q in plans.items()}})
    main = scales[str(results["config"]["main_scale"])]
    this_run = {
        "date": "this run",
        "commit": results["machine"]["commit"],
        "list_p50_ms": {x: {k: scales[x]["list"][k]["p50"] for k in SERIES} for x in sizes},
        "list_ratio_p50_main": main["list"]["ratio"]["p50"],
        "create_ratio_rps": (results.get("create") or {}).get("ratio", {}).get("rps"),
        "list_plan": plan_uses(main["explain"]["package manager list"]["page"]["plan"]),
    }
    runs = [*load_history(), this_run]

    def p50s(run: dict[str, Any], key: str) -> str:
        return " / ".join(fmt(run["list_p50_ms"].get(x, {}).get(key), 1) for x in sizes)

    history = [{"run": run, "p50s": {k: p50s(run, k) for k in SERIES}} for run in runs]
    changes = [fill(TEMPLATES["CHANGE"], **run) for run in runs if run.get("change_after")]
    return fill(
        TEMPLATES["SECTION"],
        rows=fill_rows(TEMPLATES["ROW"], rows),
        seeded=", ".join(fill(TEMPLATES["SEEDED"], **scales[size]) for size in sizes),
        sizes=" / ".join(fmt(int(x)) for x in sizes),
        history="\n".join([fill_rows(TEMPLATES["HISTORY_ROW"], history), "", *changes]),
    )
