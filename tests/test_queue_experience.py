"""The caller's experience of the queue, through the simulated PBX running our dialplan: announcements
of the place and the estimated wait, a call back that keeps the place, a message, overflow to a backup
group, and returning callers. Announcements every 10 s (0.25 s here: the simulator runs the dialplan 40x
faster); the ACD's limits in queues.yaml are real seconds, so the tests give them in tenths."""
from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest

from acd.queues import QueueBook, QueueConfigError
from tests.test_call_end_to_end import hotline as _hotline, plan, records

FAST = 40.0     # the dialplan (prompts, music on hold, IVR) 40x faster than real time


def hotline(*args, **kw):
    return _hotline(*args, speed=FAST, **kw)


async def until(predicate, timeout=10.0):
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def queues_file(tmp_path, text: str):
    path = tmp_path / "queues.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def ivr_path(row) -> dict:
    value = row["ivr_path"]
    return json.loads(value) if isinstance(value, str) else (value or {})


async def test_announcements_say_the_place_and_the_estimated_wait(redis, pool, redis_url, pg_url, tmp_path):
    async with hotline(redis, pool, redis_url, pg_url, tmp_path) as (sim, acd):
        sim.pbx.globals["HOTLINE_ANNOUNCE_EVERY"] = "10"
        busy = sim.place_call(plan(number="13800000001", talk=2.0))
        await until(lambda: busy.answered_at is not None)
        first = sim.place_call(plan(number="13800000002", patience=0.8))
        await asyncio.sleep(0.1)
        second = sim.place_call(plan(number="13800000003", patience=0.8))
        await asyncio.wait_for(asyncio.gather(*(c.done.wait() for c in (busy, first, second))), 15)
    assert first.announced_positions and set(first.announced_positions) == {1}
    assert second.announced_positions[0] == 2
    rows = await records(pool)
    said = ivr_path(rows[second.channel.uniqueid])["queue_announcements"][0]
    # No history yet: 180 s per call, one agent serves the queue, second in line: 360 s.
    assert (said["queue"], said["position"], said["agents"], said["ewt_s"]) == ("general", 2, 1, 360)
    assert ivr_path(rows[first.channel.uniqueid])["queue_announcements"][0]["ewt_s"] == 180


async def test_callback_keeps_the_place_and_connects_the_agent(redis, pool, redis_url, pg_url, tmp_path):
    rules = queues_file(tmp_path, "queues:\n  general:\n    max_wait_s: 0.2\n    offer: [callback, message]\n")
    async with hotline(redis, pool, redis_url, pg_url, tmp_path, acd_queues_file=rules) as (sim, acd):
        sim.pbx.globals["HOTLINE_ANNOUNCE_EVERY"] = "10"
        busy = sim.place_call(plan(number="13800000001", talk=2.5))
        await until(lambda: busy.answered_at is not None)
        keeper = sim.place_call(plan(number="13800000002", patience=20, talk=0.3, queue_choice="callback"))
        await until(lambda: keeper.waiting_for_callback and not keeper.channel.alive)
        later = sim.place_call(plan(number="13800000003", patience=20, talk=0.3))
        await asyncio.wait_for(asyncio.gather(*(c.done.wait() for c in (busy, keeper, later))), 20)
    assert keeper.was_called_back
    rows = await records(pool)
    kept, other = rows[keeper.first_uniqueid], rows[later.channel.uniqueid]
    assert (kept["outcome"], kept["agent"]) == ("answered", "1001")
    # It kept its place: answered before the caller who came after it and stayed on the line.
    assert kept["answered_at"] < other["answered_at"] and other["outcome"] == "answered"
    assert ivr_path(kept)["queue_choice"] == "callback"
    truth = {r["uniqueid"]: r for r in sim.truth.records}[keeper.first_uniqueid]
    assert truth["outcome"] == "answered" and truth["agent"] == "1001"
    assert kept["wait_s"] == pytest.approx(truth["wait_s"], abs=0.15)


async def test_unanswered_call_back_is_tried_again_in_the_same_place(redis, pool, redis_url, pg_url, tmp_path):
    rules = queues_file(tmp_path, "queues:\n  general:\n    max_wait_s: 0.2\n    offer: [callback, message]\n"
                                  "    callback_attempts: 3\n    callback_retry_s: 0.3\n")
    async with hotline(redis, pool, redis_url, pg_url, tmp_path, acd_queues_file=rules) as (sim, acd):
        sim.pbx.globals["HOTLINE_ANNOUNCE_EVERY"] = "10"
        busy = sim.place_call(plan(number="13800000001", talk=2.5))
        await until(lambda: busy.answered_at is not None)
        keeper = sim.place_call(replace(plan(number="13800000002", patience=20, talk=0.3, queue_choice="callback"),
                                        callbacks_unanswered=1))
        await until(lambda: keeper.waiting_for_callback and not keeper.channel.alive)
        await asyncio.wait_for(asyncio.gather(*(c.done.wait() for c in (busy, keeper))), 20)
    assert keeper.callbacks_let_go == 1 and keeper.was_called_back
    row = (await records(pool))[keeper.first_uniqueid]
    assert (row["outcome"], row["agent"]) == ("answered", "1001")
    assert ivr_path(row)["callback"] == {"attempts": 2, "answered": True}
    # The agent reserved for the call back nobody answered was free again at once (not "no answer").
    states = [(r["state"], r["reason"]) for r in await pool.fetch(
        "SELECT state, reason FROM agent_states WHERE agent_id = '1001' AND call_uniqueid IS NULL "
        "AND state IN ('ready', 'not_ready') ORDER BY at")]
    assert ("not_ready", "no_answer") not in states


async def test_call_back_never_answered_ends_after_the_attempts(redis, pool, redis_url, pg_url, tmp_path):
    rules = queues_file(tmp_path, "queues:\n  general:\n    max_wait_s: 0.2\n    offer: [callback, message]\n"
                                  "    callback_attempts: 2\n    callback_retry_s: 0.2\n")
    async with hotline(redis, pool, redis_url, pg_url, tmp_path, acd_queues_file=rules) as (sim, acd):
        sim.pbx.globals["HOTLINE_ANNOUNCE_EVERY"] = "10"
        busy = sim.place_call(plan(number="13800000001", talk=2.5))
        await until(lambda: busy.answered_at is not None)
        keeper = sim.place_call(replace(plan(number="13800000002", patience=20, talk=0.3, queue_choice="callback"),
                                        callbacks_unanswered=2, answers_callback=False))
        await asyncio.wait_for(asyncio.gather(*(c.done.wait() for c in (busy, keeper))), 20)
        for _ in range(100):
            if keeper.first_uniqueid in await records(pool):
                break
            await asyncio.sleep(0.05)
        await until(lambda: acd.agents.get("1001").state.value == "ready")
    row = (await records(pool))[keeper.first_uniqueid]
    truth = {r["uniqueid"]: r for r in sim.truth.records}[keeper.first_uniqueid]
    assert (row["outcome"], row["abandoned_in"]) == (truth["outcome"], truth["abandoned_in"]) == ("abandoned", "queue")
    assert ivr_path(row)["callback"] == {"attempts": 2, "answered": False}
    assert row["agent"] is None


async def test_message_left_past_the_limit_is_kept_with_the_call(redis, pool, redis_url, pg_url, tmp_path):
    rules = queues_file(tmp_path, "queues:\n  general:\n    max_wait_s: 0.2\n    offer: [callback, message]\n")
    async with hotline(redis, pool, redis_url, pg_url, tmp_path, acd_queues_file=rules) as (sim, acd):
        sim.pbx.globals["HOTLINE_ANNOUNCE_EVERY"] = "10"
        busy = sim.place_call(plan(number="13800000001", talk=2.0))
        await until(lambda: busy.answered_at is not None)
        caller = sim.place_call(plan(number="13800000002", patience=20, queue_choice="message"))
        await asyncio.wait_for(asyncio.gather(busy.done.wait(), caller.done.wait()), 15)
    row = (await records(pool))[caller.channel.uniqueid]
    path = ivr_path(row)
    assert (row["outcome"], row["agent"]) == ("ivr_completed", None)
    assert path["queue_choice"] == "message"
    assert path["message"]["file"] == f"hotline/messages/{caller.channel.uniqueid}.wav"
    assert path["message"]["seconds"] is not None
    assert row["queued_at"] is not None


async def test_overflow_to_the_backup_group_after_the_limit(redis, pool, redis_url, pg_url, tmp_path):
    rules = queues_file(tmp_path, "queues:\n  general:\n    max_wait_s: 0.2\n    overflow: backup\n"
                                  "    overflow_skills: \"backup:1\"\n")
    agents = (("1001", {"mandarin": 5}), ("1002", {"backup": 5}))
    async with hotline(redis, pool, redis_url, pg_url, tmp_path, agents=agents, acd_queues_file=rules) as (sim, acd):
        busy = sim.place_call(plan(number="13800000001", talk=2.0))
        await until(lambda: busy.answered_at is not None)
        caller = sim.place_call(plan(number="13800000002", patience=10, talk=0.2))
        await asyncio.wait_for(asyncio.gather(busy.done.wait(), caller.done.wait()), 15)
    row = (await records(pool))[caller.channel.uniqueid]
    assert (row["outcome"], row["queue"], row["agent"]) == ("answered", "backup", "1002")
    assert 0.2 <= row["wait_s"] < 1.0         # after the limit (ACD seconds are real), before 1001 was free


def test_queue_limits_are_checked():
    book = QueueBook.from_dict({"queues": {"general": {"max_wait_s": 60, "max_length": 5,
                                                      "offer": ["callback"]}}})
    assert book.get("general").limited and book.get("general").offer == ("callback",)
    with pytest.raises(QueueConfigError, match="offer"):
        QueueBook.from_dict({"queues": {"general": {"offer": ["pizza"]}}})
    with pytest.raises(QueueConfigError, match="overflow"):
        QueueBook.from_dict({"queues": {"general": {"max_wait_s": 5, "overflow": "general"}}})
    assert not QueueBook.from_dict({}).returning.enabled


async def _call_twice(sim, number="13900000001"):
    first = sim.place_call(plan(number=number, talk=0.2))
    await asyncio.wait_for(first.done.wait(), 10)
    await asyncio.sleep(0.2)                      # wrap-up over: 1002 is now the agent idle longest
    second = sim.place_call(plan(number=number, talk=0.2))
    await asyncio.wait_for(second.done.wait(), 10)
    return first, second


@pytest.mark.parametrize("enabled", [True, False])
async def test_returning_caller_gets_the_same_agent_only_when_enabled(redis, pool, redis_url, pg_url, tmp_path,
                                                                      enabled):
    rules = queues_file(tmp_path, f"returning:\n  enabled: {str(enabled).lower()}\n  days: 7\n  wait_s: 2\n")
    agents = (("1001", {"mandarin": 5}), ("1002", {"mandarin": 5}))
    async with hotline(redis, pool, redis_url, pg_url, tmp_path, agents=agents, acd_queues_file=rules) as (sim, acd):
        first, second = await _call_twice(sim)
    rows = await records(pool)
    assert rows[first.channel.uniqueid]["agent"] == "1001"          # idle longest at the first call
    assert rows[second.channel.uniqueid]["agent"] == ("1001" if enabled else "1002")
    assert rows[second.channel.uniqueid]["wait_s"] < 1.0            # 1001 was ready: no waiting for it


async def test_returning_caller_waits_a_few_seconds_for_the_agent_on_another_call(redis, pool, redis_url, pg_url,
                                                                                  tmp_path):
    from hotline.model import AgentState

    rules = queues_file(tmp_path, "returning:\n  enabled: true\n  wait_s: 3\n")
    agents = (("1001", {"mandarin": 5}), ("1002", {"mandarin": 5}))
    async with hotline(redis, pool, redis_url, pg_url, tmp_path, agents=agents, acd_queues_file=rules) as (sim, acd):
        first = sim.place_call(plan(number="13900000001", talk=0.2))
        await asyncio.wait_for(first.done.wait(), 10)
        await acd.core.agents.change("1002", AgentState.NOT_READY, reason="break")
        other = sim.place_call(plan(number="13900000002", talk=1.3))       # keeps 1001 busy
        await until(lambda: other.answered_at is not None)
        await acd.core.agents.free("1002")                           # ready all the while
        again = sim.place_call(plan(number="13900000001", talk=0.2))
        await asyncio.wait_for(asyncio.gather(other.done.wait(), again.done.wait()), 10)
    row = (await records(pool))[again.channel.uniqueid]
    assert row["agent"] == "1001" and row["outcome"] == "answered"
    assert 0.1 < row["wait_s"] < 3.0             # it waited for 1001 although 1002 was ready


async def test_overflow_when_the_queue_is_too_long_on_arrival(redis, pool, redis_url, pg_url, tmp_path):
    rules = queues_file(tmp_path, "queues:\n  general:\n    max_length: 1\n    overflow: backup\n"
                                  "    overflow_skills: \"backup:1\"\n")
    agents = (("1001", {"mandarin": 5}), ("1002", {"backup": 5}))
    async with hotline(redis, pool, redis_url, pg_url, tmp_path, agents=agents, acd_queues_file=rules) as (sim, acd):
        busy = sim.place_call(plan(number="13800000001", talk=2.0))
        await until(lambda: busy.answered_at is not None)
        waiting = sim.place_call(plan(number="13800000002", patience=0.6))
        await asyncio.sleep(0.1)
        extra = sim.place_call(plan(number="13800000003", patience=5, talk=0.2))
        await asyncio.wait_for(asyncio.gather(*(c.done.wait() for c in (busy, waiting, extra))), 10)
    rows = await records(pool)
    assert rows[waiting.channel.uniqueid]["queue"] == "general"
    row = rows[extra.channel.uniqueid]
    assert (row["outcome"], row["queue"], row["agent"]) == ("answered", "backup", "1002")
    assert row["wait_s"] < 0.3                   # moved at once: one call was already waiting


def test_wait_estimate_is_place_times_handle_time_over_agents():
    from ivr.announce import estimate_wait

    assert estimate_wait(3, [100.0, 200.0], 2) == 225          # 3 x 150 s / 2 agents
    assert estimate_wait(1, [], 1) == 180                      # no history yet: 180 s a call
    assert estimate_wait(1, [10.0], 5) == 60                   # never less than a minute
    assert estimate_wait(500, [600.0], 1) == 3600              # nor more than an hour
    assert estimate_wait(2, [100.0], 0) is None                # nobody serves the queue: not said
