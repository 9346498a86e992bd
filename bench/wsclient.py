"""WebSocket fan-out: many idle connections, a stream of invitation events over HTTP, and who
received which frame when.

Every connection records ``(perf_counter(), type, invitation id)`` for each frame it receives.
``perf_counter()`` is CLOCK_MONOTONIC, the same clock the HTTP driver uses, so "receipt minus
HTTP response" is well defined within this one client process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import websockets


@dataclass
class Conn:
    user: int
    server: int  # index of the server process it is connected to
    ws: Any = None
    frames: list[tuple[float, str, Any]] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None
    closed_code: int | None = None


async def _read(conn: Conn) -> None:
    try:
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
    except websockets.ConnectionClosed as exc:
        conn.closed_code = exc.code if hasattr(exc, "code") else None
    except asyncio.CancelledError:
        raise
    except Exception:  # a broken connection ends its reader; it shows as missing frames
        conn.closed_code = -1


async def connect_all(
    ws_bases: Sequence[str],
    users: Sequence[int],
    tokens: dict[int, str],
    *,
    path: str,
    batch: int = 50,
    timeout_s: float = 120.0,
) -> tuple[list[Conn], float, list[str]]:
    """Open one connection per user, alternating between the servers, ``batch`` at a time.
    Returns the connections, the seconds it took, and the errors."""
    conns = [Conn(user=u, server=i % len(ws_bases)) for i, u in enumerate(users)]
    return await open_conns(conns, ws_bases, tokens, path=path, batch=batch, timeout_s=timeout_s)


async def open_conns(
    conns: Sequence[Conn],
    ws_bases: Sequence[str],
    tokens: dict[int, str],
    *,
    path: str,
    batch: int = 50,
    timeout_s: float = 120.0,
) -> tuple[list[Conn], float, list[str]]:
    """Open ``conns``, ``batch`` at a time: those connected, the seconds it took, the
    errors."""
    errors: list[str] = []
    deadline = time.perf_counter() + timeout_s
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
        if time.perf_counter() > deadline:
            errors.append("connect deadline")
            break
        await asyncio.gather(*(open_one(c) for c in conns[lo : lo + batch]))
    return [c for c in conns if c.ws is not None], time.perf_counter() - start, errors


async def close_all(
    conns: Sequence[Conn], timeout_s: float = 30.0, *, batch: int | None = None
) -> None:
    """Close ``conns``: all at once, or ``batch`` at a time."""
    if batch is not None:
        for lo in range(0, len(conns), batch):
            await close_all(conns[lo : lo + batch], timeout_s)
        return

    async def close_one(conn: Conn) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.ws.close(), 5)
        if conn.reader is not None:
            conn.reader.cancel()
            with contextlib.suppress(BaseException):
                await conn.reader

    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(close_one(c) for c in conns)), timeout_s)


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
    wanted: dict[tuple[str, int], set[int]] = {}
    for i, conn in enumerate(conns):
        for e in events:
            if conn.user in e.recipients:
                wanted.setdefault((e.kind, e.invitation), set()).add(i)
    from_response: list[float] = []
    from_request: list[float] = []
    by_kind: dict[str, list[float]] = {}
    non_recipient = 0
    unexpected = 0
    duplicates = 0
    got: dict[tuple[str, int], set[int]] = {}
    for i, conn in enumerate(conns):
        for t, kind, inv in conn.frames:
            event = by_key.get((kind, inv))
            if event is None:
                unexpected += 1
                continue
            if conn.user not in event.recipients:
                non_recipient += 1
                continue
            seen = got.setdefault((kind, inv), set())
            if i in seen:
                duplicates += 1
                continue
            seen.add(i)
            by_kind.setdefault(kind, []).append(t - event.done)
            from_response.append(t - event.done)
            from_request.append(t - event.sent)
    expected = sum(len(v) for v in wanted.values())
    delivered = sum(len(v) for v in got.values())
    return {
        "expected_deliveries": expected,
        "delivered": delivered,
        "missing": expected - delivered,
        "non_recipient_frames": non_recipient,
        "unexpected_frames": unexpected,
        "duplicate_frames": duplicates,
        "from_response": from_response,
        "from_request": from_request,
        "from_response_by_kind": by_kind,
        "before_response": sum(1 for v in from_response if v < 0),
    }


# Sockets in processes of their own ------------------------------------------------------------


def _serve(pipe: Any, plan: list[tuple[int, int]], tokens: dict[int, str], *args: Any) -> None:
    """A client process: open the sockets of ``plan`` ((user, server) pairs), then answer the
    parent's commands until "close"."""
    ws_bases, path = args

    async def main() -> None:
        conns = [Conn(user=u, server=s) for u, s in plan]
        connected, seconds, errors = await open_conns(
            conns, ws_bases, tokens, path=path, timeout_s=120.0 + len(conns) / 20
        )
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
                await close_all(connected, batch=200)
                pipe.send(None)
                return

    asyncio.run(main())


class ClientPool:
    """``len(users)`` sockets (user ``users[i]`` on server ``i % servers``) spread over
    ``processes`` client processes, so that reading thousands of sockets does not queue
    behind the load generator's event loop. Frames carry ``perf_counter()``, which is
    CLOCK_MONOTONIC on Linux: one clock for every process of the machine."""

    def __init__(
        self,
        ws_bases: Sequence[str],
        users: Sequence[int],
        tokens: dict[int, str],
        *,
        path: str,
        processes: int,
    ) -> None:
        import multiprocessing

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

    def ask(self, command: str) -> list[Any]:
        for pipe in self.pipes:
            pipe.send(command)
        return [pipe.recv() for pipe in self.pipes]

    def collect(self) -> list[Conn]:
        return [
            Conn(user=u, server=s, frames=frames)
            for answer in self.ask("collect")
            for u, s, frames in answer
        ]

    def cpu_seconds(self) -> float:
        from runner import proc_cpu_seconds

        return sum(proc_cpu_seconds(p.pid) for p in self.processes)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ask("close")
        for process in self.processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()


@dataclass
class Attempt:
    """One socket of a connection storm. Times are ``time.monotonic()`` (CLOCK_MONOTONIC,
    the same in every process of the machine) minus the storm's start."""

    server: int
    due: float  # when it was planned to open
    started: float = 0.0  # when the client began the TCP connection
    opened: float | None = None  # the server's 101 received: the consumer accepted
    first: float | None = None  # the first frame received
    outcome: str = "ok"


async def storm(
    plan: Sequence[tuple[int, float, str]],
    start_at: float,
    *,
    first_frame: str,
    open_timeout: float,
    frame_timeout: float,
    hold_s: float = 1.0,
) -> list[Attempt]:
    """Open one socket per ``(server index, due, url)`` of ``plan`` at ``start_at + due``
    (monotonic clock); each waits for the consumer's accept and then for its first frame,
    which must be of type ``first_frame``. Every socket stays open until all have an outcome
    (and ``hold_s`` more), then all are closed."""
    attempts = [Attempt(server=server, due=due) for server, due, _url in plan]
    sockets: list[Any] = []

    async def one(attempt: Attempt, url: str) -> None:
        await asyncio.sleep(max(0.0, start_at + attempt.due - time.monotonic()))
        attempt.started = time.monotonic() - start_at
        try:
            ws = await websockets.connect(
                url, open_timeout=open_timeout, ping_interval=None, close_timeout=2,
                max_queue=None,
            )  # fmt: skip
        except websockets.InvalidStatus as exc:
            attempt.outcome = f"HTTP {exc.response.status_code} instead of 101"
            return
        except websockets.InvalidMessage:
            attempt.outcome = "connection closed without an HTTP response"
            return
        except TimeoutError:
            attempt.outcome = f"no 101 within {open_timeout:.0f} s"
            return
        except Exception as exc:
            attempt.outcome = f"before 101: {type(exc).__name__}"
            return
        attempt.opened = time.monotonic() - start_at
        sockets.append(ws)
        try:
            message = await asyncio.wait_for(ws.recv(), frame_timeout)
        except websockets.ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else 1006
            attempt.outcome = f"closed {code} after 101"
            return
        except TimeoutError:
            attempt.outcome = f"no frame within {frame_timeout:.0f} s"
            return
        attempt.first = time.monotonic() - start_at
        try:
            kind = json.loads(message).get("type")
        except (ValueError, AttributeError):
            kind = "invalid"
        if kind != first_frame:
            attempt.outcome = f"first frame {kind}"

    await asyncio.gather(*(one(a, url) for a, (_s, _d, url) in zip(attempts, plan, strict=True)))
    await asyncio.sleep(hold_s)
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return attempts
