"""Liveness, readiness (the broker answers) and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ingest.deps import MetricsDep, PublisherDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(publisher: PublisherDep) -> JSONResponse:
    if await publisher.reachable():
        return JSONResponse({"status": "ready", "broker": "reachable"})
    return JSONResponse(
        {"status": "not ready", "broker": f"unreachable at {publisher.settings.bootstrap_servers}"},
        status_code=503,
    )


@router.get("/metrics")
async def metrics(gateway_metrics: MetricsDep) -> Response:
    return Response(generate_latest(gateway_metrics.registry), media_type=CONTENT_TYPE_LATEST)
