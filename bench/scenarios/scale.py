"""Scale curve: the list at the table sizes above the main one (the list scenario measures the
others; run after the writes, the table only grows), and earlier runs against this one."""

from __future__ import annotations

import json
from typing import Any

import runner
from runner import Context, fill, fill_rows, fmt, verdict

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

TEMPLATES = runner.templates(NAME)


def summary(results: dict[str, Any]) -> list[str]:
    sizes = sorted(int(size) for size in results.get("scales") or {})
    if len(sizes) < 2:
        return []
    g = growth(results)
    ok = verdict(g["package manager"] <= FLAT_FACTOR)
    return [fill(TEMPLATES["SUMMARY"], first=sizes[0], last=sizes[-1], g=g, ok=ok)]


def render(results: dict[str, Any]) -> str:
    scales = results.get("scales") or {}
    sizes = sorted(scales, key=int)
    if len(sizes) < 2:
        return ""
    rows = []
    for s in (scales[size] for size in sizes):
        cells = [f"{fmt(s['list'][k]['p50'], 2)} ({fmt(s['list'][k]['p99'], 1)})" for k in SERIES]
        page, count = (s["explain"]["package manager list"][k]["plan"] for k in ("page", "count"))
        rows.append(
            {"rows": s["rows"], "cells": " | ".join(cells), "uses": plan_uses(page)}
            | {"page_ms": exec_ms(page), "count_ms": exec_ms(count)}
        )
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

    history = [
        {"create_ratio_rps": None, **run}
        | {"package": p50s(run, "package manager"), "requester": p50s(run, "package requester")}
        for run in runs
    ]
    changes = [fill(TEMPLATES["CHANGE"], **run) for run in runs if run.get("change_after")]
    return fill(
        TEMPLATES["SECTION"],
        rows=fill_rows(TEMPLATES["ROW"], rows),
        seeded=", ".join(fill(TEMPLATES["SEEDED"], **scales[size]) for size in sizes),
        sizes=" / ".join(fmt(int(x)) for x in sizes),
        history="\n".join([fill_rows(TEMPLATES["HISTORY_ROW"], history), "", *changes]),
    )
