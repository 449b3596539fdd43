"""The ticket hand-off end to end on a real PostgreSQL and Redis, over real HTTP: the agent files
through the API, the CTI's delivery worker POSTs signed to the built-in receiver on a TCP port.

The acceptance case: tickets filed while the ticketing system is down, the CTI restarted in
between (a new application and worker on the same database), then the system back: every ticket
arrives exactly once (counted by idempotency key at the receiver), none lost."""
from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Callable, Optional

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from acd.agents import AgentDirectory
from cti.app import make_app
from cti.tickets.delivery import DeliveryConfig, DeliveryWorker
from cti.tickets.handoff import submit
from cti.tickets.lookup import open_tickets
from cti.tickets.receiver import start_receiver
from cti.tickets.signing import sign
from cti.tickets.wiring import TicketsConfig
from hotline.auth import Role
from hotline.db import upgrade
from hotline.embedded import EmbeddedPostgres, free_port
from hotline.keys import Keys
from hotline.live import CallState, LiveCall
from hotline.model import AgentState, CallOutcome

from .auth_helpers import client_for
from .test_call_end_to_end import hotline, plan, records
from .test_cti_api import record, write_records

SECRET = "t" * 40
WAIT_S = 30.0


@pytest.fixture
async def db(pool):
    await pool.execute("TRUNCATE ticket_outbox, ticketing_received RESTART IDENTITY")
    return pool


async def until(check: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    """Wait for a condition (polled), generously: the tests run beside others on two cores."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def delivery(endpoint: str, **kw: Any) -> DeliveryConfig:
    """Retries kept fast: tiny backoff, short lease."""
    values: dict[str, Any] = dict(attempts=50, backoff_base_s=0.01, backoff_max_s=0.05, timeout_s=1.0, claim_s=2.0,
                                  idle_s=0.05)
    values.update(kw)
    return DeliveryConfig(endpoint, SECRET, **values)


async def live_call(redis, uniqueid: str, agent: str, caller: str = "13900001111", *,
                    ivr: Optional[dict] = None) -> None:
    call = LiveCall(uniqueid, f"PJSIP/trunk-{uniqueid}", uniqueid, "main", caller, time.time() - 60,
                    queued_at=time.time() - 50, queue="complaint", skills="mandarin:1", state=CallState.TALKING,
                    agent=agent, answered_at=time.time() - 30)
    await redis.hset(Keys.call(uniqueid), mapping=call.to_redis())
    if ivr is not None:
        await redis.set(Keys.ivr_path(uniqueid), json.dumps(ivr))


@contextlib.asynccontextmanager
async def cti(redis, pool, endpoint: Optional[str], role: Role = Role.AGENT, **user: Any) -> AsyncIterator[TestClient]:
    config = TicketsConfig(delivery=delivery(endpoint)) if endpoint else TicketsConfig()
    if role == Role.AGENT:
        user.setdefault("agent_id", "1001")
    async with client_for(make_app(redis, pool, tickets=config), pool, role, **user) as client:
        yield client


FORM = {"category": "complaint", "summary": "路灯不亮 (street light out)", "address": "人民路 1 号",
        "urgency": "priority"}


async def file(client: TestClient, call_id: str, **change: Any) -> dict:
    resp = await client.post(f"/api/v1/calls/{call_id}/ticket", json={**FORM, **change})
    assert resp.status == 202, await resp.text()
    return await resp.json()


async def received(pool) -> list[dict]:
    return [dict(r) for r in await pool.fetch("SELECT * FROM ticketing_received ORDER BY id")]


# ---- the receiver ---------------------------------------------------------------------------
async def test_the_receiver_takes_a_signed_ticket_and_refuses_a_bad_signature(db) -> None:
    receiver = await start_receiver(db, SECRET)
    try:
        body = json.dumps({"kind": "ticket", "idempotency_key": "k-1", "caller": "13900001111"}).encode()
        now = int(time.time())
        good = {"Content-Type": "application/json", "Idempotency-Key": "k-1", "X-Hotline-Timestamp": str(now),
                "X-Hotline-Signature": sign(SECRET, now, body)}
        async with aiohttp.ClientSession() as http:
            for headers, why in (({**good, "X-Hotline-Signature": sign("w" * 40, now, body)}, "bad signature"),
                                 ({**good, "X-Hotline-Timestamp": str(now - 3600),
                                   "X-Hotline-Signature": sign(SECRET, now - 3600, body)}, "window"),
                                 ({k: v for k, v in good.items() if k != "X-Hotline-Signature"}, "required")):
                async with http.post(receiver.endpoint, data=body, headers=headers) as resp:
                    assert resp.status == 401 and why in (await resp.json())["error"]
            assert await received(db) == []
            async with http.post(receiver.endpoint, data=body, headers=good) as resp:
                assert resp.status == 201
                first = (await resp.json())["ticket_id"]
            async with http.post(receiver.endpoint, data=body, headers=good) as resp:    # the same key again
                assert resp.status == 200 and (await resp.json())["ticket_id"] == first
            assert first.isdigit() and len(first) == 10
            async with http.get(f"{receiver.base_url}/api/tickets/{first}") as resp:
                assert resp.status == 200 and (await resp.json())["status"] == "accepted"
            async with http.get(f"{receiver.base_url}/api/tickets/1") as resp:
                assert resp.status == 404
            async with http.get(f"{receiver.base_url}/") as resp:
                listing = await resp.json()
                assert listing["received"] == 1 and listing["latest"][0]["caller"] == "139****1111"
        rows = await received(db)
        assert len(rows) == 1 and rows[0]["deliveries"] == 2
    finally:
        await receiver.stop()


# ---- filing and delivery --------------------------------------------------------------------
async def test_a_filed_ticket_is_delivered_its_id_stored_and_the_desktop_told(db, redis) -> None:
    receiver = await start_receiver(db, SECRET)
    ivr = {"steps": [{"node": "main-menu", "digits": "2", "prompt": "main-menu", "result": "ok"}],
           "queue": "complaint", "transfer": None}
    await live_call(redis, "c-1", "1001", ivr=ivr)
    events = redis.pubsub()
    await events.subscribe(Keys.events)
    try:
        async with cti(redis, db, receiver.endpoint) as client:
            form = await (await client.get("/api/v1/calls/c-1/ticket")).json()
            assert form["state"] is None and form["prefill"]["category"] == "complaint"
            assert form["prefill"]["recording"] == "hotline/c-1.wav" and form["prefill"]["caller"] == "13900001111"
            filed = await file(client, "c-1")
            assert filed["state"] == "queued" and filed["created"] and filed["deadline"]

            async def delivered():
                state = await (await client.get("/api/v1/calls/c-1/ticket")).json()
                return state if state["state"] == "delivered" else None
            state = await until(delivered, "the ticket delivered")
        rows = await received(db)
        assert [r["ticket_id"] for r in rows] == [state["ticket_id"]]
        payload = json.loads(rows[0]["payload"])
        assert payload["ticket"]["summary"] == FORM["summary"] and payload["ticket"]["address"] == FORM["address"]
        assert payload["call"]["call_id"] == "c-1" and payload["call"]["agent"] == "1001"
        assert payload["call"]["ivr_path"]["queue"] == "complaint" and payload["call"]["recording"] == "hotline/c-1.wav"
        assert payload["filed_by"] == "agent1001" and payload["ticket"]["deadline"]["working_days"] == 3

        async def ticket_event():
            message = await events.get_message(ignore_subscribe_messages=True, timeout=0.2)
            return json.loads(message["data"]) if message else None
        event = await until(ticket_event, "the ticket event")
        assert event == {"type": "ticket", "agent": "1001", "call": "c-1", "ticket_id": state["ticket_id"],
                         "status": "delivered"}
    finally:
        await events.aclose()
        await receiver.stop()


async def test_every_ticket_arrives_exactly_once_after_downtime_and_a_restart(db, redis) -> None:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}/api/tickets"            # nothing listens yet
    calls = [f"down-{n}" for n in range(12)]
    for uid in calls:
        await live_call(redis, uid, "1001")
    async with cti(redis, db, endpoint) as client:
        keys = [(await file(client, uid))["idempotency_key"] for uid in calls]
        again = await file(client, calls[0], idempotency_key=keys[0])      # the form sent twice
        assert not again["created"] and again["id"] == 1

        async def all_tried():
            return await db.fetchval("SELECT bool_and(attempts >= 2 AND last_error IS NOT NULL) FROM ticket_outbox")
        await until(all_tried, "every hand-off tried and refused")
    # The CTI is gone; a new one starts on the same database, then the ticketing system comes back.
    async with cti(redis, db, endpoint):
        assert await db.fetchval("SELECT count(*) FROM ticket_outbox WHERE delivered_at IS NULL") == len(calls)
        receiver = await start_receiver(db, SECRET, port=port)
        try:
            async def all_delivered():
                return await db.fetchval("SELECT count(*) = $1 FROM ticket_outbox WHERE delivered_at IS NOT NULL",
                                         len(calls))
            await until(all_delivered, "every ticket delivered")
        finally:
            await receiver.stop()
    rows = await received(db)
    assert sorted(r["idempotency_key"] for r in rows) == sorted(keys)          # each once, none lost
    stored = {r["idempotency_key"]: r["ticket_id"] for r in await db.fetch("SELECT * FROM ticket_outbox")}
    assert stored == {r["idempotency_key"]: r["ticket_id"] for r in rows}
    assert await db.fetchval("SELECT count(*) FROM ticket_outbox WHERE dead_at IS NOT NULL") == 0


async def test_an_answer_lost_before_it_was_stored_is_still_one_ticket(db, redis) -> None:
    receiver = await start_receiver(db, SECRET)
    await live_call(redis, "lost-1", "1001")
    try:
        async with cti(redis, db, None) as client:          # no worker in this CTI: the row waits
            key = (await file(client, "lost-1"))["idempotency_key"]
        first = DeliveryWorker(db, redis, delivery(receiver.endpoint, claim_s=1.5, timeout_s=1.0))
        rows = await first.claim()
        answer = await first.send(rows[0])                  # the receiver made the ticket ...
        await first.stop()                                  # ... and the worker died before storing it
        assert answer.ticket_id and await db.fetchval("SELECT delivered_at FROM ticket_outbox") is None
        second = DeliveryWorker(db, redis, delivery(receiver.endpoint, claim_s=1.5, timeout_s=1.0))
        second.start()
        try:
            async def delivered():
                return await db.fetchval("SELECT ticket_id FROM ticket_outbox WHERE delivered_at IS NOT NULL")
            assert await until(delivered, "the retry after the lease") == answer.ticket_id
        finally:
            await second.stop()
        rows = await received(db)
        assert len(rows) == 1 and rows[0]["idempotency_key"] == key and rows[0]["deliveries"] == 2
        assert await db.fetchval("SELECT attempts FROM ticket_outbox") == 2
    finally:
        await receiver.stop()


async def test_dead_letters_after_the_attempts_shown_to_admins_and_resent(db, redis) -> None:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}/api/tickets"
    await live_call(redis, "dead-1", "1001")
    config = TicketsConfig(delivery=delivery(endpoint, attempts=3))
    app = make_app(redis, db, tickets=config)
    async with client_for(app, db, Role.ADMIN) as admin:
        filed = await file(admin, "dead-1")

        async def dead():
            resp = await admin.get("/api/v1/tickets/outbox?state=dead")
            page = await resp.json()
            return page["handoffs"] if page["handoffs"] else None
        letters = await until(dead, "the dead letter")
        assert [h["id"] for h in letters] == [filed["id"]] and letters[0]["attempts"] == 3
        assert "after 3 attempts" in letters[0]["last_error"]
        assert (await (await admin.get("/api/v1/tickets/outbox?state=queued")).json())["handoffs"] == []
        receiver = await start_receiver(db, SECRET, port=port)
        try:
            resp = await admin.post(f"/api/v1/tickets/outbox/{filed['id']}/resend")
            assert resp.status == 200 and (await resp.json())["state"] == "queued"
            assert (await admin.post(f"/api/v1/tickets/outbox/{filed['id']}/resend")).status == 404  # not dead now

            async def delivered():
                page = await (await admin.get("/api/v1/tickets/outbox?state=delivered")).json()
                return page["handoffs"] or None
            done = await until(delivered, "the re-sent letter delivered")
            assert done[0]["ticket_id"] == (await received(db))[0]["ticket_id"]
        finally:
            await receiver.stop()
        audit = await (await admin.get("/api/v1/audit?action=ticket_resent")).json()
        assert [(e["actor"], e["target"]) for e in audit["entries"]] == [("admin", str(filed["id"]))]


async def test_a_refusal_is_dead_at_once_with_the_reason(db, redis) -> None:
    receiver = await start_receiver(db, "another secret, the two ends disagree")
    await live_call(redis, "refused-1", "1001")
    try:
        async with cti(redis, db, receiver.endpoint) as client:
            await file(client, "refused-1")

            async def dead():
                return await db.fetchrow("SELECT attempts, last_error FROM ticket_outbox WHERE dead_at IS NOT NULL")
            row = await until(dead, "the refused hand-off parked")
        assert row["attempts"] == 1 and "HTTP 401" in row["last_error"] and "bad signature" in row["last_error"]
        assert await received(db) == []
    finally:
        await receiver.stop()


# ---- who may file ---------------------------------------------------------------------------
async def test_who_may_file_on_which_call(db, redis) -> None:
    await live_call(redis, "mine", "1001")
    await live_call(redis, "theirs", "1002")
    await write_records(redis, db, [record("was-mine", time.time() - 900, CallOutcome.ANSWERED, wait=3, talk=30,
                                           agent="1001")])
    async with cti(redis, db, None) as agent:
        assert (await agent.post("/api/v1/calls/theirs/ticket", json=FORM)).status == 403
        assert (await agent.get("/api/v1/calls/theirs/ticket")).status == 403
        assert (await agent.post("/api/v1/calls/nowhere/ticket", json=FORM)).status == 404
        await file(agent, "mine")
        await file(agent, "was-mine")                        # ended: the record says it was theirs
        resp = await agent.post("/api/v1/calls/mine/ticket", json={**FORM, "category": "weather"})
        assert resp.status == 400 and "catalogue" in (await resp.json())["error"]
        resp = await agent.post("/api/v1/calls/mine/ticket", json={**FORM, "summary": ""})
        assert resp.status == 400
        # A key reused for another call is refused, not a second call's ticket.
        key = (await file(agent, "mine", idempotency_key="0123456789abcdef0123"))["idempotency_key"]
        resp = await agent.post("/api/v1/calls/was-mine/ticket", json={**FORM, "idempotency_key": key})
        assert resp.status == 409
        catalogue = await (await agent.get("/api/v1/tickets/catalogue")).json()
        assert {"code": "complaint", "zh": "投诉", "en": "Complaint", "urgency": "priority"} in catalogue["categories"]
        assert catalogue["urgency_days"] == {"urgent": 1, "priority": 3, "normal": 7}
        assert (await agent.get("/api/v1/tickets/outbox")).status == 403
    async with cti(redis, db, None, Role.OPS) as ops:
        assert (await ops.post("/api/v1/calls/mine/ticket", json=FORM)).status == 403
    async with cti(redis, db, None, Role.SUPERVISOR) as supervisor:
        await file(supervisor, "theirs")
    assert await db.fetchval("SELECT count(*) FROM ticket_outbox") == 4
    assert await db.fetchval("SELECT count(*) FROM ticket_outbox WHERE call_uniqueid = 'was-mine'") == 1


# ---- every call's metadata, and the caller's open tickets -----------------------------------
async def test_every_calls_metadata_is_handed_off_when_asked(db, redis) -> None:
    receiver = await start_receiver(db, SECRET)
    worker = DeliveryWorker(db, redis, delivery(receiver.endpoint, handoff_all_calls=True))
    worker.start()
    try:
        await write_records(redis, db, [record("rec-1", time.time() - 300, CallOutcome.ANSWERED, wait=3, talk=30),
                                        record("rec-2", time.time() - 200, CallOutcome.ABANDONED, wait=9)])

        async def both():
            return await db.fetchval("SELECT count(*) = 2 FROM ticket_outbox WHERE kind = 'call' "
                                     "AND delivered_at IS NOT NULL")
        await until(both, "both calls' metadata delivered")
    finally:
        await worker.stop()
    rows = await received(db)
    assert sorted(r["idempotency_key"] for r in rows) == ["call:rec-1", "call:rec-2"]
    assert all(r["ticket_id"] is None and r["kind"] == "call" for r in rows)
    assert json.loads(rows[0]["payload"])["call"]["uniqueid"] in ("rec-1", "rec-2")
    await receiver.stop()


async def test_open_tickets_of_a_caller_in_time_or_none(db, redis) -> None:
    receiver = await start_receiver(db, SECRET)
    await live_call(redis, "open-1", "1001", caller="13900002222")
    try:
        async with cti(redis, db, receiver.endpoint) as client:
            await file(client, "open-1")

            async def arrived():
                return await db.fetchval("SELECT count(*) FROM ticketing_received")
            await until(arrived, "the ticket at the receiver")
        await db.execute("UPDATE ticketing_received SET status = 'processing'")
        async with aiohttp.ClientSession() as http:
            tickets = await open_tickets(http, receiver.base_url, "13900002222", 2.0)
            assert tickets is not None and [t["status"] for t in tickets] == ["processing"]
            assert tickets[0]["category"] == "complaint"
            assert await open_tickets(http, receiver.base_url, "13900009999", 2.0) == []
            await db.execute("UPDATE ticketing_received SET status = 'completed'")
            assert await open_tickets(http, receiver.base_url, "13900002222", 2.0) == []
            # Down, slow, or odd: None, within the timeout.
            assert await open_tickets(http, f"http://127.0.0.1:{free_port()}", "13900002222", 1.0) is None
            async with slow_server() as slow:
                started = time.monotonic()
                assert await open_tickets(http, slow, "13900002222", 0.3) is None
                assert time.monotonic() - started < 2.0
                assert await open_tickets(http, slow + "/odd", "13900002222", 1.0) is None
    finally:
        await receiver.stop()


@contextlib.asynccontextmanager
async def slow_server() -> AsyncIterator[str]:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({"tickets": []})

    async def odd(request: web.Request) -> web.Response:
        return web.json_response({"tickets": "many"})

    app = web.Application()
    app.router.add_get("/api/tickets", slow)
    app.router.add_get("/odd/api/tickets", odd)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


# ---- the IVR's progress query against the receiver ------------------------------------------
async def signed_ticket(receiver, caller: str) -> str:
    body = json.dumps({"kind": "ticket", "idempotency_key": f"ivr-{caller}", "caller": caller}).encode()
    now = int(time.time())
    headers = {"Content-Type": "application/json", "Idempotency-Key": f"ivr-{caller}",
               "X-Hotline-Timestamp": str(now), "X-Hotline-Signature": sign(SECRET, now, body)}
    async with aiohttp.ClientSession() as http:
        async with http.post(receiver.endpoint, data=body, headers=headers) as resp:
            assert resp.status == 201
            return (await resp.json())["ticket_id"]


async def test_the_progress_query_reads_the_receiver_through_the_pbx(db, redis, redis_url, pg_url, tmp_path) -> None:
    receiver = await start_receiver(db, SECRET)
    try:
        ticket = await signed_ticket(receiver, "13900003333")
        await db.execute("UPDATE ticketing_received SET status = 'processing'")
        async with hotline(redis, db, redis_url, pg_url, tmp_path, tickets_url=receiver.progress_url) as (sim, acd):
            caller = sim.place_call(plan(number="13900003333", digits=("4", f"{ticket}#"), talk=0.2))
            await asyncio.wait_for(caller.done.wait(), 60)
        row = (await records(db))[caller.channel.uniqueid]
        path = json.loads(row["ivr_path"]) if isinstance(row["ivr_path"], str) else row["ivr_path"]
        assert path["ticket"] == ticket
        assert ("progress-query", "status:processing") in [(s["node"], s["result"]) for s in path["steps"]]
        assert row["outcome"] == "ivr_completed"
    finally:
        await receiver.stop()


async def test_the_desktop_shows_the_delivered_ticket(db, redis) -> None:
    directory = AgentDirectory(redis)
    await directory.upsert("1001", "王芳", "day", {"mandarin": 3})
    await directory.transition("1001", AgentState.READY)
    receiver = await start_receiver(db, SECRET)
    await live_call(redis, "desk-1", "1001")
    try:
        async with cti(redis, db, receiver.endpoint) as client:
            async with client.ws_connect("/api/v1/ws/agent/1001") as ws:
                assert json.loads((await ws.receive(timeout=5)).data)["type"] == "state"
                await file(client, "desk-1")
                async with asyncio.timeout(WAIT_S):
                    while (message := json.loads((await ws.receive()).data))["type"] != "ticket":
                        pass
        ticket_id = await db.fetchval("SELECT ticket_id FROM ticket_outbox")
        assert message == {"type": "ticket", "agent": "1001", "call": "desk-1", "ticket_id": ticket_id,
                           "status": "delivered"}
    finally:
        await receiver.stop()


async def test_postgres_down_the_worker_waits_and_nothing_is_lost(db, redis) -> None:

    receiver = await start_receiver(db, SECRET)          # the ticketing system keeps its own database
    data = Path(tempfile.mkdtemp(prefix="hotline-test-tickets-pgdown-"))
    server = EmbeddedPostgres(data)
    await server.start()
    await upgrade(server.url)
    outbox = await asyncpg.create_pool(server.url, min_size=1, max_size=3)
    worker = DeliveryWorker(outbox, redis, delivery(receiver.endpoint))
    try:
        keys = [f"pgdown-key-{n:02d}-0000" for n in range(5)]
        for n, key in enumerate(keys):
            await submit(outbox, key=key, call_uniqueid=f"pgdown-{n}", kind="ticket",
                         payload={"kind": "ticket", "idempotency_key": key, "caller": "13900004444"},
                         created_by="agent1001")
        await server.stop()                              # PostgreSQL goes away with the rows in it
        worker.start()
        await asyncio.sleep(1.0)                         # the worker tries, fails, waits
        assert await received(db) == [] and worker.delivered == 0
        await server.start()

        async def all_delivered():
            try:
                return await outbox.fetchval("SELECT count(*) = 5 FROM ticket_outbox WHERE delivered_at IS NOT NULL")
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                return False
        await until(all_delivered, "every ticket delivered once PostgreSQL is back")
        assert sorted(r["idempotency_key"] for r in await received(db)) == keys
    finally:
        await worker.stop()
        await outbox.close()
        await server.stop()
        await receiver.stop()
        shutil.rmtree(data, ignore_errors=True)
