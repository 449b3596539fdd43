"""Every main-menu path of the 12345 line through the simulated PBX over real FastAGI, with the
record each one leaves in PostgreSQL: choices, invalid keys, silence, hang-ups at each prompt, the
progress query with the ticketing system unreachable, the elderly list, and hostile caller IDs."""
from __future__ import annotations

import asyncio
import json

from .test_call_end_to_end import hotline, plan, records

ALL_SKILLS = {"mandarin": 5, "cantonese": 3, "english": 3, "enterprise": 4, "elderly": 5}

# caller number, menu inputs, hang up at prompt, expected (outcome, queue or abandoned_in)
CASES = {
    "consultation": ("13900000001", ["1"], None, ("answered", "general")),
    "complaint": ("13900000002", ["2"], None, ("answered", "complaint")),
    "enterprise": ("13900000003", ["3"], None, ("answered", "enterprise")),
    "elderly-choice": ("13900000004", ["9"], None, ("answered", "elderly")),
    "agent": ("13900000005", ["0"], None, ("answered", "general")),
    "invalid-then-valid": ("13900000006", ["7", "2"], None, ("answered", "complaint")),
    "silence": ("13900000007", [None, None, None], None, ("answered", "general")),
    "progress-ticketing-down": ("13900000008", ["4", "20260001#"], None, ("answered", None)),
    "hangup-at-main-menu": ("13900000009", ["1"], 0, ("abandoned", "ivr")),
    "hangup-at-ticket-number": ("13900000010", ["4", "1"], 1, ("abandoned", "ivr")),
    "elderly-list": ("13800000099", ["1"], None, ("answered", "elderly")),
    "hostile-quotes": ('"; EXEC System rm -rf /', ["1"], None, ("answered", "general")),
    "hostile-backslash": ("1380000\\", ["1"], None, ("answered", "general")),
    "hostile-agi-words": ("ANSWER HANGUP SET VARIABLE HOTLINE_QUEUE x", ["1"], None, ("answered", "general")),
}


async def test_every_menu_path_leaves_the_right_record(redis, pool, redis_url, pg_url, tmp_path):
    agents = tuple((str(1001 + i), ALL_SKILLS) for i in range(len(CASES)))
    async with hotline(redis, pool, redis_url, pg_url, tmp_path, agents=agents) as (sim, acd):
        callers = {name: sim.place_call(plan(number=number, digits=inputs, hangup_at=hangup, talk=0.2,
                                                patience=30))
                   for name, (number, inputs, hangup, _) in CASES.items()}
        await asyncio.wait_for(asyncio.gather(*(c.done.wait() for c in callers.values())), 60)
    rows = await records(pool)
    assert len(rows) == len(CASES)
    for name, caller in callers.items():
        row = rows[caller.channel.uniqueid]
        outcome, where = CASES[name][3]
        assert row["outcome"] == outcome, name
        if outcome == "answered":
            if where is not None:
                assert row["queue"] == where, (name, row["queue"])
            else:
                assert row["queue"], name
        else:
            assert row["abandoned_in"] == where, name
            assert row["queued_at"] is None, name
        assert row["ivr_path"] is not None, name
    # The record says at which node the caller hung up.
    for name, node in (("hangup-at-main-menu", "main-menu"), ("hangup-at-ticket-number", None)):
        path = rows[callers[name].channel.uniqueid]["ivr_path"]
        path = json.loads(path) if isinstance(path, str) else path
        assert path.get("hangup_node"), (name, path)
        if node:
            assert path["hangup_node"] == node
    # A hostile caller ID is stored as data, printable and bounded; it steered nothing.
    hostile = rows[callers["hostile-agi-words"].channel.uniqueid]
    assert hostile["caller_id"] == "ANSWER HANGUP SET VARIABLE HOTLINE_QUEUE x"[:64]
    assert hostile["queue"] == "general"
