"""Who may reach what, proved from the OpenAPI document itself: every operation refuses the
anonymous (401) and the roles it does not list (403), and lets the roles it lists through; an
agent sees and changes only their own seat and calls; a cross-site request (no CSRF token, or a
foreign Origin) is refused; the WebSocket checks the user and the Origin."""
from __future__ import annotations

import asyncio
import re
import time

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer, unused_port

from acd.agents import AgentDirectory
from cti.app import CtiAccess, make_app
from hotline.auth import Role
from hotline.model import AgentState, CallOutcome

from .auth_helpers import PASSWORD, make_user, token_for
from .test_cti_api import record, write_records

SERVICE_TOKEN = "s" * 40
EXAMPLE_PATH = {"agent_id": "1001", "username": "nobody", "call_id": "1700000000.1", "id": "1"}


def app_for(redis, pool):
    # The ACD is not running: what passes the checks is answered 503 by the ACD client, not 401/403.
    return make_app(redis, pool, access=CtiAccess(acd_url=f"http://127.0.0.1:{unused_port()}",
                                                  service_token=SERVICE_TOKEN))


def operations(doc: dict) -> list[tuple[str, str, dict]]:
    return [(method.upper(), path, op) for path, ops in doc["paths"].items() for method, op in ops.items()]


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: EXAMPLE_PATH[m.group(1)], path)


async def ask(client: TestClient, method: str, path: str, op: dict, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    kwargs: dict = {"headers": headers}
    if "requestBody" in op:
        media = next(iter(op["requestBody"]["content"]))
        headers["Content-Type"] = media
        kwargs["data"] = "{}" if media == "application/json" else "id,name,team,skills\n"
    async with client.request(method, path, **kwargs) as resp:
        return resp.status


@pytest.fixture
async def cti(redis, pool):
    await make_user(pool, Role.AGENT, agent_id="1001")
    client = TestClient(TestServer(app_for(redis, pool)))
    await client.start_server()
    yield client
    await client.close()


async def test_every_operation_checks_the_role_the_document_states(cti, redis, pool):
    doc = await (await cti.get("/api/v1/openapi.json")).json()
    ops = operations(doc)
    assert len(ops) >= 20
    for method, path, op in ops:
        roles = op["x-roles"]
        url = concrete(path)
        if roles is None:
            assert op["security"] == [], path
            continue
        assert op["security"] and set(roles) <= {r.value for r in Role}, path
        assert await ask(cti, method, url, op, None) == 401, f"{method} {path} anonymous"
        for role in Role:
            # A fresh session each time: an operation may end it (sign-out).
            kw = {"agent_id": "1001"} if role == Role.AGENT else {}
            status = await ask(cti, method, url, op, await token_for(pool, redis, role, **kw))
            if role.value in roles:
                assert status not in (401, 403), f"{method} {path} as {role.value}: {status}"
            else:
                assert status == 403, f"{method} {path} as {role.value}: {status}"


async def test_a_token_that_is_not_one_is_401_and_says_why(cti):
    for header in ("Bearer nonsense", "Basic YWRtaW46YWRtaW4=", "Bearer "):
        resp = await cti.get("/api/v1/calls", headers={"Authorization": header})
        assert resp.status == 401 and (await resp.json())["error"]


async def test_an_agent_sees_and_changes_only_their_own_seat_and_calls(cti, redis, pool):
    directory = AgentDirectory(redis)
    for agent_id in ("1001", "1002"):
        await directory.upsert(agent_id, f"Agent {agent_id}", "general", {"mandarin": 5})
    now = time.time() - 600
    await write_records(redis, pool, [record("c1", now, CallOutcome.ANSWERED, wait=3, talk=30, agent="1001"),
                                      record("c2", now + 60, CallOutcome.ANSWERED, wait=3, talk=30, agent="1002")])
    agent = {"Authorization": f"Bearer {await token_for(pool, redis, Role.AGENT, agent_id='1001')}"}
    resp = await cti.get("/api/v1/calls", headers=agent)
    assert resp.status == 200 and [c["uniqueid"] for c in (await resp.json())["calls"]] == ["c1"]
    assert (await cti.get("/api/v1/calls?agent=1002", headers=agent)).status == 403
    assert (await cti.get("/api/v1/agents/1002", headers=agent)).status == 403
    assert (await cti.get("/api/v1/agents/1001", headers=agent)).status == 200
    resp = await cti.get("/api/v1/agents", headers=agent)
    assert [a["id"] for a in (await resp.json())["agents"]] == ["1001"]
    resp = await cti.post("/api/v1/agents/1002/state", json={"state": "ready"}, headers=agent)
    assert resp.status == 403
    # A supervisor limited to another team is refused too.
    sup = {"Authorization": f"Bearer {await token_for(pool, redis, Role.SUPERVISOR, 'sup-b', teams=('other',))}"}
    assert (await cti.get("/api/v1/agents/1001", headers=sup)).status == 403
    assert (await (await cti.get("/api/v1/agents", headers=sup)).json())["agents"] == []
    # Ops see the calls, with the callers' numbers masked.
    ops = {"Authorization": f"Bearer {await token_for(pool, redis, Role.OPS)}"}
    calls = (await (await cti.get("/api/v1/calls", headers=ops)).json())["calls"]
    assert {c["caller_id"] for c in calls} == {"139****0000"}


async def sign_in(client: TestClient, username: str, password: str = PASSWORD) -> aiohttp.ClientResponse:
    return await client.post("/api/v1/auth/sign-in", json={"username": username, "password": password})


async def test_pages_requests_need_the_csrf_token_and_their_own_origin(cti, redis, pool):
    await make_user(pool, Role.ADMIN)
    resp = await sign_in(cti, "admin")
    assert resp.status == 200
    body = await resp.json()
    cookies = {c.key: c for c in resp.cookies.values()}
    assert cookies["hotline_session"]["httponly"] and cookies["hotline_session"]["samesite"] == "Strict"
    assert cookies["hotline_refresh"]["path"] == "/api/v1/auth" and cookies["hotline_refresh"]["httponly"]
    assert not cookies["hotline_csrf"]["httponly"] and cookies["hotline_csrf"].value == body["csrf_token"]
    # The cookie alone reads (GET) ...
    assert (await cti.get("/api/v1/auth/me")).status == 200
    new_user = {"username": "ops2", "role": "ops", "password": "a long enough password"}
    # ... but changes nothing without the CSRF token, nor from another site.
    assert (await cti.post("/api/v1/users", json=new_user)).status == 403
    csrf = {"X-CSRF-Token": body["csrf_token"]}
    resp = await cti.post("/api/v1/users", json=new_user, headers={**csrf, "Origin": "https://evil.example"})
    assert resp.status == 403 and "Origin" in (await resp.json())["error"]
    assert (await cti.post("/api/v1/users", json=new_user, headers={**csrf, "X-CSRF-Token": "guess"})).status == 403
    own = f"http://{cti.host}:{cti.port}"
    assert (await cti.post("/api/v1/users", json=new_user, headers={**csrf, "Origin": own})).status == 201
    # A form post (text/plain, which a cross-site page may send) is not even read.
    resp = await cti.post("/api/v1/users", data='{"username": "x"}', headers={**csrf, "Content-Type": "text/plain"})
    assert resp.status == 415


async def test_the_desktop_websocket_checks_the_user_and_the_origin(cti, redis, pool):
    directory = AgentDirectory(redis)
    for agent_id in ("1001", "1002"):
        await directory.upsert(agent_id, f"Agent {agent_id}", "general", {"mandarin": 5})
    await directory.transition("1001", AgentState.READY)
    async with cti.ws_connect("/api/v1/ws/agent/1001") as ws:
        msg = await ws.receive(timeout=3)
        if msg.type == WSMsgType.TEXT:
            msg = await ws.receive(timeout=3)
        assert msg.type == WSMsgType.CLOSE and msg.data == 4401
    agent = {"Authorization": f"Bearer {await token_for(pool, redis, Role.AGENT, agent_id='1001')}"}
    async with cti.ws_connect("/api/v1/ws/agent/1002", headers=agent) as ws:
        msg = await ws.receive(timeout=3)
        if msg.type == WSMsgType.TEXT:
            msg = await ws.receive(timeout=3)
        assert msg.type == WSMsgType.CLOSE and msg.data == 4403
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await cti.ws_connect("/api/v1/ws/agent/1001", headers={**agent, "Origin": "https://evil.example"})
    assert refused.value.status == 403
    async with cti.ws_connect("/api/v1/ws/agent/1001", headers=agent) as ws:
        state = await ws.receive_json(timeout=3)
        assert state["type"] == "state" and state["agent"]["id"] == "1001"


async def test_failed_sign_ins_are_limited_logged_and_audited(cti, redis, pool):
    await make_user(pool, Role.SUPERVISOR, "sup")
    for _ in range(5):
        assert (await sign_in(cti, "sup", "wrong password")).status == 401
    resp = await sign_in(cti, "sup")                  # the right password, too late
    assert resp.status == 429 and (await resp.json())["retry_after"] > 0
    assert (await sign_in(cti, "nobody", "whatever it is")).status == 401
    rows = await pool.fetch("SELECT action, actor, target, address, detail FROM audit ORDER BY id")
    assert [r["action"] for r in rows] == ["sign_in_failed"] * 7
    assert rows[0]["actor"] == "sup" and rows[-1]["actor"] is None and rows[-1]["target"] == "nobody"
    assert "too many failures" in rows[5]["detail"]
    assert rows[0]["address"] == "127.0.0.1"


async def test_sessions_refresh_end_and_end_when_the_user_is_disabled(cti, redis, pool):
    await make_user(pool, Role.ADMIN)
    await make_user(pool, Role.SUPERVISOR, "sup")
    tokens = await (await sign_in(cti, "sup")).json()
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert (await cti.get("/api/v1/live", headers=bearer)).status == 200
    # Refresh: a new pair; the refresh token used no longer works.
    cti.session.cookie_jar.clear()
    renewed = await cti.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert renewed.status == 200
    fresh = await renewed.json()
    cti.session.cookie_jar.clear()              # (an API client: no cookies, no CSRF token needed)
    again = await cti.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert again.status == 401
    assert (await cti.get("/api/v1/live", headers=bearer)).status == 401            # the old access token
    bearer = {"Authorization": f"Bearer {fresh['access_token']}"}
    assert (await cti.get("/api/v1/live", headers=bearer)).status == 200
    # Disabled by an admin: the session ends at once, and signing in is refused.
    admin = {"Authorization": f"Bearer {await token_for(pool, redis, Role.ADMIN)}"}
    cti.session.cookie_jar.clear()
    resp = await cti.patch("/api/v1/users/sup", json={"disabled": True}, headers=admin)
    assert resp.status == 200 and (await resp.json())["disabled"] is True
    assert (await cti.get("/api/v1/live", headers=bearer)).status == 401
    assert (await sign_in(cti, "sup")).status == 401
    actions = [r["action"] for r in await pool.fetch("SELECT action FROM audit ORDER BY id")]
    assert actions == ["sign_in", "user_disabled", "sign_in_failed"]
    # Sign-out ends the session it is sent with.
    await cti.patch("/api/v1/users/sup", json={"disabled": False}, headers=admin)
    tokens = await (await sign_in(cti, "sup")).json()
    cti.session.cookie_jar.clear()
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert (await cti.post("/api/v1/auth/sign-out", headers=bearer)).status == 204
    assert (await cti.get("/api/v1/auth/me", headers=bearer)).status == 401


async def test_admins_read_the_audit_trail_paged(cti, redis, pool):
    admin = {"Authorization": f"Bearer {await token_for(pool, redis, Role.ADMIN)}"}
    for n in range(5):
        await sign_in(cti, f"who{n}", "wrong password")
    page = await (await cti.get("/api/v1/audit?limit=2", headers=admin)).json()
    assert [e["target"] for e in page["entries"]] == ["who4", "who3"] and page["next_cursor"]
    page = await (await cti.get(f"/api/v1/audit?limit=2&cursor={page['next_cursor']}", headers=admin)).json()
    assert [e["target"] for e in page["entries"]] == ["who2", "who1"]
    resp = await cti.get("/api/v1/audit?cursor=not-a-cursor", headers=admin)
    assert resp.status == 400 and (await resp.json())["parameter"] == "cursor"


async def test_an_open_desktop_closes_when_its_user_is_disabled(redis, pool):
    directory = AgentDirectory(redis)
    await directory.upsert("1001", "Agent 1001", "general", {"mandarin": 5})
    await make_user(pool, Role.AGENT, agent_id="1001")
    client = TestClient(TestServer(make_app(redis, pool, session_check_s=0.1)))
    await client.start_server()
    try:
        resp = await sign_in(client, "agent1001")
        token = (await resp.json())["access_token"]
        client.session.cookie_jar.clear()
        async with client.ws_connect("/api/v1/ws/agent/1001", headers={"Authorization": f"Bearer {token}"}) as ws:
            assert (await ws.receive_json(timeout=3))["type"] == "state"
            await asyncio.sleep(0.3)
            assert not ws.closed                                   # the session runs: it stays open
            from hotline.auth import UserStore
            await UserStore(pool).change("agent1001", disabled=True)
            msg = await ws.receive(timeout=3)
            while msg.type == WSMsgType.TEXT:
                msg = await ws.receive(timeout=3)
            assert msg.type == WSMsgType.CLOSE and msg.data == 4401
    finally:
        await client.close()
