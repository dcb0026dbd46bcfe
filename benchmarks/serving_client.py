"""A bounded, self-stopping HTTP/1.1 load client for loopback benchmarks (used by serving.py).

Closed loop: N keep-alive connections, each sends one request, waits for the whole response,
records its latency and sends the next, until the deadline; requests still in flight at the
deadline are awaited and not counted. The first ``warmup`` seconds are sent but not counted.

Two implementations, chosen for the least client CPU per request (client and server share the
machine's cores, so every microsecond the client spends is taken from the server):

* ``asyncio`` (default): one event loop (uvloop when installed), one ``asyncio.Protocol`` per
  connection, the request pre-encoded once, responses parsed by hand (status line +
  Content-Length; chunked bodies are read too). No HTTP library on the hot path.
* ``threads``: ``http.client.HTTPConnection`` per thread (standard library; its header parsing
  goes through ``email.parser``, several times the CPU of the hand parser, plus GIL handoffs).

``LoadResult.client_cpu_us`` (process CPU time of the client / counted requests) is printed by
serving.py so the choice can be checked on any machine.
"""

from __future__ import annotations

import asyncio
import http.client
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LoadResult:
    connections: int
    seconds: float                     # measured window (after warm-up)
    requests: int                      # completed inside the window
    errors: int                        # non-2xx or broken connections inside the window
    latencies_ms: list[float] = field(default_factory=list)
    client_cpu_s: float = 0.0
    first_status: int | None = None
    first_body: bytes = b""
    error_sample: str | None = None
    responses_total: int = 0           # 2xx answers including warm-up and the tail

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def pct(self, q: float) -> float:
        return percentile(self.latencies_ms, q)

    @property
    def client_cpu_us(self) -> float:
        return self.client_cpu_s / self.requests * 1e6 if self.requests else 0.0


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def build_request(host: str, port: int, path: str, body: bytes,
                  content_type: str = "application/json") -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n")
    return head.encode("ascii") + body


# ---------------------------------------------------------------------------------------- asyncio


class _Conn(asyncio.Protocol):
    """One keep-alive connection that parses one response at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.transport: Any = None
        self.closed: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # uvloop's transports are not asyncio.Transport subclasses

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = exc or ConnectionResetError("server closed the connection")
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(self.closed)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.waiter is not None and not self.waiter.done():
            parsed = _parse(self.buf)
            if parsed is not None:
                status, body, used = parsed
                del self.buf[:used]
                self.waiter.set_result((status, body))

    def request(self, raw: bytes) -> asyncio.Future[tuple[int, bytes]]:
        if self.closed is not None:
            raise self.closed
        self.waiter = self.loop.create_future()
        assert self.transport is not None
        self.transport.write(raw)
        return self.waiter


def _parse(buf: bytearray) -> tuple[int, bytes, int] | None:
    """(status, body, bytes used) of the first complete response in ``buf``, else None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buf[:end]).decode("latin-1")
    lines = head.split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = -1
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        lname = name.strip().lower()
        if lname == "content-length":
            length = int(value.strip())
        elif lname == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    start = end + 4
    if chunked:
        body = bytearray()
        pos = start
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
            if len(buf) < eol + 2 + size + 2:
                return None
            body += buf[eol + 2:eol + 2 + size]
            pos = eol + 2 + size + 2
            if size == 0:
                return status, bytes(body), pos
    if length < 0:
        length = 0
    if len(buf) < start + length:
        return None
    return status, bytes(buf[start:start + length]), start + length


async def _run_async(host: str, port: int, raw: bytes, connections: int, duration: float,
                     warmup: float, mark: Callable[[], None] | None) -> LoadResult:
    loop = asyncio.get_running_loop()
    conns: list[_Conn] = []
    for _ in range(connections):
        _, proto = await loop.create_connection(lambda: _Conn(loop), host, port)
        conns.append(proto)
    result = LoadResult(connections=connections, seconds=duration, requests=0, errors=0)
    t_start = time.perf_counter()
    t_count = t_start + warmup
    t_end = t_count + duration
    lat = result.latencies_ms

    async def worker(conn: _Conn) -> None:
        perf = time.perf_counter
        while True:
            t0 = perf()
            if t0 >= t_end:
                return
            try:
                status, body = await conn.request(raw)
            except (OSError, ConnectionError) as exc:
                if t0 >= t_count:
                    result.errors += 1
                    result.error_sample = result.error_sample or repr(exc)
                return
            t1 = perf()
            if result.first_status is None:
                result.first_status, result.first_body = status, body
            if 200 <= status < 300:
                result.responses_total += 1
            if t0 >= t_count and t1 <= t_end:
                if 200 <= status < 300:
                    result.requests += 1
                    lat.append((t1 - t0) * 1000.0)
                else:
                    result.errors += 1
                    result.error_sample = result.error_sample or f"HTTP {status}: {body[:300]!r}"

    await asyncio.sleep(0)
    cpu0: float | None = None

    async def cpu_mark() -> None:
        nonlocal cpu0
        await asyncio.sleep(max(0.0, t_count - time.perf_counter()))
        cpu0 = time.process_time()
        if mark is not None:
            mark()

    marker = asyncio.ensure_future(cpu_mark())
    await asyncio.gather(*(worker(c) for c in conns))
    await marker
    cpu1 = time.process_time()
    if mark is not None:
        mark()
    result.client_cpu_s = cpu1 - (cpu0 if cpu0 is not None else cpu1)
    for c in conns:
        if c.transport is not None:
            c.transport.close()
    return result


def run_asyncio(host: str, port: int, path: str, body: bytes, *, connections: int = 16,
                duration: float = 30.0, warmup: float = 1.0,
                mark: Callable[[], None] | None = None) -> LoadResult:
    raw = build_request(host, port, path, body)
    coro = _run_async(host, port, raw, connections, duration, warmup, mark)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


# ---------------------------------------------------------------------------------------- threads


def run_threads(host: str, port: int, path: str, body: bytes, *, connections: int = 16,
                duration: float = 30.0, warmup: float = 1.0,
                mark: Callable[[], None] | None = None) -> LoadResult:
    result = LoadResult(connections=connections, seconds=duration, requests=0, errors=0)
    lock = threading.Lock()
    headers = {"Content-Type": "application/json", "Connection": "keep-alive"}
    barrier = threading.Barrier(connections + 1)
    times: dict[str, float] = {}

    def worker() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        conn.connect()
        lat: list[float] = []
        ok = err = total = 0
        sample: str | None = None
        first: tuple[int, bytes] | None = None
        barrier.wait()
        t_count, t_end = times["count"], times["end"]
        perf = time.perf_counter
        while True:
            t0 = perf()
            if t0 >= t_end:
                break
            try:
                conn.request("POST", path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                status = resp.status
            except (OSError, http.client.HTTPException) as exc:
                if t0 >= t_count:
                    err += 1
                    sample = sample or repr(exc)
                break
            t1 = perf()
            if first is None:
                first = (status, data)
            if 200 <= status < 300:
                total += 1
            if t0 >= t_count and t1 <= t_end:
                if 200 <= status < 300:
                    ok += 1
                    lat.append((t1 - t0) * 1000.0)
                else:
                    err += 1
                    sample = sample or f"HTTP {status}: {data[:300]!r}"
        conn.close()
        with lock:
            result.requests += ok
            result.responses_total += total
            result.errors += err
            result.latencies_ms.extend(lat)
            result.error_sample = result.error_sample or sample
            if result.first_status is None and first is not None:
                result.first_status, result.first_body = first

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(connections)]
    for t in threads:
        t.start()
    now = time.perf_counter()
    times["count"], times["end"] = now + warmup, now + warmup + duration
    barrier.wait()
    time.sleep(max(0.0, times["count"] - time.perf_counter()))
    cpu0 = time.process_time()
    if mark is not None:
        mark()
    for t in threads:
        t.join(timeout=duration + 60)
    result.client_cpu_s = time.process_time() - cpu0
    if mark is not None:
        mark()
    return result


def run(kind: str, host: str, port: int, path: str, body: bytes, **kw: Any) -> LoadResult:
    if kind == "asyncio":
        return run_asyncio(host, port, path, body, **kw)
    if kind == "threads":
        return run_threads(host, port, path, body, **kw)
    raise ValueError(f"unknown client {kind!r}: asyncio or threads")
