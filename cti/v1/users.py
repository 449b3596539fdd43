"""/api/v1/users and /api/v1/audit: admins manage who may sign in, and read the audit trail."""
from __future__ import annotations

from aiohttp import web

from hotline.auth.passwords import PasswordError
from hotline.auth.roles import Role
from hotline.auth.users import UserError
from hotline.web.api import ApiError, Request
from hotline.web.security import client_address

from ..appkeys import AUDIT, USERS
from .base import API, decode_cursor, encode_cursor, json_answer, local
from .schemas import AuditPage, AuditQuery, NewPassword, NewUser, UserChange, UserPath, UsersPage, UsersQuery, UserView

ADMIN = (Role.ADMIN,)


def _refused(exc: ValueError) -> ApiError:
    return ApiError(409 if "already" in str(exc) else 400, str(exc))


@API.endpoint("GET", "/users", roles=ADMIN, tag="users", query=UsersQuery, response=UsersPage,
              summary="Users by name, paged")
async def list_users(request: Request) -> web.Response:
    q: UsersQuery = request.query
    after = decode_cursor(q.cursor, (str,))
    users = await request.app[USERS].list(after=after[0] if after else "", limit=q.limit + 1, role=q.role)
    page = users[:q.limit]
    return json_answer({"users": [u.to_json() for u in page],
                        "next_cursor": encode_cursor(page[-1].username) if len(users) > q.limit else None})


@API.endpoint("POST", "/users", roles=ADMIN, tag="users", body=NewUser, response=UserView, success=201,
              statuses=(409,), summary="Add a user (an agent user is bound to one agent id)")
async def add_user(request: Request) -> web.Response:
    body: NewUser = request.body
    try:
        user = await request.app[USERS].add(body.username, body.role, body.password, agent_id=body.agent_id,
                                            teams=body.teams)
    except (UserError, PasswordError) as exc:
        raise _refused(exc) from None
    await request.app[AUDIT].write("user_added", actor=request.user.name, target=user.username,
                                   address=client_address(request.http),
                                   detail={"role": user.role.value, "agent_id": user.agent_id, "teams": body.teams})
    return json_answer(user.to_json(), status=201)


@API.endpoint("GET", "/users/{username}", roles=ADMIN, tag="users", path_model=UserPath, response=UserView,
              statuses=(404,), summary="One user")
async def get_user(request: Request) -> web.Response:
    user = await request.app[USERS].get(request.path.username)
    if user is None:
        raise ApiError(404, f"unknown user {request.path.username}")
    return json_answer(user.to_json())


@API.endpoint("PATCH", "/users/{username}", roles=ADMIN, tag="users", path_model=UserPath, body=UserChange,
              response=UserView, statuses=(404, 409),
              summary="Change a user's role, agent, teams, or disable them (their sessions end)")
async def change_user(request: Request) -> web.Response:
    body: UserChange = request.body
    name = request.path.username
    if name == request.user.username and (body.disabled or (body.role and body.role != Role.ADMIN)):
        raise ApiError(409, "an admin cannot disable or demote themself (another admin can)")
    try:
        user = await request.app[USERS].change(name, role=body.role, agent_id=body.agent_id, teams=body.teams,
                                               disabled=body.disabled)
    except UserError as exc:
        raise (ApiError(404, str(exc)) if "unknown" in str(exc) else _refused(exc)) from None
    await request.app[AUDIT].write("user_disabled" if body.disabled else "user_changed", actor=request.user.name,
                                   target=name, address=client_address(request.http),
                                   detail=body.model_dump(exclude_none=True))
    return json_answer(user.to_json())


@API.endpoint("POST", "/users/{username}/password", roles=ADMIN, tag="users", path_model=UserPath,
              body=NewPassword, success=204, statuses=(404,), summary="Set a user's password (their sessions end)")
async def set_password(request: Request) -> web.Response:
    name = request.path.username
    try:
        await request.app[USERS].set_password(name, request.body.password)
    except UserError as exc:
        raise ApiError(404, str(exc)) from None
    except PasswordError as exc:
        raise ApiError(400, f"field 'password': {exc}", field="password") from None
    await request.app[AUDIT].write("password_set", actor=request.user.name, target=name,
                                   address=client_address(request.http))
    return web.Response(status=204)


@API.endpoint("GET", "/audit", roles=ADMIN, tag="users", query=AuditQuery, response=AuditPage,
              summary="The audit trail, newest first, paged")
async def audit(request: Request) -> web.Response:
    q: AuditQuery = request.query
    before = decode_cursor(q.cursor, (int,))
    entries = await request.app[AUDIT].read(before=before[0] if before else None, limit=q.limit + 1, actor=q.actor,
                                            action=q.action, since=local(q.since), until=local(q.until))
    page = entries[:q.limit]
    return json_answer({"entries": page,
                        "next_cursor": encode_cursor(page[-1]["id"]) if len(entries) > q.limit else None})
