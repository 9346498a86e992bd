#!/usr/bin/env python
"""Runs every benchmark end to end: ``make bench`` (or ``.venv/bin/python bench/run.py``).

Creates the PostgreSQL database ``salon_bench`` (dropped at the end), seeds it, starts two
uvicorn processes of ``bench/benchproject`` on loopback ports (Redis channel layer), measures,
stops everything (also on failure or Ctrl+C), writes ``bench/results/results.json`` and
regenerates ``docs/benchmarks.md`` and ``docs/img/benchmarks.png``.

Environment (all optional):

    BENCH_QUICK=1          small sizes, about two minutes; writes bench/results/quick.* only
    BENCH_SCALES=10000,100000,1000000   table sizes of the scale curve
    BENCH_MAIN_SCALE=100000             the size at which everything else is measured
    BENCH_ROUNDS=5         repetitions of each measurement
    BENCH_FANOUT_CONNECTIONS=1000, BENCH_FANOUT_EVENTS=400 (per stream),
    BENCH_FANOUT_RATES=10,25 (events/s of each stream; the first is the headline)
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
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
LOG_DIR = RESULTS_DIR / "logs"
sys.path.insert(0, str(BENCH_DIR))


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    return float(value) if value else default


QUICK = os.environ.get("BENCH_QUICK", "").strip() not in ("", "0")
if QUICK:
    DEFAULT_SCALES, DEFAULT_MAIN = "5000,20000,50000", 20_000
else:
    DEFAULT_SCALES, DEFAULT_MAIN = "10000,100000,1000000", 100_000
SCALES = sorted(int(x) for x in os.environ.get("BENCH_SCALES", DEFAULT_SCALES).split(","))
MAIN_SCALE = env_int("BENCH_MAIN_SCALE", DEFAULT_MAIN)
if MAIN_SCALE not in SCALES:
    SCALES = sorted({*SCALES, MAIN_SCALE})
ROUNDS = env_int("BENCH_ROUNDS", 2 if QUICK else 5)
LIST_N = env_int("BENCH_LIST_N", 40 if QUICK else 300)  # per round and series, 1 client
LIST_ROUND_SECONDS = env_float("BENCH_LIST_ROUND_SECONDS", 10.0)  # bound per round & series
LIST_CONC_N = env_int("BENCH_LIST_CONC_N", 60 if QUICK else 400)  # per round, 8 clients
CREATE_N = env_int("BENCH_CREATE_N", 64 if QUICK else 480)  # per round and side, 16 clients
CREATE_WARM_N = 48  # per side, before the measured rounds
APPROVE_LEVELS = (1, 2, 4, 8, 16)
INVITE_N = env_int("BENCH_INVITE_N", 48 if QUICK else 240)  # per round and phase, 16 clients
APPROVE_N = env_int("BENCH_APPROVE_N", 32 if QUICK else 240)  # per level and round
APPROVE_ROUNDS = env_int("BENCH_APPROVE_ROUNDS", 1 if QUICK else 3)
SAME_SALON_LEVELS = (1, 8)
CONTENTION_ROUNDS = env_int("BENCH_CONTENTION_ROUNDS", 2 if QUICK else 5)
FANOUT_CONNECTIONS = env_int("BENCH_FANOUT_CONNECTIONS", 200 if QUICK else 1000)
FANOUT_EVENTS = env_int("BENCH_FANOUT_EVENTS", 60 if QUICK else 400)
FANOUT_RATES = [float(x) for x in os.environ.get("BENCH_FANOUT_RATES", "10,25").split(",")]
SILENT_ROUNDS = env_int("BENCH_SILENT_ROUNDS", 1 if QUICK else 3)
FANOUT_IDLE_SECONDS = env_float("BENCH_FANOUT_IDLE", 4.0 if QUICK else 20.0)
PROFILE_N = env_int("BENCH_PROFILE_N", 30 if QUICK else 150)
DB_NAME = os.environ.get("BENCH_DB_NAME", "salon_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
SERVERS = 2
SERVER_START_TIMEOUT = 60

os.environ["BENCH_DB_NAME"] = DB_NAME
os.environ["BENCH_REDIS_URL"] = REDIS_URL


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
    def __init__(self, index: int, tag: str = "", env: dict[str, str] | None = None) -> None:
        self.index = index
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = LOG_DIR / f"uvicorn{tag}-{index}.log"
        self.extra_env = env or {}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = dict(os.environ)
        env.update(
            DJANGO_SETTINGS_MODULE="benchproject.settings",
            PYTHONPATH=os.pathsep.join(filter(None, [str(BENCH_DIR), env.get("PYTHONPATH")])),
            PYTHONUNBUFFERED="1",
        )
        env.pop("BENCH_NO_POOL", None)
        env.update(self.extra_env)
        for _attempt in range(3):
            self.port = free_port()
            command = [
                sys.executable,
                "-m",
                "uvicorn",
                "benchproject.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--no-access-log",
                "--log-level",
                "warning",
                "--lifespan",
                "off",
                "--backlog",
                "4096",
                "--ws",
                "websockets",
            ]
            with contextlib.suppress(ImportError):
                import uvloop  # noqa: F401

                command += ["--loop", "uvloop"]
            with contextlib.suppress(ImportError):
                import httptools  # noqa: F401

                command += ["--http", "httptools"]
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
        raise RuntimeError(f"uvicorn {self.index} did not start; see {self.log_path}")

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
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


class ServerSet:
    def __init__(self, count: int, tag: str = "", env: dict[str, str] | None = None) -> None:
        self.servers = [Server(i, tag, env) for i in range(count)]

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


# Measurement helpers --------------------------------------------------------------------------


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


class Bench:
    """Holds the layout, the servers and the results while the benchmark runs."""

    def __init__(self) -> None:
        self.results: dict[str, Any] = {
            "quick": QUICK,
            "config": {
                "scales": SCALES,
                "main_scale": MAIN_SCALE,
                "rounds": ROUNDS,
                "list_requests_per_round": LIST_N,
                "list_concurrent_requests_per_round": LIST_CONC_N,
                "create_requests_per_round": CREATE_N,
                "approve_levels": list(APPROVE_LEVELS),
                "approve_requests_per_level_round": APPROVE_N,
                "approve_rounds": APPROVE_ROUNDS,
                "contention_rounds": CONTENTION_ROUNDS,
                "fanout_connections": FANOUT_CONNECTIONS,
                "fanout_events": FANOUT_EVENTS,
                "fanout_rates": FANOUT_RATES,
                "fanout_idle_seconds": FANOUT_IDLE_SECONDS,
                "servers": SERVERS,
            },
            "scales": {},
        }
        self.servers = ServerSet(SERVERS)
        self.extra_servers: list[ServerSet] = []
        self.layout: Any = None
        self.create_counter = 0

    # Setup ------------------------------------------------------------------------------

    def setup_django(self) -> None:
        os.environ["DJANGO_SETTINGS_MODULE"] = "benchproject.settings"
        os.environ["BENCH_NO_POOL"] = "1"
        import django

        django.setup()

    def totals(self) -> dict[str, int]:
        creates = 2 * (ROUNDS + SILENT_ROUNDS) * CREATE_N + 4 * CREATE_WARM_N + 600
        approvals = len(APPROVE_LEVELS) * APPROVE_ROUNDS * APPROVE_N + 10
        same = len(SAME_SALON_LEVELS) * APPROVE_ROUNDS * APPROVE_N // 2 + 10
        return {"creates": creates, "approvals": approvals, "same_salon": same}

    def seed_base(self) -> None:
        import seed
        from django.core.management import call_command
        from django.db import connection

        call_command("migrate", verbosity=0)
        totals = self.totals()
        self.layout = seed.seed_base(
            connection,
            writers=seed.writers_needed(totals["creates"]),
            approvees=max(seed.approvees_needed(totals["approvals"]), totals["same_salon"]),
            contention_rounds=CONTENTION_ROUNDS,
        )
        self.results["layout"] = self.layout.as_dict()

    def grow(self, rows: int) -> dict[str, Any]:
        import seed
        from django.db import connection

        seconds = seed.grow_bulk(connection, self.layout, rows)
        size = seed.table_size(connection)
        log(f"table holds {size} invitations (grew in {seconds:.1f}s)")
        return {"rows": size, "seed_seconds": round(seconds, 2)}

    # In-process: query counts, EXPLAIN, profiles ------------------------------------------

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

    def query_counts(self) -> dict[str, Any]:
        layout = self.layout
        out: dict[str, Any] = {}
        cases = {
            "package manager list": (layout.list_manager, "/api/invitations"),
            "package requester list": (layout.requester, "/api/invitations"),
            "baseline manager list": (layout.list_manager, "/baseline/invitations"),
        }
        for name, (user, path) in cases.items():
            row = {}
            for size in (10, 50):
                status, queries = self.capture(user, "get", f"{path}?page_size={size}")
                assert status == 200, (name, status)
                row[f"page_size_{size}"] = len(queries)
            out[name] = row
        # Writes (one each; they use rows reserved for this).
        salon = layout.write_salons()[0]
        writer = layout.writer_first + layout.writers - 1
        status, queries = self.capture(
            writer, "post", "/api/invitations", {"salon": salon, "role": "seller"}
        )
        out["package create"] = {"status": status, "queries": len(queries), "sql": queries}
        status, queries = self.capture(
            writer - 1, "post", "/baseline/invitations", {"salon": salon, "role": "seller"}
        )
        out["baseline create"] = {"status": status, "queries": len(queries), "sql": queries}
        import seed
        from django.db import connection

        ((inv_id, _u, _s),) = seed.seed_pending(
            connection, users=[writer], salons=[layout.write_salons()[1]], role="member"
        )
        status, queries = self.capture(
            layout.owner_of(layout.write_salons()[1]),
            "patch",
            f"/api/invitations/{inv_id}/approved",
        )
        out["package approve"] = {"status": status, "queries": len(queries), "sql": queries}
        return out

    def explain(self) -> dict[str, Any]:
        from django.db import connection

        layout = self.layout
        cases = {
            "package manager list": (layout.list_manager, "/api/invitations"),
            "package requester list": (layout.requester, "/api/invitations"),
            "baseline manager list": (layout.list_manager, "/baseline/invitations"),
        }
        plans: dict[str, Any] = {}
        for name, (user, path) in cases.items():
            status, queries = self.capture(user, "get", f"{path}?page_size=50")
            assert status == 200, (name, status)
            entry = {}
            for sql in queries:
                if "salon_invitations_invitation" not in sql:
                    continue
                kind = "count" if "COUNT(*)" in sql.upper() else "page"
                with connection.cursor() as cursor:
                    cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
                    plan = [row[0] for row in cursor.fetchall()]
                entry[kind] = {"sql": sql, "plan": plan}
            plans[name] = entry
        return plans

    def profile(self) -> dict[str, Any]:
        """In-process (no server, no network): mean time per request and a pyinstrument
        profile of the package's and the baseline's manager list."""
        out: dict[str, Any] = {}
        layout = self.layout
        for name, path in (
            ("package", "/api/invitations"),
            ("baseline", "/baseline/invitations"),
            ("package without filter backends", "/diag/no-filter-backends/invitations"),
        ):
            client = self.client(layout.list_manager)
            for _ in range(10):
                client.get(path)
            times = []
            for _ in range(PROFILE_N):
                start = time.perf_counter()
                response = client.get(path)
                times.append(time.perf_counter() - start)
                assert response.status_code == 200
            entry: dict[str, Any] = {
                "mean_ms": round(statistics.fmean(times) * 1000, 3),
                "p50_ms": round(statistics.median(times) * 1000, 3),
            }
            try:
                from pyinstrument import Profiler
            except ImportError:
                Profiler = None
            if Profiler is not None and "without" not in name:
                profiler = Profiler(interval=0.0002)
                profiler.start()
                for _ in range(PROFILE_N):
                    client.get(path)
                profiler.stop()
                text = profiler.output_text(unicode=False, color=False, show_all=False)
                target = RESULTS_DIR / f"{'quick-' if QUICK else ''}profile-list-{name}.txt"
                target.write_text(text)
                entry["profile"] = str(target.relative_to(REPO))
            out[name] = entry
        out.update(self.profile_create())
        return out

    def profile_create(self) -> dict[str, Any]:
        """In-process creates (package and baseline), timed, the package's also profiled."""
        layout = self.layout
        salons = layout.write_salons()
        # Pairs nobody else uses: the last writers, the write salons.
        writers = [layout.writer_first + layout.writers - 2 - k for k in range(2 * 2)]
        out: dict[str, Any] = {}
        try:
            from pyinstrument import Profiler
        except ImportError:
            Profiler = None
        n = min(PROFILE_N, len(salons) - 2)
        from django.conf import settings
        from django.test.utils import override_settings

        silent = override_settings(
            SALON_INVITATIONS={**settings.SALON_INVITATIONS, "NOTIFICATION_BACKENDS": []}
        )
        for side, path, writer in (
            ("baseline create", "/baseline/invitations", writers[0]),
            ("package create", "/api/invitations", writers[1]),
            ("package create without notification backends", "/api/invitations", writers[2]),
        ):
            context = silent if "without" in side else contextlib.nullcontext()
            with context:
                out[side] = self._timed_creates(side, path, writer, salons, n, Profiler)
        return out

    def _timed_creates(
        self, side: str, path: str, writer: int, salons: list[int], n: int, Profiler: Any
    ) -> dict[str, Any]:
        client = self.client(writer)
        profiler = Profiler(interval=0.0002) if Profiler and side == "package create" else None
        times = []
        if profiler:
            profiler.start()
        for k in range(n):
            body = {"salon": salons[2 + k], "role": "seller", "message": "profile"}
            start = time.perf_counter()
            response = client.post(path, body, content_type="application/json")
            times.append(time.perf_counter() - start)
            assert response.status_code == 201, (side, response.status_code, response.content)
        entry: dict[str, Any] = {
            "mean_ms": round(statistics.fmean(times) * 1000, 3),
            "p50_ms": round(statistics.median(times) * 1000, 3),
        }
        if profiler:
            profiler.stop()
            target = RESULTS_DIR / f"{'quick-' if QUICK else ''}profile-create-package.txt"
            target.write_text(profiler.output_text(unicode=False, color=False))
            entry["profile"] = str(target.relative_to(REPO))
        return entry

    # Over HTTP ------------------------------------------------------------------------------

    def run_async(self, coro: Any) -> Any:
        if not self.servers.alive():
            raise RuntimeError("a server process died; see bench/results/logs/")
        return asyncio.run(coro)

    async def _series(
        self,
        make: Callable[[int], Any],
        n: int,
        concurrency: int,
        *,
        warm: int = 10,
        offset: int = 0,
        deadline_s: float = 120.0,
        keep_body: bool = False,
    ) -> tuple[Any, float]:
        import loadgen

        clients = loadgen.Clients(self.servers.base_urls, connections=max(concurrency, 2))
        try:
            if warm:
                await loadgen.warm_up(clients, make, warm, min(concurrency, 4))
            cpu0 = self.servers.cpu()
            result = await loadgen.run_closed_loop(
                clients,
                make,
                n,
                concurrency,
                deadline_s=deadline_s,
                offset=offset,
                keep_body=keep_body,
            )
            cpu = self.servers.cpu() - cpu0
        finally:
            await clients.aclose()
        return result, cpu

    def round_stats(self, result: Any, cpu: float) -> dict[str, Any]:
        import loadgen

        ok = result.ok
        lat = loadgen.summary_ms([s.latency for s in ok])
        server = loadgen.summary_ms([s.server_us / 1e6 for s in ok])
        return {
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

    def list_bench(self, *, concurrent: bool) -> dict[str, Any]:
        import loadgen

        layout = self.layout
        series = {
            "package manager": ("/api/invitations", layout.list_manager),
            "baseline manager": ("/baseline/invitations", layout.list_manager),
            "package requester": ("/api/invitations", layout.requester),
        }
        if concurrent:
            series.pop("package requester")
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in series}
        samples: dict[str, list[float]] = {name: [] for name in series}
        names = list(series)
        for r in range(min(ROUNDS, 3) if concurrent else ROUNDS):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                path, user = series[name]

                def make(i: int, path: str = path, user: int = user) -> Any:
                    return loadgen.Req("GET", path, user)

                n, conc = (LIST_CONC_N, 8) if concurrent else (LIST_N, 1)
                result, cpu = self.run_async(
                    self._series(make, n, conc, warm=4, deadline_s=LIST_ROUND_SECONDS)
                )
                stats = self.round_stats(result, cpu)
                if stats["ok"] != stats["n"] or result.errors[:1] not in ([], ["deadline"]):
                    raise RuntimeError(f"list {name}: {stats['statuses']} {result.errors[:3]}")
                rounds[name].append(stats)
                samples[name].extend(s.latency for s in result.ok)
        out: dict[str, Any] = {}
        for name in series:
            agg = aggregate_rounds(
                rounds[name],
                ("p50", "p99", "mean", "server_p50", "server_p99", "rps", "cpu_ms_per_request"),
            )
            agg["all_samples"] = loadgen.summary_ms(samples[name])
            agg["per_round"] = rounds[name]
            out[name] = agg
        pkg, base = out["package manager"], out["baseline manager"]
        out["ratio"] = {
            "p50": ratio(pkg.get("p50"), base.get("p50")),
            "p99": ratio(pkg.get("p99"), base.get("p99")),
            "server_p50": ratio(pkg.get("server_p50"), base.get("server_p50")),
            "cpu_per_request": ratio(pkg.get("cpu_ms_per_request"), base.get("cpu_ms_per_request")),
            "rps": ratio(pkg.get("rps"), base.get("rps")),
        }
        return out

    def create_bench(self, rounds_count: int = ROUNDS) -> dict[str, Any]:
        import loadgen

        layout = self.layout
        salons = layout.write_salons()
        sides = {"package": "/api/invitations", "baseline": "/baseline/invitations"}
        rounds: dict[str, list[dict[str, Any]]] = {s: [] for s in sides}
        # Round -1 warms both sides up (code paths, pooled connections) and is not recorded.
        for r in range(-1, rounds_count):
            order = list(sides) if r % 2 == 0 else list(sides)[::-1]
            for side in order:
                path = sides[side]
                start = self.create_counter

                def make(i: int, path: str = path) -> Any:
                    writer = layout.writer_first + i // len(salons)
                    salon = salons[i % len(salons)]
                    return loadgen.Req(
                        "POST",
                        path,
                        writer,
                        {"salon": salon, "role": "seller", "message": "Benchmark request."},
                    )

                n = CREATE_WARM_N if r < 0 else CREATE_N
                result, cpu = self.run_async(
                    self._series(make, n, 16, warm=0, offset=start, deadline_s=120)
                )
                self.create_counter += n
                stats = self.round_stats(result, cpu)
                if stats["ok"] != stats["n"] or result.errors:
                    bad = [s.body for s in result.samples if s.status >= 300][:3]
                    raise RuntimeError(
                        f"create {side}: {stats['statuses']} {bad} {result.errors[:3]}"
                    )
                if r >= 0:
                    rounds[side].append(stats)
        out: dict[str, Any] = {}
        for side in sides:
            agg = aggregate_rounds(
                rounds[side], ("rps", "p50", "p99", "server_p50", "cpu_ms_per_request")
            )
            agg["per_round"] = rounds[side]
            out[side] = agg
        out["ratio"] = {
            "rps": ratio(out["package"].get("rps"), out["baseline"].get("rps")),
            "p50": ratio(out["package"].get("p50"), out["baseline"].get("p50")),
            "cpu_per_request": ratio(
                out["package"].get("cpu_ms_per_request"),
                out["baseline"].get("cpu_ms_per_request"),
            ),
        }
        return out

    def approve_bench(self) -> dict[str, Any]:
        import loadgen
        import seed
        from django.db import connection

        layout = self.layout
        salons = layout.write_salons()
        per_salon = -(-len(APPROVE_LEVELS) * APPROVE_ROUNDS * APPROVE_N // len(salons))
        users = [layout.approvee_first + a for a in range(per_salon)]
        rows = seed.seed_pending(connection, users=users, salons=salons, role="member")
        # Consecutive requests go to different salons: order by (user, salon).
        by_pair = sorted(rows, key=lambda row: (row[1], salons.index(row[2])))
        targets = [(inv, layout.owner_of(salon)) for inv, _user, salon in by_pair]
        same = layout.same_salon()
        same_rows = seed.seed_pending(
            connection,
            users=[layout.approvee_first + a for a in range(self.totals()["same_salon"])],
            salons=[same],
            role="member",
        )
        same_targets = [(inv, layout.owner_of(same)) for inv, _u, _s in same_rows]
        connection.close()

        def approve_maker(targets: list[tuple[int, int]]) -> Callable[[int], Any]:
            def make(i: int) -> Any:
                inv, owner = targets[i]
                return loadgen.Req("PATCH", f"/api/invitations/{inv}/approved", owner)

            return make

        out: dict[str, Any] = {"different_salons": {}, "same_salon": {}}
        cursor = 0
        for kind, levels, pool in (
            ("different_salons", APPROVE_LEVELS, targets),
            ("same_salon", SAME_SALON_LEVELS, same_targets),
        ):
            cursor = 0
            per_level: dict[int, list[dict[str, Any]]] = {c: [] for c in levels}
            n = APPROVE_N if kind == "different_salons" else APPROVE_N // 2
            for _r in range(APPROVE_ROUNDS):
                for conc in levels:
                    with LockWaitSampler() as sampler:
                        result, cpu = self.run_async(
                            self._series(
                                approve_maker(pool),
                                n,
                                conc,
                                warm=0,
                                offset=cursor,
                                deadline_s=120,
                            )
                        )
                    cursor += n
                    stats = self.round_stats(result, cpu)
                    stats["lock_waits"] = sampler.result()
                    if stats["ok"] != stats["n"] or result.errors:
                        bad = [s.body for s in result.samples if s.status >= 300][:3]
                        raise RuntimeError(f"approve {kind} x{conc}: {stats['statuses']} {bad}")
                    per_level[conc].append(stats)
            for conc, rounds in per_level.items():
                agg = aggregate_rounds(
                    rounds, ("rps", "p50", "p99", "server_p50", "cpu_ms_per_request")
                )
                agg["lock_wait_share"] = round(
                    statistics.median(r["lock_waits"]["share_with_lock_waits"] for r in rounds), 4
                )
                agg["max_backends_waiting"] = max(
                    r["lock_waits"]["max_backends_waiting"] for r in rounds
                )
                agg["per_round"] = rounds
                out[kind][str(conc)] = agg
        diff = out["different_salons"]
        out["scaling_1_to_8"] = ratio(diff["8"].get("rps"), diff["1"].get("rps"))
        same_levels = out["same_salon"]
        out["same_salon_scaling_1_to_8"] = ratio(
            same_levels["8"].get("rps"), same_levels["1"].get("rps")
        )
        return out

    def invite_bench(self) -> dict[str, Any]:
        """Invites (SPEC §7): create (``POST …/invite`` by salon owners) and accept (``POST
        …/invite/<token>/accept`` by the invitees), 16 clients over the write salons, beside
        the request direction's create and approve."""
        import loadgen
        import seed
        from django.db import connection

        from salon_invitations import tokens

        layout = self.layout
        salons = layout.write_salons()
        per_phase = INVITE_N * (ROUNDS + 1)
        # The invitees of the accept phase: accounts whose addresses the invites are for.
        with connection.cursor() as cursor:
            first = seed._users(cursor, "invitee", per_phase)
        accept_tokens = []
        rows = []
        for k in range(per_phase):
            token, digest = tokens.new_token()
            accept_tokens.append((str(token), first + k))
            rows.append((f"invitee{k}@bench.invalid", salons[k % len(salons)], digest))
        seed.seed_invites(connection, rows, owner_of=layout.owner_of)
        connection.close()

        def invite_maker(i: int) -> Any:
            salon = salons[i % len(salons)]
            return loadgen.Req(
                "POST",
                "/api/invitations/invite",
                layout.owner_of(salon),
                {"salon": salon, "role": "member", "email": f"guest{i}@bench.invalid"},
            )

        def accept_maker(i: int) -> Any:
            token, user = accept_tokens[i]
            return loadgen.Req("POST", f"/api/invitations/invite/{token}/accept", user)

        out: dict[str, Any] = {}
        for name, make in (("invite", invite_maker), ("accept", accept_maker)):
            rounds: list[dict[str, Any]] = []
            cursor = 0
            for r in range(-1, ROUNDS):  # round -1 warms up and is not recorded
                result, cpu = self.run_async(
                    self._series(make, INVITE_N, 16, warm=0, offset=cursor, deadline_s=120)
                )
                cursor += INVITE_N
                stats = self.round_stats(result, cpu)
                if stats["ok"] != stats["n"] or result.errors:
                    bad = [s.body for s in result.samples if s.status >= 300][:3]
                    raise RuntimeError(f"{name}: {stats['statuses']} {bad} {result.errors[:3]}")
                if r >= 0:
                    rounds.append(stats)
            agg = aggregate_rounds(
                rounds, ("rps", "p50", "p99", "server_p50", "cpu_ms_per_request")
            )
            agg["per_round"] = rounds
            out[name] = agg
        return out

    def contention_bench(self) -> dict[str, Any]:
        import loadgen
        import seed
        from django.db import connection

        layout = self.layout
        contenders = [layout.contender_first + c for c in range(seed.CONTENDERS)]
        rounds = []
        for r in range(CONTENTION_ROUNDS):
            salon = layout.contention_salon(r)
            owner = layout.owner_of(salon)
            rows = seed.seed_pending(connection, users=contenders, salons=[salon], role="seller")
            targets = [inv for inv, _u, _s in rows]

            def make(i: int, targets: list[int] = targets, owner: int = owner) -> Any:
                return loadgen.Req("PATCH", f"/api/invitations/{targets[i]}/approved", owner)

            def warm(i: int, owner: int = owner) -> Any:
                return loadgen.Req("GET", "/api/invitations?page_size=1", owner)

            async def fire(targets: list[int] = targets, make: Any = make, warm: Any = warm) -> Any:
                clients = loadgen.Clients(self.servers.base_urls, connections=len(targets))
                try:
                    # Open all connections first, so the approvals start together.
                    await loadgen.run_closed_loop(clients, warm, len(targets), len(targets))
                    return await loadgen.run_closed_loop(
                        clients, make, len(targets), len(targets), keep_body=True
                    )
                finally:
                    await clients.aclose()

            with LockWaitSampler(0.002) as sampler:
                result = self.run_async(fire())
            codes: dict[str, int] = {}
            for s in result.samples:
                code = s.body.get("code") if isinstance(s.body, dict) else None
                key = f"{s.status} {code}" if code else str(s.status)
                codes[key] = codes.get(key, 0) + 1
            with connection.cursor() as cur:
                cur.execute(
                    "SELECT status, count(*) FROM salon_invitations_invitation "
                    "WHERE salon_id = %s AND role = 'seller' GROUP BY status",
                    [salon],
                )
                db_status = dict(cur.fetchall())
                cur.execute(
                    "SELECT count(*) FROM salon_invitations_membership "
                    "WHERE salon_id = %s AND role = 'seller'",
                    [salon],
                )
                holders = cur.fetchone()[0]
            first = min(s.sent for s in result.samples) if result.samples else 0
            last = max(s.done for s in result.samples) if result.samples else 0
            rounds.append(
                {
                    "responses": codes,
                    "approved": sum(1 for s in result.samples if s.status == 200),
                    "role_taken": sum(
                        1
                        for s in result.samples
                        if s.status == 409
                        and isinstance(s.body, dict)
                        and s.body.get("code") == "role_taken"
                    ),
                    "server_errors": sum(1 for s in result.samples if s.status >= 500),
                    "transport_errors": len(result.errors),
                    "wall_ms": round((last - first) * 1000, 1),
                    "db_invitations": db_status,
                    "db_seller_holders": holders,
                    "lock_waits": sampler.result(),
                }
            )
        connection.close()
        walls = [r["wall_ms"] for r in rounds]
        return {
            "rounds": rounds,
            "wall_ms_median": round(statistics.median(walls), 1),
            "wall_ms_max": max(walls),
            "all_correct": all(
                r["approved"] == 1
                and r["role_taken"] == len(contenders) - 1
                and r["server_errors"] == 0
                and r["transport_errors"] == 0
                and r["db_seller_holders"] == 1
                for r in rounds
            ),
        }

    def fanout_users(
        self,
    ) -> tuple[list[int], dict[int, tuple[int, int, list[int]]], dict[int, str]]:
        """The connecting users (per salon: owner, admin, requesters), the salons' members
        and a real simplejwt access token for each user."""
        import seed
        from django.contrib.auth import get_user_model
        from rest_framework_simplejwt.tokens import AccessToken

        layout = self.layout
        per_salon = 2 + seed.FANOUT_REQUESTERS_PER_SALON
        nsalons = max(1, min(seed.FANOUT_SALONS, FANOUT_CONNECTIONS // per_salon))
        users: list[int] = []
        members: dict[int, tuple[int, int, list[int]]] = {}
        for k, salon in enumerate(layout.fanout_salons()[:nsalons]):
            owner, admin = layout.owner_of(salon), layout.fanout_admin(k)
            fans = [layout.fanout_requester(k, j) for j in range(seed.FANOUT_REQUESTERS_PER_SALON)]
            members[salon] = (owner, admin, fans)
            users += [owner, admin, *fans]
        User = get_user_model()
        tokens = {u: str(AccessToken.for_user(User(id=u))) for u in users}
        return users, members, tokens

    def idle_check(self, servers: ServerSet, idle_s: float) -> dict[str, Any]:
        """Connect every fan-out user, stay idle ``idle_s`` seconds, count the connections
        still open, disconnect all at once; count the servers' logged errors."""
        import fanout

        users, _members, tokens = self.fanout_users()
        errors_before = servers.log_text().count("Exception in ASGI application")

        async def scenario() -> dict[str, Any]:
            conns, _connect_s, errors = await fanout.connect_all(
                servers.ws_urls, users, tokens, path="/ws/api/invitation_to_auto_salon/"
            )
            await asyncio.sleep(idle_s)
            alive = sum(
                1 for c in conns if c.closed_code is None and c.reader and not c.reader.done()
            )
            await fanout.close_all(conns)
            await asyncio.sleep(2.0)
            return {
                "connections": len(conns),
                "connect_errors": len(errors),
                "alive_after_idle": alive,
            }

        out = asyncio.run(scenario())
        text = servers.log_text()
        out["idle_seconds"] = idle_s
        out["server_exceptions"] = text.count("Exception in ASGI application") - errors_before
        out["redis_timeouts"] = text.count("redis.exceptions.TimeoutError")
        out["redis_pool_exhausted"] = text.count("MaxConnectionsError")
        return out

    def default_pool_check(self) -> dict[str, Any]:
        """The same idle check on servers using the channel layer's default Redis pool."""
        return self.with_servers(
            "-defaultpool",
            {"BENCH_REDIS_DEFAULT_POOL": "1"},
            lambda: self.idle_check(self.servers, FANOUT_IDLE_SECONDS),
        )

    def with_servers(self, tag: str, env: dict[str, str], action: Callable[[], Any]) -> Any:
        """Run ``action`` against a second set of servers started with ``env`` (the main
        set must be stopped)."""
        servers = ServerSet(SERVERS, tag, env)
        self.extra_servers.append(servers)
        main = self.servers
        try:
            servers.start()
            self.servers = servers
            return action()
        finally:
            self.servers = main
            servers.stop()

    def fanout_bench(self) -> dict[str, Any]:
        import fanout
        import loadgen
        import seed

        users, members, tokens = self.fanout_users()
        salons = list(members)
        nsalons = len(salons)
        per_salon = seed.FANOUT_REQUESTERS_PER_SALON
        errors_before = self.servers.log_text().count("Exception in ASGI application")
        creates = FANOUT_EVENTS // 2
        if creates * len(FANOUT_RATES) > nsalons * per_salon:
            raise RuntimeError("not enough fan-out requesters for the requested events")

        def plan_for(stream: int) -> list[tuple[int, int]]:
            """(salon, requester) of each create of one stream, cycling through the salons;
            every stream uses requesters of its own."""
            plan = []
            for e in range(stream * creates, (stream + 1) * creates):
                salon = salons[e % nsalons]
                plan.append((salon, members[salon][2][(e // nsalons) % per_salon]))
            return plan

        async def run_stream(conns: list[Any], rate: float, stream: int) -> dict[str, Any]:
            """Creates (a requester asks), then approvals (the owner decides), at ``rate``
            events/s, at most 8 in flight."""
            plan = plan_for(stream)
            for conn in conns:
                conn.frames = []
            clients = loadgen.Clients(self.servers.base_urls, connections=8)
            events: list[fanout.Event] = []
            http_errors: list[str] = []
            sem = asyncio.Semaphore(8)

            async def fire(
                i: int, method: str, path: str, user: int, body: Any, kind: str,
                recipients: frozenset[int],
            ) -> int | None:  # fmt: skip
                async with sem:
                    sent = time.perf_counter()
                    try:
                        response = await clients.pick(i).request(
                            method, path, headers={"X-Bench-User": str(user)}, json=body
                        )
                    except Exception as exc:
                        http_errors.append(repr(exc))
                        return None
                    done = time.perf_counter()
                    if response.status_code >= 300:
                        http_errors.append(f"{response.status_code} {response.text[:200]}")
                        return None
                    inv = response.json()["id"]
                    events.append(
                        fanout.Event(kind, inv, recipients, sent, done, response.status_code)
                    )
                    return inv

            async def paced(calls: list[tuple[Any, ...]]) -> list[int | None]:
                start = time.perf_counter()
                tasks = []
                for i, call in enumerate(calls):
                    await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
                    tasks.append(asyncio.create_task(fire(i, *call)))
                return await asyncio.wait_for(asyncio.gather(*tasks), 300)

            begin = time.perf_counter()
            try:
                created = await paced(
                    [
                        (
                            "POST", "/api/invitations", requester,
                            {"salon": salon, "role": "member", "message": "fan-out"},
                            "invitation.created",
                            frozenset({requester, *members[salon][:2]}),
                        )
                        for salon, requester in plan
                    ]
                )  # fmt: skip
                await paced(
                    [
                        (
                            "PATCH", f"/api/invitations/{inv}/approved", members[salon][0],
                            None, "invitation.approved",
                            frozenset({requester, *members[salon][:2]}),
                        )
                        for (salon, requester), inv in zip(plan, created, strict=True)
                        if inv is not None
                    ]
                )  # fmt: skip
            finally:
                await clients.aclose()
            duration = time.perf_counter() - begin
            # Wait (bounded) for the last frames.
            deadline = time.perf_counter() + 10
            expected = sum(1 for e in events for c in conns if c.user in e.recipients)
            while time.perf_counter() < deadline:
                if sum(len(c.frames) for c in conns) >= expected:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)  # frames to non-recipients would have arrived by now
            analysis = fanout.analyse(events, conns)
            out: dict[str, Any] = {
                "rate": rate,
                "events": len(events),
                "seconds": round(duration, 2),
                "http_errors": http_errors[:5],
                "http_error_count": len(http_errors),
                "http_ms": loadgen.summary_ms([e.done - e.sent for e in events]),
            }
            for key in ("from_response", "from_request"):
                out[f"latency_{key}_ms"] = loadgen.summary_ms(analysis.pop(key))
            for kind, values in analysis.pop("from_response_by_kind").items():
                out[f"latency_from_response_ms {kind}"] = loadgen.summary_ms(values)
            out.update(analysis)
            return out

        async def scenario() -> dict[str, Any]:
            rss_before = self.servers.rss_kib()
            conns, connect_s, errors = await fanout.connect_all(
                self.servers.ws_urls, users, tokens, path="/ws/api/invitation_to_auto_salon/"
            )
            try:
                await asyncio.sleep(FANOUT_IDLE_SECONDS)  # idle
                rss_after = self.servers.rss_kib()
                alive = sum(
                    1 for c in conns if c.closed_code is None and c.reader and not c.reader.done()
                )
                streams = {}
                for stream, rate in enumerate(FANOUT_RATES):
                    streams[str(rate)] = await run_stream(conns, rate, stream)
                per_server = [sum(1 for c in conns if c.server == i) for i in range(SERVERS)]
            finally:
                await fanout.close_all(conns)
                await asyncio.sleep(2.0)
            return {
                "connections": len(conns),
                "connections_alive_after_idle": alive,
                "connections_per_server": per_server,
                "connect_seconds": round(connect_s, 2),
                "connect_errors": errors[:5],
                "connect_error_count": len(errors),
                "rss_kib_before": rss_before,
                "rss_kib_after": rss_after,
                "streams": streams,
            }

        raw = self.run_async(scenario())
        raw["idle_seconds"] = FANOUT_IDLE_SECONDS
        raw["server_exceptions"] = (
            self.servers.log_text().count("Exception in ASGI application") - errors_before
        )
        delta = sum(raw["rss_kib_after"]) - sum(raw["rss_kib_before"])
        raw["memory_per_connection_kib"] = round(delta / max(1, raw["connections"]), 1)
        # The first rate is the headline; every stream is kept under "streams".
        raw.update(raw["streams"][str(FANOUT_RATES[0])])
        return raw

    # The whole run --------------------------------------------------------------------------

    def snapshot(self) -> tuple[float, float, float]:
        pids = [os.getpid()]
        for server_set in (self.servers, *self.extra_servers):
            pids += [s.process.pid for s in server_set.servers if s.process is not None]
        try:
            return cpu_snapshot(pids)
        except OSError:
            return (time.monotonic(), 0.0, 0.0)

    def phase(self, name: str, action: Callable[[], Any]) -> Any:
        """Run one measurement and note how many cores other processes used meanwhile."""
        before = self.snapshot()
        try:
            return action()
        finally:
            self.results.setdefault("other_cores", {})[name] = other_cores(before, self.snapshot())

    def run(self) -> None:
        log(f"{'quick' if QUICK else 'full'} run; scales {SCALES}, main {MAIN_SCALE}")
        self.results["machine"] = machine_info()
        self.results["load_before"] = os.getloadavg()
        started = time.perf_counter()
        create_database()
        self.setup_django()
        self.seed_base()
        self.servers.start()
        log(f"servers on {', '.join(self.servers.base_urls)}")
        deadlocks0 = pg_query(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = %s", [DB_NAME]
        )[0][0]
        for scale in SCALES:
            entry: dict[str, Any] = self.grow(scale)
            log(f"[{scale}] list, 1 client")
            entry["list"] = self.phase(f"list {scale}", lambda: self.list_bench(concurrent=False))
            log(f"[{scale}] list ratio p50 {entry['list']['ratio']['p50']}")
            entry["explain"] = self.explain()
            self.results["scales"][str(scale)] = entry
            if scale != MAIN_SCALE:
                continue
            log(f"[{scale}] list, 8 clients")
            entry["list_concurrent"] = self.phase(
                "list, 8 clients", lambda: self.list_bench(concurrent=True)
            )
            log(f"[{scale}] query counts, in-process profile")
            self.results["query_counts"] = self.query_counts()
            self.results["in_process"] = self.profile()
            log(f"[{scale}] create, 16 clients")
            self.results["create"] = self.phase("create", self.create_bench)
            log(f"[{scale}] create ratio {self.results['create']['ratio']}")
            log(f"[{scale}] approve, 1..16 clients")
            self.results["approve"] = self.phase("approve", self.approve_bench)
            log(f"[{scale}] approve 1->8 scaling {self.results['approve']['scaling_1_to_8']}")
            log(f"[{scale}] invites: create and accept, 16 clients")
            self.results["invites"] = self.phase("invites", self.invite_bench)
            log(
                f"[{scale}] invites {self.results['invites']['invite'].get('rps')} / "
                f"{self.results['invites']['accept'].get('rps')} req/s"
            )
            log(f"[{scale}] contention")
            self.results["contention"] = self.phase("contention", self.contention_bench)
            log(f"[{scale}] contention correct: {self.results['contention']['all_correct']}")
            log(f"[{scale}] fan-out, {FANOUT_CONNECTIONS} connections")
            self.results["fanout"] = self.phase("fan-out", self.fanout_bench)
            log(f"[{scale}] fan-out p99 {self.results['fanout']['latency_from_response_ms']}")
            log(f"[{scale}] idle connections with the default Redis pool settings")
            self.servers.stop()
            self.results["default_pool_idle"] = self.default_pool_check()
            log(f"[{scale}] default pool: {self.results['default_pool_idle']}")
            log(f"[{scale}] create, 16 clients, servers without notification backends")
            self.results["create_without_notifications"] = self.with_servers(
                "-silent",
                {"BENCH_NO_NOTIFICATIONS": "1"},
                lambda: self.create_bench(SILENT_ROUNDS),
            )
            log(f"[{scale}] ratio {self.results['create_without_notifications']['ratio']}")
            self.servers.start()
        # Backends flush their statistics to pg_stat_database when they exit: stop the
        # servers (closing their pools) first.
        self.servers.stop()
        time.sleep(2)
        deadlocks1 = pg_query(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = %s", [DB_NAME]
        )[0][0]
        logs = self.servers.log_text()
        every_log = logs + "".join(extra.log_text() for extra in self.extra_servers)
        self.results["deadlocks"] = {
            "pg_stat_database": int(deadlocks1 - deadlocks0),
            "in_server_logs": every_log.lower().count("deadlock detected"),
        }
        self.results["server_log_errors"] = logs.count("Traceback")
        self.results["server_log_exceptions"] = logs.count("Exception in ASGI application")
        self.results["load_after"] = os.getloadavg()
        self.results["total_seconds"] = round(time.perf_counter() - started, 1)


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "-"


def machine_info() -> dict[str, Any]:
    cpu_model = "-"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    pg_version = "-"
    with contextlib.suppress(Exception):
        import psycopg

        with psycopg.connect(dbname="postgres", autocommit=True, **pg_params()) as conn:
            pg_version = conn.execute("SHOW server_version").fetchone()[0]
    redis_version = "-"
    with contextlib.suppress(Exception):
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
        redis_version = client.info("server")["redis_version"]
        client.close()
    commit = "-"
    with contextlib.suppress(Exception):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        if dirty:
            commit += " (src/ modified)"
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "cpu_model": cpu_model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "django": _version("django"),
        "djangorestframework": _version("djangorestframework"),
        "channels": _version("channels"),
        "channels_redis": _version("channels-redis"),
        "uvicorn": _version("uvicorn"),
        "uvloop": _version("uvloop"),
        "httptools": _version("httptools"),
        "websockets": _version("websockets"),
        "httpx": _version("httpx"),
        "psycopg": _version("psycopg"),
        "django_salon_invitations": _version("django-salon-invitations"),
        "postgresql": pg_version,
        "redis": redis_version,
        "commit": commit,
    }


def main() -> int:
    RESULTS_DIR.mkdir(exist_ok=True)
    LOG_DIR.mkdir(exist_ok=True)
    for old in LOG_DIR.glob("uvicorn*.log"):
        old.unlink()

    def on_signal(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    bench = Bench()
    status = 0
    try:
        bench.run()
    except BaseException as exc:
        status = exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) else 1
        bench.results["error"] = "".join(traceback.format_exception(exc))
        log(f"FAILED: {exc!r}")
        traceback.print_exc()
    finally:
        bench.servers.stop()
        for extra in bench.extra_servers:
            extra.stop()
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        if not os.environ.get("BENCH_KEEP_DB"):
            with contextlib.suppress(Exception):
                drop_database()
        with contextlib.suppress(Exception):
            redis_cleanup()
    name = "quick" if QUICK else "results"
    if status != 0:
        name += "-failed"  # a failed run never replaces the results of a good one
    out = RESULTS_DIR / f"{name}.json"
    out.write_text(json.dumps(bench.results, indent=1, default=str) + "\n")
    log(f"wrote {out.relative_to(REPO)}")
    if status == 0:
        import report

        write_docs = not QUICK or bool(os.environ.get("BENCH_WRITE_DOCS"))
        for path in report.render(bench.results, write_docs=write_docs):
            log(f"wrote {path.relative_to(REPO)}")
    return status


if __name__ == "__main__":
    sys.exit(main())
