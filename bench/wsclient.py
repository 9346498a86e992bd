"""WebSocket clients: sockets held open in client processes of their own (:class:`ClientPool`)
recording each frame they receive, the analysis of who received which frame when, and the
connection storm.

Frames and events carry ``time.perf_counter()``, the storm ``time.monotonic()``: both are
CLOCK_MONOTONIC on Linux, one clock for every process of the machine, so "receipt minus HTTP
response" is well defined across the client processes and the benchmark's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import websockets
from runner import proc_cpu_seconds


@dataclass
class Conn:
    user: int
    server: int  # index of the server process it is connected to
    ws: Any = None
    frames: list[tuple[float, str, Any]] = field(default_factory=list)  # (time, type, id)
    reader: asyncio.Task[None] | None = None


async def _read(conn: Conn) -> None:
    with contextlib.suppress(Exception):  # a broken connection ends its reader: missing frames
        async for message in conn.ws:
            now = time.perf_counter()
            try:
                data = json.loads(message)
            except ValueError:
                conn.frames.append((now, "invalid", None))
                continue
            invitation = data.get("invitation") if isinstance(data, dict) else None
            conn.frames.append(
                (now, str(data.get("type")), invitation.get("id") if invitation else None)
            )


async def open_conns(
    conns: Sequence[Conn], ws_bases: Sequence[str], tokens: dict[int, str], path: str,
    timeout_s: float, batch: int = 50,
) -> tuple[list[Conn], float, list[str]]:  # fmt: skip
    """Open ``conns``, ``batch`` at a time: those connected, the seconds it took, the
    errors."""
    errors: list[str] = []
    start = time.perf_counter()

    async def open_one(conn: Conn) -> None:
        url = f"{ws_bases[conn.server]}{path}?token={tokens[conn.user]}"
        try:
            conn.ws = await websockets.connect(
                url, ping_interval=None, open_timeout=30, close_timeout=2, max_queue=None
            )
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            return
        conn.reader = asyncio.create_task(_read(conn))

    for lo in range(0, len(conns), batch):
        if time.perf_counter() > start + timeout_s:
            errors.append("connect deadline")
            break
        await asyncio.gather(*(open_one(c) for c in conns[lo : lo + batch]))
    return [c for c in conns if c.ws is not None], time.perf_counter() - start, errors


async def close_all(conns: Sequence[Conn], batch: int | None, timeout_s: float = 30.0) -> None:
    """Close ``conns``: all at once, or ``batch`` at a time."""

    async def close_one(conn: Conn) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.ws.close(), 5)
        conn.reader.cancel()
        with contextlib.suppress(BaseException):
            await conn.reader

    size = batch or max(1, len(conns))
    for lo in range(0, len(conns), size):
        closing = asyncio.gather(*(close_one(c) for c in conns[lo : lo + size]))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(closing, timeout_s)


def _serve(
    pipe: Any, plan: list[tuple[int, int]], tokens: dict[int, str], ws_bases: list[str], path: str
) -> None:
    """A client process: open the sockets of ``plan`` ((user, server) pairs), then answer the
    parent's commands until ``("close", batch)``."""

    async def main() -> None:
        conns = [Conn(user=u, server=s) for u, s in plan]
        timeout_s = 120.0 + len(conns) / 20
        connected, seconds, errors = await open_conns(conns, ws_bases, tokens, path, timeout_s)
        pipe.send((len(connected), seconds, errors[:5], len(errors)))
        loop = asyncio.get_running_loop()
        while True:
            command = await loop.run_in_executor(None, pipe.recv)
            if command == "reset":
                for conn in connected:
                    conn.frames = []
                pipe.send(None)
            elif command == "count":
                pipe.send(sum(len(c.frames) for c in connected))
            elif command == "alive":
                pipe.send(sum(1 for c in connected if c.reader and not c.reader.done()))
            elif command == "collect":
                pipe.send([(c.user, c.server, c.frames) for c in connected])
            else:
                await close_all(connected, batch=command[1])
                pipe.send(None)
                return

    asyncio.run(main())


class ClientPool:
    """``len(users)`` sockets (user ``users[i]`` on server ``i % servers``) spread over
    ``processes`` client processes, so that reading thousands of sockets does not queue
    behind the load generator's event loop."""

    def __init__(
        self, ws_bases: Sequence[str], users: Sequence[int], tokens: dict[int, str], *,
        path: str, processes: int,
    ) -> None:  # fmt: skip
        context = multiprocessing.get_context("spawn")
        self.users = list(users)
        plan = [(u, i % len(ws_bases)) for i, u in enumerate(users)]
        self.pipes, self.processes = [], []
        for k in range(processes):
            parent, child = context.Pipe()
            share = plan[k::processes]
            mine = {u: tokens[u] for u, _s in share}
            process = context.Process(
                target=_serve, args=(child, share, mine, list(ws_bases), path), daemon=True
            )
            process.start()
            self.pipes.append(parent)
            self.processes.append(process)
        opened = [pipe.recv() for pipe in self.pipes]  # each answers once it has connected
        self.connections = sum(o[0] for o in opened)
        self.connect_seconds = max(o[1] for o in opened)
        self.errors = [e for o in opened for e in o[2]]
        self.error_count = sum(o[3] for o in opened)
        self.per_server = [sum(1 for _u, s in plan if s == i) for i in range(len(ws_bases))]

    def ask(self, command: Any) -> list[Any]:
        for pipe in self.pipes:
            pipe.send(command)
        return [pipe.recv() for pipe in self.pipes]

    def collect(self) -> list[Conn]:
        answers = self.ask("collect")
        return [Conn(user=u, server=s, frames=f) for answer in answers for u, s, f in answer]

    def cpu_seconds(self) -> float:
        return sum(proc_cpu_seconds(p.pid) for p in self.processes)

    def close(self, batch: int | None = 200) -> None:
        """Close the sockets, ``batch`` at a time (``None``: all at once), and the processes."""
        with contextlib.suppress(Exception):
            self.ask(("close", batch))
        for process in self.processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()


@dataclass
class Event:
    kind: str  # "invitation.created" | "invitation.approved"
    invitation: int
    recipients: frozenset[int]
    sent: float
    done: float
    status: int


def analyse(events: Sequence[Event], conns: Sequence[Conn]) -> dict[str, Any]:
    """Latencies (receipt - HTTP response, and receipt - request sent) at every recipient
    connection, frames at non-recipients, missing deliveries."""
    by_key = {(e.kind, e.invitation): e for e in events}
    expected = sum(1 for conn in conns for e in events if conn.user in e.recipients)
    from_response: list[float] = []
    from_request: list[float] = []
    by_kind: dict[str, list[float]] = {}
    non_recipient = unexpected = duplicates = 0
    got: set[tuple[str, int, int]] = set()
    for i, conn in enumerate(conns):
        for t, kind, inv in conn.frames:
            event = by_key.get((kind, inv))
            if event is None:
                unexpected += 1
            elif conn.user not in event.recipients:
                non_recipient += 1
            elif (kind, inv, i) in got:
                duplicates += 1
            else:
                got.add((kind, inv, i))
                by_kind.setdefault(kind, []).append(t - event.done)
                from_response.append(t - event.done)
                from_request.append(t - event.sent)
    return {
        "expected_deliveries": expected,
        "delivered": len(got),
        "missing": expected - len(got),
        "non_recipient_frames": non_recipient,
        "unexpected_frames": unexpected,
        "duplicate_frames": duplicates,
        "from_response": from_response,
        "from_request": from_request,
        "from_response_by_kind": by_kind,
        "before_response": sum(1 for v in from_response if v < 0),
    }


class Attempt(NamedTuple):
    """One socket of a connection storm; times in seconds from the storm's start."""

    server: int
    due: float  # when it was planned to open
    started: float  # when the client began the TCP connection
    opened: float | None  # the server's 101 received: the consumer accepted
    first: float | None  # the first frame received
    outcome: str


async def storm(
    plan: Sequence[tuple[int, float, str]], start_at: float, first_frame: str,
    open_timeout: float, frame_timeout: float, hold_s: float = 1.0,
) -> list[Attempt]:  # fmt: skip
    """Open one socket per ``(server index, due, url)`` of ``plan`` at ``start_at + due``
    (``time.monotonic()``); each waits for the consumer's accept and then for its first frame,
    which must be of type ``first_frame``. Every socket stays open until all have an outcome
    (and ``hold_s`` more), then all are closed."""
    sockets: list[Any] = []

    async def one(server: int, due: float, url: str) -> Attempt:
        await asyncio.sleep(max(0.0, start_at + due - time.monotonic()))
        started = time.monotonic() - start_at

        def failed(outcome: str, opened: float | None = None) -> Attempt:
            return Attempt(server, due, started, opened, None, outcome)

        try:
            ws = await websockets.connect(
                url, open_timeout=open_timeout, ping_interval=None, close_timeout=2, max_queue=None
            )
        except websockets.InvalidStatus as exc:
            return failed(f"HTTP {exc.response.status_code} instead of 101")
        except websockets.InvalidMessage:
            return failed("connection closed without an HTTP response")
        except TimeoutError:
            return failed(f"no 101 within {open_timeout:.0f} s")
        except Exception as exc:
            return failed(f"before 101: {type(exc).__name__}")
        opened = time.monotonic() - start_at
        sockets.append(ws)
        try:
            message = await asyncio.wait_for(ws.recv(), frame_timeout)
        except websockets.ConnectionClosed as exc:
            return failed(
                f"closed {exc.rcvd.code if exc.rcvd is not None else 1006} after 101", opened
            )
        except TimeoutError:
            return failed(f"no frame within {frame_timeout:.0f} s", opened)
        first = time.monotonic() - start_at
        try:
            kind = json.loads(message).get("type")
        except (ValueError, AttributeError):
            kind = "invalid"
        outcome = "ok" if kind == first_frame else f"first frame {kind}"
        return Attempt(server, due, started, opened, first, outcome)

    attempts = await asyncio.gather(*(one(*p) for p in plan))
    await asyncio.sleep(hold_s)
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return attempts
