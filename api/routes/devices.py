"""Phones and their latest activity, as read from the predictions topic; erasing a phone."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel

from api.deps import AdminDep, CredentialsDep, PrincipalDep, ReaderDep, SettingsDep, StoreDep
from api.errors import ApiError, error_responses
from api.store import DeviceActivity
from common.erasure import UnknownDevice, forget

router = APIRouter(prefix="/v1/devices", tags=["devices"])


class WindowOut(BaseModel):
    start_ms: int
    end_ms: int
    start: datetime
    end: datetime


class DeviceActivityOut(BaseModel):
    """A phone's latest predicted activity; ``age_s`` is how long ago its window ended."""

    device_id: str
    activity: str
    probabilities: dict[str, float]
    window: WindowOut
    model_version: int
    age_s: float
    received_s_ago: float


class DevicesOut(BaseModel):
    """One page of phones heard from within ``within_s``, ordered by id, and their activity mix.

    ``next_after`` is the cursor of the next page (pass it as ``after``), None on the last."""

    items: list[DeviceActivityOut]
    total: int
    offset: int
    limit: int
    next_offset: int | None
    next_after: str | None
    within_s: float
    activities: dict[str, int]


def _as_out(entry: DeviceActivity, now: float) -> DeviceActivityOut:
    p = entry.prediction
    return DeviceActivityOut(
        device_id=p.device_id,
        activity=p.activity,
        probabilities=p.probabilities,
        window=WindowOut(
            start_ms=p.window_start_ms,
            end_ms=p.window_end_ms,
            start=datetime.fromtimestamp(p.window_start_ms / 1000, UTC),
            end=datetime.fromtimestamp(p.window_end_ms / 1000, UTC),
        ),
        model_version=p.model_version,
        age_s=round(max(0.0, now - p.window_end_ms / 1000), 3),
        received_s_ago=round(max(0.0, now - entry.received_at), 3),
    )


_AUTH_ERRORS = error_responses(
    e401="no token or an unknown one", e403="a device token asking for another phone"
)


@router.get(
    "",
    response_model=DevicesOut,
    responses=_AUTH_ERRORS,
    summary="Active phones and their latest activity (read token)",
)
async def list_devices(
    store: StoreDep,
    settings: SettingsDep,
    _reader: ReaderDep,
    within_s: Annotated[
        float | None, Query(gt=0, description="heard from within this many seconds (≤ TTL)")
    ] = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[
        str | None, Query(min_length=1, max_length=64, description="cursor: next_after")
    ] = None,
) -> DevicesOut:
    within = min(within_s or settings.device_ttl_s, settings.device_ttl_s)
    page = store.page(within_s=within, offset=offset, limit=limit, after=after)
    now = time.time()
    following = offset + len(page.items)
    return DevicesOut(
        items=[_as_out(entry, now) for entry in page.items],
        total=page.total,
        offset=offset,
        limit=limit,
        next_offset=following if page.more and after is None else None,
        next_after=page.items[-1].prediction.device_id if page.more and page.items else None,
        within_s=within,
        activities=page.activities,
    )


@router.get(
    "/{device_id}/activity",
    response_model=DeviceActivityOut,
    responses={**_AUTH_ERRORS, **error_responses(e404="no prediction for it within the TTL")},
    summary="A phone's latest activity (read token, or the phone's own device token)",
)
async def device_activity(
    store: StoreDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    device_id: Annotated[str, Path(min_length=1, max_length=64)],
) -> DeviceActivityOut:
    if not principal.may_read(device_id):
        raise ApiError(403, "a device token reads only its own phone")
    entry = store.get(device_id)
    if entry is None:
        raise ApiError(
            404,
            f"no prediction for device {device_id!r} in the last {settings.device_ttl_s:g} s",
        )
    return _as_out(entry, time.time())


class ErasureOut(BaseModel):
    """What an erasure removed; the same entry is appended to the lake's erasure log."""

    erasure_id: str
    device_id: str
    state: str
    requested_by: str
    windows_deleted: int
    quarantine_deleted: int
    files_removed: int
    tokens_revoked: int
    model_versions: list[int]
    purge_after: str | None


@router.delete(
    "/{device_id}",
    response_model=ErasureOut,
    responses=error_responses(
        e401="no admin token", e403="not the admin token", e404="no such phone"
    ),
    summary="Erase a phone: its token, its lake rows and files, its latest activity (admin)",
)
def forget_device(
    store: StoreDep,
    settings: SettingsDep,
    credentials: CredentialsDep,
    _admin: AdminDep,
    device_id: Annotated[str, Path(min_length=1, max_length=64)],
) -> ErasureOut:
    try:
        erasure = forget(
            device_id,
            lake=settings.lake,
            devices=credentials.devices,
            registry_dir=settings.registry.dir,
            requested_by="api:admin",
        )
    except UnknownDevice as error:
        raise ApiError(404, str(error)) from None
    store.forget(device_id)
    return ErasureOut(**erasure.as_dict())
