"""POST /v1/predict: raw samples → the shared window function → the serving model.

The window scored is the ``length_s`` span that ends at the latest sample (its last grid point
falls on that sample), unless the request names ``window_start_ms`` — the streaming job's
slide-aligned windows can be reproduced that way. Samples with a null axis are left out, as
the streaming job's cleaning does; the rest go through :func:`common.windows.resample`, the
same code that made the training windows, and must cover ``min_coverage`` of the window.

The caller's token and rate are checked before the body is read; the body (at most the wire's
``max_body_bytes``, see :mod:`api.limits`) is parsed on the thread pool, never on the event
loop, with the same time bounds as the gateway's.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from api.deps import MetricsDep, PrincipalDep, ServingModelDep, SettingsDep
from api.errors import ApiError, error_response, error_responses
from common.schema import (
    AccelSample,
    DeviceId,
    EventTime,
    FieldProblem,
    check_event_time,
    describe_problems,
    describe_validation_error,
)
from common.settings import ApiSettings, WindowSettings
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

    @model_validator(mode="after")
    def _not_in_the_future(self, info: ValidationInfo) -> PredictIn:
        """Times past the wire's future limit are refused, as the gateway refuses them."""
        if info.context:
            latest = max(sample.t for sample in self.accel)
            check_event_time(latest, info)
            if self.window_start_ms is not None:
                check_event_time(self.window_start_ms, info)
        return self


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


_OPENAPI_EXTRA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictIn"}}},
    },
}


def parse_request(body: bytes, settings: ApiSettings) -> PredictIn:
    """The request body as :class:`PredictIn`, or a 422 naming each bad field."""
    context = {"wire": settings.wire, "now_ms": int(time.time() * 1000)}
    try:
        return PredictIn.model_validate_json(body, context=context)
    except ValidationError as error:
        problems = describe_validation_error(error)
        raise ApiError(422, describe_problems(problems), problems=problems) from None


@router.post(
    "/predict",
    response_model=PredictOut,
    responses=error_responses(
        e401="no token or an unknown one",
        e413="body over the wire's limit",
        e415="the body is not declared as application/json",
        e422="the samples are malformed or cannot make a window (coverage named)",
        e429="this credential is over its request rate; see Retry-After",
        e503="no model is promoted or loaded yet; see Retry-After",
    ),
    openapi_extra=_OPENAPI_EXTRA,
    summary="Predict the activity of raw accelerometer samples (read or device token)",
)
async def predict(
    request: Request,
    _caller: PrincipalDep,
    settings: SettingsDep,
    model: ServingModelDep,
    metrics: MetricsDep,
) -> PredictOut | JSONResponse:
    started = time.perf_counter()
    status = "500"
    try:
        body = await request.body()  # bounded by api.limits.BodyLimits
        answer = await run_in_threadpool(_score, body, settings, model)
        status = "200" if isinstance(answer, PredictOut) else str(answer.status_code)
        return answer
    except ApiError as error:
        status = str(error.status_code)
        raise
    finally:
        metrics.predict_answers.labels(status=status).inc()
        metrics.predict_latency.observe(time.perf_counter() - started)


def _score(body: bytes, settings: ApiSettings, model: Any) -> PredictOut | JSONResponse:
    """Parse, window and score one request: on the thread pool, off the event loop."""
    request = parse_request(body, settings)
    try:
        start, result = window_from_samples(
            request, settings.window, max_samples=settings.wire.max_accel_samples
        )
    except WindowRejected as rejected:
        return error_response(422, str(rejected), problems=[rejected.problem])
    tensor = result.tensor.reshape(1, -1)
    if tensor.shape[1] != model.input_dim:
        raise ApiError(
            503,
            f"model v{model.version} takes {model.input_dim} values but the window "
            f"settings give {tensor.shape[1]} ({settings.window.samples} samples × 3)",
            code="model_mismatch",
        )
    probabilities = model.predict(tensor)[0]
    named = zip(model.classes, probabilities, strict=True)
    return PredictOut(
        device_id=request.device_id,
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
