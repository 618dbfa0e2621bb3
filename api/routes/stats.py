"""GET /v1/stats: pipeline rates for the dashboard (gateway, streaming job, this API)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import (
    ConsumerDep,
    GatewayRateDep,
    PredictionRateDep,
    ReaderDep,
    SettingsDep,
    StoreDep,
)
from api.stats import read_stream_status

router = APIRouter(prefix="/v1", tags=["stats"])


class ApiFlowOut(BaseModel):
    predictions_per_s: float
    predictions_total: int
    malformed_total: int
    devices: int
    devices_evicted: int
    reader_running: bool
    reader_error: str | None


class StatsOut(BaseModel):
    """``gateway``: accepted batches/readings per s from its /metrics (or why unavailable);
    ``stream``: the streaming job's last progress report as it wrote it, with its age."""

    gateway: dict[str, Any]
    stream: dict[str, Any]
    api: ApiFlowOut


@router.get(
    "/stats", response_model=StatsOut, summary="Ingest, streaming and prediction rates (read)"
)
async def stats(
    settings: SettingsDep,
    store: StoreDep,
    consumer: ConsumerDep,
    gateway: GatewayRateDep,
    prediction_rate: PredictionRateDep,
    _reader: ReaderDep,
) -> StatsOut:
    reader = consumer.status() if consumer is not None else None
    return StatsOut(
        gateway=await gateway.current(),
        stream=read_stream_status(settings.stream_status_file),
        api=ApiFlowOut(
            predictions_per_s=round(prediction_rate.rate(), 2),
            predictions_total=reader.consumed if reader else prediction_rate.total,
            malformed_total=reader.malformed if reader else 0,
            devices=len(store),
            devices_evicted=store.evicted,
            reader_running=bool(reader and reader.running),
            reader_error=reader.last_error if reader else "not reading the predictions topic",
        ),
    )
