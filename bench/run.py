#!/usr/bin/env python
"""Runs the benchmark's scenarios and renders the page: ``make bench``, or
``python bench/run.py [scenario ...]`` (all by default). See ``bench/README.md``; the
environment variables are listed in ``bench/runner.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import report
import runner
from scenarios import SCENARIOS


def main(names: list[str]) -> int:
    by_name = {s.NAME: s for s in SCENARIOS}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        print(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(by_name)}")
        return 2
    chosen = [s for s in SCENARIOS if s.NAME in (names or by_name)]
    shared = [s for s in chosen if not getattr(s, "OWN_DATABASE", False)]
    own = [s for s in chosen if s not in shared]
    full = len(chosen) == len(SCENARIOS)  # a full run keeps nothing of earlier runs
    if len(chosen) == 1 or not own:
        status = runner.run(chosen, replace=full)
    else:
        status = runner.run(shared, replace=full)
        for scenario in own:
            command = [sys.executable, __file__, scenario.NAME]
            status = status or subprocess.run([*command, "--no-report"], check=False).returncode
    if status == 0 and "--no-report" not in sys.argv:
        write_docs = not runner.QUICK or bool(os.environ.get("BENCH_WRITE_DOCS"))
        for path in report.render(runner.load_results(), write_docs=write_docs):
            runner.log(f"wrote {path.relative_to(runner.REPO)}")
    return status


if __name__ == "__main__":
    sys.exit(main([a for a in sys.argv[1:] if not a.startswith("--")]))
