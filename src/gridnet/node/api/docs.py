"""``/docs``: the API's Swagger UI, served from assets shipped with the package.

FastAPI's own page loads Swagger UI from a CDN, so it is blank on a node with no internet.
This page loads the Swagger UI JavaScript, CSS and favicon that the ``fastapi-offline``
dependency ships (Swagger UI 5, which renders the OpenAPI 3.1 that FastAPI emits; Swagger
UI 4 cannot) from ``/docs/assets/`` on the node itself, and names no other host:

- the online validator is off (``validatorUrl: null``): the layout FastAPI uses shows no
  validator badge today, and with this none ever sends the spec's address to
  validator.swagger.io (Swagger UI's default, used on any page not on localhost);
- there is no OAuth2 redirect page: Swagger UI needs it only for an OAuth2 login flow, and
  the API has none (a token it asks for is an HTTP bearer token, pasted into Authorize).
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

DOCS_URL = "/docs"
ASSETS_URL = "/docs/assets"
"""Where the Swagger UI files are served (``swagger-ui-bundle.js``, ``swagger-ui.css``,
``favicon.png``)."""
ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))
"""The Swagger UI files as installed with the ``fastapi-offline`` package."""
SWAGGER_UI_PARAMETERS: dict[str, Any] = {"validatorUrl": None}
"""Added to FastAPI's defaults: no request to the online validator."""


RANGE_HEADERS = (b"range", b"if-range")


class WholeFiles(StaticFiles):
    """Static files served whole, never a byte range (RFC 9110 lets a server ignore ``Range``:
    the answer is then 200 and the whole file). Starlette answered a malformed ``Range`` 400
    and one past the end 416, in plain text, where every error of the API is JSON
    ``{code, message}``; the assets are a few files a browser loads whole."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = [(k, v) for k, v in scope["headers"] if k.lower() not in RANGE_HEADERS]
            scope = {**scope, "headers": headers}
        await super().__call__(scope, receive, send)

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        if "accept-ranges" in response.headers:  # (no ranges are offered)
            del response.headers["accept-ranges"]
        return response


def docs_routes(app: FastAPI) -> None:
    """Add ``/docs`` and the files it loads (under ``/docs/assets/``) to ``app``."""
    # check_dir: a missing asset directory (a broken install) fails here, not as a blank page.
    app.mount(ASSETS_URL, WholeFiles(directory=ASSETS_DIR, check_dir=True), name="docs-assets")

    @app.get(DOCS_URL, include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = str(request.scope.get("root_path", ""))  # behind a proxy that strips a prefix
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            oauth2_redirect_url=None,
            swagger_ui_parameters={**(app.swagger_ui_parameters or {}), **SWAGGER_UI_PARAMETERS},
        )
