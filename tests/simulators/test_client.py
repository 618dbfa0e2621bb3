"""The phone-side client: retries 429/503 with the same batch, gives up only at its deadline."""

from __future__ import annotations

import asyncio
import json

import httpx

from simulators.client import GatewayClient
from simulators.phone import Batch


def batch(seq: int = 0) -> Batch:
    body = {"device_id": "phone-1", "batch_seq": seq, "accel": [{"t": 1, "x": 0, "y": 0, "z": 0}],
            "gps": []}  # fmt: skip
    return Batch(body=body, activity="walking")


def client_with(responses: list[httpx.Response], **kwargs) -> tuple[GatewayClient, list[dict]]:
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return responses.pop(0)

    client = GatewayClient("http://gateway", {"phone-1": "mbd_x_y"}, **kwargs)
    client._http = httpx.AsyncClient(
        base_url="http://gateway", transport=httpx.MockTransport(handler)
    )
    return client, seen


def test_retries_503_and_429_then_counts_the_acceptance() -> None:
    responses = [
        httpx.Response(503, headers={"Retry-After": "0"}),
        httpx.Response(429, headers={"Retry-After": "0"}),
        httpx.Response(202, json={}),
    ]
    client, seen = client_with(responses)
    assert asyncio.run(client.send(batch(5))) is True
    assert [body["batch_seq"] for body in seen] == [5, 5, 5]  # the very same batch each time
    stats = client.stats
    assert stats.accepted == 1 and stats.retried == 2 and stats.accepted_keys == {("phone-1", 5)}
    assert stats.retried_by_status == {"503": 1, "429": 1}


def test_a_final_rejection_is_counted_by_reason_and_not_retried() -> None:
    problems = {"detail": "bad", "problems": [{"field": "accel.0.x", "message": "too big"}]}
    client, seen = client_with([httpx.Response(422, json=problems)])
    assert asyncio.run(client.send(batch())) is False
    assert len(seen) == 1 and client.stats.rejected == {"422 accel.0.x": 1}


def test_gives_up_at_the_deadline() -> None:
    client, _ = client_with(
        [httpx.Response(503, headers={"Retry-After": "5"})] * 3, give_up_after_s=1
    )
    assert asyncio.run(client.send(batch())) is False
    assert client.stats.given_up == 1 and client.stats.accepted == 0
