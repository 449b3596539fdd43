"""cti: the HTTP API, /metrics and the pages, on a real Redis and a real PostgreSQL.

The data is written by the real producers: agents by ``acd.agents.AgentDirectory``, call
records by ``acd.outbox.OutboxWriter`` from ``hotline.model.CallRecord`` rows, live calls as
``hotline.live.LiveCall.to_redis`` lays them out.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer, unused_port
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from acd.agents import AgentDirectory, outbox_row
from hotline.live import LiveCall
from acd.outbox import OutboxWriter
from acd.router import routing_score
from cti.app import make_app
from cti.records import local_midnight
from cti.service import CTIError, cti_urls, run_cti
from hotline.keys import Keys
from hotline.model import AbandonedIn, AgentState, CallOutcome, CallRecord
from hotline.settings import Settings
from hotline.stores import Stores

from .auth_helpers import client_for


@contextlib.asynccontextmanager
async def served(redis, pool, *, signed_pool=None, **kw) -> AsyncIterator[TestClient]:
    """The CTI, and a client signed in as an admin (users live in ``signed_pool``, else ``pool``)."""
    async with client_for(make_app(redis, pool, **kw), signed_pool or pool) as client:
        yield client


# ---- data ---------------------------------------------------------------------------------
def today_base() -> float:
    """A moment earlier today (not before midnight, whatever the time the tests run)."""
    return max(local_midnight().timestamp() + 1, time.time() - 3600)


def record(uid: str, arrived: float, outcome: CallOutcome, *, wait: float = 0.0, talk: float = 0.0,
           queue: str = "general", agent: str | None = "1001", caller: str = "13900000000",
           where: AbandonedIn | None = None, line: str = "main") -> CallRecord:
    if outcome == CallOutcome.IVR_COMPLETED:
        return CallRecord(uid, arrived, arrived + 40, outcome, line=line, caller_id=caller)
    queued = arrived + 20
    answered = queued + wait if outcome == CallOutcome.ANSWERED else None
    ended = (answered + talk) if answered is not None else queued + wait
    return CallRecord(uid, arrived, ended, outcome, line=line, caller_id=caller, queued_at=queued,
                      answered_at=answered, queue=queue, agent=agent if answered else None,
                      abandoned_in=where, skills="mandarin:1")


async def write_records(redis: Redis, pool, records: list[CallRecord]) -> None:
    """Through the ACD's outbox, as in production."""
    for rec in records:
        await redis.rpush(Keys.outbox, outbox_row("call", **rec.to_json()))
    writer = OutboxWriter(redis, pool)
    while await writer.flush_once():
        pass
    assert await redis.llen(Keys.outbox_dead) == 0


TODAY = [
    ("a1", CallOutcome.ANSWERED, dict(wait=8, talk=120)),
    ("a2", CallOutcome.ANSWERED, dict(wait=12, talk=200, agent="1002")),
    ("a3", CallOutcome.ANSWERED, dict(wait=4, talk=60, queue="enterprise", line="enterprise")),
    ("ab1", CallOutcome.ABANDONED, dict(wait=30, where=AbandonedIn.QUEUE)),
    ("ivr1", CallOutcome.IVR_COMPLETED, {}),
]


async def seed_records(redis, pool) -> float:
    base = today_base()
    rows = [record(uid, base + i * 60, outcome, **kw) for i, (uid, outcome, kw) in enumerate(TODAY)]
    yesterday = local_midnight().timestamp() - 6 * 3600
    rows.append(record("y1", yesterday, CallOutcome.ANSWERED, wait=100, talk=10))
    await write_records(redis, pool, rows)
    return base


async def seed_agents(redis) -> AgentDirectory:
    directory = AgentDirectory(redis)
    for agent_id, name in (("1001", "王芳"), ("1002", "李娜"), ("1003", "张伟"), ("1004", "刘洋"),
                           ("1005", "陈静"), ("1006", "杨帆")):
        await directory.upsert(agent_id, name, "day", {"mandarin": 3, "enterprise": 1})
    for agent_id in ("1001", "1002", "1003", "1004", "1006"):
        await directory.transition(agent_id, AgentState.READY)
    await directory.transition("1002", AgentState.RESERVED, call="t1")
    await directory.transition("1002", AgentState.ON_CALL, call="t1")
    await directory.transition("1003", AgentState.RESERVED, call="old")
    await directory.transition("1003", AgentState.ON_CALL, call="old")
    await directory.transition("1003", AgentState.WRAPUP)
    await directory.transition("1004", AgentState.NOT_READY, reason="break")
    await directory.transition("1006", AgentState.RESERVED, call="r1")
    return directory


async def seed_live_calls(redis) -> float:
    now = time.time()

    async def put(call: LiveCall, waiting: bool = False) -> None:
        await redis.hset(Keys.call(call.uniqueid), mapping=call.to_redis())
        await redis.sadd(Keys.calls, call.uniqueid)
        if waiting:
            await redis.zadd(Keys.waiting, {call.uniqueid: routing_score(call.priority, call.queued_at)})

    def call(uid, state, queue=None, queued_ago=None, priority=0, agent=None) -> LiveCall:
        return LiveCall(uid, f"PJSIP/trunk-{uid}", uid, "main", "13800000000", now - 60,
                        queued_at=now - queued_ago if queued_ago is not None else None, queue=queue,
                        skills="mandarin:1", priority=priority, state=state, agent=agent)

    await put(call("w1", "waiting", "general", 42), waiting=True)
    await put(call("w2", "waiting", "general", 10), waiting=True)
    await put(call("w3", "waiting", "elderly", 5, priority=30), waiting=True)
    await put(call("i1", "ivr"))
    await put(call("r1", "ringing", "enterprise", 3, agent="1006"))
    await put(call("t1", "talking", "general", 50, agent="1002"))
    return now


# ---- health, pages, errors ---------------------------------------------------------------
async def test_health_reports_both_stores(redis, pool):
    async with served(redis, pool) as client:
        resp = await client.get("/api/v1/health")
        assert resp.status == 200
        assert await resp.json() == {"redis": True, "postgres": True}


async def test_health_and_metrics_with_redis_down(pool):
    dead = Redis.from_url(f"redis://127.0.0.1:{unused_port()}", decode_responses=True,
                          socket_connect_timeout=0.5)
    try:
        async with served(dead, pool) as client:
            resp = await client.get("/api/v1/health")
            assert resp.status == 503
            assert await resp.json() == {"redis": False, "postgres": True}
            resp = await client.get("/api/v1/agents")
            assert resp.status == 503
            assert "redis" in (await resp.json())["error"]
            resp = await client.get("/metrics")           # a scrape never fails: it says what is down
            assert resp.status == 200
            samples = metric_samples(await resp.text())
            assert samples[("hotline_cti_store_up", (("store", "redis"),))] == 0
            assert samples[("hotline_cti_store_up", (("store", "postgres"),))] == 1
    finally:
        await dead.aclose()


async def test_live_picture_stays_up_while_postgres_is_down(redis, pool, pg_url):
    await seed_agents(redis)
    await seed_live_calls(redis)
    closed = await asyncpg.create_pool(pg_url, min_size=0, max_size=1)
    await closed.close()
    # Signed in before PostgreSQL went away: the session is known from Redis.
    async with served(redis, closed, signed_pool=pool) as client:
        resp = await client.get("/api/v1/live")
        assert resp.status == 200
        data = await resp.json()
        assert data["waiting"] == 3 and data["agents"]["ready"] == 1
        assert data["today"] is None                         # the wallboard shows "–", not an error
        resp = await client.get("/api/v1/health")
        assert resp.status == 503 and await resp.json() == {"redis": True, "postgres": False}
        for path in ("/api/v1/calls", "/api/v1/stats"):
            resp = await client.get(path)
            assert resp.status == 503 and (await resp.json())["error"] == "postgres unavailable"
        m = metric_samples(await (await client.get("/metrics")).text())
        assert m[("hotline_cti_store_up", (("store", "postgres"),))] == 0
        assert m[("hotline_calls_waiting", (("queue", "general"),))] == 2
        assert ("hotline_calls_offered_today", ()) not in m


async def test_make_app_requires_decoded_redis(redis_url, pool):
    raw = Redis.from_url(redis_url)
    try:
        with pytest.raises(ValueError, match="decode_responses"):
            make_app(raw, pool)
    finally:
        await raw.aclose()


@pytest.mark.parametrize("path, marker", [("/desktop", "/ws/agent/"), ("/wallboard", "/api/v1/live")])
async def test_pages_are_served_without_external_resources(redis, pool, path, marker):
    async with served(redis, pool) as client:
        resp = await client.get(path)
        assert resp.status == 200
        assert resp.content_type == "text/html"
        assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
        page = await resp.text()
        assert marker in page
        assert "12345" in page
        for external in ('src="http', "src='http", 'href="http', "@import", "//cdn"):
            assert external not in page


async def test_unknown_api_path_and_method_are_json_errors(redis, pool):
    async with served(redis, pool) as client:
        resp = await client.get("/api/v1/nothing")
        assert resp.status == 404
        assert "error" in await resp.json()
        resp = await client.post("/api/v1/calls")
        assert resp.status == 405
        assert "GET" in resp.headers["Allow"]
        assert "error" in await resp.json()


# ---- /api/calls --------------------------------------------------------------------------
async def test_calls_newest_first_with_limit_since_and_agent(redis, pool):
    base = await seed_records(redis, pool)
    async with served(redis, pool) as client:
        resp = await client.get("/api/v1/calls")
        data = await resp.json()
        assert resp.status == 200
        uids = [c["uniqueid"] for c in data["calls"]]
        assert uids == ["ivr1", "ab1", "a3", "a2", "a1", "y1"]
        first = data["calls"][2]
        assert first["outcome"] == "answered" and first["line"] == "enterprise" and first["queue"] == "enterprise"
        assert first["wait_s"] == 4 and first["talk_s"] == 60
        assert datetime.fromisoformat(first["arrived_at"]).timestamp() == pytest.approx(base + 120)

        resp = await client.get("/api/v1/calls", params={"limit": "2"})
        assert [c["uniqueid"] for c in (await resp.json())["calls"]] == ["ivr1", "ab1"]

        since = local_midnight().isoformat()                   # "+08:00" travels encoded
        resp = await client.get("/api/v1/calls", params={"since": since})
        assert [c["uniqueid"] for c in (await resp.json())["calls"]] == ["ivr1", "ab1", "a3", "a2", "a1"]

        resp = await client.get("/api/v1/calls", params={"agent": "1002"})
        assert [c["uniqueid"] for c in (await resp.json())["calls"]] == ["a2"]


async def test_calls_since_with_unencoded_plus_offset(redis, pool):
    await seed_records(redis, pool)
    midnight = local_midnight()
    async with served(redis, pool) as client:
        # A hand-typed URL: the '+' of the offset arrives as a space.
        raw = midnight.strftime("%Y-%m-%dT%H:%M:%S") + "+" + midnight.strftime("%z")[1:3] + ":" + midnight.strftime("%z")[3:]
        if midnight.utcoffset() < timedelta(0):
            pytest.skip("the server's offset is negative: no '+' to lose")
        resp = await client.get(f"/api/v1/calls?since={raw}")
        assert resp.status == 200, await resp.text()
        assert len((await resp.json())["calls"]) == 5


@pytest.mark.parametrize("query, param", [
    ("limit=0", "limit"), ("limit=501", "limit"), ("limit=abc", "limit"), ("limit=-5", "limit"),
    ("limit=1.5", "limit"), ("limit=%D9%A3", "limit"),                 # an Arabic-Indic digit
    ("since=yesterday", "since"), ("since=2025-13-01", "since"), ("since=1850-01-01", "since"),
    ("since=" + "9" * 500, "since"), ("agent=abc", "agent"), ("agent=1001;DROP", "agent"),
])
async def test_calls_bad_parameters_are_400(redis, pool, query, param):
    async with served(redis, pool) as client:
        resp = await client.get(f"/api/v1/calls?{query}")
        assert resp.status == 400
        body = await resp.json()
        assert body["parameter"] == param
        assert f"'{param}'" in body["error"]


# ---- /api/stats --------------------------------------------------------------------------
async def test_stats_all_time_today_and_window(redis, pool):
    await seed_records(redis, pool)
    midnight = local_midnight()
    async with served(redis, pool) as client:
        data = await (await client.get("/api/v1/stats")).json()
        assert data["offered"] == 6 and data["answered"] == 4 and data["abandoned"] == 1
        assert data["ivr_completed"] == 1
        assert data["avg_wait_s"] == pytest.approx((8 + 12 + 4 + 100) / 4)

        data = await (await client.get("/api/v1/stats", params={"since": midnight.isoformat()})).json()
        assert (data["offered"], data["answered"], data["abandoned"], data["ivr_completed"]) == (5, 3, 1, 1)
        assert data["answer_rate"] == 0.75                 # the IVR-served call was not offered to agents
        assert data["avg_wait_s"] == pytest.approx(8.0)
        assert data["avg_talk_s"] == pytest.approx((120 + 200 + 60) / 3, abs=1e-3)
        assert data["max_talk_s"] == 200
        assert data["since"] == midnight.isoformat() and data["until"] is None

        window = {"since": (midnight - timedelta(days=1)).isoformat(), "until": midnight.isoformat()}
        data = await (await client.get("/api/v1/stats", params=window)).json()
        assert (data["offered"], data["answered"], data["avg_wait_s"]) == (1, 1, 100)

        resp = await client.get("/api/v1/stats", params={"since": midnight.isoformat(),
                                                      "until": (midnight - timedelta(hours=1)).isoformat()})
        assert resp.status == 400
        assert (await resp.json())["parameter"] == "until"
        resp = await client.get("/api/v1/stats", params={"until": "soon"})
        assert resp.status == 400 and "'until'" in (await resp.json())["error"]


async def test_stats_empty_database(redis, pool):
    async with served(redis, pool) as client:
        data = await (await client.get("/api/v1/stats")).json()
        assert data["offered"] == 0 and data["answer_rate"] is None and data["avg_wait_s"] is None


# ---- /api/agents and /api/live ------------------------------------------------------------
async def test_agents_as_the_acd_wrote_them(redis, pool):
    await seed_agents(redis)
    async with served(redis, pool) as client:
        data = await (await client.get("/api/v1/agents")).json()
    agents = {a["id"]: a for a in data["agents"]}
    assert [a["id"] for a in data["agents"]] == ["1001", "1002", "1003", "1004", "1005", "1006"]
    assert agents["1001"]["name"] == "王芳" and agents["1001"]["team"] == "day"
    assert agents["1001"]["skills"] == {"mandarin": 3, "enterprise": 1}
    assert agents["1001"]["state"] == "ready"
    assert agents["1002"]["state"] == "on_call" and agents["1002"]["call"] == "t1"
    assert agents["1004"]["state"] == "not_ready" and agents["1004"]["reason"] == "break"
    assert agents["1005"]["state"] == "logged_out"
    assert abs(agents["1001"]["state_since"] - time.time()) < 60


async def test_agents_tolerates_a_garbled_hash(redis, pool):
    await redis.sadd(Keys.agents, "2001", "2002")
    await redis.hset(Keys.agent("2001"), mapping={"name": "x", "skills": "{not json", "state": "dancing",
                                                  "state_since": "nan?"})
    async with served(redis, pool) as client:
        resp = await client.get("/api/v1/agents")
        assert resp.status == 200
        data = await resp.json()
    assert data["agents"] == [{"id": "2001", "name": "x", "team": "default", "skills": {}, "state": "unknown",
                               "state_since": None, "reason": "", "call": "", "pending_reason": ""}]


async def test_live_picture(redis, pool):
    await seed_agents(redis)
    await seed_records(redis, pool)
    now = await seed_live_calls(redis)
    async with served(redis, pool) as client:
        resp = await client.get("/api/v1/live")
        assert resp.status == 200
        data = await resp.json()
    elapsed = time.time() - now
    assert data["waiting"] == 3
    assert 42 <= data["longest_wait_s"] <= 42 + elapsed + 0.2
    queues = {q["queue"]: q for q in data["queues"]}
    assert queues["general"]["waiting"] == 2 and 42 <= queues["general"]["longest_wait_s"] < 44
    assert queues["general"]["talking"] == 1
    assert queues["elderly"]["waiting"] == 1 and 5 <= queues["elderly"]["longest_wait_s"] < 7
    assert queues["enterprise"] == {"queue": "enterprise", "waiting": 0, "longest_wait_s": 0.0,
                                    "ringing": 1, "talking": 0}
    assert data["calls"] == {"ivr": 1, "waiting": 3, "ringing": 1, "talking": 1}
    assert data["agents"] == {"logged_out": 1, "ready": 1, "reserved": 1, "on_call": 1, "wrapup": 1,
                              "not_ready": 1}
    assert data["agents_logged_in"] == 5
    today = data["today"]
    assert (today["offered"], today["answered"], today["abandoned"]) == (5, 3, 1)
    assert today["answer_rate"] == 0.75 and today["avg_wait_s"] == pytest.approx(8.0)
    assert today["since"] == local_midnight().isoformat()


async def test_live_when_nothing_happens(redis, pool):
    async with served(redis, pool) as client:
        data = await (await client.get("/api/v1/live")).json()
    assert data["waiting"] == 0 and data["longest_wait_s"] == 0 and data["queues"] == []
    assert data["calls"] == {"ivr": 0, "waiting": 0, "ringing": 0, "talking": 0}
    assert data["today"]["offered"] == 0


async def test_live_kpis_are_cached_briefly(redis, pool):
    async with served(redis, pool, kpi_ttl_s=60) as client:
        assert (await (await client.get("/api/v1/live")).json())["today"]["offered"] == 0
        await seed_records(redis, pool)
        assert (await (await client.get("/api/v1/live")).json())["today"]["offered"] == 0   # cached
        assert (await (await client.get("/api/v1/stats")).json())["offered"] == 6           # never cached


# ---- /metrics ------------------------------------------------------------------------------
def metric_samples(text: str) -> dict[tuple, float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_metrics(redis, pool):
    await seed_agents(redis)
    await seed_records(redis, pool)
    await seed_live_calls(redis)
    async with served(redis, pool) as client:
        started = time.perf_counter()
        resp = await client.get("/metrics")
        took = time.perf_counter() - started
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    assert took < 1.0
    m = metric_samples(text)
    assert m[("hotline_calls_waiting", (("queue", "general"),))] == 2
    assert m[("hotline_calls_waiting", (("queue", "elderly"),))] == 1
    assert m[("hotline_calls_waiting", (("queue", "enterprise"),))] == 0
    assert 42 <= m[("hotline_calls_waiting_longest_seconds", (("queue", ""),))] < 44
    for state, n in (("ivr", 1), ("waiting", 3), ("ringing", 1), ("talking", 1)):
        assert m[("hotline_calls_in_progress", (("state", state),))] == n
    for state in ("logged_out", "ready", "reserved", "on_call", "wrapup", "not_ready"):
        assert m[("hotline_agents", (("state", state),))] == 1
    assert m[("hotline_calls_offered_today", ())] == 5
    assert m[("hotline_calls_answered_today", ())] == 3
    assert m[("hotline_calls_abandoned_today", ())] == 1
    assert m[("hotline_answer_rate_today", ())] == 0.75
    assert m[("hotline_cti_store_up", (("store", "redis"),))] == 1
    assert m[("hotline_cti_store_up", (("store", "postgres"),))] == 1
    assert m[("hotline_cti_desktops_connected", ())] == 0


async def test_metrics_queue_keeps_reporting_zero_after_it_empties(redis, pool):
    await seed_live_calls(redis)
    async with served(redis, pool) as client:
        m = metric_samples(await (await client.get("/metrics")).text())
        assert m[("hotline_calls_waiting", (("queue", "elderly"),))] == 1
        await redis.zrem(Keys.waiting, "w3")
        m = metric_samples(await (await client.get("/metrics")).text())
        assert m[("hotline_calls_waiting", (("queue", "elderly"),))] == 0


# ---- the service ---------------------------------------------------------------------------
async def test_run_cti_serves_on_the_configured_port(redis, pool):
    settings = Settings(cti_host="127.0.0.1", cti_port=unused_port())
    stores = Stores("postgresql://unused", "redis://unused", pool, redis, embedded=False)
    runner = await run_cti(settings, stores)
    try:
        urls = cti_urls(settings)
        assert urls["desktop"] == f"http://127.0.0.1:{settings.cti_port}/desktop"
        assert set(urls) >= {"desktop", "wallboard", "api", "metrics"}
        async with aiohttp.ClientSession() as session:
            async with session.get(urls["health"]) as resp:
                assert resp.status == 200
            async with session.get(urls["wallboard"]) as resp:
                assert resp.status == 200
            async with session.get(urls["metrics"]) as resp:
                assert "hotline_agents" in await resp.text()
        with pytest.raises(CTIError, match="cannot listen"):
            await run_cti(settings, stores)                     # the port is taken
    finally:
        await runner.cleanup()
    assert redis.connection_pool is not None and await redis.ping()   # the caller's clients stay open
    assert await pool.fetchval("SELECT 1") == 1


def test_cti_urls_for_wildcard_hosts():
    assert cti_urls(Settings(cti_host="0.0.0.0", cti_port=8080))["wallboard"] == "http://127.0.0.1:8080/wallboard"
    assert cti_urls(Settings(cti_host="::", cti_port=8080))["metrics"] == "http://[::1]:8080/metrics"
    assert cti_urls(Settings(cti_host="cti.example", cti_port=9000))["api"] == "http://cti.example:9000/api/v1/docs"
