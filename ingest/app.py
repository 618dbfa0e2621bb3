"""Builds the gateway from its settings: the one place where its parts are wired together."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from common.logs import configure_logging
from common.openapi import add_body_schemas
from common.ratelimit import RateLimiter
from common.schema import ReadingBatch
from common.settings import GatewaySettings
from ingest.devices import DeviceRegistry
from ingest.metrics import STOPPED_TOTALS, GatewayMetrics
from ingest.publisher import BatchPublisher
from ingest.routes import health, readings

log = logging.getLogger(__name__)


def create_app(settings: GatewaySettings) -> FastAPI:
    publisher = BatchPublisher(
        settings.kafka, ack_timeout_s=settings.ack_timeout_s, linger_ms=settings.linger_ms
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Connecting may take a while when the broker is down; /readyz tells meanwhile.
        starting = asyncio.get_running_loop().run_in_executor(None, publisher.start)
        try:
            yield
        finally:
            # Every request has been answered by now, so the totals are final; /metrics goes
            # with the process.
            log.info("%s%s", STOPPED_TOTALS, json.dumps(app.state.metrics.totals()))
            await starting
            publisher.close()

    app = FastAPI(
        title="mbd ingest gateway",
        version="1",
        summary="Phones post batches of readings; 202 means the batch is in Kafka.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.publisher = publisher
    app.state.registry = DeviceRegistry(settings.devices_file)
    app.state.metrics = GatewayMetrics(pending=lambda: publisher.pending)
    # One table of buckets for all of this gateway's workers (they share the file).
    app.state.rate_limiter = RateLimiter(
        rate=settings.rate_per_device,
        burst=settings.burst_per_device,
        path=settings.rate_state_path,
    )
    app.include_router(readings.router)
    app.include_router(health.router)

    # The body is parsed by hand (size limit first, then our own errors).
    add_body_schemas(app, ReadingBatch)
    return app


def create_app_from_env() -> FastAPI:
    """uvicorn's factory (``mbd gateway``): settings from ``MBD_*`` variables."""
    configure_logging()  # in a second worker's fresh process, else its INFO lines are lost
    return create_app(GatewaySettings())
