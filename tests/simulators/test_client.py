"""The phone-side client: retries 429/503 with the same batch, gives up only at its deadline."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web
from aiohttp.test_utils import TestServer

from simulators.client import GatewayClient
from simulators.phone import Batch


def batch(seq: int = 0) -> Batch:
    body = {"device_id": "phone-1", "batch_seq": seq, "accel": [{"t": 1, "x": 0, "y": 0, "z": 0}],
            "gps": []}  # fmt: skip
    return Batch(body=body, activity="walking")


def run_against(answers: list[tuple[int, dict, dict]], work, **client_kwargs):
    """Run ``work(client)`` against a small HTTP server giving ``answers`` in turn."""
    seen: list[dict] = []

    async def readings(request: web.Request) -> web.Response:
        seen.append(json.loads(await request.read()))
        status, headers, body = answers.pop(0)
        return web.json_response(body, status=status, headers=headers)

    async def main():
        app = web.Application()
        app.router.add_post("/v1/readings", readings)
        async with TestServer(app) as server:
            url = str(server.make_url("/"))
            async with GatewayClient(url, {"phone-1": "mbd_x_y"}, **client_kwargs) as client:
                result = await work(client)
        return client, seen, result

    return asyncio.run(main())


def test_retries_503_and_429_then_counts_the_acceptance() -> None:
    answers = [(503, {"Retry-After": "0"}, {}), (429, {"Retry-After": "0"}, {}), (202, {}, {})]
    client, seen, accepted = run_against(answers, lambda c: c.send(batch(5)))
    assert accepted is True
    assert [body["batch_seq"] for body in seen] == [5, 5, 5]  # the very same batch each time
    stats = client.stats
    assert stats.accepted == 1 and stats.retried == 2 and stats.accepted_keys == {("phone-1", 5)}
    assert stats.retried_by_status == {"503": 1, "429": 1}


def test_a_final_rejection_is_counted_by_reason_and_not_retried() -> None:
    problems = {"detail": "bad", "problems": [{"field": "accel.0.x", "message": "too big"}]}
    client, seen, accepted = run_against([(422, {}, problems)], lambda c: c.send(batch()))
    assert accepted is False
    assert len(seen) == 1 and client.stats.rejected == {"422 accel.0.x": 1}


def test_gives_up_at_the_deadline() -> None:
    busy = [(503, {"Retry-After": "5"}, {})] * 3
    client, _, accepted = run_against(busy, lambda c: c.send(batch()), give_up_after_s=1)
    assert accepted is False
    assert client.stats.given_up == 1 and client.stats.accepted == 0


def test_an_unreachable_gateway_is_retried_then_given_up() -> None:
    async def main():
        async with GatewayClient(
            "http://127.0.0.1:9", {"phone-1": "t"}, give_up_after_s=1.5, max_backoff_s=0.2
        ) as client:
            return client, await client.send(batch())

    client, accepted = asyncio.run(main())
    assert accepted is False and client.stats.retried >= 1 and client.stats.given_up == 1
    assert "ClientConnectorError" in client.stats.retried_by_status
