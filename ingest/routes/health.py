"""Liveness, readiness (the broker answers; the devices file's state) and Prometheus metrics.

An unreadable devices file does not make the gateway unready: it keeps answering from the last
good set of tokens, and ``devices`` in ``/readyz`` says so.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ingest.deps import DevicesDep, MetricsDep, PublisherDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(publisher: PublisherDep, devices: DevicesDep) -> JSONResponse:
    devices.refresh(max_age_s=1.0)
    devices_state = devices.problem or "readable"
    if await publisher.reachable():
        return JSONResponse({"status": "ready", "broker": "reachable", "devices": devices_state})
    return JSONResponse(
        {
            "status": "not ready",
            "broker": "unreachable",
            "devices": devices_state,
        },
        status_code=503,
    )


@router.get("/metrics")
async def metrics(gateway_metrics: MetricsDep) -> Response:
    return Response(generate_latest(gateway_metrics.registry), media_type=CONTENT_TYPE_LATEST)
