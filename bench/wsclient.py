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
import resource
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any, NamedTuple

import websockets
from loadgen import summary_ms
from runner import WS_PATH, proc_cpu_seconds


def access_tokens(users: Sequence[int]) -> list[str]:
    """A simplejwt access token for each of ``users``."""
    from django.contrib.auth import get_user_model
    from rest_framework_simplejwt.tokens import AccessToken

    User = get_user_model()
    return [str(AccessToken.for_user(User(pk=user))) for user in users]


def connect(url: str, open_timeout: float) -> Any:
    """Open a socket: no pings, no limit on the frames queued."""
    return websockets.connect(
        url, open_timeout=open_timeout, ping_interval=None, close_timeout=2, max_queue=None
    )


def frame(message: Any) -> dict[str, Any]:
    """A frame's JSON object; ``{"type": "invalid"}`` if it is not one."""
    with contextlib.suppress(ValueError):
        if isinstance(data := json.loads(message), dict):
            return data
    return {"type": "invalid"}


class _Socket(NamedTuple):
    user: int
    ws: Any
    reader: asyncio.Task[None]
    frames: list[tuple[float, str, Any]]  # (time, type, invitation id)


async def _read(ws: Any, frames: list[tuple[float, str, Any]]) -> None:
    """Append ``(time, type, invitation id)`` for each frame until the connection ends."""
    with contextlib.suppress(Exception):  # a broken connection ends its reader: missing frames
        async for message in ws:
            now, data = time.perf_counter(), frame(message)
            frames.append((now, str(data.get("type")), (data.get("invitation") or {}).get("id")))


def _serve(pipe: Any, plan: list[tuple[int, str]]) -> None:
    """A client process: open a socket per ``(user, url)`` of ``plan``, 50 at a time, report
    the users connected, then answer the parent's commands until ``("close", batch)``."""

    async def main() -> None:
        conns: list[_Socket] = []  # the connected sockets, in plan order
        errors: list[str] = []
        start = time.perf_counter()

        async def open_one(user: int, url: str) -> _Socket | None:
            try:
                ws = await connect(url, 30)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                return None
            frames: list[Any] = []
            return _Socket(user, ws, asyncio.create_task(_read(ws, frames)), frames)

        async def close(ws: Any, reader: asyncio.Task[None]) -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 5)
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

        for lo in range(0, len(plan), 50):
            if time.perf_counter() > start + 120.0 + len(plan) / 20:
                errors.append("connect deadline")
                break
            batch = await asyncio.gather(*(open_one(*p) for p in plan[lo : lo + 50]))
            conns += [c for c in batch if c is not None]
        pipe.send(([c.user for c in conns], time.perf_counter() - start, errors[:5], len(errors)))
        loop = asyncio.get_running_loop()
        # Until ("close", batch): close batch at a time, or all at once.
        while isinstance(command := await loop.run_in_executor(None, pipe.recv), str):
            if command == "count":
                pipe.send(sum(len(c.frames) for c in conns))
            elif command == "alive":
                pipe.send(sum(not c.reader.done() for c in conns))
            else:  # "take": the frames so far, forgotten here
                pipe.send([(c.user, c.frames) for c in conns])
                for c in conns:
                    c.frames.clear()
        size = command[1] or max(1, len(conns))
        for lo in range(0, len(conns), size):
            closing = asyncio.gather(*(close(c.ws, c.reader) for c in conns[lo : lo + size]))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(closing, 30.0)
        pipe.send(None)

    asyncio.run(main())


class ClientPool:
    """A socket for each of ``users`` (the i-th on server ``i % len(urls)``, with the user's
    token of ``tokens``) spread over ``processes`` client processes (each with sockets on every
    server), so that reading thousands of sockets does not queue behind the load generator's
    event loop.
    ``ask(command)``: each process's answer to ``"count"`` (frames received), ``"alive"`` (sockets
    open) or ``"take"`` (``(user, frames)`` per socket, the frames since the last ``"take"``);
    ``connected``: the number of open sockets of each user."""

    def __init__(self, urls: list[str], users: list[int], tokens: dict[int, str], processes: int):
        context = multiprocessing.get_context("spawn")
        n = len(urls)
        plan = [(u, f"{urls[i % n]}{WS_PATH}?token={tokens[u]}") for i, u in enumerate(users)]
        self.per_server = [len(plan[i::n]) for i in range(n)]
        self.pipes, self.processes = [], []
        for k in range(processes):
            mine = [socket for i, socket in enumerate(plan) if (i // n) % processes == k]
            parent, child = context.Pipe()
            self.pipes.append(parent)
            self.processes.append(context.Process(target=_serve, args=(child, mine), daemon=True))
            self.processes[-1].start()
        # Each process answers once it has connected.
        users, seconds, errors, counts = zip(*(p.recv() for p in self.pipes), strict=True)
        self.connected = Counter(user for some in users for user in some)  # user -> sockets
        self.connections, self.connect_seconds = self.connected.total(), max(seconds)
        self.errors, self.error_count = [e for some in errors for e in some], sum(counts)

    def ask(self, command: Any) -> list[Any]:
        for pipe in self.pipes:
            pipe.send(command)
        return [pipe.recv() for pipe in self.pipes]

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


def analyse(events: Sequence[Event], answers: Sequence[list[tuple[int, list]]]) -> dict[str, Any]:
    """Of the client processes' answers to ``"take"`` (``(user, frames)`` per socket): latencies
    (receipt - HTTP response, and receipt - request sent) at every recipient socket, frames
    elsewhere, missing deliveries."""
    by_key = {(e.kind, e.invitation): e for e in events}
    sockets = [socket for answer in answers for socket in answer]
    expected = sum(user in e.recipients for user, _frames in sockets for e in events)
    got: dict[tuple[str, int, int], tuple[str, float, float]] = {}  # -> (kind, delays)
    wrong = Counter({"non_recipient_frames": 0, "unexpected_frames": 0, "duplicate_frames": 0})
    for i, (user, frames) in enumerate(sockets):
        for t, kind, invitation in frames:
            event = by_key.get((kind, invitation))
            if event is None:
                wrong["unexpected_frames"] += 1
            elif user not in event.recipients:
                wrong["non_recipient_frames"] += 1
            elif (kind, invitation, i) in got:
                wrong["duplicate_frames"] += 1
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
        **wrong,
        "before_response": sum(d < 0 for _k, d, _r in delays),
    }


class Attempt(NamedTuple):
    """One socket of a connection storm; times in seconds from the storm's start."""

    server: int
    due: float  # when it was planned to open
    started: float  # when the client began the TCP connection
    opened: float | None  # the server's 101 received: the consumer accepted
    first: float | None  # the first frame received
    outcome: str


def storm(
    plan: Sequence[tuple[int, float, str]], start_at: float, first_frame: str,
    open_timeout: float, frame_timeout: float,
) -> tuple[list[Attempt], float]:  # fmt: skip
    """In a client process (with uvloop if installed): open one socket per ``(server index,
    due, url)`` of ``plan`` at ``start_at + due`` (``time.monotonic()``); each waits for the
    consumer's accept and then for its first frame, which must be of type ``first_frame``.
    Every socket stays open until all have an outcome (and a second more), then all are closed.
    The attempts, and the CPU seconds the process used."""
    sockets: list[Any] = []

    async def one(server: int, due: float, url: str) -> Attempt:
        await asyncio.sleep(max(0.0, start_at + due - time.monotonic()))
        started = time.monotonic() - start_at
        opened = first = None
        try:
            ws = await connect(url, open_timeout)
        except websockets.InvalidStatus as exc:
            outcome = f"HTTP {exc.response.status_code} instead of 101"
        except websockets.InvalidMessage:
            outcome = "connection closed without an HTTP response"
        except TimeoutError:
            outcome = f"no 101 within {open_timeout:.0f} s"
        except Exception as exc:
            outcome = f"before 101: {type(exc).__name__}"
        else:
            opened = time.monotonic() - start_at
            sockets.append(ws)
            try:
                message = await asyncio.wait_for(ws.recv(), frame_timeout)
                first = time.monotonic() - start_at
                kind = frame(message).get("type")
                outcome = "ok" if kind == first_frame else f"first frame {kind}"
            except websockets.ConnectionClosed as exc:
                outcome = f"closed {exc.rcvd.code if exc.rcvd is not None else 1006} after 101"
            except TimeoutError:
                outcome = f"no frame within {frame_timeout:.0f} s"
        return Attempt(server, due, started, opened, first, outcome)

    async def main() -> list[Attempt]:
        attempts = await asyncio.gather(*(one(*p) for p in plan))
        await asyncio.sleep(1.0)
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
        return attempts

    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    before = resource.getrusage(resource.RUSAGE_SELF)
    attempts = asyncio.run(main())
    after = resource.getrusage(resource.RUSAGE_SELF)
    return attempts, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
