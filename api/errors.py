"""The error body of every 4xx/5xx the API answers, and request-validation errors in that shape.

FastAPI's own 422 lists pydantic's raw errors; here they become the same ``detail`` sentence
plus ``problems`` (field, message, bad value) that the ingest gateway answers with.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from common.schema import MIN_EPOCH_MS, FieldProblem


class ErrorOut(BaseModel):
    """Why a request failed; ``problems`` names each bad field and value when there are any."""

    detail: str
    problems: list[FieldProblem] = []


def _short(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict | list):
        return None  # the field name says enough; echoing a whole object does not help
    text = repr(value)
    return value if len(text) <= 80 else text[:77] + "..."


def validation_problems(error: RequestValidationError) -> list[FieldProblem]:
    problems = []
    for item in error.errors():
        loc = [str(part) for part in item.get("loc", ())]
        field = ".".join(loc[1:] if loc[:1] in (["body"], ["query"], ["path"]) else loc) or "body"
        message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
        value = item.get("input")
        if item.get("type") == "greater_than_equal" and loc[-1:] == ["t"]:
            message = f"timestamp {value} is not epoch milliseconds (before {MIN_EPOCH_MS})"
        problems.append(FieldProblem(field=field, message=message, value=_short(value)))
    return problems


def describe(problems: list[FieldProblem]) -> str:
    parts = []
    for problem in problems:
        got = "" if problem.value is None else f" (got {problem.value!r})"
        parts.append(f"{problem.field}: {problem.message}{got}")
    return "; ".join(parts)


async def validation_error_handler(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = validation_problems(error)
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None and request.url.path == "/v1/predict":
        metrics.predict_answers.labels(status="422").inc()
    body = ErrorOut(detail=describe(problems), problems=problems)
    return JSONResponse(body.model_dump(mode="json"), status_code=422)


def error_responses(**codes: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for routes: ``error_responses(e404="unknown phone")``."""
    return {int(code[1:]): {"model": ErrorOut, "description": text} for code, text in codes.items()}
