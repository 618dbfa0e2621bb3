"""The dashboard page at ``/``: static HTML, CSS and JS from the package, no outside assets.

The page polls the JSON endpoints (devices, models, stats) every ``dashboard_refresh_s``.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from api.deps import SettingsDep

router = APIRouter(tags=["dashboard"])

STATIC_DIR = resources.files("api") / "static"


@cache
def _page_template() -> str:
    return (STATIC_DIR / "index.html").read_text(encoding="utf-8")


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def dashboard(settings: SettingsDep) -> HTMLResponse:
    refresh_ms = str(round(settings.dashboard_refresh_s * 1000))
    return HTMLResponse(
        _page_template().replace("{{refresh_ms}}", refresh_ms),
        headers={"Cache-Control": "no-cache"},
    )
