"""A small closed-loop HTTP load generator (asyncio + httpx) and the statistics helpers.

``concurrency`` workers share one request counter; each sends its next request as soon as the
previous one answered. Requests alternate between the server processes (client-side round
robin), so each process gets half of them. Every run is bounded by a request count and a
deadline.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Req:
    method: str
    path: str
    user: int
    json: Any = None


@dataclass
class Sample:
    index: int
    status: int
    latency: float  # seconds, as the client saw it
    server_us: int  # X-Server-Time-Us: time spent in Django
    sent: float  # perf_counter() when sent
    done: float  # perf_counter() when the response was read
    body: Any = None


@dataclass
class RunResult:
    samples: list[Sample] = field(default_factory=list)
    wall: float = 0.0
    errors: list[str] = field(default_factory=list)
    stopped_at_deadline: bool = False  # not an error: the series' length is its duration

    @property
    def ok(self) -> list[Sample]:
        return [s for s in self.samples if 200 <= s.status < 300]

    @property
    def rps(self) -> float:
        return len(self.samples) / self.wall if self.wall > 0 else 0.0

    def statuses(self) -> dict[str, int]:
        counts = Counter(str(s.status) for s in self.samples)
        if self.errors:
            counts["transport_error"] = len(self.errors)
        return dict(counts)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); ``q`` in [0, 100]."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = ordered[math.floor(pos)], ordered[math.ceil(pos)]
    return lo + (hi - lo) * (pos - math.floor(pos))


def summary_ms(values_s: Sequence[float]) -> dict[str, float]:
    """p50 / p90 / p99 / mean of durations given in seconds, in milliseconds."""
    ms = [v * 1000.0 for v in values_s]
    if not ms:
        return {"n": 0}
    quantiles = {f"p{q}": round(percentile(ms, q), 3) for q in (50, 90, 99)}
    return {"n": len(ms), **quantiles, "mean": round(statistics.fmean(ms), 3)}


class Clients:
    """One ``httpx.AsyncClient`` per server process; ``pick(i)`` alternates between them."""

    def __init__(self, base_urls: Sequence[str], connections: int, timeout: float = 30.0) -> None:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self.clients = [
            httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) for url in base_urls
        ]

    def pick(self, index: int) -> httpx.AsyncClient:
        return self.clients[index % len(self.clients)]

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()


async def send(clients: Clients, index: int, req: Req, keep_body: bool = False) -> Sample:
    """Request ``req`` from server ``index``; the body is kept if ``keep_body`` or an error."""
    sent = time.perf_counter()
    response = await clients.pick(index).request(
        req.method, req.path, headers={"X-Bench-User": str(req.user)}, json=req.json
    )
    await response.aread()
    done = time.perf_counter()
    server_us = int(response.headers.get("x-server-time-us", "0") or 0)
    sample = Sample(index, response.status_code, done - sent, server_us, sent, done)
    if keep_body or response.status_code >= 400:
        try:
            sample.body = response.json()
        except ValueError:
            sample.body = response.text[:200]
    return sample


async def run_closed_loop(
    clients: Clients, make: Callable[[int], Req], n: int, concurrency: int, *,
    deadline_s: float = 120.0, keep_body: bool = False, offset: int = 0,
) -> RunResult:  # fmt: skip
    """Send ``n`` requests (``make(offset + k)`` for k < n) with ``concurrency`` workers."""
    result = RunResult()
    counter = iter(range(n))
    stop_at = time.perf_counter() + deadline_s

    async def worker() -> None:
        for k in counter:
            if time.perf_counter() > stop_at:
                result.stopped_at_deadline = True
                return
            try:
                result.samples.append(await send(clients, offset + k, make(offset + k), keep_body))
            except httpx.HTTPError as exc:
                result.errors.append(f"{type(exc).__name__}: {exc}")

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.wall = time.perf_counter() - start
    return result


async def run_paced(
    clients: Clients, reqs: Sequence[Req], rate: float, in_flight: int = 8
) -> RunResult:
    """Send ``reqs[i]`` at ``i / rate`` s from the start (open loop), at most ``in_flight`` at
    a time, keeping the bodies."""
    result = RunResult()
    slots = asyncio.Semaphore(in_flight)

    async def one(i: int, req: Req) -> None:
        async with slots:
            try:
                result.samples.append(await send(clients, i, req, keep_body=True))
            except Exception as exc:
                result.errors.append(repr(exc))

    start = time.perf_counter()
    tasks = []
    for i, req in enumerate(reqs):
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        tasks.append(asyncio.create_task(one(i, req)))
    await asyncio.wait_for(asyncio.gather(*tasks), 300)
    result.wall = time.perf_counter() - start
    return result
