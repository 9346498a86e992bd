"""Renders ``docs/benchmarks.md`` and its chart from the saved results, without measuring:

    python bench/report.py [bench/results/results.json] [--docs]

The page is ``bench/page.md`` with each scenario's summary rows, findings and section filled
in, and ``bench/templates/report.md``'s blocks. A quick run's results are rendered to
``bench/results/quick.*`` unless ``--docs`` is given.
"""

from __future__ import annotations

import sys
from pathlib import Path
from string import Template
from typing import Any

import runner
from runner import BENCH_DIR, REPO, RESULTS_DIR, fill, fmt
from scenarios import SCENARIOS, scale

DOCS = REPO / "docs"
TEMPLATES = runner.templates("report")
# The list's series on the chart: (key in the results, label, colour).
LIST_SERIES = [
    ("package manager", "package", "#d62728"),
    ("baseline manager", "plain DRF baseline", "#1f77b4"),
    ("package requester", "package, requester's list", "#ff7f0e"),
]


def machine_rows(results: dict[str, Any]) -> str:
    loads = {
        key: ", ".join(f"{x:.2f}" for x in results[key]) for key in ("load_before", "load_after")
    }
    machine = {**results["machine"], **loads, "duration": results.get("total_seconds")}
    text = fill(TEMPLATES["MACHINE"], **machine)
    if other := results.get("other_cores"):
        busy = ", ".join(f"{name} {fmt(cores, 1)}" for name, cores in other.items())
        text += "\n" + fill(TEMPLATES["OTHER_CORES"], busy=busy)
    return text


def render_markdown(results: dict[str, Any], image: str) -> str:
    def parts(name: str) -> list[str]:  # the scenarios' ``summary`` or ``findings`` (optional)
        return [p for s in SCENARIOS for p in getattr(s, name, lambda results: [])(results)]

    cfg = results["config"]
    sections = [s.render(results) for s in SCENARIOS]
    return Template((BENCH_DIR / "page.md").read_text()).substitute(
        servers=cfg["servers"],
        quick=TEMPLATES["QUICK"] + "\n\n" if results.get("quick") else "",
        summary="\n".join(parts("summary")),
        chart=image,
        findings="\n\n".join(f"{n}. {text}" for n, text in enumerate(parts("findings"), 1)),
        machine=machine_rows(results),
        rounds=cfg["rounds"],
        list_requests=cfg.get("list_requests_per_round", "–"),  # noqa: RUF001
        sections="\n".join(section.rstrip() + "\n" for section in sections if section),
    )


def render(results: dict[str, Any], *, write_docs: bool) -> list[Path]:
    """Write the page and its chart: to docs/, or beside a quick run's results."""
    if "config" not in results:  # only scenarios with a database of their own have run
        return []
    if write_docs:
        md, png, image = (
            DOCS / "benchmarks.md",
            DOCS / "img" / "benchmarks.png",
            "img/benchmarks.png",
        )
    else:
        md, png, image = RESULTS_DIR / "quick.md", RESULTS_DIR / "quick.png", "quick.png"
    if "scales" in results:  # a run of some scenarios only may have no list figures yet
        chart(results, png)
    md.write_text(render_markdown(results, image))
    return [png, md]


def xy(points: dict[int, float]) -> tuple[list[int], list[float]]:
    """A line's points in the order of their x."""
    xs = sorted(points)
    return xs, [points[x] for x in xs]


def chart(results: dict[str, Any], path: Path) -> None:
    """Three panels: the list at the main size, the scale curve, the writes' throughput."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    main = str(results["config"]["main_scale"])
    scales = results["scales"]
    sizes = sorted(scales, key=int)
    fig, (bars, curve, writes) = plt.subplots(1, 3, figsize=(15, 4.6))

    xs = range(len(LIST_SERIES))
    for shift, key, alpha in ((-0.2, "p50", 1.0), (0.2, "p99", 0.4)):
        values = [scales[main]["list"][name][key] for name, _label, _color in LIST_SERIES]
        colors = [color for _name, _label, color in LIST_SERIES]
        bars.bar([x + shift for x in xs], values, 0.4, color=colors, alpha=alpha)
        for x, value in zip(xs, values, strict=True):
            bars.text(x + shift, value, f"{value:.1f}", ha="center", va="bottom", fontsize=7)
    bars.set_xticks(xs, [label.replace(", ", ",\n") for _n, label, _c in LIST_SERIES], fontsize=8)
    title = f"List, page of 50, {int(main):,} invitations\n(solid: p50, light: p99)"
    bars.set(ylabel="ms per request, 1 client", title=title)

    rows = [scales[s]["rows"] for s in sizes]
    for name, label, color in LIST_SERIES:
        curve.plot(
            rows, [scales[s]["list"][name]["p50"] for s in sizes], "o-", label=label, color=color
        )
    for run in scale.load_history()[-1:]:
        old = {int(k): v["package manager"] for k, v in run["list_p50_ms"].items()}
        label = f"package at {run['commit']} (earlier run)"
        curve.plot(*xy(old), "x:", color="#7f7f7f", label=label)
    curve.set(xscale="log", yscale="log", xlabel="invitations in the table")
    curve.set(ylabel="p50 ms, 1 client", title="Scale curve: list latency vs table size")
    curve.grid(True, which="both", alpha=0.3)

    approve = results.get("approve") or {}
    for kind, label, color in (
        ("different_salons", "approve, different salons", "#9467bd"),
        ("same_salon", "approve, all in one salon", "#8c564b"),
    ):
        levels = {int(k): v["rps"] for k, v in (approve.get(kind) or {}).items()}
        writes.plot(*xy(levels), "o-", label=label, color=color)
    create = results.get("create")
    for side, marker, color in (("package", "^", "#d62728"), ("baseline", "v", "#1f77b4")):
        if create:
            rps = create[side]["rps"]
            writes.scatter([16], [rps], marker=marker, color=color, label=f"create, {side}")
    writes.set_xscale("log", base=2)
    writes.set(xlabel="concurrent clients", ylabel="requests/s")
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
    results = runner.load_results(Path(args[0]) if args else runner.results_path())
    write_docs = not results.get("quick") or "--docs" in sys.argv
    for written in render(results, write_docs=write_docs):
        print(f"wrote {written.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
