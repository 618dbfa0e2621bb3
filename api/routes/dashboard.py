"""The dashboard page at ``/``: static HTML, CSS and JS from the package, no outside assets.

The page needs the read (or admin) token. ``mbd up`` prints a URL carrying it once
(``/?token=…``); that request sets an HttpOnly, SameSite=Strict cookie with the token and
redirects to ``/``, so the token leaves the address bar and every request the page makes
(JSON every ``dashboard_refresh_s``, the model's report image) carries the cookie.
Without the token the page answers 401 with a short page saying how to open it.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.auth import COOKIE
from api.deps import CredentialsDep, SettingsDep
from common.schema import bearer_token

router = APIRouter(tags=["dashboard"])

STATIC_DIR = resources.files("api") / "static"
COOKIE_MAX_AGE_S = 7 * 24 * 3600

_LOCKED_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">
<title>mbd: sign in</title></head>
<body style="font-family: system-ui, sans-serif; margin: 3rem; max-width: 40rem">
<h1>401: this dashboard needs its read token</h1>
<p>Open it with the URL that <code>mbd up</code> printed, which ends in
<code>/?token=…</code>. The token is in <code>data/secrets/api-read-token</code> (or
<code>MBD_API_READ_TOKEN</code>).</p>
</body></html>
"""


@cache
def _page_template() -> str:
    return (STATIC_DIR / "index.html").read_text(encoding="utf-8")


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def dashboard(
    request: Request,
    settings: SettingsDep,
    credentials: CredentialsDep,
    token: Annotated[str | None, Query(max_length=512)] = None,
) -> Response:
    if token is not None:
        principal = credentials.authenticate(token)
        if principal is None or not principal.may_read():
            return HTMLResponse(_LOCKED_PAGE, status_code=401)
        opened = RedirectResponse("/", status_code=303)
        opened.set_cookie(
            COOKIE, token, max_age=COOKIE_MAX_AGE_S, httponly=True, samesite="strict", path="/"
        )
        return opened
    held = bearer_token(request.headers.get("authorization")) or request.cookies.get(COOKIE)
    principal = credentials.authenticate(held)
    if principal is None or not principal.may_read():
        return HTMLResponse(_LOCKED_PAGE, status_code=401, headers={"WWW-Authenticate": "Bearer"})
    refresh_ms = str(round(settings.dashboard_refresh_s * 1000))
    return HTMLResponse(
        _page_template().replace("{{refresh_ms}}", refresh_ms),
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )
