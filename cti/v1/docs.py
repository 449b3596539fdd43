"""/api/v1/openapi.json (the OpenAPI 3 document, made from the endpoints' own models) and
/api/v1/docs (a page to browse it, served from here like every page: no CDN)."""
from __future__ import annotations

from pathlib import Path

from aiohttp import web

from hotline.web.api import Request

from .base import API, json_answer

STATIC = Path(__file__).resolve().parents[1] / "static"
_document: dict = {}


@API.endpoint("GET", "/openapi.json", roles=None, tag="docs", summary="This API's OpenAPI 3 document")
async def openapi(request: Request) -> web.Response:
    if not _document:
        _document.update(API.openapi())
    return json_answer(_document)


@API.endpoint("GET", "/docs", roles=None, tag="docs", summary="A page to browse the OpenAPI document")
async def docs(request: Request) -> web.StreamResponse:
    from ..app import PAGE_HEADERS
    return web.FileResponse(STATIC / "api.html", headers=PAGE_HEADERS)
