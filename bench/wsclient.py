"""WebSocket clients: sockets held open in client processes of their own (:class:`ClientPool`),
the analysis of who received which frame when (:func:`analyse`), the reconnect storm's sockets
(:func:`storm`). Frames and events carry ``time.perf_counter()``, the storm ``time.monotonic()``:
both are CLOCK_MONOTONIC on Linux, one clock for every process of the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import websockets
from loadgen import summary_ms
from runner import WS_PATH, proc_cpu_seconds


async def _read(ws: Any, frames: list[tuple[float, str, Any]]) -> None:
    """Append ``(time, type, invitation id)`` for each frame until the connection ends."""
    with contextlib.suppress(Exception):  # a broken connection ends its reader: missing frames
        async for message in ws:
            now = time.perf_counter()
            try:
                data = json.loads(message)
            except ValueError:
                data = None
            if not isinstance(data, dict):
                data = {"type": "invalid"}
            invitation = data.get("invitation") or {}
            frames.append((now, str(data.get("type")), invitation.get("id")))


class _Socket(NamedTuple):
    user: int
    ws: Any
    reader: asyncio.Task[None]
    frames: list[tuple[float, str, Any]]  # (time, type, invitation id)


def _serve(pipe: Any, plan: list[tuple[int, str]]) -> None:
    """A client process: open a socket per ``(user, url)`` of ``plan``, 50 at a time, then
    answer the parent's commands until ``("close", batch)``."""

    async def main() -> None:
        opened: list[_Socket | None] = [None] * len(plan)
        errors: list[str] = []
        start = time.perf_counter()

        async def connect(i: int, user: int, url: str) -> None:
            try:
                ws = await websockets.connect(
                    url, ping_interval=None, open_timeout=30, close_timeout=2, max_queue=None
                )
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                return
            frames: list[Any] = []
            opened[i] = _Socket(user, ws, asyncio.create_task(_read(ws, frames)), frames)

        async def close(conn: _Socket) -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.ws.close(), 5)
            conn.reader.cancel()
            with contextlib.suppress(BaseException):
                await conn.reader

        for lo in range(0, len(plan), 50):
            if time.perf_counter() > start + 120.0 + len(plan) / 20:
                errors.append("connect deadline")
                break
            batch = enumerate(plan[lo : lo + 50], lo)
            await asyncio.gather(*(connect(i, user, url) for i, (user, url) in batch))
        conns = [c for c in opened if c is not None]
        pipe.send((len(conns), time.perf_counter() - start, errors[:5], len(errors)))
        loop = asyncio.get_running_loop()
        while True:
            command = await loop.run_in_executor(None, pipe.recv)
            if command == "count":
                pipe.send(sum(len(c.frames) for c in conns))
            elif command == "users":
                pipe.send([c.user for c in conns])
            elif command == "alive":
                pipe.send(sum(1 for c in conns if not c.reader.done()))
            elif command == "take":  # the frames so far, forgotten here
                pipe.send([(c.user, c.frames) for c in conns])
                for c in conns:
                    c.frames.clear()
            else:  # ("close", batch): batch at a time, or all at once
                break
        size = command[1] or max(1, len(conns))
        for lo in range(0, len(conns), size):
            closing = asyncio.gather(*(close(c) for c in conns[lo : lo + size]))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(closing, 30.0)
        pipe.send(None)

    asyncio.run(main())


class ClientPool:
    """A socket for each of ``users`` (the i-th on server ``i % len(ws_bases)``) spread over
    ``processes`` client processes (each with sockets on every server), so that reading
    thousands of sockets does not queue behind the load generator's event loop.
    ``ask(command)``: each process's answer; ``connected``: the users of the open sockets."""

    def __init__(
        self, ws_bases: Sequence[str], users: Sequence[int], tokens: dict[int, str], *,
        processes: int, path: str = WS_PATH,
    ) -> None:  # fmt: skip
        context = multiprocessing.get_context("spawn")
        self.users = list(users)
        n = len(ws_bases)
        plan = [(u, f"{ws_bases[i % n]}{path}?token={tokens[u]}") for i, u in enumerate(users)]
        self.per_server = [len(plan[i::n]) for i in range(n)]
        self.pipes, self.processes = [], []
        for k in range(processes):
            parent, child = context.Pipe()
            mine = [socket for i, socket in enumerate(plan) if (i // n) % processes == k]
            process = context.Process(target=_serve, args=(child, mine), daemon=True)
            process.start()
            self.pipes.append(parent)
            self.processes.append(process)
        # Each process answers once it has connected.
        counts, seconds, errors, error_counts = zip(*(p.recv() for p in self.pipes), strict=True)
        self.connections, self.connect_seconds = sum(counts), max(seconds)
        self.errors, self.error_count = [e for some in errors for e in some], sum(error_counts)
        self.connected = [user for users in self.ask("users") for user in users]

    def ask(self, command: Any) -> list[Any]:
        for pipe in self.pipes:
            pipe.send(command)
        return [pipe.recv() for pipe in self.pipes]

    def take(self) -> list[tuple[int, list[Any]]]:
        """``(user, frames)`` of every connected socket: the frames since the last ``take``."""
        return [socket for answer in self.ask("take") for socket in answer]

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


class Event(NamedTuple):
    kind: str  # "invitation.created" | "invitation.approved"
    invitation: int
    recipients: frozenset[int]
    sent: float  # the HTTP request's
    done: float  # the HTTP response's


def analyse(events: Sequence[Event], sockets: Sequence[tuple[int, list]]) -> dict[str, Any]:
    """Of ``(user, frames)`` per socket: latencies (receipt - HTTP response, and receipt -
    request sent) at every recipient socket, frames elsewhere, missing deliveries."""
    by_key = {(e.kind, e.invitation): e for e in events}
    expected = sum(1 for user, _frames in sockets for e in events if user in e.recipients)
    got: dict[tuple[str, int, int], tuple[str, float, float]] = {}  # -> (kind, delays)
    non_recipient = unexpected = duplicates = 0
    for i, (user, frames) in enumerate(sockets):
        for t, kind, invitation in frames:
            event = by_key.get((kind, invitation))
            if event is None:
                unexpected += 1
            elif user not in event.recipients:
                non_recipient += 1
            elif (kind, invitation, i) in got:
                duplicates += 1
            else:
                got[kind, invitation, i] = (kind, t - event.done, t - event.sent)
    delays = list(got.values())
    out = {
        "latency_from_response_ms": summary_ms([d for _k, d, _r in delays]),
        "latency_from_request_ms": summary_ms([r for _k, _d, r in delays]),
    }
    for kind in dict.fromkeys(k for k, _d, _r in delays):
        out[f"latency_from_response_ms {kind}"] = summary_ms([d for k, d, _ in delays if k == kind])
    return {
        **out,
        "expected_deliveries": expected,
        "delivered": len(got),
        "missing": expected - len(got),
        "non_recipient_frames": non_recipient,
        "unexpected_frames": unexpected,
        "duplicate_frames": duplicates,
        "before_response": sum(1 for _k, d, _r in delays if d < 0),
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
            code = exc.rcvd.code if exc.rcvd is not None else 1006
            return failed(f"closed {code} after 101", opened)
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
