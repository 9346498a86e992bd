# ruff: noqa: RUF001, RUF002 - the page uses typographic characters (times, dashes) on purpose
"""What every scenario shares: configuration, PostgreSQL and Redis, the servers, CPU sampling,
the :class:`Context` a scenario runs in, the run itself and the page's helpers. A scenario is
a module of ``bench/scenarios/`` listed in ``scenarios.SCENARIOS`` (see ``bench/README.md``).

Environment (all optional):

    BENCH_QUICK=1          small sizes, a few minutes; writes bench/results/quick.* only
    BENCH_SCALES=10000,100000,1000000   table sizes of the scale curve
    BENCH_MAIN_SCALE=100000             the size at which everything else is measured
    BENCH_ROUNDS=5         repetitions of each measurement
    BENCH_LIST_N, BENCH_LIST_CONC_N, BENCH_CREATE_N, BENCH_INVITE_N, BENCH_APPROVE_N,
    BENCH_APPROVE_ROUNDS, BENCH_CONTENTION_ROUNDS, BENCH_SILENT_ROUNDS
    BENCH_LIST_ROUND_SECONDS=10 (bound of each list series and round)
    BENCH_FANOUT_SOCKETS=1000,5000, BENCH_FANOUT_EVENTS=400 (per stream),
    BENCH_FANOUT_RATES=10,25 (events/s of each stream; the first is the headline),
    BENCH_FANOUT_LAYERS=core,pubsub (RedisChannelLayer, RedisPubSubChannelLayer),
    BENCH_FANOUT_CLIENTS=2 (WebSocket client processes)
    BENCH_STORM_SOCKETS=2000, BENCH_STORM_WINDOW=1 (seconds they open within),
    BENCH_STORM_CLIENTS=2 (client processes), BENCH_STORM_ROUNDS (BENCH_ROUNDS)
    BENCH_TOPOLOGY_N=600 (requests per series and round), BENCH_TOPOLOGY_ROUNDS=5
    BENCH_EVENTLOG_SIZES=10000,100000,1000000, BENCH_EVENTLOG_REQUESTS=600,
    BENCH_EVENTLOG_QUERIES=200, BENCH_EVENTLOG_DB=<BENCH_DB_NAME>_eventlog
    BENCH_DB_NAME=salon_bench, PGHOST/PGPORT/PGUSER/PGPASSWORD
    BENCH_REDIS_URL=redis://127.0.0.1:6379/9
    BENCH_CHANNEL_PREFIX=salonbench   the channel layer's key and pub/sub channel prefix
    BENCH_KEEP_DB=1        keep the database afterwards
    BENCH_WRITE_DOCS=1     also write docs/ after a quick run
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import os
import platform
import re
import resource
import signal
import socket
import statistics
import string
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from importlib.util import find_spec
from pathlib import Path
from types import ModuleType
from typing import Any

import loadgen
import seed

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
LOG_DIR = RESULTS_DIR / "logs"
sys.path.insert(0, str(BENCH_DIR))


def env(name: str, default: Any) -> Any:
    """The variable ``name`` as a value of ``default``'s type (``default`` if unset)."""
    return type(default)(os.environ.get(name) or default)


def env_list(name: str, default: str, kind: type = int) -> list[Any]:
    return [kind(x) for x in os.environ.get(name, default).split(",")]


QUICK = os.environ.get("BENCH_QUICK", "").strip() not in ("", "0")
SCALES = sorted(env_list("BENCH_SCALES", "5000,20000,50000" if QUICK else "10000,100000,1000000"))
MAIN_SCALE = env("BENCH_MAIN_SCALE", 20_000 if QUICK else 100_000)
if MAIN_SCALE not in SCALES:
    raise SystemExit(f"BENCH_MAIN_SCALE ({MAIN_SCALE}) must be one of BENCH_SCALES {SCALES}")
ROUNDS = env("BENCH_ROUNDS", 2 if QUICK else 5)
DB_NAME = os.environ.get("BENCH_DB_NAME", "salon_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
# Of the channel layer's Redis keys and pub/sub channels. Pub/sub channels are shared by every
# database of a Redis server: benchmarks sharing one need prefixes of their own.
CHANNEL_PREFIX = os.environ.get("BENCH_CHANNEL_PREFIX", "salonbench")
SERVERS = 2
TOPOLOGY_ROUNDS = env("BENCH_TOPOLOGY_ROUNDS", 1 if QUICK else 7)
# The writes' sizes: the seed reserves users for them before anything runs.
CREATE_N = env("BENCH_CREATE_N", 64 if QUICK else 480)  # per round and side, 16 clients
CREATE_WARM_N = 48  # per side, before the measured rounds
SILENT_ROUNDS = env("BENCH_SILENT_ROUNDS", 1 if QUICK else 3)
APPROVE_LEVELS = (1, 2, 4, 8, 16)
SAME_SALON_LEVELS = (1, 8)
APPROVE_N = env("BENCH_APPROVE_N", 32 if QUICK else 240)  # per level and round
APPROVE_ROUNDS = env("BENCH_APPROVE_ROUNDS", 1 if QUICK else 3)
CONTENTION_ROUNDS = env("BENCH_CONTENTION_ROUNDS", 2 if QUICK else 5)
# The statistics of a measured series summarised over rounds (see ``summarise``).
KEYS = ("rps", "p50", "p99", "server_p50", "cpu_ms_per_request")
WS_PATH = "/ws/api/invitation_to_auto_salon/"
ASGI_ERROR = "Exception in ASGI application"

os.environ.update(
    BENCH_DB_NAME=DB_NAME, BENCH_REDIS_URL=REDIS_URL, BENCH_CHANNEL_PREFIX=CHANNEL_PREFIX
)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# PostgreSQL and Redis (no Django) --------------------------------------------------------------


def pg_connect(db: str = DB_NAME) -> Any:
    import psycopg

    defaults = {"host": "127.0.0.1", "port": "5432", "user": "postgres", "password": ""}
    params = {key: os.environ.get(f"PG{key.upper()}", value) for key, value in defaults.items()}
    return psycopg.connect(dbname=db, autocommit=True, connect_timeout=10, **params)


def pg_query(statement: str, params: Any = None, db: str = DB_NAME) -> list[tuple[Any, ...]]:
    with pg_connect(db) as conn:
        cursor = conn.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def drop_database(name: str, *, create: bool = False) -> None:
    pg_query(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', db="postgres")
    if create:
        pg_query(f'CREATE DATABASE "{name}"', db="postgres")


def redis_client() -> Any:
    import redis

    return redis.Redis.from_url(REDIS_URL, socket_timeout=5, socket_connect_timeout=5)


def redis_cleanup() -> None:
    """Delete the channel layer's keys (prefix ``CHANNEL_PREFIX``) and nothing else."""
    with redis_client() as client:
        keys = list(client.scan_iter(match=f"{CHANNEL_PREFIX}*", count=1000))
        for lo in range(0, len(keys), 500):
            client.delete(*keys[lo : lo + 500])


@contextlib.contextmanager
def lock_waits(interval: float = 0.005) -> Iterator[dict[str, Any]]:
    """How often, and how many, backends of the benchmark database waited for a lock in the
    block (``pg_stat_activity`` sampled every ``interval`` s; the dict is filled at its end)."""
    query = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = %s"
    waiting: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        with pg_connect() as conn:
            while True:
                waiting.append(conn.execute(query, [DB_NAME, "Lock"]).fetchone()[0])
                if stop.wait(interval):
                    return

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out: dict[str, Any] = {}
    try:
        yield out
    finally:
        stop.set()
        thread.join(timeout=10)
        with_waits = sum(1 for w in waiting if w)
        out.update(
            samples=len(waiting),
            samples_with_lock_waits=with_waits,
            share_with_lock_waits=round(with_waits / len(waiting) if waiting else 0.0, 4),
            max_backends_waiting=max(waiting, default=0),
        )


# CPU: of a process, of the machine ---------------------------------------------------------


_OURS = ("postgres", "redis-server")  # serving the benchmark (and maybe others)


def proc_cpu_seconds(pid: int, *, reaped: bool = False) -> float:
    """CPU seconds of process ``pid`` (with ``reaped``, and of the children it waited for)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return sum(int(tick) for tick in fields[11 : 15 if reaped else 13]) / os.sysconf("SC_CLK_TCK")


def process_tree(root: int) -> list[int]:
    """``root`` and its living descendants."""
    pids = [root]
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                pids += [int(child) for child in task.read_text().split()]
    return pids


def cpu_snapshot() -> tuple[float, float, float]:
    """(wall time, busy CPU seconds of the machine, CPU seconds of this process and all it
    started — servers, client processes, those that exited —, PostgreSQL's and Redis's)."""
    with open("/proc/stat") as stat:
        ticks = [int(x) for x in stat.readline().split()[1:]]
    busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait
    ours = sum(proc_cpu_seconds(pid, reaped=True) for pid in process_tree(os.getpid()))
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and (entry / "comm").read_text().strip() in _OURS:
                ours += proc_cpu_seconds(int(entry.name))
    return time.monotonic(), busy, ours


def other_cores(before: tuple[float, float, float], after: tuple[float, float, float]) -> float:
    """Cores used on average by other processes between two snapshots (an estimate)."""
    wall = after[0] - before[0]
    if wall <= 0:
        return 0.0
    return round(max(0.0, (after[1] - before[1]) - (after[2] - before[2])) / wall, 2)


# Servers ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _die_with_parent() -> None:
    """In the server's process, before exec: SIGTERM when the orchestrator dies (Linux)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Server:
    """One server process of ``benchproject`` on a free loopback port: uvicorn by default,
    or ``command`` (``{port}`` is replaced) with ``env`` on top of the benchmark's."""

    UVICORN = (
        "-m uvicorn benchproject.asgi:application --host 127.0.0.1 --port {port} "
        "--no-access-log --log-level warning --lifespan off --backlog 4096 --ws websockets"
    )
    # daphne with its defaults but for the address: a listen backlog of 50 (Twisted's) and
    # a 5 s handshake timeout (``--websocket_connect_timeout``).
    DAPHNE = "-m daphne -b 127.0.0.1 -p {port} benchproject.asgi:application"

    def __init__(self, name: str, env: dict[str, str] | None = None, command: str = UVICORN):
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = LOG_DIR / f"{name}.log"
        self.extra_env = env or {}
        self.command = command
        if command.startswith("-m uvicorn "):  # the fastest event loop and HTTP parser
            for option, module in (("--loop", "uvloop"), ("--http", "httptools")):
                if find_spec(module):
                    self.command += f" {option} {module}"

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> None:
        path = os.pathsep.join(filter(None, [str(BENCH_DIR), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "benchproject.settings"}
        env.update(PYTHONPATH=path, PYTHONUNBUFFERED="1")
        env.pop("BENCH_NO_POOL", None)
        env.update(self.extra_env)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        for _attempt in range(3):  # a port taken between free_port() and the bind: again
            self.port = free_port()
            with self.log_path.open("ab") as out:
                self.process = subprocess.Popen(
                    [sys.executable, *self.command.format(port=self.port).split()],
                    cwd=BENCH_DIR,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                )
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and self.alive():
                if listening(self.port):
                    return
                time.sleep(0.1)
            self.stop()
            if "address already in use" not in self.log_text().lower():
                break
        raise RuntimeError(f"{self.log_path.stem} did not start; see {self.log_path}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def pids(self) -> list[int]:
        """The server's process and its descendants (gunicorn's workers, say)."""
        return process_tree(self.process.pid) if self.process is not None else []

    def rss_kib(self) -> int:
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        return total

    def cpu_seconds(self) -> float:
        return sum(proc_cpu_seconds(pid) for pid in self.pids())

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class ServerSet:
    """``count`` servers (``command``; see :class:`Server`) the clients alternate between."""

    def __init__(self, count: int, tag: str = "", env: Any = None, command: str = Server.UVICORN):
        kind = command.split()[1]  # "-m <module> ...": uvicorn, daphne
        self.servers = [Server(f"{kind}{tag}-{i}", env, command) for i in range(count)]

    def start(self) -> None:
        for server in self.servers:
            server.start()

    def stop(self) -> None:
        for server in self.servers:
            with contextlib.suppress(Exception):
                server.stop()

    def alive(self) -> bool:
        return all(s.alive() for s in self.servers)

    def urls(self, scheme: str = "http") -> list[str]:
        return [s.url(scheme) for s in self.servers]

    def cpu(self) -> float:
        return sum(s.cpu_seconds() for s in self.servers)

    def rss_kib(self) -> list[int]:
        return [s.rss_kib() for s in self.servers]

    def log_text(self) -> str:
        return "".join(s.log_text() for s in self.servers)


# Statistics ---------------------------------------------------------------------------------


def aggregate_rounds(rounds: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    """Median (and min/max) over rounds of each per-round statistic in ``keys``."""
    out: dict[str, Any] = {"rounds": len(rounds)}
    for key in keys:
        if values := [r[key] for r in rounds if r.get(key) is not None]:
            out[key] = round(statistics.median(values), 3)
            out[f"{key}_min"] = round(min(values), 3)
            out[f"{key}_max"] = round(max(values), 3)
    return out


def summarise(rounds: list[dict[str, Any]], keys: tuple[str, ...] = KEYS) -> dict[str, Any]:
    """``aggregate_rounds`` with the rounds themselves under ``per_round``."""
    return {**aggregate_rounds(rounds, keys), "per_round": rounds}


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def ratios(a: dict[str, Any], b: dict[str, Any], same: str = "", **keys: str) -> dict[str, Any]:
    """``{name: a[key] ÷ b[key]}`` for each name of ``same`` (space-separated; the key is the
    name) and each ``name=key``."""
    keys = {**{name: name for name in same.split()}, **keys}
    return {name: ratio(a.get(key), b.get(key)) for name, key in keys.items()}


def rotated(items: list[Any], r: int) -> list[Any]:
    """``items`` starting at the ``r``-th (round ``r`` of series interleaved round by round)."""
    k = r % len(items)
    return items[k:] + items[:k]


def interleaved(names: Iterable[str], rounds: range, measure: Callable[[str, int], Any]) -> dict:
    """``measure(name, r)`` for every name in every round ``r``, the names' order rotated
    round by round: ``{name: [its results]}``."""
    out: dict[str, list[Any]] = {name: [] for name in names}
    for r in rounds:
        for name in rotated(list(names), r):
            out[name].append(measure(name, r))
    return out


class Context:
    """What a scenario measures against: the seeded database, the servers, the results."""

    def __init__(self, results: dict[str, Any]) -> None:
        self.results = results
        self.servers = ServerSet(SERVERS)
        self.extra_servers: list[ServerSet] = []
        self.layout: Any = None
        self.create_counter = 0
        self.deadlocks0 = 0

    def prepare(self) -> None:
        """Create and seed the database and start the servers (once, for the first scenario
        that needs them)."""
        if self.layout is not None:
            return
        connection = django_setup(DB_NAME)
        creates = 2 * (ROUNDS + SILENT_ROUNDS) * CREATE_N + 4 * CREATE_WARM_N + 600
        creates += 4 * TOPOLOGY_ROUNDS * (CREATE_N + CREATE_WARM_N)
        approvals = len(APPROVE_LEVELS) * APPROVE_ROUNDS * APPROVE_N + 10
        self.layout = seed.seed_base(
            connection,
            writers=seed.per_write_salon(creates),
            approvees=max(seed.per_write_salon(approvals), self.same_salon_approvals()),
            contention_rounds=CONTENTION_ROUNDS,
        )
        self.results["layout"] = dataclasses.asdict(self.layout)
        self.servers.start()
        log(f"servers on {', '.join(self.servers.urls())}")
        self.deadlocks0 = self.deadlocks()

    def same_salon_approvals(self) -> int:
        return len(SAME_SALON_LEVELS) * APPROVE_ROUNDS * APPROVE_N // 2 + 10

    def grow_to(self, rows: int) -> dict[str, Any]:
        """Grow the invitation table to ``rows`` (it never shrinks)."""
        from django.db import connection

        seconds = seed.grow_bulk(connection, self.layout, rows)
        size = seed.table_size(connection)
        log(f"table holds {size} invitations (grew in {seconds:.1f}s)")
        return {"rows": size, "seed_seconds": round(seconds, 2)}

    def deadlocks(self) -> int:
        query = "SELECT deadlocks FROM pg_stat_database WHERE datname = %s"
        return pg_query(query, [DB_NAME])[0][0]

    def client(self, user: int) -> Any:
        from django.test import Client

        return Client(headers={"X-Bench-User": str(user)})

    def capture(self, user: int, method: str, path: str, data: Any = None) -> tuple[int, list]:
        """The status and the SQL of one in-process request (``get``, ``post``, ``patch``)."""
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        call = getattr(self.client(user), method)
        with CaptureQueriesContext(connection) as ctx:
            if method == "get":
                response = call(path)
            else:
                response = call(path, data or {}, content_type="application/json")
        return response.status_code, [q["sql"] for q in ctx.captured_queries]

    def run_async(self, coro: Any) -> Any:
        if not self.servers.alive():
            raise RuntimeError("a server process died; see bench/results/logs/")
        return asyncio.run(coro)

    def series(
        self, what: str, make: Callable[[int], Any], n: int, concurrency: int, *, warm: int = 0,
        offset: int = 0, deadline_s: float | None = None,
    ) -> tuple[Any, dict[str, Any]]:  # fmt: skip
        """``n`` requests ``make(offset + i)`` from ``concurrency`` closed-loop clients after
        ``warm`` unmeasured ones, every one successful (with ``deadline_s`` the series may stop
        at that deadline, else at 120 s, an error): the raw result and its statistics
        (percentiles, requests/s, server CPU per request)."""

        async def go() -> tuple[Any, float]:
            clients = loadgen.Clients(self.servers.urls(), connections=max(concurrency, 2))
            try:
                if warm:  # opens the connections, warms the servers' caches
                    await loadgen.run_closed_loop(
                        clients, make, warm, min(concurrency, 4), deadline_s=60
                    )
                cpu0 = self.servers.cpu()
                result = await loadgen.run_closed_loop(
                    clients, make, n, concurrency, deadline_s=deadline_s or 120, offset=offset
                )
                return result, self.servers.cpu() - cpu0
            finally:
                await clients.aclose()

        result, cpu = self.run_async(go())
        lat = loadgen.summary_ms([s.latency for s in result.ok])
        server = loadgen.summary_ms([s.server_us / 1e6 for s in result.ok])
        stats = {
            "n": len(result.samples),
            "ok": len(result.ok),
            "statuses": result.statuses(),
            **{key: lat.get(key) for key in ("p50", "p99", "mean")},
            **{f"server_{key}": server.get(key) for key in ("p50", "p99")},
            "rps": round(result.rps, 2),
            "cpu_ms_per_request": round(cpu * 1000 / max(1, len(result.samples)), 3),
            "wall_s": round(result.wall, 3),
        }
        late = result.stopped_at_deadline and not deadline_s
        if stats["ok"] != stats["n"] or result.errors or late:
            bad = [s.body for s in result.samples if s.status >= 300][:3]
            raise RuntimeError(f"{what}: {stats['statuses']} {bad} {result.errors[:3]} {late=}")
        return result, stats

    def measured(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The statistics of ``series(*args, **kwargs)``."""
        return self.series(*args, **kwargs)[1]

    def with_servers(
        self, tag: str, env: dict[str, str], action: Callable[[], Any], *, count: int = SERVERS,
        command: str = Server.UVICORN,
    ) -> Any:  # fmt: skip
        """Run ``action`` against a second set of ``count`` servers (``command``) started with
        ``env`` (the main set is stopped meanwhile)."""
        servers = ServerSet(count, tag, env, command)
        self.extra_servers.append(servers)
        main = self.servers
        main.stop()
        try:
            servers.start()
            self.servers = servers
            return action()
        finally:
            self.servers = main
            servers.stop()
            main.start()

    def phase(self, name: str, action: Callable[[], Any]) -> Any:
        """Run one measurement, noting how many cores other processes used meanwhile."""
        log(name)

        def snapshot() -> tuple[float, float, float]:
            try:
                return cpu_snapshot()
            except OSError:
                return (time.monotonic(), 0.0, 0.0)

        before = snapshot()
        try:
            return action()
        finally:
            self.results.setdefault("other_cores", {})[name] = other_cores(before, snapshot())

    def finish(self) -> None:
        """The run's closing figures: deadlocks and the servers' logged errors."""
        if self.layout is None:
            return
        # Backends flush their statistics to pg_stat_database when they exit.
        self.servers.stop()
        time.sleep(2)
        # Every server's log once (sets started again, as topology's, append to the same).
        paths = {s.log_path for group in (self.servers, *self.extra_servers) for s in group.servers}
        logs = "".join(path.read_text(errors="replace") for path in paths if path.exists())
        self.results["deadlocks"] = {
            "pg_stat_database": int(self.deadlocks() - self.deadlocks0),
            "in_server_logs": logs.lower().count("deadlock detected"),
        }
        self.results["server_log_errors"] = logs.count("Traceback")
        self.results["server_log_exceptions"] = logs.count(ASGI_ERROR)

    def close(self) -> None:
        for servers in (self.servers, *self.extra_servers):
            servers.stop()
        if self.layout is not None:
            close_database(DB_NAME)
            with contextlib.suppress(Exception):
                redis_cleanup()


# Django in this process ------------------------------------------------------------------------


def django_setup(db: str) -> Any:
    """Django in this process on a fresh database ``db``, migrated: its connection."""
    drop_database(db, create=True)
    os.environ.update(
        DJANGO_SETTINGS_MODULE="benchproject.settings", BENCH_NO_POOL="1", BENCH_DB_NAME=db
    )
    import django
    from django.core.management import call_command
    from django.db import connection

    django.setup()
    call_command("migrate", verbosity=0)
    return connection


def close_database(db: str) -> None:
    """Close Django's connections and drop ``db`` (unless ``BENCH_KEEP_DB``)."""
    with contextlib.suppress(Exception):
        from django.db import connections

        connections.close_all()
    if not os.environ.get("BENCH_KEEP_DB"):
        with contextlib.suppress(Exception):
            drop_database(db)


def sql(statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    """The rows of ``statement`` on Django's connection."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def explain(statement: str, params: Any = None) -> list[str]:
    """The lines of ``EXPLAIN (ANALYZE, BUFFERS)`` of ``statement`` on Django's connection."""
    return [line for (line,) in sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)]


# The run -------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    from importlib.metadata import version

    def first(path: str, prefix: str) -> str:
        lines = Path(path).read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith(prefix))

    def ask(question: Callable[[], Any]) -> Any:
        try:
            return question()
        except Exception:
            return "-"

    def redis_version() -> str:
        with redis_client() as client:
            return client.info("server")["redis_version"]

    def git(*args: str) -> str:
        run = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
        run.check_returncode()
        return run.stdout.strip()

    commit = ask(lambda: git("rev-parse", "--short", "HEAD"))
    if ask(lambda: git("status", "--porcelain", "--", "src")) not in ("", "-"):
        commit += " (src/ modified)"
    dists = "django djangorestframework channels channels-redis uvicorn uvloop httptools websockets"
    dists += " httpx psycopg django-salon-invitations"
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "memory_gib": ask(
            lambda: round(int(first("/proc/meminfo", "MemTotal").split()[0]) / 2**20, 1)
        ),
        "cpu_model": ask(lambda: first("/proc/cpuinfo", "model name")),
        "kernel": platform.release(),
        "python": platform.python_version(),
        **{d.replace("-", "_"): ask(lambda d=d: version(d)) for d in dists.split()},
        "postgresql": ask(lambda: pg_query("SHOW server_version", db="postgres")[0][0]),
        "redis": ask(redis_version),
        "commit": commit,
    }


def results_path() -> Path:
    return RESULTS_DIR / ("quick.json" if QUICK else "results.json")


def load_results(path: Path | None = None) -> dict[str, Any]:
    path = path or results_path()
    return json.loads(path.read_text()) if path.exists() else {}


def merge(into: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``into`` updated with ``new``, one level deep ("scales", "config", ...)."""
    for key, value in new.items():
        old = into.get(key)
        into[key] = {**old, **value} if isinstance(old, dict) and isinstance(value, dict) else value
    return into


def run(scenarios: list[ModuleType], *, replace: bool = False) -> int:
    """Run ``scenarios`` in order. Their keys replace the same keys of the saved results, so
    one scenario can be measured again without the others; with ``replace`` (a full run) the
    results replace the file."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    for old in LOG_DIR.glob("*.log"):
        old.unlink()

    def on_signal(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    # For thousands of sockets, here, in the servers and the clients (they inherit it).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    names = [s.NAME for s in scenarios]
    log(f"{'quick' if QUICK else 'full'} run of {', '.join(names)}; main scale {MAIN_SCALE}")
    config = {
        "scales": SCALES,
        "main_scale": MAIN_SCALE,
        "rounds": ROUNDS,
        "create_requests_per_round": CREATE_N,
        "approve_levels": list(APPROVE_LEVELS),
        "approve_requests_per_level_round": APPROVE_N,
        "approve_rounds": APPROVE_ROUNDS,
        "contention_rounds": CONTENTION_ROUNDS,
        "servers": SERVERS,
    }
    results: dict[str, Any] = {
        "quick": QUICK,
        "config": config,
        "machine": machine_info(),
        "load_before": os.getloadavg(),
    }
    ctx = Context(results)
    started = time.perf_counter()
    status = 0
    try:
        for scenario in scenarios:
            if not getattr(scenario, "OWN_DATABASE", False):
                ctx.prepare()
            merge(results, scenario.run(ctx))
        ctx.finish()
    except BaseException as exc:
        status = exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) else 1
        results["error"] = "".join(traceback.format_exception(exc))
        log(f"FAILED: {exc!r}")
        traceback.print_exc()
    finally:
        ctx.close()
    if ctx.layout is None:  # only scenarios with their own database: no run-wide figures
        run_wide = ("config", "machine", "load_before", "quick")
        results = {k: v for k, v in results.items() if k not in run_wide}
    else:
        results["load_after"] = os.getloadavg()
        results["total_seconds"] = round(time.perf_counter() - started, 1)
    out = results_path()
    if status != 0:
        out = out.with_name(out.stem + "-failed.json")  # never replaces a good run's results
        saved = results
    elif replace:  # the first part of a full run: nothing older is kept
        saved = {**results, "scenarios": sorted(names)}
    else:
        saved = merge(load_results(), results)
        saved["scenarios"] = sorted({*saved.get("scenarios", []), *names})
    out.write_text(json.dumps(saved, indent=1, default=str) + "\n")
    log(f"wrote {out.relative_to(REPO)}")
    return status


# The page's helpers --------------------------------------------------------------------------


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def verdict(ok: bool | None) -> str:
    if ok is None:
        return "not measured"
    return "**met**" if ok else "**missed**"


def row(*cells: Any) -> str:
    """A row of a Markdown table."""
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


class _PageFormatter(string.Formatter):
    """``fill``'s formatting: a missing key or ``None`` shows as "–"; a format spec of digits
    is ``fmt``'s (``{x:1}``: one decimal, thousands separated), ``%1`` a share in percent."""

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> Any:
        try:
            return super().get_field(field_name, args, kwargs)
        except (KeyError, IndexError, TypeError):
            if field_name.split("[")[0] not in kwargs:
                raise  # a misspelt name; a missing key is a figure the run did not measure
            return None, field_name

    def format_field(self, value: Any, format_spec: str) -> str:
        if value is None:
            return "–"
        if format_spec.isdigit():
            return fmt(value, int(format_spec))
        if format_spec.startswith("%"):
            return f"{fmt(100 * value, int(format_spec[1:]))}%"
        return format(value, format_spec)


@functools.cache
def templates(name: str) -> dict[str, str]:
    """Page ``name``'s templates: ``bench/templates/<name>.md``, a block per ``<!-- KEY -->``
    line (each without its trailing blank lines), filled with ``fill``."""
    text = (BENCH_DIR / "templates" / f"{name}.md").read_text()
    parts = re.split(r"^<!-- ([A-Z0-9_]+) -->\n", text, flags=re.MULTILINE)
    return {key: block.rstrip("\n") for key, block in zip(parts[1::2], parts[2::2], strict=True)}


def fill(template: str, /, **values: Any) -> str:
    """``template.format(**values)`` with the page's formatting (see ``_PageFormatter``)."""
    return _PageFormatter().vformat(template, (), values)


def fill_rows(template: str, items: Any, **shared: Any) -> str:
    """One line of ``template`` per dict of ``items`` (its keys, then ``shared``, as values)."""
    return "\n".join(fill(template, **shared, **item) for item in items)
