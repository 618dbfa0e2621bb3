"""Liveness, readiness (a model serves; load failures and the reader's state shown), metrics."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from api.deps import ConsumerDep, MetricsDep, PromotedDep

router = APIRouter(tags=["health"])


class ModelReadiness(BaseModel):
    serving: int | None
    promoted: int | None
    loading: int | None
    last_error: str | None


class ConsumerReadiness(BaseModel):
    running: bool
    assigned_partitions: int
    consumed: int
    malformed: int
    last_error: str | None


class ReadinessOut(BaseModel):
    """Ready means POST /v1/predict can answer: a model is serving. A promoted version that
    failed to load while an older one serves is shown in ``model.last_error``."""

    status: Literal["ready", "not ready"]
    model: ModelReadiness
    predictions: ConsumerReadiness | None


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=ReadinessOut, responses={503: {"model": ReadinessOut}})
async def readyz(promoted: PromotedDep, consumer: ConsumerDep) -> JSONResponse:
    status = promoted.status()
    reader = consumer.status() if consumer is not None else None
    body = ReadinessOut(
        status="ready" if status.serving is not None else "not ready",
        model=ModelReadiness(
            serving=status.serving,
            promoted=status.promoted,
            loading=status.loading,
            last_error=status.last_error,
        ),
        predictions=ConsumerReadiness(**reader.__dict__) if reader else None,
    )
    return JSONResponse(body.model_dump(), status_code=200 if status.serving is not None else 503)


@router.get("/metrics")
async def metrics(api_metrics: MetricsDep) -> Response:
    return Response(generate_latest(api_metrics.registry), media_type=CONTENT_TYPE_LATEST)
