"""FastAPI dependencies of the prediction API: what a route needs, looked up on the app's state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from api.auth import COOKIE, Credentials, Principal
from api.consumer import PredictionConsumer
from api.errors import ApiError, redact_paths
from api.metrics import ApiMetrics
from api.stats import GatewayRate, RateMeter
from api.store import LatestPredictions
from common.schema import bearer_token
from common.settings import ApiSettings
from models.registry import Registry
from models.serving import LoadedModel, PromotedModel


async def get_settings(request: Request) -> ApiSettings:
    return request.app.state.settings


async def get_registry(request: Request) -> Registry:
    return request.app.state.registry


async def get_promoted(request: Request) -> PromotedModel:
    return request.app.state.promoted


async def get_serving_model(
    promoted: Annotated[PromotedModel, Depends(get_promoted)],
) -> LoadedModel:
    """The model serving now, kept for the whole request; 503 while there is none."""
    model = promoted.get()
    if model is None:
        status = promoted.status()
        if status.promoted is None:
            detail = "no model is promoted yet"
        elif status.last_error:
            error = redact_paths(status.last_error, promoted.registry.root)
            detail = f"promoted model is not serving: {error}"
        else:
            detail = f"promoted model v{status.promoted} is still loading"
        raise ApiError(503, detail, code="no_model", headers={"Retry-After": "5"})
    return model


async def get_store(request: Request) -> LatestPredictions:
    return request.app.state.store


async def get_metrics(request: Request) -> ApiMetrics:
    return request.app.state.metrics


async def get_consumer(request: Request) -> PredictionConsumer | None:
    return request.app.state.consumer


async def get_gateway_rate(request: Request) -> GatewayRate:
    return request.app.state.gateway_rate


async def get_prediction_rate(request: Request) -> RateMeter:
    return request.app.state.prediction_rate


# Declared for the OpenAPI document; the token is read by :func:`authenticated` itself.
_bearer = HTTPBearer(auto_error=False, description="the read, admin or a device token")


async def get_credentials(request: Request) -> Credentials:
    return request.app.state.credentials


async def authenticated(
    request: Request,
    credentials: Annotated[Credentials, Depends(get_credentials)],
    _scheme: Annotated[object, Depends(_bearer)],
) -> Principal:
    """The caller, from its bearer token (or, for GET, the dashboard's cookie), with one
    request taken from its rate limit; 401 without a known token, 429 over the limit."""
    token = bearer_token(request.headers.get("authorization"))
    if token is None and request.method in ("GET", "HEAD"):
        token = request.cookies.get(COOKIE) or None
    principal = credentials.authenticate(token)
    if principal is None:
        detail = "unknown token" if token else "missing 'Authorization: Bearer <token>'"
        raise ApiError(401, detail, headers={"WWW-Authenticate": "Bearer"})
    wait_s = credentials.limiter.acquire(principal.key)
    if wait_s > 0:
        raise ApiError(
            429,
            f"this credential is over {credentials.limiter.rate:g} requests/s",
            headers={"Retry-After": credentials.limiter.retry_after_header(wait_s)},
        )
    return principal


async def require_reader(principal: Annotated[Principal, Depends(authenticated)]) -> Principal:
    """The read or admin token: 403 for a device token, which reads only its own phone."""
    if not principal.may_read():
        raise ApiError(
            403, "a device token reads only its own phone: GET /v1/devices/<its id>/activity"
        )
    return principal


async def require_admin(principal: Annotated[Principal, Depends(authenticated)]) -> None:
    if principal.role != "admin":
        raise ApiError(403, "this token is not the admin token")


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
PromotedDep = Annotated[PromotedModel, Depends(get_promoted)]
ServingModelDep = Annotated[LoadedModel, Depends(get_serving_model)]
StoreDep = Annotated[LatestPredictions, Depends(get_store)]
MetricsDep = Annotated[ApiMetrics, Depends(get_metrics)]
ConsumerDep = Annotated[PredictionConsumer | None, Depends(get_consumer)]
GatewayRateDep = Annotated[GatewayRate, Depends(get_gateway_rate)]
PredictionRateDep = Annotated[RateMeter, Depends(get_prediction_rate)]
AdminDep = Annotated[None, Depends(require_admin)]
CredentialsDep = Annotated[Credentials, Depends(get_credentials)]
PrincipalDep = Annotated[Principal, Depends(authenticated)]
ReaderDep = Annotated[Principal, Depends(require_reader)]
