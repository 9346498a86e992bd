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
from runner import BENCH_DIR, REPO, fill, fmt
from scenarios import SCENARIOS, scale

DOCS = REPO / "docs"
CHART = DOCS / "img" / "benchmarks.png"
RESULTS = BENCH_DIR / "results"


MACHINE = """\
| date | {date} |
| CPU | {cpu_model}, {nproc} cores (`nproc`) |
| memory | {memory_gib} GiB |
| kernel | {kernel} |
| load average (1, 5, 15 min) before / after | {load_before} / {load_after} |
| Python | {python} |
| Django / DRF | {django} / {djangorestframework} |
| channels / channels-redis | {channels} / {channels_redis} |
| uvicorn / uvloop / httptools / websockets | {uvicorn} / {uvloop} / {httptools} / {websockets} |
| psycopg | {psycopg} (with its pool) |
| PostgreSQL | {postgresql} |
| Redis | {redis} |
| django-salon-invitations | {django_salon_invitations}, commit {commit} |
| duration of the run | {duration:0} s |"""


def machine_rows(results: dict[str, Any]) -> str:
    loads = {
        key: ", ".join(f"{x:.2f}" for x in results[key]) for key in ("load_before", "load_after")
    }
    text = fill(MACHINE, **results["machine"], **loads, duration=results.get("total_seconds"))
    if other := results.get("other_cores"):
        busy = ", ".join(f"{name} {fmt(cores, 1)}" for name, cores in other.items())
        text += f"\n| cores used by other processes, per measurement (estimate) | {busy} |"
    return text


def part(scenario: Any, name: str, results: dict[str, Any]) -> list[str]:
    """A scenario's ``summary`` or ``findings`` (neither is required)."""
    return getattr(scenario, name, lambda results: [])(results)


def render_markdown(results: dict[str, Any], image: str) -> str:
    cfg = results["config"]
    summary = [line for s in SCENARIOS for line in part(s, "summary", results)]
    findings = [text for s in SCENARIOS for text in part(s, "findings", results)]
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
        machine=machine_rows(results),
        rounds=cfg["rounds"],
        list_requests=cfg.get("list_requests_per_round", "–"),
        sections="\n".join(section.rstrip() + "\n" for section in sections if section),
    )
    return page


def render(results: dict[str, Any], *, write_docs: bool) -> list[Path]:
    """Write the page and its chart: to docs/, or beside a quick run's results."""
    if "config" not in results:  # only scenarios with a database of their own have run
        return []
    if write_docs:
        md, png, image = DOCS / "benchmarks.md", CHART, "img/benchmarks.png"
    else:
        md, png, image = RESULTS / "quick.md", RESULTS / "quick.png", "quick.png"
    if "scales" in results:  # a run of some scenarios only may have no list figures yet
        chart(results, png)
    md.write_text(render_markdown(results, image))
    return [png, md]


def chart(results: dict[str, Any], path: Path) -> None:
    """Three panels: the list at the main size, the scale curve, the writes' throughput."""
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
    fig, (bars, curve, writes) = plt.subplots(1, 3, figsize=(15, 4.6))

    xs = range(len(series))
    for shift, key, alpha in ((-0.2, "p50", 1.0), (0.2, "p99", 0.4)):
        values = [scales[main]["list"][name][key] for name, _label, _color in series]
        colors = [color for _name, _label, color in series]
        bars.bar([x + shift for x in xs], values, 0.4, color=colors, alpha=alpha)
        for x, value in zip(xs, values, strict=True):
            bars.text(x + shift, value, f"{value:.1f}", ha="center", va="bottom", fontsize=7)
    bars.set_xticks(xs, [label.replace(", ", ",\n") for _n, label, _c in series], fontsize=8)
    bars.set_ylabel("ms per request, 1 client")
    bars.set_title(f"List, page of 50, {int(main):,} invitations\n(solid: p50, light: p99)")

    rows = [scales[s]["rows"] for s in sizes]
    for name, label, color in series:
        p50 = [scales[s]["list"][name]["p50"] for s in sizes]
        curve.plot(rows, p50, "o-", label=label, color=color)
    for run in scale.load_history()[-1:]:
        old = {int(k): v["package manager"] for k, v in run["list_p50_ms"].items()}
        label = f"package at {run['commit']} (earlier run)"
        curve.plot(sorted(old), [old[x] for x in sorted(old)], "x:", color="#7f7f7f", label=label)
    curve.set_xscale("log")
    curve.set_yscale("log")
    curve.set_xlabel("invitations in the table")
    curve.set_ylabel("p50 ms, 1 client")
    curve.set_title("Scale curve: list latency vs table size")
    curve.grid(True, which="both", alpha=0.3)

    approve = results.get("approve") or {}
    for kind, label, color in (
        ("different_salons", "approve, different salons", "#9467bd"),
        ("same_salon", "approve, all in one salon", "#8c564b"),
    ):
        levels = {int(k): v["rps"] for k, v in (approve.get(kind) or {}).items()}
        writes.plot(
            sorted(levels), [levels[x] for x in sorted(levels)], "o-", label=label, color=color
        )
    for side, marker, color in (("package", "^", "#d62728"), ("baseline", "v", "#1f77b4")):
        if create := results.get("create"):
            rps = create[side]["rps"]
            writes.scatter([16], [rps], marker=marker, color=color, label=f"create, {side}")
    writes.set_xscale("log", base=2)
    writes.set_xlabel("concurrent clients")
    writes.set_ylabel("requests/s")
    writes.set_title("Writes: throughput vs clients")
    writes.grid(True, alpha=0.3)

    for ax in (curve, writes):
        ax.legend(fontsize=7)
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
