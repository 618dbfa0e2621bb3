"""FastAPI dependencies of the prediction API: what a route needs, looked up on the app's state."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.consumer import PredictionConsumer
from api.metrics import ApiMetrics
from api.stats import GatewayRate, RateMeter
from api.store import LatestPredictions
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
            detail = f"no model is promoted yet in {promoted.registry.root}"
        elif status.last_error:
            detail = f"promoted model is not serving: {status.last_error}"
        else:
            detail = f"promoted model v{status.promoted} is still loading"
        raise HTTPException(503, detail=detail, headers={"Retry-After": "5"})
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


_bearer = HTTPBearer(auto_error=False, description="the admin token (MBD_API_ADMIN_TOKEN)")


async def require_admin(
    settings: Annotated[ApiSettings, Depends(get_settings)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """401 without a bearer token, 403 with a wrong one or when no admin token is configured."""
    if credentials is None or not credentials.credentials:
        raise HTTPException(
            401,
            detail="missing 'Authorization: Bearer <admin token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if settings.admin_token is None:
        raise HTTPException(403, detail="admin actions are off: MBD_API_ADMIN_TOKEN is not set")
    expected = settings.admin_token.get_secret_value().encode()
    if not secrets.compare_digest(credentials.credentials.encode(), expected):
        raise HTTPException(403, detail="this token is not the admin token")


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
