"""The model registry as the API shows it: versions, the promoted one, promote and rollback.

Reading needs the read (or admin) token; promoting and rolling back need the admin token.
Registry errors are answered with their paths made relative to the registry. Either action switches
``CURRENT`` through :class:`~models.registry.Registry` (which loads the model first) and then
makes this process serve the new version before answering.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from api.deps import AdminDep, PromotedDep, ReaderDep, RegistryDep
from api.errors import ApiError, error_responses, redact_paths
from models.registry import ModelVersion, Registry, RegistryError, RegistryStorageError
from models.registry_cli import trained_windows, version_number

router = APIRouter(prefix="/v1/models", tags=["models"])

VersionPath = Annotated[str, Path(max_length=20, description="a version number such as 3 or v3")]


class ModelSummaryOut(BaseModel):
    version: int
    created_at: datetime
    macro_f1: float | None
    accuracy: float | None
    train_windows: int | None
    holdout_windows: int | None
    promoted: bool
    serving: bool
    report_url: str | None


class ModelsOut(BaseModel):
    """Every readable version, oldest first, with the promoted (CURRENT) and serving ones, and
    why the promoted one does not serve when it failed to load."""

    promoted: int | None
    serving: int | None
    load_error: str | None
    versions: list[ModelSummaryOut]


class ModelDetailOut(ModelSummaryOut):
    """One version with its figures (``metrics.json`` less the per-round history) and config."""

    classes: list[str]
    metrics: dict[str, Any]
    config: dict[str, Any]
    training_rounds: int


class ReasonIn(BaseModel):
    reason: str | None = Field(default=None, max_length=500)


class PromotionOut(BaseModel):
    action: str
    version: int
    reason: str
    serving: int | None


def _summary(entry: ModelVersion, promoted: int | None, serving: int | None) -> dict[str, Any]:
    accuracy = entry.metrics.get("accuracy")
    data = entry.metrics.get("data")
    holdout = data.get("holdout_windows") if isinstance(data, dict) else None
    return {
        "version": entry.version,
        "created_at": entry.created_at,
        "macro_f1": entry.macro_f1,
        "accuracy": float(accuracy) if isinstance(accuracy, int | float) else None,
        "train_windows": trained_windows(entry.metrics),
        "holdout_windows": holdout if isinstance(holdout, int) else None,
        "promoted": entry.version == promoted,
        "serving": entry.version == serving,
        "report_url": f"/v1/models/{entry.version}/report.png"
        if entry.report_path.is_file()
        else None,
    }


def _detail(entry: ModelVersion, promoted: int | None, serving: int | None) -> ModelDetailOut:
    metrics = {key: value for key, value in entry.metrics.items() if key != "history"}
    history = entry.metrics.get("history")
    spec = entry.config.get("spec")
    classes = spec.get("classes") if isinstance(spec, dict) else None
    return ModelDetailOut(
        **_summary(entry, promoted, serving),
        classes=list(classes) if isinstance(classes, list) else list(metrics.get("classes", [])),
        metrics=metrics,
        config=entry.config,
        training_rounds=len(history) if isinstance(history, list) else 0,
    )


def _version(text: str) -> int:
    try:
        return version_number(text)
    except ValueError as error:
        raise ApiError(422, str(error)) from None


def _registry_error(status: int, registry: Registry, error: RegistryError) -> ApiError:
    if isinstance(error, RegistryStorageError):  # the disk failed, not the request
        return ApiError(503, redact_paths(str(error), registry.root), code="registry_storage")
    return ApiError(status, redact_paths(str(error), registry.root))


def _get(registry: Registry, version: int) -> ModelVersion:
    try:
        return registry.get(version)
    except RegistryError as error:
        raise _registry_error(404, registry, error) from None


def _promoted(registry: Registry) -> int | None:
    try:
        return registry.current_version()
    except RegistryError as error:
        raise _registry_error(503, registry, error) from None


_READ_ERRORS = error_responses(e401="no token or an unknown one", e403="a device token")


@router.get(
    "", response_model=ModelsOut, responses=_READ_ERRORS, summary="Every model version (read)"
)
def list_models(registry: RegistryDep, promoted: PromotedDep, _reader: ReaderDep) -> ModelsOut:
    current, status = _promoted(registry), promoted.status()
    serving = status.serving
    return ModelsOut(
        promoted=current,
        serving=serving,
        load_error=redact_paths(status.last_error, registry.root) if status.last_error else None,
        versions=[
            ModelSummaryOut(**_summary(entry, current, serving)) for entry in registry.versions()
        ],
    )


@router.get(
    "/current",
    response_model=ModelDetailOut,
    responses={**_READ_ERRORS, **error_responses(e404="no model is promoted")},
    summary="The promoted version with its metrics (read)",
)
def current_model(
    registry: RegistryDep, promoted: PromotedDep, _reader: ReaderDep
) -> ModelDetailOut:
    current = _promoted(registry)
    if current is None:
        raise ApiError(404, "no model is promoted")
    return _detail(_get(registry, current), current, promoted.status().serving)


@router.get(
    "/{version}",
    response_model=ModelDetailOut,
    responses={**_READ_ERRORS, **error_responses(e404="no such version", e422="not a version")},
    summary="One version with its metrics (read)",
)
def model_version(
    version: VersionPath, registry: RegistryDep, promoted: PromotedDep, _reader: ReaderDep
) -> Any:
    entry = _get(registry, _version(version))
    return _detail(entry, _promoted(registry), promoted.status().serving)


@router.get(
    "/{version}/report.png",
    response_class=FileResponse,
    responses={**_READ_ERRORS, **error_responses(e404="no such version or it has no report")},
    summary="The version's PNG report: confusion matrix and training curves (read)",
)
def model_report(version: VersionPath, registry: RegistryDep, _reader: ReaderDep) -> FileResponse:
    entry = _get(registry, _version(version))
    if not entry.report_path.is_file():
        raise ApiError(404, f"v{entry.version} has no report")
    return FileResponse(entry.report_path, media_type="image/png")


_ADMIN_ERRORS = error_responses(
    e401="no admin token", e403="wrong admin token, or admin actions are off"
)


@router.post(
    "/{version}/promote",
    response_model=PromotionOut,
    responses={**_ADMIN_ERRORS, **error_responses(e404="no such version", e409="it does not load")},
    summary="Point CURRENT at a version (admin)",
)
def promote_model(
    version: VersionPath,
    registry: RegistryDep,
    promoted: PromotedDep,
    _admin: AdminDep,
    body: Annotated[ReasonIn | None, Body()] = None,
) -> PromotionOut:
    number = _version(version)
    _get(registry, number)
    reason = (body.reason if body else None) or "promoted through the API"
    try:
        chosen = registry.promote(number, reason=reason)
    except RegistryError as error:
        raise _registry_error(409, registry, error) from None
    promoted.refresh(force=True, wait=True)
    return PromotionOut(
        action="promote", version=chosen.version, reason=reason, serving=promoted.status().serving
    )


@router.post(
    "/rollback",
    response_model=PromotionOut,
    responses={**_ADMIN_ERRORS, **error_responses(e409="nothing to roll back to")},
    summary="Go back to the version promoted before the current one (admin)",
)
def rollback_model(
    registry: RegistryDep,
    promoted: PromotedDep,
    _admin: AdminDep,
    body: Annotated[ReasonIn | None, Body()] = None,
) -> PromotionOut:
    reason = (body.reason if body else None) or "rolled back through the API"
    try:
        chosen = registry.rollback(reason=reason)
    except RegistryError as error:
        raise _registry_error(409, registry, error) from None
    promoted.refresh(force=True, wait=True)
    return PromotionOut(
        action="rollback", version=chosen.version, reason=reason, serving=promoted.status().serving
    )
