"""The model registry as the API shows it: versions, the promoted one, promote and rollback.

Reading is open; promoting and rolling back need the admin token. Either action switches
``CURRENT`` through :class:`~models.registry.Registry` (which loads the model first) and then
makes this process serve the new version before answering.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Path
from fastapi.responses import FileResponse
from pydantic import BaseModel

from api.deps import AdminDep, PromotedDep, RegistryDep
from api.errors import error_responses
from models.registry import ModelVersion, Registry, RegistryError
from models.registry_cli import trained_windows, version_number

router = APIRouter(prefix="/v1/models", tags=["models"])

VersionPath = Annotated[str, Path(description="a version number such as 3 or v3")]


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
    """Every readable version, oldest first, with the promoted (CURRENT) and serving ones."""

    promoted: int | None
    serving: int | None
    versions: list[ModelSummaryOut]


class ModelDetailOut(ModelSummaryOut):
    """One version with its figures (``metrics.json`` less the per-round history) and config."""

    classes: list[str]
    metrics: dict[str, Any]
    config: dict[str, Any]
    training_rounds: int


class ReasonIn(BaseModel):
    reason: str | None = None


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
        raise HTTPException(422, detail=str(error)) from None


def _get(registry: Registry, version: int) -> ModelVersion:
    try:
        return registry.get(version)
    except RegistryError as error:
        raise HTTPException(404, detail=str(error)) from None


def _promoted(registry: Registry) -> int | None:
    try:
        return registry.current_version()
    except RegistryError as error:
        raise HTTPException(503, detail=str(error)) from None


@router.get("", response_model=ModelsOut, summary="Every model version")
def list_models(registry: RegistryDep, promoted: PromotedDep) -> ModelsOut:
    current, serving = _promoted(registry), promoted.status().serving
    return ModelsOut(
        promoted=current,
        serving=serving,
        versions=[
            ModelSummaryOut(**_summary(entry, current, serving)) for entry in registry.versions()
        ],
    )


@router.get(
    "/current",
    response_model=ModelDetailOut,
    responses=error_responses(e404="no model is promoted"),
    summary="The promoted version with its metrics",
)
def current_model(registry: RegistryDep, promoted: PromotedDep) -> ModelDetailOut:
    current = _promoted(registry)
    if current is None:
        raise HTTPException(404, detail=f"no model is promoted in {registry.root}")
    return _detail(_get(registry, current), current, promoted.status().serving)


@router.get(
    "/{version}",
    response_model=ModelDetailOut,
    responses=error_responses(e404="no such version", e422="not a version number"),
    summary="One version with its metrics",
)
def model_version(version: VersionPath, registry: RegistryDep, promoted: PromotedDep) -> Any:
    entry = _get(registry, _version(version))
    return _detail(entry, _promoted(registry), promoted.status().serving)


@router.get(
    "/{version}/report.png",
    response_class=FileResponse,
    responses=error_responses(e404="no such version or it has no report"),
    summary="The version's PNG report: confusion matrix and training curves",
)
def model_report(version: VersionPath, registry: RegistryDep) -> FileResponse:
    entry = _get(registry, _version(version))
    if not entry.report_path.is_file():
        raise HTTPException(404, detail=f"v{entry.version} has no report at {entry.report_path}")
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
        raise HTTPException(409, detail=str(error)) from None
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
        raise HTTPException(409, detail=str(error)) from None
    promoted.refresh(force=True, wait=True)
    return PromotionOut(
        action="rollback", version=chosen.version, reason=reason, serving=promoted.status().serving
    )
