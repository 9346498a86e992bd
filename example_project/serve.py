#!/usr/bin/env python
"""Runs the processes of ``Procfile`` side by side: the production topology on one machine.

    python serve.py                 # web (gunicorn), ws (daphne), worker (Celery with beat)
    python serve.py web ws          # only those

``web`` and ``ws`` together need ``REDIS_URL`` (the Redis channel layer carries the events from
the HTTP processes to the WebSocket process); ``worker`` is left out without it (Celery then
runs each task in the process that sends it).

Run it from ``example_project/`` with the production environment (README, "Production-style
run"). Each command runs through ``sh`` (so ``${PORT:-8000}`` works), with this interpreter's
``bin/`` first on ``PATH``, and writes to this terminal. When one process exits, or on Ctrl+C
or SIGTERM, the others are stopped (SIGTERM, then SIGKILL after 10 s) and ``serve.py`` exits
with the first one's status (0 on a signal).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROCFILE = HERE / "Procfile"
#: Processes that only make sense with a broker: Celery without REDIS_URL runs tasks eagerly.
NEEDS_REDIS = {"worker"}
#: HTTP and WebSockets in separate processes: the events cross between them over Redis.
SPLIT = {"web", "ws"}
STOP_TIMEOUT = 10
LINE = re.compile(r"^(?P<name>[A-Za-z0-9_-]+):\s*(?P<command>\S.*)$")


def processes(text: str) -> dict[str, str]:
    """``{name: command}`` of a Procfile's lines (comments and blank lines skipped)."""
    return {m["name"]: m["command"] for m in map(LINE.match, text.splitlines()) if m}


def say(message: str) -> None:
    print(f"serve: {message}", flush=True)


def main(names: list[str]) -> int:
    table = processes(PROCFILE.read_text())
    unknown = [name for name in names if name not in table]
    if unknown:
        say(f"unknown process(es) {', '.join(unknown)}; the Procfile has {', '.join(table)}")
        return 2
    chosen = {name: command for name, command in table.items() if not names or name in names}
    if not os.environ.get("REDIS_URL"):
        if chosen.keys() >= SPLIT:
            say(
                "web and ws need REDIS_URL: the WebSocket process hears of the changes the HTTP "
                "processes make through the Redis channel layer (without it, run `ws` alone: "
                "it serves HTTP too)"
            )
            return 2
        for name in NEEDS_REDIS & chosen.keys():
            say(f"not starting {name}: REDIS_URL is not set")
            del chosen[name]
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("PYTHONUNBUFFERED", "1")

    stopping: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: stopping.append(signum))
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    children: dict[str, subprocess.Popen[bytes]] = {}
    for name, command in chosen.items():
        say(f"starting {name}: {command}")
        children[name] = subprocess.Popen(["sh", "-c", f"exec {command}"], cwd=HERE, env=env)

    status = 0
    while not stopping:
        ended = [
            (name, child.returncode) for name, child in children.items() if child.poll() is not None
        ]
        if ended:
            name, status = ended[0]
            say(f"{name} exited with status {status}; stopping the others")
            status = status or 1
            break
        time.sleep(0.2)
    for child in children.values():
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT
    for name, child in children.items():
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"{name} did not stop within {STOP_TIMEOUT} s; killing it")
            child.kill()
            child.wait()
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
