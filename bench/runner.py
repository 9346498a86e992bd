# ruff: noqa: RUF001 - the page uses typographic characters (times, dashes) on purpose
"""What every scenario shares: configuration, PostgreSQL and Redis, the uvicorn servers, CPU
sampling, the :class:`Context` a scenario runs in, the run itself and the page's helpers.

A scenario is a module of ``bench/scenarios/`` (see :class:`Scenario`) listed in
``scenarios.SCENARIOS``.

Environment (all optional):

    BENCH_QUICK=1          small sizes, a few minutes; writes bench/results/quick.* only
    BENCH_SCALES=10000,100000,1000000   table sizes of the scale curve
    BENCH_MAIN_SCALE=100000             the size at which everything else is measured
    BENCH_ROUNDS=5         repetitions of each measurement
    BENCH_LIST_N, BENCH_LIST_CONC_N, BENCH_CREATE_N, BENCH_INVITE_N, BENCH_APPROVE_N,
    BENCH_APPROVE_ROUNDS, BENCH_CONTENTION_ROUNDS, BENCH_SILENT_ROUNDS, BENCH_PROFILE_N
    BENCH_FANOUT_CONNECTIONS=1000, BENCH_FANOUT_EVENTS=400 (per stream),
    BENCH_FANOUT_RATES=10,25 (events/s of each stream; the first is the headline)
    BENCH_STORM_SOCKETS=2000, BENCH_STORM_WINDOW=1 (seconds they open within),
    BENCH_STORM_CLIENTS=2 (client processes), BENCH_STORM_ROUNDS (BENCH_ROUNDS)
    BENCH_DB_NAME=salon_bench, PGHOST/PGPORT/PGUSER/PGPASSWORD
    BENCH_REDIS_URL=redis://127.0.0.1:6379/9
    BENCH_KEEP_DB=1        keep the database afterwards
    BENCH_WRITE_DOCS=1     also write docs/ after a quick run
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
LOG_DIR = RESULTS_DIR / "logs"
sys.path.insert(0, str(BENCH_DIR))


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


QUICK = os.environ.get("BENCH_QUICK", "").strip() not in ("", "0")
DEFAULT_SCALES = "5000,20000,50000" if QUICK else "10000,100000,1000000"
SCALES = sorted(int(x) for x in os.environ.get("BENCH_SCALES", DEFAULT_SCALES).split(","))
MAIN_SCALE = env_int("BENCH_MAIN_SCALE", 20_000 if QUICK else 100_000)
ROUNDS = env_int("BENCH_ROUNDS", 2 if QUICK else 5)
DB_NAME = os.environ.get("BENCH_DB_NAME", "salon_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
SERVERS = 2
SERVER_START_TIMEOUT = 60
# The writes' sizes: the seed reserves users for them before anything runs.
CREATE_N = env_int("BENCH_CREATE_N", 64 if QUICK else 480)  # per round and side, 16 clients
CREATE_WARM_N = 48  # per side, before the measured rounds
SILENT_ROUNDS = env_int("BENCH_SILENT_ROUNDS", 1 if QUICK else 3)
APPROVE_LEVELS = (1, 2, 4, 8, 16)
SAME_SALON_LEVELS = (1, 8)
APPROVE_N = env_int("BENCH_APPROVE_N", 32 if QUICK else 240)  # per level and round
APPROVE_ROUNDS = env_int("BENCH_APPROVE_ROUNDS", 1 if QUICK else 3)
CONTENTION_ROUNDS = env_int("BENCH_CONTENTION_ROUNDS", 2 if QUICK else 5)

os.environ["BENCH_DB_NAME"] = DB_NAME
os.environ["BENCH_REDIS_URL"] = REDIS_URL


class Scenario(Protocol):
    """A module of ``bench/scenarios/``. ``run`` measures and returns the keys it adds to the
    results; the others turn the saved results into the page (each may find its keys absent
    when the scenario did not run)."""

    NAME: str

    def run(self, ctx: Context) -> dict[str, Any]: ...

    def summary(self, results: dict[str, Any]) -> list[str]:
        """Rows of the page's summary table."""

    def findings(self, results: dict[str, Any]) -> list[str]:
        """Paragraphs of the page's numbered findings."""

    def render(self, results: dict[str, Any]) -> str:
        """The scenario's section of the page."""


def log(message: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"[bench {stamp}] {message}", flush=True)


# PostgreSQL administration (no Django) -------------------------------------------------------


def pg_params() -> dict[str, Any]:
    return {
        "host": os.environ.get("PGHOST", "127.0.0.1"),
        "port": os.environ.get("PGPORT", "5432"),
        "user": os.environ.get("PGUSER", "postgres"),
        "password": os.environ.get("PGPASSWORD", ""),
        "connect_timeout": 10,
    }


def pg_admin(statement: str) -> None:
    import psycopg

    with psycopg.connect(dbname="postgres", autocommit=True, **pg_params()) as conn:
        conn.execute(statement)


def pg_query(statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(dbname=DB_NAME, autocommit=True, **pg_params()) as conn:
        return conn.execute(statement, params).fetchall()


def create_database() -> None:
    pg_admin(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
    pg_admin(f'CREATE DATABASE "{DB_NAME}"')


def drop_database() -> None:
    pg_admin(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')


def redis_cleanup() -> int:
    """Delete the channel layer's keys (prefix ``salonbench``) and nothing else."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5, socket_connect_timeout=5)
    try:
        keys = list(client.scan_iter(match="salonbench*", count=1000))
        for lo in range(0, len(keys), 500):
            client.delete(*keys[lo : lo + 500])
        return len(keys)
    finally:
        client.close()


class LockWaitSampler:
    """Samples ``pg_stat_activity`` every ``interval`` s in a thread: how often a backend of
    the benchmark database waited for a lock, and how many at most."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.samples = 0
        self.waiting_samples = 0
        self.max_waiting = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(dbname=DB_NAME, autocommit=True, **pg_params()) as conn:
            deadline = time.monotonic() + 600
            while not self._stop.is_set() and time.monotonic() < deadline:
                (waiting,) = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = %s AND wait_event_type = 'Lock'",
                    [DB_NAME],
                ).fetchone()
                self.samples += 1
                if waiting:
                    self.waiting_samples += 1
                    self.max_waiting = max(self.max_waiting, waiting)
                self._stop.wait(self.interval)

    def __enter__(self) -> LockWaitSampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def result(self) -> dict[str, Any]:
        share = self.waiting_samples / self.samples if self.samples else 0.0
        return {
            "samples": self.samples,
            "samples_with_lock_waits": self.waiting_samples,
            "share_with_lock_waits": round(share, 4),
            "max_backends_waiting": self.max_waiting,
        }


# The machine's other work ----------------------------------------------------------------------

_OURS = frozenset({"postgres", "redis-server"})  # serving the benchmark (and maybe others)


def _proc_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_snapshot(our_pids: list[int]) -> tuple[float, float, float]:
    """(wall time, busy CPU seconds of the whole machine, CPU seconds of the benchmark's
    processes: this one, its servers, PostgreSQL and Redis)."""
    with open("/proc/stat") as stat:
        ticks = [int(x) for x in stat.readline().split()[1:]]
    busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait
    ours = sum(_proc_cpu_seconds(pid) for pid in our_pids)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                comm = (entry / "comm").read_text().strip()
            except OSError:
                continue
            if comm in _OURS:
                ours += _proc_cpu_seconds(int(entry.name))
    return time.monotonic(), busy, ours


def other_cores(before: tuple[float, float, float], after: tuple[float, float, float]) -> float:
    """Cores used on average by other processes of the machine between two snapshots (an
    estimate: benchmark processes that exited in between count as "other")."""
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
    """In the server's process, before exec: get SIGTERM when the orchestrator dies, even if
    it is killed without running its clean-up (Linux only; elsewhere a no-op)."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


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

    def __init__(
        self, name: str, env: dict[str, str] | None = None, command: str = UVICORN
    ) -> None:
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = LOG_DIR / f"{name}.log"
        self.extra_env = env or {}
        self.command = command

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "benchproject.settings"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH_DIR), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        env.pop("BENCH_NO_POOL", None)
        env.update(self.extra_env)
        extra = ""
        if self.command.startswith("-m uvicorn "):
            with contextlib.suppress(ImportError):
                import uvloop  # noqa: F401

                extra += " --loop uvloop"
            with contextlib.suppress(ImportError):
                import httptools  # noqa: F401

                extra += " --http httptools"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        for _attempt in range(3):
            self.port = free_port()
            command = [sys.executable, *(self.command + extra).format(port=self.port).split()]
            with self.log_path.open("ab") as out:
                self.process = subprocess.Popen(
                    command,
                    cwd=BENCH_DIR,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                )
            deadline = time.monotonic() + SERVER_START_TIMEOUT
            while time.monotonic() < deadline and self.process.poll() is None:
                if listening(self.port):
                    return
                time.sleep(0.1)
            self.stop()
            if "address already in use" not in self.log_path.read_text(errors="replace").lower():
                break
        raise RuntimeError(f"{self.log_path.stem} did not start; see {self.log_path}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def rss_kib(self) -> int:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def cpu_seconds(self) -> float:
        assert self.process is not None
        return _proc_cpu_seconds(self.process.pid)


class ServerSet:
    def __init__(
        self,
        count: int,
        tag: str = "",
        env: dict[str, str] | None = None,
        command: str = Server.UVICORN,
    ) -> None:
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
        return all(s.process is not None and s.process.poll() is None for s in self.servers)

    @property
    def base_urls(self) -> list[str]:
        return [s.base_url for s in self.servers]

    @property
    def ws_urls(self) -> list[str]:
        return [s.ws_url for s in self.servers]

    def cpu(self) -> float:
        return sum(s.cpu_seconds() for s in self.servers)

    def rss_kib(self) -> list[int]:
        return [s.rss_kib() for s in self.servers]

    def log_text(self) -> str:
        return "".join(
            s.log_path.read_text(errors="replace") for s in self.servers if s.log_path.exists()
        )


def aggregate_rounds(rounds: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    """Median (and min/max) over rounds of each per-round statistic in ``keys``."""
    out: dict[str, Any] = {"rounds": len(rounds)}
    for key in keys:
        values = [r[key] for r in rounds if r.get(key) is not None]
        if values:
            out[key] = round(statistics.median(values), 3)
            out[f"{key}_min"] = round(min(values), 3)
            out[f"{key}_max"] = round(max(values), 3)
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    if not a or not b:
        return None
    return round(a / b, 3)


class Context:
    """What a scenario measures against: the seeded database, the servers, the results."""

    def __init__(self, results: dict[str, Any]) -> None:
        self.results = results
        self.servers = ServerSet(SERVERS)
        self.extra_servers: list[ServerSet] = []
        self.layout: Any = None
        self.create_counter = 0
        self.deadlocks0 = 0

    # Setup --------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Create and seed the database and start the servers (once, for the first scenario
        that needs them)."""
        if self.layout is not None:
            return
        create_database()
        os.environ["DJANGO_SETTINGS_MODULE"] = "benchproject.settings"
        os.environ["BENCH_NO_POOL"] = "1"
        import django
        import seed
        from django.core.management import call_command
        from django.db import connection

        django.setup()
        call_command("migrate", verbosity=0)
        creates = 2 * (ROUNDS + SILENT_ROUNDS) * CREATE_N + 4 * CREATE_WARM_N + 600
        approvals = len(APPROVE_LEVELS) * APPROVE_ROUNDS * APPROVE_N + 10
        self.layout = seed.seed_base(
            connection,
            writers=seed.writers_needed(creates),
            approvees=max(seed.approvees_needed(approvals), self.same_salon_approvals()),
            contention_rounds=CONTENTION_ROUNDS,
        )
        self.results["layout"] = self.layout.as_dict()
        self.servers.start()
        log(f"servers on {', '.join(self.servers.base_urls)}")
        self.deadlocks0 = self.deadlocks()

    def same_salon_approvals(self) -> int:
        return len(SAME_SALON_LEVELS) * APPROVE_ROUNDS * APPROVE_N // 2 + 10

    def grow_to(self, rows: int) -> dict[str, Any]:
        """Grow the invitation table to ``rows`` (it never shrinks)."""
        import seed
        from django.db import connection

        seconds = seed.grow_bulk(connection, self.layout, rows)
        size = seed.table_size(connection)
        log(f"table holds {size} invitations (grew in {seconds:.1f}s)")
        return {"rows": size, "seed_seconds": round(seconds, 2)}

    def deadlocks(self) -> int:
        return pg_query("SELECT deadlocks FROM pg_stat_database WHERE datname = %s", [DB_NAME])[0][
            0
        ]

    # In process ---------------------------------------------------------------------------

    def client(self, user: int) -> Any:
        from django.test import Client

        return Client(headers={"X-Bench-User": str(user)})

    def capture(self, user: int, method: str, path: str, data: Any = None) -> tuple[int, list]:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        client = self.client(user)
        with CaptureQueriesContext(connection) as ctx:
            if method == "get":
                response = client.get(path)
            elif method == "post":
                response = client.post(path, data, content_type="application/json")
            else:
                response = client.patch(path, data or {}, content_type="application/json")
        return response.status_code, [q["sql"] for q in ctx.captured_queries]

    # Over HTTP ----------------------------------------------------------------------------

    def run_async(self, coro: Any) -> Any:
        if not self.servers.alive():
            raise RuntimeError("a server process died; see bench/results/logs/")
        return asyncio.run(coro)

    def series(
        self,
        make: Callable[[int], Any],
        n: int,
        concurrency: int,
        *,
        warm: int = 10,
        offset: int = 0,
        deadline_s: float = 120.0,
    ) -> tuple[Any, dict[str, Any]]:
        """``n`` requests made by ``make(i)`` from ``concurrency`` closed-loop clients: the
        raw result and its statistics (percentiles, requests/s, server CPU per request)."""
        import loadgen

        async def go() -> tuple[Any, float]:
            clients = loadgen.Clients(self.servers.base_urls, connections=max(concurrency, 2))
            try:
                if warm:
                    await loadgen.warm_up(clients, make, warm, min(concurrency, 4))
                cpu0 = self.servers.cpu()
                result = await loadgen.run_closed_loop(
                    clients, make, n, concurrency, deadline_s=deadline_s, offset=offset
                )
                return result, self.servers.cpu() - cpu0
            finally:
                await clients.aclose()

        result, cpu = self.run_async(go())
        ok = result.ok
        lat = loadgen.summary_ms([s.latency for s in ok])
        server = loadgen.summary_ms([s.server_us / 1e6 for s in ok])
        stats = {
            "n": len(result.samples),
            "ok": len(ok),
            "statuses": result.statuses(),
            "p50": lat.get("p50"),
            "p99": lat.get("p99"),
            "mean": lat.get("mean"),
            "server_p50": server.get("p50"),
            "server_p99": server.get("p99"),
            "rps": round(result.rps, 2),
            "cpu_ms_per_request": round(cpu * 1000 / max(1, len(result.samples)), 3),
            "wall_s": round(result.wall, 3),
        }
        return result, stats

    def check(
        self, what: str, result: Any, stats: dict[str, Any], *, deadline_ok: bool = False
    ) -> None:
        """Every request succeeded (and, if ``deadline_ok``, the series may stop at its
        deadline)."""
        if stats["ok"] != stats["n"] or result.errors[:1] not in ([], ["deadline"][:deadline_ok]):
            bad = [s.body for s in result.samples if s.status >= 300][:3]
            raise RuntimeError(f"{what}: {stats['statuses']} {bad} {result.errors[:3]}")

    def with_servers(
        self,
        tag: str,
        env: dict[str, str],
        action: Callable[[], Any],
        command: str = Server.UVICORN,
    ) -> Any:
        """Run ``action`` against a second set of servers started with ``env`` (and
        ``command``; the main set is stopped meanwhile)."""
        servers = ServerSet(SERVERS, tag, env, command)
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

    # Phases -------------------------------------------------------------------------------

    def snapshot(self) -> tuple[float, float, float]:
        pids = [os.getpid()]
        for server_set in (self.servers, *self.extra_servers):
            pids += [s.process.pid for s in server_set.servers if s.process is not None]
        try:
            return cpu_snapshot(pids)
        except OSError:
            return (time.monotonic(), 0.0, 0.0)

    def phase(self, name: str, action: Callable[[], Any]) -> Any:
        """Run one measurement, noting how many cores other processes used meanwhile."""
        log(name)
        before = self.snapshot()
        try:
            return action()
        finally:
            self.results.setdefault("other_cores", {})[name] = other_cores(before, self.snapshot())

    def finish(self) -> None:
        """The run's closing figures: deadlocks and the servers' logged errors."""
        if self.layout is None:
            return
        # Backends flush their statistics to pg_stat_database when they exit.
        self.servers.stop()
        time.sleep(2)
        logs = self.servers.log_text()
        every_log = logs + "".join(extra.log_text() for extra in self.extra_servers)
        self.results["deadlocks"] = {
            "pg_stat_database": int(self.deadlocks() - self.deadlocks0),
            "in_server_logs": every_log.lower().count("deadlock detected"),
        }
        self.results["server_log_errors"] = logs.count("Traceback")
        self.results["server_log_exceptions"] = logs.count("Exception in ASGI application")

    def close(self) -> None:
        self.servers.stop()
        for extra in self.extra_servers:
            extra.stop()
        if self.layout is None:
            return
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        if not os.environ.get("BENCH_KEEP_DB"):
            with contextlib.suppress(Exception):
                drop_database()
        with contextlib.suppress(Exception):
            redis_cleanup()


def _first(path: str, prefix: str) -> str:
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    return "-"


def _ask(question: Callable[[], str]) -> str:
    try:
        return question()
    except Exception:
        return "-"


def machine_info() -> dict[str, Any]:
    from importlib.metadata import version

    import psycopg
    import redis

    def pg_version() -> str:
        with psycopg.connect(dbname="postgres", autocommit=True, **pg_params()) as conn:
            return conn.execute("SHOW server_version").fetchone()[0]

    def redis_version() -> str:
        with redis.Redis.from_url(REDIS_URL, socket_timeout=5) as client:
            return client.info("server")["redis_version"]

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()  # fmt: skip

    commit = _ask(lambda: git("rev-parse", "--short", "HEAD"))
    if _ask(lambda: git("status", "--porcelain", "--", "src")) not in ("", "-"):
        commit += " (src/ modified)"
    dists = ("django djangorestframework channels channels-redis uvicorn uvloop httptools "
             "websockets httpx psycopg django-salon-invitations")  # fmt: skip
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "memory_gib": round(int(_first("/proc/meminfo", "MemTotal:").split()[0]) / 1024**2, 1),
        "cpu_model": _first("/proc/cpuinfo", "model name"),
        "kernel": platform.release(),
        "python": platform.python_version(),
        **{d.replace("-", "_"): _ask(lambda d=d: version(d)) for d in dists.split()},
        "postgresql": _ask(pg_version),
        "redis": _ask(redis_version),
        "commit": commit,
    }


# The run -------------------------------------------------------------------------------------


RUN_KEYS = ("config", "machine", "load_before", "quick")


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


def run(scenarios: list[ModuleType]) -> int:
    """Run ``scenarios`` in order; their keys replace the same keys of the saved results, so
    one scenario can be measured again without the others."""
    RESULTS_DIR.mkdir(exist_ok=True)
    LOG_DIR.mkdir(exist_ok=True)
    for old in LOG_DIR.glob("*.log"):
        old.unlink()

    def on_signal(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    names = [s.NAME for s in scenarios]
    log(f"{'quick' if QUICK else 'full'} run of {', '.join(names)}; main scale {MAIN_SCALE}")
    results: dict[str, Any] = {
        "quick": QUICK,
        "config": {
            "scales": SCALES,
            "main_scale": MAIN_SCALE,
            "rounds": ROUNDS,
            "create_requests_per_round": CREATE_N,
            "approve_levels": list(APPROVE_LEVELS),
            "approve_requests_per_level_round": APPROVE_N,
            "approve_rounds": APPROVE_ROUNDS,
            "contention_rounds": CONTENTION_ROUNDS,
            "servers": SERVERS,
        },
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
        results = {k: v for k, v in results.items() if k not in RUN_KEYS}
    else:
        results["load_after"] = os.getloadavg()
        results["total_seconds"] = round(time.perf_counter() - started, 1)
    out = results_path()
    if status != 0:
        out = out.with_name(out.stem + "-failed.json")  # never replaces a good run's results
        saved = results
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
