"""Runs the prediction API under uvicorn: what ``mbd api`` calls."""

from __future__ import annotations

from common.settings import ApiSettings


def serve(settings: ApiSettings) -> None:
    """Serve until interrupted, in one process: the per-phone view lives in its memory."""
    import uvicorn

    from api.app import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="info",
        access_log=settings.access_log,
    )
