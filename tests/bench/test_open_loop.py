"""The open-loop load generator: every request answered and counted, latency from its due time."""

from __future__ import annotations

import asyncio

import pytest

from bench.open_loop import http_post, open_loop


async def _server(delay_s: float, received: list[bytes]) -> asyncio.Server:
    """Answers each request after ``delay_s``: 202, or 401 without a token, in two writes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:  # the client closed its keep-alive connection
                return
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))  # fmt: skip
            received.append(await reader.readexactly(length))
            await asyncio.sleep(delay_s)
            status = b"202 Accepted" if b"Bearer" in head else b"401 Unauthorized"
            body = b'{"accepted": true}'
            writer.write(b"HTTP/1.1 " + status + b"\r\ncontent-length: %d\r\n\r\n" % len(body))
            await writer.drain()
            writer.write(body)  # the body in a packet of its own
            await writer.drain()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def test_requests_go_out_on_schedule_and_every_answer_is_counted() -> None:
    async def scenario() -> tuple:
        received: list[bytes] = []
        server = await _server(0.05, received)
        port = server.sockets[0].getsockname()[1]
        tokens = [{"Authorization": "Bearer t"} if i % 4 else {} for i in range(40)]
        requests = [
            http_post("127.0.0.1", port, "/v1/readings", b'{"n": %d}' % i, tokens[i])
            for i in range(40)
        ]
        # 2 connections at first, 40 requests at 200/s answered after 50 ms: it must open more
        result = await open_loop("127.0.0.1", port, requests, rate=200, connections=2)
        server.close()
        return result, received

    result, received = asyncio.run(scenario())
    assert sorted(received) == sorted(b'{"n": %d}' % i for i in range(40))
    assert dict(result.statuses) == {202: 30, 401: 10}
    assert result.connections > 2
    assert len(result.latencies_s) == 40
    assert min(result.latencies_s) >= 0.05
    assert result.seconds == pytest.approx(0.25, abs=0.2)
