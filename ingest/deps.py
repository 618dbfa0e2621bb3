"""FastAPI dependencies of the gateway: what a route needs, looked up on the app's state.

``POST /v1/readings`` takes none of these on purpose (see ``ingest.routes.readings``): on that
path FastAPI's per-request dependency solving cost more than validating the batch.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ingest.devices import DeviceRegistry
from ingest.metrics import GatewayMetrics
from ingest.publisher import BatchPublisher


async def get_publisher(request: Request) -> BatchPublisher:
    return request.app.state.publisher


async def get_metrics(request: Request) -> GatewayMetrics:
    return request.app.state.metrics


async def get_devices(request: Request) -> DeviceRegistry:
    return request.app.state.registry


PublisherDep = Annotated[BatchPublisher, Depends(get_publisher)]
MetricsDep = Annotated[GatewayMetrics, Depends(get_metrics)]
DevicesDep = Annotated[DeviceRegistry, Depends(get_devices)]
