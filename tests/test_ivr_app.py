"""The 12345 IVR (ivr.app on the shipped menus of ivr/menus) driven over TCP by a scripted
fake Asterisk, with the real Redis of tests/conftest.py."""
from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
from pathlib import Path
from typing import Any, Optional

import pytest

from hotline.keys import Keys
from ivr.app import IVR_PATH_TTL, Route, build_handlers, ivr_path_key
from ivr.fastagi import FastAGIServer
from ivr.menu import MENUS_DIR, MenuError, load_lines
from tests.agi_transcripts import FakeAsterisk, make_env

UNIQUEID = "1795319058.44"
OK = ["200 result=0"]
SET_OK = ["200 result=1"]
PLAYED = ["200 result=0 endpos=16000"]
TIMEOUT = ["200 result= (timeout)"]
DEAD = ["511 Command Not Permitted on a dead channel or intercept routine"]
LINES = load_lines()
# A Wednesday at 10:00 (open) and the National Day holiday (closed), local time.
OPEN = dt.datetime(2026, 11, 18, 10, 0)
HOLIDAY = dt.datetime(2026, 10, 2, 10, 0)


def played(name: str) -> tuple[str, list[str]]:
    return (f'STREAM FILE hotline/{name} ""', PLAYED)


def lang(code: str) -> tuple[str, list[str]]:
    return (f"SET VARIABLE CHANNEL(language) {code}", SET_OK)


def menu(name: str, reply: list[str], timeout: int = 5000, digits: int = 1) -> tuple[str, list[str]]:
    return (f"GET DATA hotline/{name} {timeout} {digits}", reply)


def key(digit: str) -> list[str]:
    return [f"200 result={digit}"]


START = [("ANSWER", OK), lang("zh"), played("welcome")]
LANGUAGE_ZH = [menu("language-menu", key("1"), 3000), played("emergency-notice")]
MAIN = START + LANGUAGE_ZH  # up to the main menu, in Mandarin
ENTERPRISE = [("ANSWER", OK), lang("zh"), played("enterprise-welcome")]


def set_route(queue: str, skills: str, priority: int, language: str = "zh") -> list[tuple[str, list[str]]]:
    return [
        (f"SET VARIABLE HOTLINE_QUEUE {queue}", SET_OK),
        (f"SET VARIABLE HOTLINE_SKILLS {skills}", SET_OK),
        (f"SET VARIABLE HOTLINE_PRIORITY {priority}", SET_OK),
        (f"SET VARIABLE HOTLINE_LANG {language}", SET_OK),
    ]


def fake_clock() -> Any:
    ticks = itertools.count()
    return lambda: 1_800_000_000.0 + next(ticks) * 0.5


async def call(
    script: list[tuple[str, list[str]]],
    *,
    line: Optional[str] = "main",
    redis: Any = None,
    asterisk_closes: bool = False,
    callerid: str = "+8613800000001",
    local_time: dt.datetime = OPEN,
    **options: Any,
) -> list[str]:
    """Run one IVR call; the fake Asterisk checks each command and answers as scripted."""
    handlers = build_handlers(redis, clock=fake_clock(), local_time=lambda: local_time, **options)
    server = FastAGIServer(handlers, "127.0.0.1", 0)
    await server.start()
    try:
        args = [line] if line is not None else []
        env = make_env("ivr", uniqueid=UNIQUEID, args=args, callerid=callerid)
        fake = await FakeAsterisk.connect(server.port, env)
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


# --------------------------------------------------------------------------- the main line


@pytest.mark.parametrize(
    "digit, queue, skills, priority",
    [
        ("1", "general", "mandarin:1", 0),
        ("2", "complaint", "mandarin:1", 0),
        ("3", "enterprise", "enterprise:1+mandarin:1", 10),
        ("0", "general", "mandarin:1", 0),
        ("9", "elderly", "elderly:1+mandarin:1", 30),
    ],
)
async def test_each_main_menu_choice_sets_the_route(redis, digit: str, queue: str, skills: str,
                                                    priority: int) -> None:
    await call([*MAIN, menu("main-menu", key(digit)), played("transfer-agent"),
                *set_route(queue, skills, priority)], redis=redis)
    path = await stored_path(redis)
    assert summary(path) == [
        ("welcome", "hotline/welcome", None, "ok"),
        ("language", "hotline/language-menu", "1", "ok"),
        ("elderly-lane", None, None, "no-match"),
        ("emergency-notice", "hotline/emergency-notice", None, "ok"),
        ("main-menu", "hotline/main-menu", digit, "ok"),
        ("transfer", "hotline/transfer-agent", None, "ok"),
    ]
    assert path["uniqueid"] == UNIQUEID and path["line"] == "main"
    assert (path["result"], path["queue"], path["skills"], path["priority"], path["lang"]) == (
        "queued", queue, skills, priority, "zh",
    )
    assert "hangup_node" not in path
    times = [path["started_at"]] + [t for s in path["steps"] for t in (s["started_at"], s["ended_at"])]
    assert times == sorted(times) and path["ended_at"] >= times[-1]


@pytest.mark.parametrize("digit, code, skill", [("2", "yue", "cantonese"), ("3", "en", "english")])
async def test_language_choice_sets_prompts_and_skill(redis, digit: str, code: str, skill: str) -> None:
    await call([*START, menu("language-menu", key(digit), 3000), lang(code), played("emergency-notice"),
                menu("main-menu", key("2")), played("transfer-agent"),
                *set_route("complaint", f"{skill}:1", 0, code)], redis=redis)
    path = await stored_path(redis)
    assert (path["lang"], path["skills"]) == (code, f"{skill}:1")


async def test_no_language_choice_is_mandarin() -> None:
    await call([*START, menu("language-menu", TIMEOUT, 3000), played("emergency-notice"),
                menu("main-menu", key("1")), played("transfer-agent"), *set_route("general", "mandarin:1", 0)])


async def test_invalid_digit_then_valid(redis) -> None:
    await call([*MAIN, menu("main-menu", key("7")), played("invalid"), menu("main-menu", key("2")),
                played("transfer-agent"), *set_route("complaint", "mandarin:1", 0)], redis=redis)
    path = await stored_path(redis)
    assert summary(path)[4:7] == [
        ("main-menu", "hotline/main-menu", "7", "invalid"),
        ("main-menu", "hotline/invalid", None, "ok"),
        ("main-menu", "hotline/main-menu", "2", "ok"),
    ]


async def test_three_timeouts_go_to_a_person(redis) -> None:
    await call([*MAIN, menu("main-menu", TIMEOUT), menu("main-menu", TIMEOUT), menu("main-menu", TIMEOUT),
                played("transfer-agent"), *set_route("general", "mandarin:1", 0)], redis=redis)
    path = await stored_path(redis)
    assert [s["result"] for s in path["steps"] if s["node"] == "main-menu"] == ["timeout"] * 3
    assert path["queue"] == "general" and path["result"] == "queued"


async def test_three_invalid_choices_go_to_a_person() -> None:
    # "200 result=" with no "(timeout)": the caller pressed only "#".
    await call([*MAIN, menu("main-menu", key("5")), played("invalid"), menu("main-menu", TIMEOUT),
                menu("main-menu", ["200 result="]), played("invalid"), played("transfer-agent"),
                *set_route("general", "mandarin:1", 0)])


async def test_elderly_number_takes_the_elderly_lane(redis) -> None:
    """The caller ID is on the menu file's elderly list (any spelling of the number)."""
    await call([*START, menu("language-menu", key("2"), 3000), lang("yue"), played("transfer-agent"),
                *set_route("elderly", "cantonese:1+elderly:1", 30, "yue")],
               redis=redis, callerid="+86 138-0000-0099")
    path = await stored_path(redis)
    assert ("elderly-lane", None, None, "match") in summary(path)


async def test_emergency_transfer(redis) -> None:
    await call([*MAIN, menu("main-menu", key("8")), menu("emergency-menu", key("1")),
                *set_route("general", "mandarin:1", 0),
                ("SET VARIABLE HOTLINE_TRANSFER 110", SET_OK), ("SET VARIABLE HOTLINE_IVR_RESULT transfer", SET_OK)],
               redis=redis)
    path = await stored_path(redis)
    assert (path["result"], path["transfer"], path["queue"]) == ("transfer", "110", "general")


async def test_emergency_menu_back_to_the_main_menu() -> None:
    await call([*MAIN, menu("main-menu", key("8")), menu("emergency-menu", key("0")), menu("main-menu", key("1")),
                played("transfer-agent"), *set_route("general", "mandarin:1", 0)])


# --------------------------------------------------------------------------- the broadcast


async def test_emergency_broadcast_from_redis_changes_live(redis) -> None:
    script_plain = [*MAIN, menu("main-menu", key("1")), played("transfer-agent"), *set_route("general", "mandarin:1", 0)]
    await redis.set(Keys.broadcast, "hotline/broadcast-typhoon")
    await call([*START, played("broadcast-typhoon"), *LANGUAGE_ZH, *script_plain[len(MAIN):]], redis=redis)
    path = await stored_path(redis)
    assert ("broadcast", "hotline/broadcast-typhoon", None, "ok") in summary(path)
    await redis.delete(Keys.broadcast)  # the supervisor lifts it: the next call has none
    await call(script_plain, redis=redis)


@pytest.mark.parametrize("value", ["../../etc/passwd", "hotline/x y", "a\nHANGUP", ""])
async def test_a_broadcast_that_is_not_a_sound_name_is_not_played(redis, value: str) -> None:
    await redis.set(Keys.broadcast, value)
    await call([*MAIN, menu("main-menu", key("1")), played("transfer-agent"), *set_route("general", "mandarin:1", 0)],
               redis=redis)


# --------------------------------------------------------------------------- hang-ups


async def test_hangup_during_the_menu(redis) -> None:
    """As in session E: the HANGUP line, then 511 for every media command."""
    received = await call([*MAIN, menu("main-menu", key("7")), ('STREAM FILE hotline/invalid ""',
                           ["200 result=0 endpos=800"]), menu("main-menu", ["HANGUP", *DEAD])], redis=redis)
    path = await stored_path(redis)
    assert not any(line.startswith("SET VARIABLE HOTLINE") for line in received)
    assert summary(path)[-1] == ("main-menu", "hotline/main-menu", None, "hangup")
    assert path["hangup_node"] == "main-menu"
    assert path["result"] == "hangup" and path["queue"] is None


async def test_hangup_during_the_welcome_is_found_with_noop(redis) -> None:
    """STREAM FILE answers -1 both for a hang-up and a missing file; a NOOP tells them apart."""
    await call([("ANSWER", OK), lang("zh"), ('STREAM FILE hotline/welcome ""', ["200 result=-1 endpos=44160"]),
                ("NOOP", ["HANGUP", "200 result=0"])], redis=redis)
    path = await stored_path(redis)
    assert summary(path) == [("welcome", "hotline/welcome", None, "hangup")]
    assert path["hangup_node"] == "welcome"


async def test_missing_prompt_does_not_stop_the_call() -> None:
    await call([("ANSWER", OK), lang("zh"), ('STREAM FILE hotline/welcome ""', ["200 result=-1 endpos=0"]),
                ("NOOP", OK), *LANGUAGE_ZH, menu("main-menu", key("1")), played("transfer-agent"),
                *set_route("general", "mandarin:1", 0)])


async def test_asterisk_closing_on_hangup(redis) -> None:
    """AGIEXITONHANGUP=yes: HANGUP lines, then EOF (session D)."""
    await call([*MAIN, menu("main-menu", ["HANGUP", "HANGUP"])], redis=redis, asterisk_closes=True)
    path = await stored_path(redis)
    assert path["hangup_node"] == "main-menu" and path["steps"][-1]["result"] == "hangup"


async def test_hangup_before_answer(redis) -> None:
    await call([("ANSWER", ["HANGUP", *DEAD])], redis=redis)
    path = await stored_path(redis)
    assert summary(path) == [("answer", None, None, "hangup")]


# --------------------------------------------------------------------------- the enterprise line


async def test_enterprise_line_goes_to_enterprise_seats_first(redis) -> None:
    await call([*ENTERPRISE, menu("enterprise-menu", TIMEOUT, 3000), played("transfer-agent"),
                *set_route("enterprise", "enterprise:1+mandarin:1", 10)], line="enterprise", redis=redis)
    path = await stored_path(redis)
    assert path["line"] == "enterprise" and (path["queue"], path["priority"]) == ("enterprise", 10)


async def test_enterprise_policy_specialist_in_hours_is_a_transfer() -> None:
    await call([*ENTERPRISE, menu("enterprise-menu", key("2"), 3000), menu("policy-menu", key("1"), 4000),
                *set_route("enterprise", "enterprise:1+mandarin:1", 10),
                ("SET VARIABLE HOTLINE_TRANSFER 12366", SET_OK), ("SET VARIABLE HOTLINE_IVR_RESULT transfer", SET_OK)],
               line="enterprise")


async def test_enterprise_policy_group_of_the_centre_is_a_queue() -> None:
    await call([*ENTERPRISE, menu("enterprise-menu", key("2"), 3000), menu("policy-menu", key("3"), 4000),
                played("transfer-agent"), *set_route("policy-market", "enterprise:1+mandarin:1+policy-market:1", 10)],
               line="enterprise")


@pytest.mark.parametrize("when", [HOLIDAY, dt.datetime(2026, 11, 21, 10, 0), dt.datetime(2026, 11, 18, 12, 30)],
                         ids=["national-day", "saturday", "lunch"])
async def test_enterprise_policy_specialists_closed(redis, when: dt.datetime) -> None:
    await call([*ENTERPRISE, menu("enterprise-menu", key("2"), 3000), menu("policy-menu", key("1"), 4000),
                menu("closed-menu", key("9")), played("goodbye"),
                ("SET VARIABLE HOTLINE_IVR_RESULT completed", SET_OK)],
               line="enterprise", redis=redis, local_time=when)
    path = await stored_path(redis)
    assert ("tax-hours", None, None, "closed") in summary(path)
    assert path["result"] == "completed" and path["queue"] is None


async def test_make_up_working_day_is_open() -> None:
    """2026-10-10 is a Saturday worked in exchange for the National Day holiday."""
    await call([*ENTERPRISE, menu("enterprise-menu", key("2"), 3000), menu("policy-menu", key("1"), 4000),
                *set_route("enterprise", "enterprise:1+mandarin:1", 10),
                ("SET VARIABLE HOTLINE_TRANSFER 12366", SET_OK), ("SET VARIABLE HOTLINE_IVR_RESULT transfer", SET_OK)],
               line="enterprise", local_time=dt.datetime(2026, 10, 10, 9, 30))


@pytest.mark.parametrize("line", [None, "", "lang=en", "ENTERPRISE ", "../etc"])
async def test_other_line_arguments(line: Optional[str]) -> None:
    # Case and spaces are forgiven; anything unknown is the main line.
    if line is not None and line.strip().lower() == "enterprise":
        script = [*ENTERPRISE, menu("enterprise-menu", key("1"), 3000), played("transfer-agent"),
                  *set_route("enterprise", "enterprise:1+mandarin:1", 10)]
    else:
        script = [*MAIN, menu("main-menu", key("1")), played("transfer-agent"), *set_route("general", "mandarin:1", 0)]
    await call(script, line=line)


@pytest.mark.parametrize("callerid", ['"; HANGUP', "a\\b c", "x" * 3000, "", "unknown"])
async def test_hostile_caller_id_changes_nothing(callerid: str) -> None:
    await call([*MAIN, menu("main-menu", key("1")), played("transfer-agent"), *set_route("general", "mandarin:1", 0)],
               callerid=callerid)


# --------------------------------------------------------------------------- failures


class BrokenRedis:
    def __init__(self, hang: bool = False) -> None:
        self.hang = hang
        self.calls = 0

    async def get(self, *args: Any, **kwargs: Any) -> None:
        return await self.set()

    async def set(self, *args: Any, **kwargs: Any) -> None:
        self.calls += 1
        if self.hang:
            await asyncio.sleep(3600)
        raise ConnectionError("redis is down")


@pytest.mark.parametrize("hang", [False, True])
async def test_redis_failure_does_not_break_the_call(hang: bool, caplog) -> None:
    broken = BrokenRedis(hang=hang)
    handlers_options = {"store_timeout": 0.05}
    received = await call([*MAIN, menu("main-menu", key("9")), played("transfer-agent"),
                           *set_route("elderly", "elderly:1+mandarin:1", 30)], redis=broken, **handlers_options)
    assert received[-1] == "SET VARIABLE HOTLINE_LANG zh"
    assert broken.calls == 2  # the broadcast read and the path write
    assert "could not store the IVR path" in caplog.text


async def test_unexpected_reply_still_sends_the_caller_to_a_person(redis) -> None:
    """An IVR failure (here Asterisk rejects a command) must not leave HOTLINE_QUEUE empty."""
    await call([*MAIN, menu("main-menu", ["510 Invalid or unknown command"]), *set_route("general", "mandarin:1", 0)],
               redis=redis)
    path = await stored_path(redis)
    assert path["result"] == "error" and path["queue"] == "general"
    assert path["steps"][-1]["result"] == "error"


def test_routes_are_checked_when_built() -> None:
    for kwargs in ({"queue": "bad queue", "skills": "mandarin:1"}, {"queue": "q", "skills": "mandarin"},
                   {"queue": "q", "skills": "mandarin:1", "priority": "high"},
                   {"queue": "q", "skills": "mandarin:1", "lang": "fr"}):
        with pytest.raises(ValueError):
            Route(**kwargs)


async def test_run_ivr_listens_on_the_settings_port() -> None:
    from hotline.embedded import free_port
    from hotline.settings import Settings
    from ivr.service import run_ivr

    port = free_port()
    server = await run_ivr(Settings(agi_host="127.0.0.1", agi_port=port), None)
    try:
        assert server.port == port
        fake = await FakeAsterisk.connect(port, make_env("ivr", args=["enterprise"]))
        await fake.play([*ENTERPRISE, menu("enterprise-menu", key("1"), 3000), played("transfer-agent"),
                         *set_route("enterprise", "enterprise:1+mandarin:1", 10)])
        await fake.expect_closed()
        fake.close()
    finally:
        await server.stop()


async def test_run_ivr_refuses_to_start_with_a_broken_menu(tmp_path: Path) -> None:
    from hotline.embedded import free_port
    from hotline.settings import Settings
    from ivr.service import run_ivr

    for source in MENUS_DIR.glob("*.yaml"):
        (tmp_path / source.name).write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    broken = tmp_path / "main.yaml"
    broken.write_text(broken.read_text(encoding="utf-8").replace("{goto: emergency,", "{goto: nowhere,"),
                      encoding="utf-8")
    port = free_port()
    with pytest.raises(MenuError) as caught:
        await run_ivr(Settings(agi_host="127.0.0.1", agi_port=port, ivr_menus_dir=tmp_path), None)
    assert caught.value.problems == [f"{broken}: node 'main-menu' option '8': unknown node 'nowhere'",
                                     f"{broken}: node 'emergency': unreachable from the start node 'welcome'"]
    with pytest.raises(OSError):  # nothing listens
        await asyncio.open_connection("127.0.0.1", port)


async def test_a_transfer_keeps_its_group_hours_without_an_hours_node(tmp_path: Path) -> None:
    """A menu may lead straight to a transfer: the transfer's own hours still apply."""
    text = (MENUS_DIR / "enterprise.yaml").read_text(encoding="utf-8")
    (tmp_path / "enterprise.yaml").write_text(text.replace('"1": {goto: tax-hours,', '"1": {transfer: tax,')
                                              .replace("  tax-hours:\n", "  unused-tax-hours:\n"), encoding="utf-8")
    (tmp_path / "main.yaml").write_text((MENUS_DIR / "main.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(MenuError):  # the old hours node is now unreachable: the check says so
        load_lines(tmp_path)
    (tmp_path / "enterprise.yaml").write_text(text.replace('"1": {goto: tax-hours,', '"1": {transfer: tax,')
                                              .replace("  tax-hours:\n    type: hours\n    hours: office\n"
                                                       "    next: {transfer: tax}\n    closed: {goto: closed-menu}\n",
                                                       ""), encoding="utf-8")
    lines = load_lines(tmp_path)
    await call([*ENTERPRISE, menu("enterprise-menu", key("2"), 3000), menu("policy-menu", key("1"), 4000),
                played("transfer-agent"), *set_route("enterprise", "enterprise:1+mandarin:1", 10)],
               line="enterprise", local_time=HOLIDAY, lines=lines)
