"""FastAPI dependencies of the gateway: what a route needs, looked up on the app's state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from common.settings import GatewaySettings
from ingest.devices import DeviceRegistry
from ingest.metrics import GatewayMetrics
from ingest.publisher import BatchPublisher
from ingest.ratelimit import DeviceRateLimiter


async def get_settings(request: Request) -> GatewaySettings:
    return request.app.state.settings


async def get_publisher(request: Request) -> BatchPublisher:
    return request.app.state.publisher


async def get_registry(request: Request) -> DeviceRegistry:
    return request.app.state.registry


async def get_metrics(request: Request) -> GatewayMetrics:
    return request.app.state.metrics


async def get_rate_limiter(request: Request) -> DeviceRateLimiter:
    return request.app.state.rate_limiter


SettingsDep = Annotated[GatewaySettings, Depends(get_settings)]
PublisherDep = Annotated[BatchPublisher, Depends(get_publisher)]
RegistryDep = Annotated[DeviceRegistry, Depends(get_registry)]
MetricsDep = Annotated[GatewayMetrics, Depends(get_metrics)]
RateLimiterDep = Annotated[DeviceRateLimiter, Depends(get_rate_limiter)]
