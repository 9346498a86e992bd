"""The benchmark's scenarios, in the order they run and appear on the page (adding one:
``bench/README.md``)."""

from scenarios import contention, eventlog, fanout, scale, storm, topology, write
from scenarios import list as list_

SCENARIOS = [list_, write, contention, fanout, scale, storm, topology, eventlog]
