"""Liveness and readiness, open to anyone and saying nothing private; metrics for a reader.

``/readyz`` tells whether a model serves and whether the predictions reader runs, as numbers
and flags: error texts (which name files and hosts) stay in the log and behind the read token
(``/v1/stats``, ``/metrics``).
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from api.deps import ConsumerDep, CredentialsDep, MetricsDep, PromotedDep, ReaderDep

router = APIRouter(tags=["health"])


class ModelReadiness(BaseModel):
    serving: int | None
    promoted: int | None
    loading: int | None
    load_failed: bool


class ConsumerReadiness(BaseModel):
    running: bool
    assigned_partitions: int
    connected: bool


class ReadinessOut(BaseModel):
    """Ready means POST /v1/predict can answer: a model is serving. A promoted version that
    failed to load while an older one serves shows as ``model.load_failed``; ``devices_file``
    is "ok", or "unreadable" while the API keeps the phones' last good tokens."""

    status: Literal["ready", "not ready"]
    model: ModelReadiness
    predictions: ConsumerReadiness | None
    devices_file: Literal["ok", "unreadable"]


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=ReadinessOut, responses={503: {"model": ReadinessOut}})
async def readyz(
    promoted: PromotedDep, consumer: ConsumerDep, credentials: CredentialsDep
) -> JSONResponse:
    status = promoted.status()
    reader = consumer.status() if consumer is not None else None
    body = ReadinessOut(
        status="ready" if status.serving is not None else "not ready",
        model=ModelReadiness(
            serving=status.serving,
            promoted=status.promoted,
            loading=status.loading,
            load_failed=status.last_error is not None,
        ),
        predictions=ConsumerReadiness(
            running=reader.running,
            assigned_partitions=reader.assigned_partitions,
            connected=reader.last_error is None,
        )
        if reader
        else None,
        devices_file="unreadable" if credentials.devices_problem() else "ok",
    )
    return JSONResponse(body.model_dump(), status_code=200 if status.serving is not None else 503)


@router.get("/metrics", summary="Prometheus metrics (read token as a bearer token)")
async def metrics(api_metrics: MetricsDep, _reader: ReaderDep) -> Response:
    return Response(generate_latest(api_metrics.registry), media_type=CONTENT_TYPE_LATEST)
