"""The error body of every 4xx/5xx the API answers: a stable ``code``, a sentence, problems.

FastAPI's own 422 lists pydantic's raw errors; here they become the same ``detail`` sentence
plus ``problems`` (field, message, bad value) that the ingest gateway answers with. Every
``HTTPException`` gets a ``code`` (its own, or one for its status), and anything unexpected is
logged here with its traceback and answered as ``internal`` without a word of it: no path,
no exception text, no secret ever leaves in an error body.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from common.schema import MIN_EPOCH_MS, FieldProblem, describe_problems, echo

log = logging.getLogger(__name__)

CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    500: "internal",
    503: "unavailable",
}


_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/[^\s'\",:;()]+")


def redact_paths(text: str, root: Path) -> str:
    """``text`` with paths under ``root`` made relative to it and any other absolute path
    replaced by ``<path>``: messages from the registry name files, callers need not see where."""
    for form in {str(root.resolve()), str(root.absolute()), str(root)}:
        text = text.replace(form + "/", "").replace(form, "the registry")
    return _ABSOLUTE_PATH.sub("<path>", text)


class ErrorOut(BaseModel):
    """Why a request failed; ``problems`` names each bad field and value when there are any."""

    code: str
    detail: str
    problems: list[FieldProblem] = []


class ApiError(HTTPException):
    """An HTTP error with its stable ``code`` (default: the one for its status)."""

    def __init__(
        self,
        status_code: int,
        detail: str,
        *,
        code: str | None = None,
        problems: list[FieldProblem] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status_code, detail=detail, headers=headers)
        self.code = code or CODES.get(status_code, "error")
        self.problems = problems or []


def error_response(
    status: int,
    detail: str,
    *,
    code: str | None = None,
    problems: list[FieldProblem] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorOut(code=code or CODES.get(status, "error"), detail=detail, problems=problems or [])
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


def _short(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict | list):
        return None  # the field name says enough; echoing a whole object does not help
    text = echo(value)
    return value if text == repr(value) else text


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


async def validation_error_handler(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = validation_problems(error)
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None and request.url.path == "/v1/predict":
        metrics.predict_answers.labels(status="422").inc()
    return error_response(422, describe_problems(problems), problems=problems)


async def http_error_handler(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    code, problems = getattr(error, "code", None), getattr(error, "problems", None)
    detail = error.detail if isinstance(error.detail, str) else CODES.get(error.status_code, "")
    return error_response(
        error.status_code, detail, code=code, problems=problems, headers=error.headers
    )


async def internal_error_handler(request: Request, error: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path, exc_info=error)
    return error_response(500, "internal error; the API's log has the details")


def error_responses(**codes: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for routes: ``error_responses(e404="unknown phone")``."""
    return {int(code[1:]): {"model": ErrorOut, "description": text} for code, text in codes.items()}
