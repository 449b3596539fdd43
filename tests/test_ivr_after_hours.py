"""Outside business hours (a public holiday here): a callback request or a recorded message, kept with the call."""
from __future__ import annotations

from tests.test_ivr_app import (
    ENTERPRISE,
    HOLIDAY,
    SET_OK,
    UNIQUEID,
    call,
    key,
    menu,
    played,
    set_route,
    stored_path,
)

CLOSED = [*ENTERPRISE, menu("enterprise-menu", key("2"), 3000), menu("policy-menu", key("1"), 4000)]
RECORD = f"RECORD FILE hotline/messages/{UNIQUEID} wav # 120000 0 BEEP s=5"
COMPLETED = ("SET VARIABLE HOTLINE_IVR_RESULT completed", SET_OK)


async def test_callback_request_is_stored_with_the_call(redis) -> None:
    await call([*CLOSED, menu("closed-menu", key("1")), played("callback-confirm"), played("goodbye"), COMPLETED],
               line="enterprise", redis=redis, local_time=HOLIDAY, callerid="+86 139 0000 1234")
    path = await stored_path(redis)
    assert path["callback"]["number"] == "13900001234"
    assert path["result"] == "completed"


async def test_callback_without_a_caller_number_goes_to_a_person(redis) -> None:
    await call([*CLOSED, menu("closed-menu", key("1")), played("transfer-agent"),
                *set_route("enterprise", "enterprise:1+mandarin:1", 10)],
               line="enterprise", redis=redis, local_time=HOLIDAY, callerid="unknown")
    path = await stored_path(redis)
    assert "callback" not in path and path["queue"] == "enterprise"


async def test_message_is_recorded_and_stored_with_the_call(redis) -> None:
    await call([*CLOSED, menu("closed-menu", key("2")), played("message-record"),
                (RECORD, ["200 result=35 (dtmf) endpos=96000"]), played("message-saved"), played("goodbye"),
                COMPLETED], line="enterprise", redis=redis, local_time=HOLIDAY)
    path = await stored_path(redis)
    assert path["message"] == {"file": f"hotline/messages/{UNIQUEID}.wav", "seconds": 12.0}
    assert ("message", None, None, "recorded") in [(s["node"], s["prompt"], s["digits"], s["result"])
                                                   for s in path["steps"]]


async def test_hanging_up_ends_the_message_and_keeps_it(redis) -> None:
    await call([*CLOSED, menu("closed-menu", key("2")), played("message-record"),
                (RECORD, ["200 result=-1 (hangup) endpos=40000"]), ("NOOP", ["HANGUP", "200 result=0"])],
               line="enterprise", redis=redis, local_time=HOLIDAY)
    path = await stored_path(redis)
    assert path["message"]["seconds"] == 5.0
    assert path["hangup_node"] == "message" and path["result"] == "hangup"
