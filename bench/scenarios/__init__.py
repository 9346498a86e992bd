"""The benchmark's scenarios, in the order they run and appear on the page.

Each is a module with ``NAME``, ``run(ctx) -> dict`` and the page's ``render`` (optionally
``summary`` and ``findings``; see ``runner.Scenario``). Adding a scenario: write its module,
list it here.
"""

from scenarios import contention, eventlog, fanout, scale, storm, topology, write
from scenarios import list as list_

SCENARIOS = [list_, write, contention, fanout, scale, storm, topology, eventlog]
