"""What both dashboards share: the app with its packaged assets and templates, and the
pages that answer a bad request or a missing object."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2.exceptions import UndefinedError
from starlette.exceptions import HTTPException

HERE = Path(__file__).parent
TITLES = {400: "Bad request", 404: "Not found", 502: "Not a node", 503: "Unavailable"}

UNEXPECTED_DATA = (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError, UndefinedError)
"""What drawing a page from data that is not as expected raises (here or in a template): a
damaged report.json (what its check when the run is opened lets through), another server's
JSON (OverflowError: a 400-digit number divided, a timestamp beyond the platform's)."""

Page = Callable[..., HTMLResponse]
"""``page(request, template, here, title, **context)``: a full page of the dashboard."""


def new_app(title: str, **kwargs: Any) -> tuple[FastAPI, Jinja2Templates]:
    """A dashboard app serving this package's assets (no CDN), and its templates."""
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None, **kwargs)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    return app, Jinja2Templates(directory=HERE / "templates")


def error_pages(app: FastAPI, page: Page) -> Callable[[Request, int, str], HTMLResponse]:
    """A malformed parameter is a 400 page naming it; a missing object (or a node that
    refuses or does not answer) is a page with its status and message. Returns
    ``error(request, status, message)``, that page."""

    def error(request: Request, status: int, message: str) -> HTMLResponse:
        response = page(request, "error.html", "", TITLES.get(status, "Error"), message=message)
        response.status_code = status
        return response

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> HTMLResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return error(request, 400, f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(HTTPException)
    async def not_found(request: Request, exc: HTTPException) -> HTMLResponse:
        return error(request, exc.status_code, str(exc.detail))

    return error


def described(exc: BaseException) -> str:
    """``exc`` on one line: its kind and (the start of) its message."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


def unexpected_data_pages(
    app: FastAPI, error: Callable[[Request, int, str], HTMLResponse], status: int, say: Callable[[str], str]
) -> None:
    """A page drawn from data not as expected (``UNEXPECTED_DATA``) is the ``status`` page
    with ``say(what was raised)``, not a server error."""

    async def unexpected(request: Request, exc: Exception) -> HTMLResponse:
        return error(request, status, say(described(exc)))

    for kind in UNEXPECTED_DATA:
        app.add_exception_handler(kind, unexpected)
