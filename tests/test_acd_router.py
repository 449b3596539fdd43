"""Routing on a real Redis: bucket and skill indexes, strategies, skill expansion, queue files,
and property-based checks that no call goes to two agents nor two calls to one agent."""
from __future__ import annotations

import asyncio

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from acd.agents import AgentDirectory
from acd.queues import DEFAULT_QUEUES_FILE, QueueBook, QueueConfigError
from acd.router import AgentChanged, Router, WaitingCall, routing_score
from hotline.keys import Keys
from hotline.model import AgentState

QUEUES = QueueBook.from_dict({
    "default": {"strategy": "longest_idle"},
    "queues": {
        "busy": {"strategy": "least_occupied"},
        "skill": {"strategy": "best_skill"},
        "cantonese": {"expand": [{"after_s": 20, "lower": {"cantonese": 1}},
                                 {"after_s": 60, "replace": {"cantonese": "mandarin:4"}}]},
    },
})


@pytest_asyncio.fixture(autouse=True)
async def _close_routers(monkeypatch):
    """Every router a test makes gets its lean connection closed afterwards."""
    made = []
    init = Router.__init__

    def tracked(self, *args, **kwargs):
        init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(Router, "__init__", tracked)
    yield
    for router in made:
        await router.aclose()


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def floor(redis, clock, agents):
    directory = AgentDirectory(redis, clock=clock)
    for agent_id, skills in agents:
        await directory.upsert(agent_id, f"Agent {agent_id}", "general", skills)
    return directory


async def ready(directory, clock, *ids, step=1.0):
    for agent_id in ids:
        clock.now += step
        await directory.transition(agent_id, AgentState.READY)


def call(uid, queued_at, skills, priority=0, queue="general"):
    return WaitingCall(uid, f"PJSIP/trunk-{uid}", queue, skills, priority, queued_at)


async def test_agent_free_takes_priority_first_then_longest_wait(redis):
    clock = Clock()
    directory = await floor(redis, clock, [("1001", {"mandarin": 5, "elderly": 5})])
    router = Router(redis, QUEUES, clock=clock)
    t = clock.now
    for c in (call("a", t + 1, {"mandarin": 1}), call("b", t + 2, {"mandarin": 1}, priority=30),
              call("c", t + 0, {"mandarin": 1}), call("d", t + 3, {"elderly": 1}, priority=30),
              call("e", t - 5, {"cantonese": 1}, priority=30)):     # nobody here speaks Cantonese
        assert await router.arrive(c) is None
    served = []
    for _ in range(4):
        await ready(directory, clock, "1001")
        decision = await router.offer("1001", directory.get("1001").skills)
        served.append(decision.call)
        directory.get("1001").state = AgentState.RESERVED
    assert served == ["b", "d", "c", "a"]
    await ready(directory, clock, "1001")
    assert await router.offer("1001", directory.get("1001").skills) is None
    assert await redis.zrange(Keys.waiting, 0, -1) == ["e"]


@pytest.mark.parametrize("queue, expected", [("general", "1001"), ("busy", "1003"), ("skill", "1002")])
async def test_strategies_pick_the_agent(redis, queue, expected):
    clock = Clock()
    directory = await floor(redis, clock, [("1001", {"mandarin": 3}), ("1002", {"mandarin": 5}),
                                           ("1003", {"mandarin": 4}), ("1004", {"english": 5})])
    await redis.hset(Keys.busy(__import__("acd.agents").agents.busy_day(clock.now)),
                     mapping={"1001": 300, "1002": 200, "1003": 100})
    await ready(directory, clock, "1001", "1002", "1003", "1004")    # 1001 idle longest
    router = Router(redis, QUEUES, clock=clock)
    decision = await router.arrive(call("x", clock.now, {"mandarin": 2}, queue=queue))
    assert decision.agent == expected
    assert decision.candidate_count == 3 and {a for a, _ in decision.candidates} == {"1001", "1002", "1003"}
    assert (await redis.hgetall(Keys.agent(expected)))["state"] == "reserved"
    assert await redis.zscore(Keys.ready, expected) is None
    assert await redis.zscore(Keys.ready_skill("mandarin"), expected) is None
    assert (await redis.hgetall(Keys.call("x")))["agent"] == expected


async def test_ties_go_to_the_longest_idle(redis):
    clock = Clock()
    directory = await floor(redis, clock, [("1002", {"mandarin": 5}), ("1001", {"mandarin": 5})])
    await ready(directory, clock, "1002", "1001")
    router = Router(redis, QUEUES, clock=clock)
    assert (await router.arrive(call("x", clock.now, {"mandarin": 1}, queue="skill"))).agent == "1002"


async def test_skill_expansion_widens_after_the_configured_waits(redis):
    clock = Clock()
    directory = await floor(redis, clock, [("1001", {"cantonese": 1}), ("1002", {"mandarin": 5})])
    router = Router(redis, QUEUES, clock=clock)
    start = clock.now
    assert await router.arrive(call("x", start, {"cantonese": 3}, queue="cantonese")) is None
    await ready(directory, clock, "1001", "1002", step=0.5)
    assert await router.offer("1001", {"cantonese": 1}) is None           # level 1 < 3, 1 s waited
    assert await router.offer("1002", {"mandarin": 5}) is None
    clock.now = start + 20.5
    assert await router.offer("1002", {"mandarin": 5}) is None            # 20 s: only the level lowers
    decision = await router.offer("1001", {"cantonese": 1})
    assert decision.call == "x"
    # The same with Mandarin after 60 s; a requeued call arriving late is matched at once.
    clock.now = start + 100
    late = await router.arrive(call("y", start, {"cantonese": 3}, queue="cantonese"))
    assert late is not None and late.agent == "1002"


async def test_a_changed_skill_takes_effect_at_once(redis):
    clock = Clock()
    directory = await floor(redis, clock, [("1001", {"mandarin": 5})])
    await ready(directory, clock, "1001")
    router = Router(redis, QUEUES, clock=clock)
    await directory.upsert("1001", "Agent 1001", "general", {"english": 4})
    assert await redis.zscore(Keys.ready_skill("mandarin"), "1001") is None
    assert await router.arrive(call("x", clock.now, {"mandarin": 1})) is None
    assert (await router.arrive(call("y", clock.now, {"english": 2}))).agent == "1001"


def test_shipped_queue_file_is_valid():
    book = QueueBook.from_file(DEFAULT_QUEUES_FILE)
    assert book.get("enterprise").strategy == "best_skill" and book.get("nosuch").strategy == "longest_idle"


@pytest.mark.parametrize("data, message", [
    ({"queues": {"q": {"strategy": "random"}}}, "queues: queues.q.strategy: must be one of longest_idle"),
    ({"queues": {"q": {"expand": [{"after_s": 30, "drop": ["x"]}, {"after_s": 10, "drop": ["y"]}]}}},
     "queues: queues.q.expand[1].after_s: must be greater than 30"),
    ({"queues": {"q": {"expand": [{"after_s": 5, "lower": {"x": 0}}]}}}, "queues.q.expand[0].lower.x: must be"),
    ({"queues": {"q": {"expand": [{"after_s": 5}]}}}, "queues.q.expand[0]: changes nothing"),
    ({"queues": {"bad name": {}}}, "queues.bad name: queue names are"),
    ({"queue": {}}, "queue: unknown key"),
    ({"queues": {"q": {"callback_attempts": 0}}}, "queues.q.callback_attempts: must be a whole number, 1..10"),
    ({"queues": {"q": {"callback_retry_s": "soon"}}}, "queues.q.callback_retry_s: must be a number of seconds"),
    ({"queues": {"q": {"callback_ring_s": 1}}}, "queues.q.callback_ring_s: must be a number of seconds, 5..300"),
])
def test_queue_file_errors_are_one_line(data, message):
    with pytest.raises(QueueConfigError) as info:
        QueueBook.from_dict(data)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_queue_file_not_yaml(tmp_path):
    path = tmp_path / "queues.yaml"
    path.write_text("queues: [\n")
    with pytest.raises(QueueConfigError, match=r"queues.yaml: line \d+ is not valid YAML"):
        QueueBook.from_file(path)


# ---- properties ---------------------------------------------------------------------------

SKILLS = ("mandarin", "cantonese", "english", "enterprise")
skill_sets = st.dictionaries(st.sampled_from(SKILLS), st.integers(1, 5), min_size=0, max_size=2)
agent_skill_sets = st.dictionaries(st.sampled_from(SKILLS), st.integers(1, 5), min_size=1, max_size=3)
ops = st.lists(st.one_of(
    st.tuples(st.just("call"), skill_sets, st.sampled_from([0, 10, 30]), st.integers(0, 50)),
    st.tuples(st.just("free"), st.integers(0, 5)),
    st.tuples(st.just("race"), st.integers(0, 5), st.integers(0, 5)),
), min_size=1, max_size=40)


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(agents=st.lists(agent_skill_sets, min_size=1, max_size=6), steps=ops,
       strategy=st.sampled_from(["general", "busy", "skill"]))
async def test_routing_invariants(redis, agents, steps, strategy):
    """Random arrivals and agents freed (some by two routers at once, as two ACD processes):
    never one call to two agents, never two calls to one reservation, and an agent freed gets
    the best call it can serve (priority, then longest wait)."""
    await redis.flushdb()
    clock = Clock()
    directory = await floor(redis, clock, [(str(1001 + i), s) for i, s in enumerate(agents)])
    # Two ACD processes: one on the lean connection, one through redis-py (the fallback path).
    routers = [Router(redis, QUEUES, clock=clock), Router(redis, QUEUES, clock=clock, lean=False)]
    assert routers[0].lane is not None and routers[1].lane is None
    waiting: dict[str, WaitingCall] = {}
    served: dict[str, str] = {}                   # call -> agent
    reservations: set[tuple[str, str]] = set()    # (agent, ready since) each used once
    n = 0

    def record(decision) -> None:
        assert decision.call not in served, f"call {decision.call} given twice"
        key = (decision.agent, decision.agent_ready_since)
        assert key not in reservations, f"agent {decision.agent} reserved twice while ready once"
        served[decision.call] = decision.agent
        reservations.add(key)
        waiting.pop(decision.call, None)
        directory.get(decision.agent).state = AgentState.RESERVED

    for step in steps:
        clock.now += 1
        if step[0] == "call":
            _, skills, priority, age = step
            n += 1
            c = call(f"c{n}", clock.now - age, skills, priority, queue=strategy)
            decision = await routers[n % 2].arrive(c)
            if decision is None:
                waiting[c.uniqueid] = c
            else:
                assert decision.agent in directory.agents
                assert directory.get(decision.agent).can_serve(skills)
                record(decision)
        else:
            ids = [str(1001 + i % len(agents)) for i in step[1:]]
            # A reserved agent freed alone ends its wrap-up in the decision's own script (half the
            # time): ready and, if a call waits, reserved at once.
            in_script = step[0] == "free" and directory.get(ids[0]).state != AgentState.READY and clock.now % 2 == 0
            for agent_id in dict.fromkeys(ids):
                if directory.get(agent_id).state != AgentState.READY and not in_script:
                    await directory.transition(agent_id, AgentState.READY)
            if step[0] == "free":
                agent_id = ids[0]
                eligible = [c for c in waiting.values() if directory.get(agent_id).can_serve(c.skills)]
                if in_script:
                    await directory.reload(agent_id)        # its state as Redis holds it (reserved)
                    ready_step = directory.ready_step(agent_id, clock.now)
                    decision = await routers[n % 2].offer(agent_id, directory.get(agent_id).skills, clock.now,
                                                          becoming_ready=ready_step)
                    directory.became_ready(agent_id, clock.now)
                else:
                    decision = await routers[0].offer(agent_id, directory.get(agent_id).skills)
                if not eligible:
                    assert decision is None
                else:
                    best = min(eligible, key=lambda c: (c.score, c.uniqueid))
                    assert decision is not None and decision.call == best.uniqueid
                    record(decision)
            else:   # two routers free the same (or two) agents at the same moment
                results = await asyncio.gather(*(r.offer(a, directory.get(a).skills)
                                                  for r, a in zip(routers, ids)))
                for decision in results:
                    if decision is not None:
                        record(decision)
    # Redis agrees: every served call left the queue, every reserved agent is out of the ready sets.
    assert set(await redis.zrange(Keys.waiting, 0, -1)) == set(waiting)
    for call_id, agent_id in served.items():
        assert (await redis.hget(Keys.call(call_id), "agent")) == agent_id
    for agent_id, agent in directory.agents.items():
        in_ready = await redis.zscore(Keys.ready, agent_id) is not None
        assert in_ready == (agent.state == AgentState.READY)
        for skill in agent.skills:
            assert (await redis.zscore(Keys.ready_skill(skill), agent_id) is not None) == in_ready
    assert routing_score(30, 0) < routing_score(0, -1e9)


async def test_a_caller_who_hangs_up_leaves_the_queue_and_its_head(redis):
    clock = Clock()
    directory = await floor(redis, clock, [("1001", {"mandarin": 5})])
    router = Router(redis, QUEUES, clock=clock)
    first, second = call("a", clock.now, {"mandarin": 1}), call("b", clock.now + 1, {"mandarin": 1})
    for c in (first, second):
        await router.arrive(c)
    async with redis.pipeline(transaction=True) as pipe:
        await router.withdraw(pipe, "a", first.bucket)
        await pipe.execute()
    assert await redis.zscore(Keys.bucket_heads, first.bucket) == second.score
    await ready(directory, clock, "1001")
    assert (await router.offer("1001", {"mandarin": 5})).call == "b"
    assert await redis.zscore(Keys.bucket_heads, first.bucket) is None


@pytest.mark.parametrize("lean", [True, False])
async def test_becoming_ready_and_reserved_in_one_step(redis, lean):
    """Wrap-up over with a call waiting: reserved at once, never in the ready indexes; with none
    waiting: ready and indexed. The READY history row and event are written either way."""
    clock = Clock()
    directory = await floor(redis, clock, [("1001", {"mandarin": 5, "elderly": 2})])
    router = Router(redis, QUEUES, clock=clock, lean=lean)
    assert await router.arrive(call("a", clock.now, {"elderly": 2}, priority=30)) is None
    rows = await redis.llen(Keys.outbox)
    clock.now += 1
    step = directory.ready_step("1001", clock.now)          # logged out -> ready
    decision = await router.offer("1001", {"mandarin": 5, "elderly": 2}, clock.now, becoming_ready=step)
    assert decision.call == "a" and decision.agent_ready_since == repr(clock.now)
    assert "priority 30" in decision.rule and "needs elderly:2" in decision.rule
    state = await redis.hgetall(Keys.agent("1001"))
    assert state["state"] == "reserved" and state["call"] == "a"
    assert await redis.zscore(Keys.ready, "1001") is None
    assert await redis.zscore(Keys.ready_skill("mandarin"), "1001") is None
    assert await redis.llen(Keys.outbox) == rows + 1
    # A copy of the agent older than Redis's (another node reserved it since): refused, nothing written.
    clock.now += 1
    stale = directory.ready_step("1001", clock.now)
    with pytest.raises(AgentChanged):
        await router.offer("1001", {"mandarin": 5, "elderly": 2}, clock.now, becoming_ready=stale)
    assert (await redis.hgetall(Keys.agent("1001")))["state"] == "reserved"
    assert await redis.llen(Keys.outbox) == rows + 1
    await directory.reload("1001")                          # reserved (no answer) -> ready
    step = directory.ready_step("1001", clock.now)
    assert await router.offer("1001", {"mandarin": 5, "elderly": 2}, clock.now, becoming_ready=step) is None
    assert (await redis.hgetall(Keys.agent("1001")))["state"] == "ready"
    assert await redis.zscore(Keys.ready, "1001") == clock.now
    assert await redis.zscore(Keys.ready_skill("elderly"), "1001") == 2
    # Ready again while ready (and indexed), then a call: reserved and out of every index.
    assert await router.arrive(call("b", clock.now, {"mandarin": 1})) is not None
    assert await redis.zscore(Keys.ready, "1001") is None
    assert await redis.zscore(Keys.ready_skill("elderly"), "1001") is None


async def test_lean_connection_survives_script_flush_and_a_lost_connection(redis):
    clock = Clock()
    directory = await floor(redis, clock, [("1001", {"mandarin": 5})])
    router = Router(redis, QUEUES, clock=clock)
    assert router.lane is not None
    await router.arrive(call("a", clock.now, {"mandarin": 1}))
    await redis.script_flush()                       # as after a Redis restart: NOSCRIPT, loaded again
    await router.arrive(call("b", clock.now + 1, {"mandarin": 1}))
    await redis.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    await asyncio.sleep(0.05)
    await ready(directory, clock, "1001")
    assert (await router.offer("1001", {"mandarin": 5})).call == "a"     # reconnected


async def test_lean_connection_uses_the_clients_database(redis_url):
    from redis.asyncio import Redis

    other = Redis.from_url(redis_url.rsplit("/", 1)[0] + "/3", decode_responses=True)
    try:
        await other.flushdb()
        router = Router(other, QUEUES)
        assert router.lane is not None and router.lane.db == 3
        await router.arrive(call("x", 1.0, {"mandarin": 1}))
        assert await other.zrange(Keys.waiting, 0, -1) == ["x"]
        await other.flushdb()
    finally:
        await other.aclose()


async def test_lean_connection_times_out_and_falls_back_where_it_cannot_serve():
    from redis.asyncio import Redis
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from hotline.lane import Lane, open_lane, pack

    async def silent(reader, writer):           # accepts, reads, never answers
        await reader.read()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    lane = Lane("127.0.0.1", port, timeout=0.2)
    try:
        with pytest.raises(RedisTimeoutError):
            await lane.execute(pack("PING"))
        with pytest.raises(RedisTimeoutError):   # a new connection, the same silence
            await lane.execute(pack("PING"))
    finally:
        await lane.aclose()
        server.close()
        await server.wait_closed()
    with pytest.raises(RedisConnectionError):
        await Lane("127.0.0.1", port, connect_timeout=1).execute(pack("PING"))
    ssl = Redis.from_url("rediss://127.0.0.1:1/0")              # TLS: the lane cannot serve it
    assert open_lane(ssl) is None and Router(ssl).lane is None
    await ssl.aclose()


async def test_lean_connection_over_a_unix_socket(tmp_path):
    """A Redis on the same host over its Unix socket: the lane speaks it too (and the routing
    scripts give the same answers there)."""
    from hotline.lane import open_lane, pack
    from hotline.embedded import EmbeddedRedis

    server = EmbeddedRedis(tmp_path / "redis")
    await server.start()
    client = Redis.from_url(server.unix_url, decode_responses=True)
    try:
        lane = open_lane(client)
        assert lane is not None and lane.path == str(server.socket_path)
        assert await lane.execute(pack("PING")) == "PONG"
        await lane.aclose()
        clock = Clock()
        directory = await floor(client, clock, [("1001", {"mandarin": 5})])
        await directory.transition("1001", AgentState.READY)
        router = Router(client, QUEUES, clock=clock)
        assert router.lane is not None
        decision = await router.arrive(call("a", clock.now, {"mandarin": 1}))
        assert decision is not None and decision.agent == "1001"
        await router.aclose()
    finally:
        await client.aclose()
        await server.stop()


async def test_agents_freed_at_once_are_offered_in_order_in_one_round_trip(redis):
    clock = Clock()
    directory = await floor(redis, clock, [("1001", {"mandarin": 5}), ("1002", {"mandarin": 5}),
                                           ("1003", {"mandarin": 5})])
    router = Router(redis, QUEUES, clock=clock)
    for uid, age in (("old", 30), ("new", 10)):
        await router.arrive(call(uid, clock.now - age, {"mandarin": 1}))
    clock.now += 1
    offers = [(a, {"mandarin": 5}, clock.now, directory.ready_step(a, clock.now)) for a in ("1002", "1001", "1003")]
    decisions = await router.offer_many(offers)
    assert [d and (d.agent, d.call) for d in decisions] == [("1002", "old"), ("1001", "new"), None]
    assert await redis.zrange(Keys.ready, 0, -1) == ["1003"]


async def test_a_returning_caller_is_taken_first_by_its_agent_only(redis):
    """The caller's own bucket (returning callers): only offers for that agent see it, and before
    anything else it could serve, even an older caller of higher priority."""
    from dataclasses import replace

    from acd.queues import Returning
    from acd.router import RETURNING_QUEUE, preference_skill

    clock = Clock()
    directory = await floor(redis, clock, [("1001", {"mandarin": 5}), ("1002", {"mandarin": 5})])
    router = Router(redis, replace(QUEUES, returning=Returning(enabled=True)), clock=clock)
    back = WaitingCall("back", "PJSIP/trunk-2", RETURNING_QUEUE, {preference_skill("1002"): 1}, 0, clock.now)
    assert await router.arrive(back) is None
    await directory.transition("1001", AgentState.READY)
    assert await router.offer("1001", {"mandarin": 5}) is None      # 1001 does not see 1002's caller
    assert (await router.arrive(call("old", clock.now - 60, {"mandarin": 1}, priority=30))).agent == "1001"
    assert await router.arrive(call("older", clock.now - 90, {"mandarin": 1}, priority=30)) is None
    await directory.transition("1002", AgentState.READY)
    decision = await router.offer("1002", {"mandarin": 5})
    assert decision.call == "back" and "returning caller" in decision.rule
    assert await redis.zrange(Keys.waiting, 0, -1) == ["older"]


async def test_with_returning_callers_off_offers_skip_the_agents_own_bucket(redis):
    """Off (the default), nobody waits in an agent's own bucket, and offers do not look there."""
    from acd.router import RETURNING_QUEUE, preference_skill

    clock = Clock()
    directory = await floor(redis, clock, [("1002", {"mandarin": 5})])
    router = Router(redis, QUEUES, clock=clock)
    assert not QUEUES.returning.enabled
    assert await router.arrive(WaitingCall("back", "PJSIP/trunk-2", RETURNING_QUEUE, {preference_skill("1002"): 1},
                                           0, clock.now)) is None
    assert await router.arrive(call("usual", clock.now, {"mandarin": 1})) is None
    await directory.transition("1002", AgentState.READY)
    assert (await router.offer("1002", {"mandarin": 5})).call == "usual"


async def test_a_reservation_is_published_by_its_script_in_order(redis):
    """The reservation is announced by the script that makes it (so every listener hears agent
    changes in the order Redis made them), as JSON the other nodes and the desktops read."""
    import json

    clock = Clock()
    clock.now = 1795331939.123456789
    directory = await floor(redis, clock, [("1001", {"mandarin": 5})])
    await directory.transition("1001", AgentState.READY)
    router = Router(redis, QUEUES, clock=clock)
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(Keys.events)
    try:
        await redis.hset(Keys.call('we"ird'), "owner", "acd-a")
        decision = await router.arrive(call('we"ird', clock.now, {"mandarin": 1}))
        assert decision.agent == "1001"
        message = None
        for _ in range(50):
            message = await pubsub.get_message(timeout=0.1)
            if message:
                break
        event = json.loads(message["data"])
        assert event == {"type": "agent", "agent": "1001", "state": "reserved", "reason": "", "call": 'we"ird',
                         "at": clock.now, "node": "acd-a"}
    finally:
        await pubsub.aclose()


@pytest.mark.parametrize("lean", [True, False])
async def test_calls_arriving_together_are_decided_in_order(redis, lean):
    """A burst of arrivals: one round trip on the lean connection, each its own decision, in the
    order given (the first caller gets the agent idle longest, the last one waits)."""
    clock = Clock()
    directory = await floor(redis, clock, [("1001", {"mandarin": 5}), ("1002", {"mandarin": 5})])
    await ready(directory, clock, "1002", "1001")
    router = Router(redis, QUEUES, clock=clock, lean=lean)
    await redis.script_flush()                      # not loaded yet: every one of them loads it again
    burst = [call(uid, clock.now, {"mandarin": 1}) for uid in ("a", "b", "c")]
    decisions = await router.arrive_many(burst)
    assert [d and (d.call, d.agent, d.kind) for d in decisions] == [("a", "1002", "call_arrived"),
                                                                    ("b", "1001", "call_arrived"), None]
    assert await redis.zrange(Keys.waiting, 0, -1) == ["c"]


async def test_a_burst_of_arrivals_fails_whole_when_redis_goes_away(redis):
    from redis.exceptions import ConnectionError as RedisConnectionError

    from hotline.lane import Lane

    router = Router(redis, QUEUES)
    router.lane = Lane("127.0.0.1", 1, connect_timeout=1)          # nothing listens there
    with pytest.raises(RedisConnectionError):
        await router.arrive_many([call("a", 1.0, {"mandarin": 1}), call("b", 1.0, {"mandarin": 1})])


def test_a_lane_serves_a_new_event_loop_after_its_first_one_closed(redis_url):
    """The hot path does not ask for the running loop on every request (a system call on Python
    3.11); a lane whose loop has closed connects again from the new one."""
    from redis.asyncio import Redis

    from hotline.lane import open_lane, pack

    lane = open_lane(Redis.from_url(redis_url))
    assert asyncio.run(lane.execute(pack("PING"))) == "PONG"
    assert asyncio.run(lane.execute(pack("PING"))) == "PONG"


def test_history_row_ids_are_unique_and_differ_in_a_forked_child():
    import os

    from acd.agents import event_id

    ids = {event_id() for _ in range(10_000)}
    assert len(ids) == 10_000 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:                                   # the child: its ids must not repeat the parent's
        os.write(write, event_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    assert child not in ids and child[:16] != next(iter(ids))[:16]


async def test_routing_scores_are_whole_milliseconds_and_read_back(redis):
    """Scores are integers (Redis keeps a small bucket's scores as integers, not strings it must
    parse at every insert), exact in a double for every priority, and still give the wait back."""
    assert routing_score(0, 1763800000.1234) == 1763800000123
    assert isinstance(routing_score(30, 1763800000.5), int)
    assert abs(routing_score(999, 4102444800.0)) < 2 ** 53                # the year 2100, top priority
    century = 100 * 365.25 * 86400
    assert routing_score(1, 1763800000.0) < routing_score(0, 1763800000.0 - century)   # priority beats any wait
    clock = Clock()
    directory = await floor(redis, clock, [("1001", {"mandarin": 5})])
    router = Router(redis, QUEUES, clock=clock)
    assert await router.arrive(call("a", clock.now - 61.25, {"mandarin": 1}, priority=20)) is None
    assert await redis.object("encoding", Keys.bucket("general:mandarin:1")) == "ziplist"
    await ready(directory, clock, "1001", step=0.0)
    decision = await router.offer("1001", {"mandarin": 5})
    assert "priority 20, waited 61.2s" in decision.rule or "priority 20, waited 61.3s" in decision.rule
