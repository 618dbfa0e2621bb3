"""POST /v1/predict: raw samples → the shared window function → the serving model.

The window scored is the ``length_s`` span that ends at the latest sample (its last grid point
falls on that sample), unless the request names ``window_start_ms`` — the streaming job's
slide-aligned windows can be reproduced that way. Samples with a null axis are left out, as
the streaming job's cleaning does; the rest go through :func:`common.windows.resample`, the
same code that made the training windows, and must cover ``min_coverage`` of the window.
"""

from __future__ import annotations

import time
from typing import Annotated

import numpy as np
from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api.deps import MetricsDep, ServingModelDep, SettingsDep
from api.errors import ErrorOut, error_responses
from common.schema import AccelSample, DeviceId, EventTime, FieldProblem
from common.settings import WindowSettings
from common.windows import WindowTensor, resample

router = APIRouter(prefix="/v1", tags=["predict"])


class PredictIn(BaseModel):
    """Raw accelerometer samples in the wire format. A phone's whole batch body may be posted
    as is: fields other than these (batch_seq, gps, label …) are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    accel: Annotated[list[AccelSample], Field(min_length=1)]
    device_id: DeviceId | None = None
    window_start_ms: EventTime | None = Field(
        default=None, description="score this window; default: the one ending at the last sample"
    )


class ScoredWindow(BaseModel):
    start_ms: int
    end_ms: int
    coverage: float
    samples_used: int


class PredictOut(BaseModel):
    device_id: str | None
    activity: str
    probabilities: dict[str, float]
    model_version: int
    window: ScoredWindow


def default_window_start(last_t_ms: int, window: WindowSettings) -> int:
    """Start of the window whose last grid point is the latest sample."""
    return last_t_ms - round((window.samples - 1) * 1000.0 / window.rate_hz)


class WindowRejected(ValueError):
    def __init__(self, detail: str, problem: FieldProblem) -> None:
        super().__init__(detail)
        self.problem = problem


def window_from_samples(
    body: PredictIn, window: WindowSettings, *, max_samples: int
) -> tuple[int, WindowTensor]:
    """(start, resampled window) of the request, or :class:`WindowRejected` saying why not."""
    if len(body.accel) > max_samples:
        raise WindowRejected(
            f"request has {len(body.accel)} accel samples, limit is {max_samples}",
            FieldProblem(field="accel", message="too many samples", value=len(body.accel)),
        )
    usable = [s for s in body.accel if s.x is not None and s.y is not None and s.z is not None]
    if not usable:
        raise WindowRejected(
            "every accel sample has a null axis; nothing to make a window from",
            FieldProblem(field="accel", message="no sample with all three axes"),
        )
    t_ms = np.fromiter((s.t for s in usable), dtype=np.int64, count=len(usable))
    xyz = np.array([(s.x, s.y, s.z) for s in usable], dtype=np.float64)
    start = body.window_start_ms
    if start is None:
        start = default_window_start(int(t_ms.max()), window)
    result = resample(t_ms, xyz, start, window)
    if result.coverage < window.min_coverage:
        end = start + window.length_ms
        raise WindowRejected(
            f"samples cover {result.coverage:.0%} of the {window.length_s:g} s window "
            f"[{start}, {end}) ms at {window.rate_hz:g} Hz ({result.samples_used} usable "
            f"samples inside it); need at least {window.min_coverage:.0%}",
            FieldProblem(field="accel", message="too little coverage", value=result.coverage),
        )
    return start, result


@router.post(
    "/predict",
    response_model=PredictOut,
    responses=error_responses(
        e422="the samples are malformed or cannot make a window (coverage named)",
        e503="no model is promoted or loaded yet; see Retry-After",
    ),
    summary="Predict the activity of raw accelerometer samples",
)
def predict(
    body: PredictIn, settings: SettingsDep, model: ServingModelDep, metrics: MetricsDep
) -> PredictOut | JSONResponse:
    # A plain function: FastAPI runs it on its thread pool, so scoring never blocks the loop.
    started = time.perf_counter()
    status = "200"
    try:
        try:
            start, result = window_from_samples(
                body, settings.window, max_samples=settings.wire.max_accel_samples
            )
        except WindowRejected as rejected:
            status = "422"
            error = ErrorOut(detail=str(rejected), problems=[rejected.problem])
            return JSONResponse(error.model_dump(mode="json"), status_code=422)
        tensor = result.tensor.reshape(1, -1)
        if tensor.shape[1] != model.input_dim:
            status = "503"
            raise HTTPException(
                503,
                detail=f"model v{model.version} takes {model.input_dim} values but the window "
                f"settings give {tensor.shape[1]} ({settings.window.samples} samples × 3)",
            )
        probabilities = model.predict(tensor)[0]
        named = zip(model.classes, probabilities, strict=True)
        return PredictOut(
            device_id=body.device_id,
            activity=model.classes[int(np.argmax(probabilities))],
            probabilities={name: round(float(p), 6) for name, p in named},
            model_version=model.version,
            window=ScoredWindow(
                start_ms=start,
                end_ms=start + settings.window.length_ms,
                coverage=round(result.coverage, 4),
                samples_used=result.samples_used,
            ),
        )
    finally:
        metrics.predict_answers.labels(status=status).inc()
        metrics.predict_latency.observe(time.perf_counter() - started)
