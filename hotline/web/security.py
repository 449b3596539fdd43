"""Who is asking, for every request: a bearer token (API clients), the pages' session cookie, or the
service token the hotline's own services share. Cookie-signed requests that change something must
carry the CSRF token (double submit: the header ``X-CSRF-Token`` equal to the cookie
``hotline_csrf``, which a foreign page can neither read nor set) and come from this site's Origin.
"""
from __future__ import annotations

import hmac
import logging
import secrets
from typing import Awaitable, Callable, Iterable, Optional

from aiohttp import web

from ..auth.roles import Principal
from ..auth.sessions import IssuedTokens, SessionStore
from .api import PRINCIPAL, WHY_ANONYMOUS, error_response

__all__ = ["CSRF_COOKIE", "CSRF_HEADER", "REFRESH_COOKIE", "SESSION_COOKIE", "Authenticator", "client_address",
           "clear_session_cookies", "new_csrf_token", "same_origin", "set_session_cookies"]

log = logging.getLogger(__name__)

SESSION_COOKIE = "hotline_session"
REFRESH_COOKIE = "hotline_refresh"
CSRF_COOKIE = "hotline_csrf"
CSRF_HEADER = "X-CSRF-Token"
ACTOR_HEADER = "X-Hotline-Actor"        # a service acting for a signed-in user says whom (audit)
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def client_address(request: web.Request) -> str:
    return request.remote or "?"


def same_origin(request: web.Request, allowed: Iterable[str] = ()) -> bool:
    """The request's Origin is this server (as the browser reached it) or one of ``allowed``."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True                      # not sent by a browser page (curl, a service)
    own = f"{request.scheme}://{request.host}"
    return origin == own or origin in set(allowed)


class Authenticator:
    """The middleware that sets ``request[PRINCIPAL]`` (None: anonymous)."""

    def __init__(self, sessions: SessionStore, *, service_token: Optional[str] = None,
                 allowed_origins: Iterable[str] = ()) -> None:
        self.sessions = sessions
        self.service_token = service_token
        self.allowed_origins = tuple(allowed_origins)

    async def principal(self, request: web.Request) -> tuple[Optional[Principal], bool, Optional[str]]:
        """(who, via the session cookie, why refused) for this request."""
        header = request.headers.get("Authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return None, False, "Authorization must be 'Bearer <token>'"
            token = token.strip()
            if self.service_token and hmac.compare_digest(token.encode(), self.service_token.encode()):
                actor = request.headers.get(ACTOR_HEADER, "")
                return Principal(actor or "service", None, service=True), False, None
            principal = await self.sessions.principal(token)
            return principal, False, None if principal else "the token is invalid or expired: sign in again"
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            principal = await self.sessions.principal(cookie)
            return principal, True, None if principal else "the session has ended: sign in again"
        return None, False, None

    @web.middleware
    async def middleware(self, request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        principal, via_cookie, refused = await self.principal(request)
        # (An expired token is anonymous, not an error: signing in again must still work.)
        request[PRINCIPAL] = principal
        request[WHY_ANONYMOUS] = refused
        if via_cookie and request.method not in SAFE_METHODS:
            if not same_origin(request, self.allowed_origins):
                log.warning("%s %s refused: Origin %s", request.method, request.path, request.headers.get("Origin"))
                return error_response(403, "cross-site request refused (Origin)")
            sent, expected = request.headers.get(CSRF_HEADER, ""), request.cookies.get(CSRF_COOKIE, "")
            if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
                return error_response(403, f"cross-site request refused: send the header {CSRF_HEADER}")
        return await handler(request)


def new_csrf_token() -> str:
    return secrets.token_urlsafe(24)


def set_session_cookies(response: web.StreamResponse, request: web.Request, tokens: IssuedTokens, csrf: str, *,
                        secure: Optional[bool] = None) -> None:
    """The pages' cookies for a session (the CSRF token is also given to the page in the body)."""
    secure = request.secure if secure is None else secure
    max_age = max(1, int((tokens.expires_at - tokens.access_expires_at).total_seconds()) + 1)
    response.set_cookie(SESSION_COOKIE, tokens.access_token, httponly=True, samesite="Strict", secure=secure,
                        path="/", max_age=max_age)
    response.set_cookie(REFRESH_COOKIE, tokens.refresh_token, httponly=True, samesite="Strict", secure=secure,
                        path="/api/v1/auth", max_age=max_age)
    # Readable by the page (it sends it back as a header), not by another site.
    response.set_cookie(CSRF_COOKIE, csrf, httponly=False, samesite="Strict", secure=secure, path="/",
                        max_age=max_age)


def clear_session_cookies(response: web.StreamResponse) -> None:
    response.del_cookie(SESSION_COOKIE, path="/")
    response.del_cookie(REFRESH_COOKIE, path="/api/v1/auth")
    response.del_cookie(CSRF_COOKIE, path="/")
