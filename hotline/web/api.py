"""A versioned HTTP API whose endpoints are declared once, with pydantic models for their path,
query and body: the same models validate every request and make the OpenAPI 3 document.

An endpoint says who may call it (``roles``; ``None``: anyone). A request is refused before the
handler runs: 401 unsigned, 403 for a role not listed, 400 naming the field for a bad or unknown
parameter or body field, 415 for a body that is not JSON (a cross-site form cannot send one),
413 for a body over the endpoint's limit. Errors are ``{"error": "one line", ...}``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional, Sequence

from aiohttp import web
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

from ..auth.roles import Principal, Role

__all__ = ["Api", "ApiError", "Endpoint", "Request", "error_response"]

# Set on every request by hotline.web.security: who is asking, and why a token sent was not taken.
PRINCIPAL: web.RequestKey[Optional[Principal]] = web.RequestKey("hotline.principal")
WHY_ANONYMOUS: web.RequestKey[Optional[str]] = web.RequestKey("hotline.why_anonymous")


class ApiError(web.HTTPException):
    """An error answered as JSON: ``{"error": message, **extra}``."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        self.status_code = status
        super().__init__(text=json.dumps({"error": message, **extra}, ensure_ascii=False),
                         content_type="application/json")


def error_response(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


class ErrorBody(BaseModel):
    error: str


@dataclass
class Request:
    """What a handler gets: the aiohttp request, who asks, and the validated path, query and body."""
    http: web.Request
    principal: Optional[Principal]
    path: Any = None
    query: Any = None
    body: Any = None

    @property
    def app(self) -> web.Application:
        return self.http.app

    @property
    def user(self) -> Principal:
        assert self.principal is not None          # (an endpoint with roles has one)
        return self.principal


Handler = Callable[[Request], Awaitable[web.StreamResponse]]


@dataclass
class Endpoint:
    method: str
    path: str                               # below the API's prefix, e.g. "/calls"
    handler: Handler
    roles: Optional[frozenset[Role]]        # None: no sign-in needed
    summary: str
    tag: str
    path_model: Optional[type[BaseModel]] = None
    query_model: Optional[type[BaseModel]] = None
    body_model: Optional[type[BaseModel]] = None
    response_model: Optional[type[BaseModel]] = None
    max_body: int = 64 * 1024
    raw_body: Optional[str] = None          # a non-JSON body accepted as is (its media type), e.g. text/csv
    statuses: tuple[int, ...] = ()          # answers besides 200 and the refusals every endpoint has
    success: int = 200


def _field_errors(exc: ValidationError, where: str) -> ApiError:
    first = exc.errors()[0]
    name = ".".join(str(part) for part in first.get("loc", ())) or where
    message = first.get("msg", "invalid")
    if first.get("type") == "extra_forbidden":
        message = f"unknown {where}"
    elif first.get("type") == "missing":
        message = "required"
    return ApiError(400, f"{where} '{name}': {message}", **{where: name})


class Api:
    def __init__(self, prefix: str, *, title: str, version: str, description: str = "") -> None:
        self.prefix = prefix.rstrip("/")
        self.title, self.version, self.description = title, version, description
        self.endpoints: list[Endpoint] = []

    def endpoint(self, method: str, path: str, *, roles: Optional[Sequence[Role]], summary: str, tag: str,
                 path_model: Optional[type[BaseModel]] = None, query: Optional[type[BaseModel]] = None,
                 body: Optional[type[BaseModel]] = None, response: Optional[type[BaseModel]] = None,
                 max_body: int = 64 * 1024, raw_body: Optional[str] = None, statuses: Sequence[int] = (),
                 success: int = 200) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.endpoints.append(Endpoint(method.upper(), path, handler, frozenset(roles) if roles is not None
                                           else None, summary, tag, path_model, query, body, response, max_body,
                                           raw_body, tuple(statuses), success))
            return handler
        return register

    # ---- serving -------------------------------------------------------------------------
    def routes(self) -> list[web.RouteDef]:
        return [web.route(e.method, self.prefix + e.path, self._serve(e)) for e in self.endpoints]

    def _serve(self, endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def serve(http: web.Request) -> web.StreamResponse:
            principal: Optional[Principal] = http.get(PRINCIPAL)
            if endpoint.roles is not None:
                if principal is None:
                    raise ApiError(401, http.get(WHY_ANONYMOUS) or "sign in first (POST /api/v1/auth/sign-in)")
                if not principal.has(*endpoint.roles):
                    raise ApiError(403, f"not allowed for the role {principal.role.value if principal.role else '?'}")
            request = Request(http, principal)
            if endpoint.path_model is not None:
                try:
                    request.path = endpoint.path_model.model_validate(dict(http.match_info))
                except ValidationError as exc:
                    raise _field_errors(exc, "path") from None
            request.query = self._query(endpoint, http)
            request.body = await self._body(endpoint, http)
            return await endpoint.handler(request)
        serve.__name__ = endpoint.handler.__name__
        return serve

    @staticmethod
    def _query(endpoint: Endpoint, http: web.Request) -> Any:
        for name in http.query:
            if len(http.query.getall(name)) > 1:
                raise ApiError(400, f"parameter '{name}': given more than once", parameter=name)
        if endpoint.query_model is None:
            if http.query:
                name = next(iter(http.query))
                raise ApiError(400, f"parameter '{name}': unknown parameter", parameter=name)
            return None
        try:
            return endpoint.query_model.model_validate(dict(http.query))
        except ValidationError as exc:
            raise _field_errors(exc, "parameter") from None

    @staticmethod
    async def _body(endpoint: Endpoint, http: web.Request) -> Any:
        if endpoint.body_model is None and endpoint.raw_body is None:
            if http.can_read_body and (http.content_length or 0) > 0:
                raise ApiError(400, "this request takes no body")
            return None
        if http.content_length is not None and http.content_length > endpoint.max_body:
            raise ApiError(413, f"body over {endpoint.max_body} bytes")
        media = http.content_type
        expected = endpoint.raw_body or "application/json"
        if media != expected:
            raise ApiError(415, f"the body must be {expected} (Content-Type: {expected})")
        data = await http.content.read(endpoint.max_body + 1)
        if len(data) > endpoint.max_body:
            raise ApiError(413, f"body over {endpoint.max_body} bytes")
        if endpoint.raw_body is not None:
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                raise ApiError(400, "the body must be UTF-8") from None
        assert endpoint.body_model is not None
        if not data:
            raise ApiError(400, "a JSON body is required")
        try:
            return endpoint.body_model.model_validate_json(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            if first.get("type") == "json_invalid":
                raise ApiError(400, "the body is not valid JSON") from None
            raise _field_errors(exc, "field") from None

    # ---- the document --------------------------------------------------------------------
    def openapi(self) -> dict[str, Any]:
        models: set[type[BaseModel]] = {ErrorBody}
        for e in self.endpoints:
            models.update(m for m in (e.body_model, e.response_model) if m is not None)
        keys, schemas = models_json_schema([(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
                                           ref_template="#/components/schemas/{model}")
        refs = {model: keys[(model, "validation")] for model in models}
        paths: dict[str, dict[str, Any]] = {}
        for e in self.endpoints:
            paths.setdefault(self.prefix + e.path, {})[e.method.lower()] = self._operation(e, refs)
        return {
            "openapi": "3.1.0",
            "info": {"title": self.title, "version": self.version, "description": self.description},
            "servers": [{"url": "/"}],
            "paths": paths,
            "components": {
                "schemas": schemas.get("$defs", {}),
                "securitySchemes": {
                    "bearer": {"type": "http", "scheme": "bearer",
                               "description": "the access token of POST /api/v1/auth/sign-in"},
                    "session": {"type": "apiKey", "in": "cookie", "name": "hotline_session",
                                "description": "the pages' session cookie; state-changing requests also send "
                                               "the header X-CSRF-Token (the value of the cookie hotline_csrf)"},
                },
            },
        }

    @staticmethod
    def _parameters(model: Optional[type[BaseModel]], where: str) -> list[dict[str, Any]]:
        if model is None:
            return []
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        required = set(schema.get("required", ()))
        out = []
        for name, prop in schema.get("properties", {}).items():
            description = prop.pop("description", None)
            entry = {"name": name, "in": where, "required": where == "path" or name in required, "schema": prop}
            if description:
                entry["description"] = description
            out.append(entry)
        return out

    def _operation(self, e: Endpoint, refs: dict[type[BaseModel], Any]) -> dict[str, Any]:
        error = {"content": {"application/json": {"schema": refs[ErrorBody]}}}
        ok: dict[str, Any] = {"description": "done"}
        if e.response_model is not None:
            ok["content"] = {"application/json": {"schema": refs[e.response_model]}}
        responses: dict[str, Any] = {str(e.success): ok, "400": {"description": "a bad parameter or field", **error}}
        if e.roles is not None:
            responses["401"] = {"description": "not signed in", **error}
            responses["403"] = {"description": "not allowed for this role or this agent", **error}
        if e.body_model is not None or e.raw_body is not None:
            responses["413"] = {"description": "body too large", **error}
            responses["415"] = {"description": "body of another media type", **error}
        for status in e.statuses:
            responses[str(status)] = {"description": _REASONS.get(status, "error"), **error}
        operation: dict[str, Any] = {
            "operationId": e.handler.__name__, "summary": e.summary, "tags": [e.tag],
            "parameters": self._parameters(e.path_model, "path") + self._parameters(e.query_model, "query"),
            "responses": responses,
            "security": [{"bearer": []}, {"session": []}] if e.roles is not None else [],
            "x-roles": sorted(role.value for role in e.roles) if e.roles is not None else None,
        }
        if e.body_model is not None or e.raw_body is not None:
            content: dict[str, Any] = {}
            if e.raw_body is not None:
                content[e.raw_body] = {"schema": {"type": "string", "maxLength": e.max_body}}
            elif e.body_model is not None:
                content["application/json"] = {"schema": refs[e.body_model]}
            operation["requestBody"] = {"required": True, "content": content}
        return operation


_REASONS = {404: "not found", 409: "refused in the current state", 429: "too many attempts",
            503: "a store or the ACD is unavailable", 202: "accepted, kept until Redis is back", 204: "done",
            502: "the ACD answered with an error"}
