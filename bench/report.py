# ruff: noqa: RUF001 - the page uses typographic characters (times, dashes) on purpose
"""Renders ``docs/benchmarks.md`` and its chart from the saved results, without measuring:

    python bench/report.py [bench/results/results.json] [--docs]

The page is ``bench/page.md`` with each scenario's summary rows, findings and section filled
in. A quick run's results are rendered to ``bench/results/quick.*`` unless ``--docs`` is given.
"""

from __future__ import annotations

import sys
from pathlib import Path
from string import Template
from typing import Any

import runner
from runner import BENCH_DIR, REPO, fmt
from scenarios import SCENARIOS, scale

DOCS = REPO / "docs"
CHART = DOCS / "img" / "benchmarks.png"


def machine_rows(results: dict[str, Any]) -> list[str]:
    m = results["machine"]
    load_before = ", ".join(f"{x:.2f}" for x in results["load_before"])
    load_after = ", ".join(f"{x:.2f}" for x in results["load_after"])
    rows = [
        f"| date | {m['date']} |",
        f"| CPU | {m['cpu_model']}, {m['nproc']} cores (`nproc`) |",
        f"| memory | {m['memory_gib']} GiB |",
        f"| kernel | {m['kernel']} |",
        f"| load average (1, 5, 15 min) before / after | {load_before} / {load_after} |",
        f"| Python | {m['python']} |",
        f"| Django / DRF | {m['django']} / {m['djangorestframework']} |",
        f"| channels / channels-redis | {m['channels']} / {m['channels_redis']} |",
        f"| uvicorn / uvloop / httptools / websockets | {m['uvicorn']} / {m['uvloop']} / "
        f"{m['httptools']} / {m['websockets']} |",
        f"| psycopg | {m['psycopg']} (with its pool) |",
        f"| PostgreSQL | {m['postgresql']} |",
        f"| Redis | {m['redis']} |",
        f"| django-salon-invitations | {m['django_salon_invitations']}, commit {m['commit']} |",
        f"| duration of the run | {fmt(results.get('total_seconds'), 0)} s |",
    ]
    other = results.get("other_cores") or {}
    if other:
        busy = ", ".join(f"{name} {fmt(cores, 1)}" for name, cores in other.items())
        rows.append(f"| cores used by other processes, per measurement (estimate) | {busy} |")
    return rows


def render_markdown(results: dict[str, Any], image: str) -> str:
    cfg = results["config"]
    summary = [row for s in SCENARIOS for row in s.summary(results)]
    findings = [f for s in SCENARIOS for f in s.findings(results)]
    sections = [s.render(results) for s in SCENARIOS]
    quick = (
        '!!! warning "Quick run"\n'
        "    These numbers come from `BENCH_QUICK=1` (small sizes). `make bench` runs the\n"
        "    documented sizes.\n\n"
    )
    page = Template((BENCH_DIR / "page.md").read_text()).substitute(
        servers=cfg["servers"],
        quick=quick if results.get("quick") else "",
        summary="\n".join(summary),
        chart=image,
        findings="\n\n".join(f"{n}. {text}" for n, text in enumerate(findings, 1)),
        machine="\n".join(machine_rows(results)),
        rounds=cfg["rounds"],
        list_requests=cfg.get("list_requests_per_round", "–"),
        sections="\n".join(section.rstrip() + "\n" for section in sections if section),
    )
    return page


def render(results: dict[str, Any], *, write_docs: bool) -> list[Path]:
    """Write the page and its chart: to docs/, or beside a quick run's results."""
    if write_docs:
        md, png, image = DOCS / "benchmarks.md", CHART, "img/benchmarks.png"
    else:
        md, png, image = (
            BENCH_DIR / "results" / "quick.md",
            BENCH_DIR / "results" / "quick.png",
            "quick.png",
        )
    chart(results, png)
    md.write_text(render_markdown(results, image))
    return [png, md]


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    main = str(results["config"]["main_scale"])
    scales = results["scales"]
    sizes = sorted(scales, key=int)
    series = [
        ("package manager", "package", "#d62728"),
        ("baseline manager", "plain DRF baseline", "#1f77b4"),
        ("package requester", "package, requester's list", "#ff7f0e"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))

    ax = axes[0]
    lst = scales[main]["list"]
    xs = list(range(len(series)))
    p50 = [lst[key]["p50"] for key, _label, _color in series]
    p99 = [lst[key]["p99"] for key, _label, _color in series]
    colors = [color for _key, _label, color in series]
    ax.bar([x - 0.2 for x in xs], p50, 0.4, color=colors)
    ax.bar([x + 0.2 for x in xs], p99, 0.4, color=colors, alpha=0.4)
    ax.set_xticks(xs, [label.replace(", ", ",\n") for _k, label, _c in series], fontsize=8)
    ax.set_ylabel("ms per request, 1 client")
    ax.set_title(f"List, page of 50, {int(main):,} invitations\n(solid: p50, light: p99)")
    for x, a, b in zip(xs, p50, p99, strict=True):
        ax.text(x - 0.2, a, f"{a:.1f}", ha="center", va="bottom", fontsize=7)
        ax.text(x + 0.2, b, f"{b:.1f}", ha="center", va="bottom", fontsize=7)

    ax = axes[1]
    rows = [scales[s]["rows"] for s in sizes]
    for key, label, color in series:
        ax.plot(
            rows, [scales[s]["list"][key]["p50"] for s in sizes], "o-", label=label, color=color
        )
    for run in scale.load_history()[-1:]:
        old = run["list_p50_ms"]
        xs_old = sorted(int(k) for k in old)
        ax.plot(
            xs_old,
            [old[str(x)]["package manager"] for x in xs_old],
            "x:",
            color="#7f7f7f",
            label=f"package at {run['commit']} (earlier run)",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("invitations in the table")
    ax.set_ylabel("p50 ms, 1 client")
    ax.set_title("Scale curve: list latency vs table size")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)

    ax = axes[2]
    approve = results.get("approve") or {}
    for kind, label, color in (
        ("different_salons", "approve, different salons", "#9467bd"),
        ("same_salon", "approve, all in one salon", "#8c564b"),
    ):
        levels = approve.get(kind) or {}
        xs2 = sorted(int(k) for k in levels)
        ax.plot(xs2, [levels[str(x)]["rps"] for x in xs2], "o-", label=label, color=color)
    create = results.get("create") or {}
    if create:
        ax.scatter(
            [16], [create["package"]["rps"]], marker="^", color="#d62728", label="create, package"
        )
        ax.scatter(
            [16], [create["baseline"]["rps"]], marker="v", color="#1f77b4", label="create, baseline"
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel("requests/s")
    ax.set_title("Writes: throughput vs clients")
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    path = Path(args[0]) if args else runner.results_path()
    results = runner.load_results(path)
    write_docs = not results.get("quick") or "--docs" in sys.argv
    for written in render(results, write_docs=write_docs):
        print(f"wrote {written.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
