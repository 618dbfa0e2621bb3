"""An open-loop HTTP/1.1 load generator cheap enough to share two cores with what it measures.

Requests start on a fixed schedule (``rate`` a second) whatever the answers do, and each one's
latency runs from the moment it was *due*, not from when a connection was free to send it, so a
stall of the server shows in full (no coordinated omission). aiohttp costs ~0.35 ms of CPU a
request, which at a thousand requests a second is a third of a core taken from the server under
test; this client writes pre-built request bytes to keep-alive connections opened before the
clock starts and reads only the status line and ``Content-Length`` of each answer.

Used by ``bench/ingest.py`` for its half-rate latency run.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from dataclasses import dataclass, field

HEADER_END = b"\r\n\r\n"
ANSWER_WAIT_S = 30  # how long the requests still in flight after the last send may take


def http_post(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """One keep-alive POST, ready to write to a socket."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return "\r\n".join(lines).encode() + HEADER_END + body


@dataclass
class OpenLoopResult:
    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    connections: int = 0  # opened, including those opened when all were busy
    seconds: float = 0.0  # from the first request's due time to the last answer


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one request in flight, answers parsed just enough."""

    def __init__(self, client: _Client) -> None:
        self.client = client
        self.buffer = b""
        self.due = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, request: bytes, due: float) -> None:
        assert self.transport is not None
        self.due = due
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(HEADER_END)
        if end < 0:
            return
        head = self.buffer[:end]
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        answer_end = end + len(HEADER_END) + length
        if len(self.buffer) < answer_end:
            return
        status = int(head.split(b" ", 2)[1])
        self.buffer = self.buffer[answer_end:]
        self.client.answered(self, status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.lost(self)


class _Client:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: deque[_Connection] = deque()
        self.result = OpenLoopResult()
        self.in_flight = 0
        self.lost_in_flight = 0  # requests whose connection closed before they were answered

    async def connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(
            lambda: _Connection(self), self.host, self.port
        )
        self.result.connections += 1
        return connection

    def send_on(self, connection: _Connection, request: bytes, due: float) -> None:
        self.in_flight += 1
        connection.send(request, due)

    async def send_on_new(self, request: bytes, due: float) -> None:
        self.send_on(await self.connect(), request, due)

    def answered(self, connection: _Connection, status: int) -> None:
        self.result.latencies_s.append(time.perf_counter() - connection.due)
        self.result.statuses[status] += 1
        self.in_flight -= 1
        self.idle.append(connection)

    def lost(self, connection: _Connection) -> None:
        if connection in self.idle:
            self.idle.remove(connection)
        elif connection.due:
            self.lost_in_flight += 1
            self.in_flight -= 1


async def open_loop(
    host: str, port: int, requests: list[bytes], *, rate: float, connections: int = 64
) -> OpenLoopResult:
    """Send ``requests`` in order at ``rate`` a second; every latency measured from its due time.

    ``connections`` are opened before the clock starts; more are opened when all are busy.
    """
    client = _Client(host, port)
    client.idle.extend([await client.connect() for _ in range(connections)])
    started = time.perf_counter()
    sends: set[asyncio.Task[None]] = set()
    for index, request in enumerate(requests):
        due = started + index / rate
        wait = due - time.perf_counter()
        if wait > 0.0005:
            await asyncio.sleep(wait)
        if client.idle:
            client.send_on(client.idle.popleft(), request, due)
        else:  # every connection busy: open one more without holding up the schedule
            task = asyncio.create_task(client.send_on_new(request, due))
            sends.add(task)
            task.add_done_callback(sends.discard)
    await asyncio.gather(*sends)
    deadline = time.monotonic() + ANSWER_WAIT_S
    while client.in_flight > 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    if client.lost_in_flight or client.in_flight:
        raise RuntimeError(
            f"{client.lost_in_flight} requests lost with their connection, "
            f"{client.in_flight} unanswered after {ANSWER_WAIT_S} s"
        )
    client.result.seconds = time.perf_counter() - started
    for connection in client.idle:
        assert connection.transport is not None
        connection.transport.close()
    return client.result
