"""``/docs`` (Swagger UI) and ``/redoc``, served from the broker itself, never from a CDN.

FastAPI's own pages load their JavaScript and CSS from a CDN, so on a network without one (the
usual place for a broker of classified reports) they are blank. The assets here are the ones the
``fastapi-offline`` package ships (Swagger UI 5, which reads OpenAPI 3.1, and ReDoc), installed
with the broker extra. Without that package both pages answer 404 and say so; ``/openapi.json``
describes the API either way. Nobody signs these requests: they hold no partner's data.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Final

from fastapi import APIRouter, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import JSONResponse, Response

router = APIRouter(include_in_schema=False)

ASSETS_PACKAGE: Final = "fastapi_offline"
_MEDIA_TYPES: Final = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
TITLE: Final = "Tearline broker API"


@cache
def asset(name: str) -> bytes | None:
    """One of the packaged files, or None when it (or the package) is not installed."""
    if name not in _MEDIA_TYPES:
        return None
    try:
        return resources.files(ASSETS_PACKAGE).joinpath("static", name).read_bytes()
    except (ModuleNotFoundError, FileNotFoundError, OSError):
        return None


def _missing() -> JSONResponse:
    return JSONResponse(
        {
            "error": {
                "code": "not_found",
                "message": f"the API pages need the {ASSETS_PACKAGE} package (pip install "
                "'tearline[broker]'); /openapi.json describes the API",
                "details": None,
            }
        },
        status_code=404,
    )


def _base(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


async def swagger_ui(request: Request) -> Response:
    if asset("swagger-ui-bundle.js") is None:
        return _missing()
    base = _base(request)
    return get_swagger_ui_html(
        openapi_url=f"{base}{request.app.openapi_url}",
        title=TITLE,
        swagger_js_url=f"{base}/docs/assets/swagger-ui-bundle.js",
        swagger_css_url=f"{base}/docs/assets/swagger-ui.css",
        swagger_favicon_url=f"{base}/docs/assets/favicon.png",
        oauth2_redirect_url=f"{base}/docs/oauth2-redirect",
        # No badge fetched from validator.swagger.io either.
        swagger_ui_parameters={"validatorUrl": None, "deepLinking": True},
    )


async def swagger_ui_redirect(request: Request) -> Response:
    return get_swagger_ui_oauth2_redirect_html()


async def redoc(request: Request) -> Response:
    if asset("redoc.standalone.js") is None:
        return _missing()
    base = _base(request)
    return get_redoc_html(
        openapi_url=f"{base}{request.app.openapi_url}",
        title=TITLE,
        redoc_js_url=f"{base}/docs/assets/redoc.standalone.js",
        redoc_favicon_url=f"{base}/docs/assets/favicon.png",
        with_google_fonts=False,
    )


async def docs_asset(request: Request) -> Response:
    name = str(request.path_params["name"])
    data = asset(name)
    if data is None:
        return _missing()
    return Response(
        data,
        media_type=_MEDIA_TYPES[name],
        headers={"cache-control": "public, max-age=86400", "x-content-type-options": "nosniff"},
    )


# Plain routes, as FastAPI adds its own docs pages: GET and HEAD, outside the schema.
for _path, _endpoint in (
    ("/docs", swagger_ui),
    ("/docs/oauth2-redirect", swagger_ui_redirect),
    ("/redoc", redoc),
    ("/docs/assets/{name}", docs_asset),
):
    router.add_route(_path, _endpoint, methods=["GET"], include_in_schema=False)
