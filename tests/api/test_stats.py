"""GET /v1/stats: the gateway's rate from its /metrics, the streaming job's status file."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.stats import GatewayRate, RateMeter, parse_gateway_counters
from common.settings import ApiSettings
from tests.api.factories import prediction

GATEWAY_METRICS = """# HELP mbd_gateway_accepted_batches_total Batches acknowledged by Kafka
# TYPE mbd_gateway_accepted_batches_total counter
mbd_gateway_accepted_batches_total {batches}
# HELP mbd_gateway_accepted_readings_total Accelerometer samples and GPS fixes
# TYPE mbd_gateway_accepted_readings_total counter
mbd_gateway_accepted_readings_total {readings}
"""


def test_the_gateway_counters_are_read_from_its_prometheus_text() -> None:
    text = GATEWAY_METRICS.format(batches=12, readings=504)
    assert parse_gateway_counters(text) == {"batches": 12.0, "readings": 504.0}


def test_the_gateway_rate_is_the_difference_of_two_scrapes() -> None:
    served = iter([(100, 4200), (150, 6300)])

    def gateway(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/metrics"
        batches, readings = next(served)
        return httpx.Response(200, text=GATEWAY_METRICS.format(batches=batches, readings=readings))

    rate = GatewayRate("http://gateway:8000", min_interval_s=0.0,
                       transport=httpx.MockTransport(gateway))  # fmt: skip

    async def two_scrapes() -> dict:
        await rate.current()
        await asyncio.sleep(0.2)
        return await rate.current()

    figures = asyncio.run(two_scrapes())
    assert figures["available"] and figures["totals"] == {"batches": 150.0, "readings": 6300.0}
    assert 50 / 0.6 < figures["batches_per_s"] < 50 / 0.19


def test_an_unreachable_gateway_is_reported_not_raised() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    rate = GatewayRate("http://gateway:8000", transport=httpx.MockTransport(down))
    figures = asyncio.run(rate.current())

    assert not figures["available"]
    assert figures["reason"] == "gateway metrics at http://gateway:8000/metrics: connection refused"


def test_the_rate_meter_counts_events_per_second() -> None:
    meter = RateMeter(span_s=10)
    assert meter.rate() == 0.0
    for _ in range(50):
        meter.add()
    assert meter.total == 50 and meter.rate() > 0


def test_stats_show_the_streaming_status_file_and_the_api_flow(
    client: TestClient, app: FastAPI
) -> None:
    settings: ApiSettings = app.state.settings
    settings.stream_status_file.parent.mkdir(parents=True, exist_ok=True)
    status = {"updated_at": time.time() - 3, "batch_id": 41, "input_rows_per_s": 250.5,
              "totals": {"windows": 900}}  # fmt: skip
    settings.stream_status_file.write_text(json.dumps(status))
    app.state.store.update(prediction("phone-1"))

    body = client.get("/v1/stats").json()

    assert body["stream"]["available"] and body["stream"]["batch_id"] == 41
    assert body["stream"]["input_rows_per_s"] == 250.5 and 2 < body["stream"]["age_s"] < 60
    assert body["gateway"] == {"available": False, "reason": "no gateway URL configured"}
    assert body["api"]["devices"] == 1
    assert body["api"]["reader_running"] is False
    assert body["api"]["reader_error"] == "not reading the predictions topic"


def test_stats_without_a_streaming_job_say_so(client: TestClient) -> None:
    stream = client.get("/v1/stats").json()["stream"]
    assert stream["available"] is False and "is `mbd stream` up?" in stream["reason"]
