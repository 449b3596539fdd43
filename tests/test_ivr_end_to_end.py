"""IVR features through the whole hotline: the simulated PBX running the shipped dialplan, FastAGI to our IVR,
AMI to our ACD, real Redis and PostgreSQL (the helpers of tests/test_call_end_to_end.py)."""
from __future__ import annotations

import asyncio
import json

from hotline.keys import Keys
from tests.test_call_end_to_end import hotline, plan, records


def steps(row) -> list[tuple[str, str]]:
    path = row["ivr_path"] if isinstance(row["ivr_path"], dict) else json.loads(row["ivr_path"])
    return [(s["node"], s["result"]) for s in path["steps"]]


async def test_survey_after_the_agent_hangs_up_is_kept_with_the_call(redis, pool, redis_url, pg_url, tmp_path):
    async with hotline(redis, pool, redis_url, pg_url, tmp_path) as (sim, acd):
        caller = sim.place_call(plan(digits=("1",), talk=0.2, agent_hangs_up=True))
        await asyncio.wait_for(caller.done.wait(), 15)
    row = (await records(pool))[caller.channel.uniqueid]
    assert row["outcome"] == "answered" and row["agent"] == "1001"
    path = row["ivr_path"] if isinstance(row["ivr_path"], dict) else json.loads(row["ivr_path"])
    assert path["survey"]["agent"] == "1001"
    assert (path["survey"]["score"], path["survey"]["result"]) == ("satisfied", "answered")
    survey = json.loads(await redis.get(Keys.survey(caller.channel.uniqueid)))
    assert survey["score"] == "satisfied" and survey["uniqueid"] == caller.channel.uniqueid


async def test_caller_hanging_up_first_gets_no_survey(redis, pool, redis_url, pg_url, tmp_path):
    async with hotline(redis, pool, redis_url, pg_url, tmp_path) as (sim, acd):
        caller = sim.place_call(plan(digits=("1",), talk=0.2))
        await asyncio.wait_for(caller.done.wait(), 15)
    row = (await records(pool))[caller.channel.uniqueid]
    path = row["ivr_path"] if isinstance(row["ivr_path"], dict) else json.loads(row["ivr_path"])
    assert "survey" not in path
    assert await redis.get(Keys.survey(caller.channel.uniqueid)) is None


async def test_cantonese_caller_reaches_a_cantonese_agent(redis, pool, redis_url, pg_url, tmp_path):
    agents = (("1001", {"mandarin": 5}), ("1002", {"cantonese": 3}))
    async with hotline(redis, pool, redis_url, pg_url, tmp_path, agents=agents) as (sim, acd):
        cantonese = plan(digits=("2",), talk=0.2)
        cantonese.language = "yue"
        caller = sim.place_call(cantonese)
        await asyncio.wait_for(caller.done.wait(), 15)
    row = (await records(pool))[caller.channel.uniqueid]
    assert (row["outcome"], row["agent"], row["queue"]) == ("answered", "1002", "complaint")
    assert row["skills"] == "cantonese:1"


async def test_emergency_transfer_that_fails_still_reaches_a_person(redis, pool, redis_url, pg_url, tmp_path):
    """The simulated trunk cannot reach 110: the dialplan sends the caller to the queue the IVR also set."""
    async with hotline(redis, pool, redis_url, pg_url, tmp_path) as (sim, acd):
        caller = sim.place_call(plan(digits=("8", "1"), talk=0.2))
        await asyncio.wait_for(caller.done.wait(), 15)
    row = (await records(pool))[caller.channel.uniqueid]
    assert (row["outcome"], row["queue"]) == ("answered", "general")
    path = row["ivr_path"] if isinstance(row["ivr_path"], dict) else json.loads(row["ivr_path"])
    assert (path["result"], path["transfer"]) == ("transfer", "110")


async def test_emergency_broadcast_is_played_live(redis, pool, redis_url, pg_url, tmp_path):
    async with hotline(redis, pool, redis_url, pg_url, tmp_path) as (sim, acd):
        await redis.set(Keys.broadcast, "hotline/broadcast-typhoon")
        first = sim.place_call(plan(number="13800000011", talk=0.1))
        await asyncio.wait_for(first.done.wait(), 15)
        await redis.delete(Keys.broadcast)
        second = sim.place_call(plan(number="13800000012", talk=0.1))
        await asyncio.wait_for(second.done.wait(), 15)
    rows = await records(pool)
    assert ("broadcast", "ok") in steps(rows[first.channel.uniqueid])
    assert ("broadcast", "ok") not in steps(rows[second.channel.uniqueid])
