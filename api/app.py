"""Builds the prediction API from its settings: the one place where its parts are wired together.

The lifespan starts the model watcher (it loads the promoted version and follows ``CURRENT``)
and the predictions reader, and stops both on shutdown. Tests pass their own registry or turn
the reader off through the settings; nothing here reads the environment except
:func:`create_app_from_env`. The read and admin tokens are the configured ones, or those in
``secrets_dir`` (generated there, 0600, on first start): the API never runs open.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from pydantic import SecretStr
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.auth import Credentials
from api.consumer import PredictionConsumer
from api.errors import http_error_handler, internal_error_handler, validation_error_handler
from api.limits import BodyLimits
from api.metrics import ApiMetrics
from api.routes import dashboard, devices, health, models, predict, stats
from api.stats import GatewayRate, RateMeter
from api.store import LatestPredictions
from common.erasure import ErasedDevices
from common.files import ensure_secret
from common.openapi import add_body_schemas
from common.ratelimit import RateLimiter
from common.settings import ApiSettings
from ingest.devices import DeviceRegistry
from models.registry import Registry
from models.serving import PromotedModel

log = logging.getLogger(__name__)


def api_credentials(settings: ApiSettings) -> Credentials:
    """The tokens the API accepts: configured, or read from (generated into) ``secrets_dir``."""
    read = settings.read_token or SecretStr(ensure_secret(settings.read_token_file))
    admin = settings.admin_token or SecretStr(ensure_secret(settings.admin_token_file))
    limiter = RateLimiter(rate=settings.rate_per_token, burst=settings.burst_per_token)
    return Credentials(
        read_token=read,
        admin_token=admin,
        devices=DeviceRegistry(settings.devices_file),
        limiter=limiter,
    )


def create_app(settings: ApiSettings) -> FastAPI:
    registry = Registry(settings.registry.dir)
    promoted = PromotedModel(
        registry,
        check_interval_s=settings.model_check_interval_s,
        single_threaded=settings.single_thread_inference,
    )
    prediction_rate = RateMeter()

    def served_version() -> float:
        model = promoted.get()
        return float(model.version) if model else 0.0

    metrics = ApiMetrics(
        devices=lambda: len(store),
        serving_version=served_version,
        load_failing=lambda: 1.0 if promoted.last_error else 0.0,
    )
    store = LatestPredictions(
        max_devices=settings.max_devices,
        ttl_s=settings.device_ttl_s,
        on_evict=metrics.devices_evicted.inc,
        erased=ErasedDevices(settings.lake).current,
    )

    def counted(kept: bool) -> None:
        if kept:
            metrics.predictions_consumed.inc()
            prediction_rate.add()
        else:
            metrics.predictions_malformed.inc()

    consumer = (
        PredictionConsumer(
            settings.kafka,
            store,
            lookback_s=settings.device_ttl_s,
            client_id=settings.consumer_client_id,
            on_record=counted,
            wire=settings.wire,
        )
        if settings.consume_predictions
        else None
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        promoted.start()
        if consumer is not None:
            consumer.start()
        try:
            yield
        finally:
            if consumer is not None:
                consumer.stop()
            promoted.stop()

    app = FastAPI(
        title="mbd prediction API",
        version="1",
        summary="Latest activity per phone, ad-hoc predictions, the model registry, a dashboard.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.registry = registry
    app.state.promoted = promoted
    app.state.store = store
    app.state.consumer = consumer
    app.state.metrics = metrics
    app.state.prediction_rate = prediction_rate
    app.state.gateway_rate = GatewayRate(settings.gateway_url)
    app.state.credentials = api_credentials(settings)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(Exception, internal_error_handler)
    app.add_middleware(BodyLimits, max_body_bytes=settings.wire.max_body_bytes)
    for router in (devices.router, predict.router, models.router, stats.router, health.router):
        app.include_router(router)
    app.include_router(dashboard.router)
    app.mount("/static", StaticFiles(directory=Path(str(dashboard.STATIC_DIR))), name="static")
    add_body_schemas(app, predict.PredictIn)
    return app


def create_app_from_env() -> FastAPI:
    """uvicorn's factory (``mbd api``): settings from ``MBD_*`` variables."""
    return create_app(ApiSettings())
