"""/api/v1/auth: signing in and out, refreshing a session, and who am I.

Signing in answers the tokens (for API clients: ``Authorization: Bearer <access_token>``) and sets
the pages' cookies: the session (HttpOnly, SameSite=Strict), the refresh token (HttpOnly, only sent
to /api/v1/auth) and the CSRF token the page sends back as ``X-CSRF-Token``. Failed sign-ins are
limited per user name and per address (429), logged and audited.
"""
from __future__ import annotations

import logging

from aiohttp import web

from hotline.auth.passwords import verify_password
from hotline.auth.sessions import IssuedTokens
from hotline.auth.users import User
from hotline.web.api import ApiError, Request
from hotline.web.security import (REFRESH_COOKIE, clear_session_cookies, client_address, new_csrf_token,
                                  set_session_cookies)

from ..appkeys import AUDIT, COOKIE_SECURE, LIMITER, SESSIONS, USERS
from .base import ANY_ROLE, API, json_answer
from .schemas import Me, Refresh, SignIn, Tokens

log = logging.getLogger(__name__)


def _tokens_answer(request: Request, tokens: IssuedTokens, user: User) -> web.Response:
    csrf = new_csrf_token()
    response = json_answer({**tokens.to_json(), "csrf_token": csrf, "user": user.to_json()})
    set_session_cookies(response, request.http, tokens, csrf, secure=request.app[COOKIE_SECURE])
    return response


@API.endpoint("POST", "/auth/sign-in", roles=None, tag="auth", body=SignIn, response=Tokens, max_body=4096,
              summary="Sign in with a user name and password", statuses=(429,))
async def sign_in(request: Request) -> web.Response:
    body: SignIn = request.body
    address = client_address(request.http)
    limiter, audit = request.app[LIMITER], request.app[AUDIT]
    name = body.username.strip().lower()
    wait = await limiter.retry_after(name, address)
    if wait is not None:
        log.warning("sign-in of %r from %s refused: too many failures", name, address)
        await audit.write("sign_in_failed", actor=None, target=name, address=address,
                          detail={"reason": "too many failures", "retry_after": wait})
        raise ApiError(429, f"too many failed sign-ins: try again in {wait} s", retry_after=wait)
    user, stored = await request.app[USERS].credentials(name)
    if not await verify_password(stored, body.password) or user is None or user.disabled:
        await limiter.failed(name, address)
        log.warning("failed sign-in of %r from %s", name, address)
        await audit.write("sign_in_failed", actor=name if user else None, target=name, address=address,
                          detail={"reason": "disabled" if user and user.disabled else "bad name or password"})
        raise ApiError(401, "wrong user name or password")
    await limiter.succeeded(name)
    tokens = await request.app[SESSIONS].open(user, address)
    await audit.write("sign_in", actor=user.username, target=user.username, address=address,
                      detail={"role": user.role.value, "session": tokens.session_id})
    return _tokens_answer(request, tokens, user)


@API.endpoint("POST", "/auth/refresh", roles=None, tag="auth", body=Refresh, response=Tokens, max_body=4096,
              summary="A new token pair for a live session (the refresh token used stops working)")
async def refresh(request: Request) -> web.Response:
    body: Refresh = request.body
    token = body.refresh_token or request.http.cookies.get(REFRESH_COOKIE)
    if not token:
        raise ApiError(401, "no refresh token: sign in")
    renewed = await request.app[SESSIONS].refresh(token)
    if renewed is None:
        raise ApiError(401, "the session has ended: sign in again")
    tokens, user = renewed
    return _tokens_answer(request, tokens, user)


@API.endpoint("POST", "/auth/sign-out", roles=ANY_ROLE, tag="auth", success=204, summary="End this session")
async def sign_out(request: Request) -> web.Response:
    user = request.user
    if user.session_id is not None:
        await request.app[SESSIONS].close(user.session_id)
    await request.app[AUDIT].write("sign_out", actor=user.name, target=user.username,
                                   address=client_address(request.http))
    response = web.Response(status=204)
    clear_session_cookies(response)
    return response


@API.endpoint("GET", "/auth/me", roles=ANY_ROLE, tag="auth", response=Me, summary="Who is signed in")
async def me(request: Request) -> web.Response:
    user = request.user
    return json_answer({"username": user.username, "role": user.role, "agent_id": user.agent_id,
                        "teams": list(user.teams)})
