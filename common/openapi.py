"""Request bodies that a route reads by hand, added to its app's OpenAPI document.

The gateway and ``POST /v1/predict`` read their bodies themselves (size, token and rate
first, then their own parsing and errors), so FastAPI does not see a body model; this adds
each model's JSON schema under ``components/schemas`` for clients and property tests.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel


def add_body_schemas(app: FastAPI, *models: type[BaseModel]) -> None:
    """Make ``app.openapi()`` include the schema of every model, under its class name."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in models:
                body = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(body.pop("$defs", {}))
                components[model.__name__] = body
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
