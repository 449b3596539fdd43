"""A call's outcome and record, as rules on plain data (acd/records.py): no Redis."""
from __future__ import annotations

import pytest

from acd.records import call_outcome, call_record, handle_seconds, read_ivr_path
from hotline.live import CallState, LiveCall
from hotline.model import AbandonedIn, CallOutcome

T0 = 1795340000.0


def call(**kw) -> LiveCall:
    fields = dict(uniqueid="1795340000.1", channel="PJSIP/trunk-00000001", linkedid="1795340000.1", line="main",
                  caller="13800000001", arrived_at=T0)
    fields.update(kw)
    return LiveCall(**fields)


@pytest.mark.parametrize("kw, expected", [
    (dict(state=CallState.TALKING, agent="1001", answered_at=T0 + 20), (CallOutcome.ANSWERED, None)),
    # answered, then the caller stayed for the survey and hung up there
    (dict(state=CallState.TALKING, agent="1001", answered_at=T0 + 20, caller_hung_up=True),
     (CallOutcome.ANSWERED, None)),
    # the IVR ended the call itself (progress read back, callback noted): served by the IVR
    (dict(state=CallState.IVR), (CallOutcome.IVR_COMPLETED, None)),
    (dict(state=CallState.IVR, caller_hung_up=True), (CallOutcome.ABANDONED, AbandonedIn.IVR)),
    (dict(state=CallState.WAITING, queued_at=T0 + 9, caller_hung_up=True), (CallOutcome.ABANDONED, AbandonedIn.QUEUE)),
    (dict(state=CallState.WAITING, queued_at=T0 + 9), (CallOutcome.ABANDONED, AbandonedIn.QUEUE)),
    (dict(state=CallState.RINGING, agent="1001", queued_at=T0 + 9), (CallOutcome.ABANDONED, AbandonedIn.RINGING)),
    # a message left at the queue's offer: served by the IVR, whoever hung up
    (dict(state=CallState.MESSAGE, queued_at=T0 + 9, caller_hung_up=True), (CallOutcome.IVR_COMPLETED, None)),
], ids=["answered", "answered-survey", "ivr-served", "ivr-abandoned", "queue-abandoned", "queue-ended",
        "ringing-abandoned", "message"])
def test_outcome_by_where_the_call_was(kw, expected):
    assert call_outcome(call(**kw)) == expected


def test_a_record_names_the_agent_only_of_an_answered_call():
    rung = call(state=CallState.RINGING, agent="1001", queued_at=T0 + 9, queue="general", priority=30,
                skills="elderly:1+mandarin:1", ring_attempts=2)
    record = call_record(rung, T0 + 30, 16, None)
    assert (record.outcome, record.abandoned_in, record.agent) == (CallOutcome.ABANDONED, AbandonedIn.RINGING, None)
    assert (record.wait_s, record.talk_s, record.hangup_cause, record.ring_attempts) == (21.0, None, 16, 2)
    assert (record.queue, record.priority, record.skills, record.caller_id) == (
        "general", 30, "elderly:1+mandarin:1", "13800000001")
    talked = call(state=CallState.TALKING, agent="1001", queued_at=T0 + 9, answered_at=T0 + 12,
                  talk_ended_at=T0 + 100)
    record = call_record(talked, T0 + 130, 16, None)
    assert (record.outcome, record.agent, record.wait_s, record.talk_s) == (CallOutcome.ANSWERED, "1001", 3.0, 88.0)
    assert record.caller_id is not None and call_record(call(caller=""), T0 + 1, None, None).caller_id is None


def test_the_survey_comes_from_the_ivr_path_and_only_a_known_score_counts():
    path = {"steps": [], "survey": {"score": "basically_satisfied", "agent": "1001"}}
    answered = call(state=CallState.TALKING, agent="1001", answered_at=T0 + 5)
    assert call_record(answered, T0 + 60, 16, path).survey == "basically_satisfied"
    for garbled in ({"survey": {"score": "delighted"}}, {"survey": "satisfied"}, ["survey"], "x", None):
        assert call_record(answered, T0 + 60, 16, garbled).survey is None
    assert read_ivr_path('{"survey": {"score": "satisfied"}}') == {"survey": {"score": "satisfied"}}
    assert read_ivr_path("{not json") is None and read_ivr_path(None) is None


def test_a_call_back_is_summed_up_in_the_ivr_path():
    owed = call(state=CallState.WAITING, queued_at=T0 + 9, callback="13800000001", callback_tries=3)
    record = call_record(owed, T0 + 400, None, {"steps": [{"node": "welcome"}]})
    assert record.ivr_path == {"steps": [{"node": "welcome"}], "callback": {"attempts": 3, "answered": False}}
    assert (record.outcome, record.abandoned_in) == (CallOutcome.ABANDONED, AbandonedIn.QUEUE)
    reached = call(state=CallState.TALKING, agent="1002", queued_at=T0 + 9, answered_at=T0 + 300,
                   callback="13800000001", callback_tries=1)
    record = call_record(reached, T0 + 400, 16, None)
    assert record.ivr_path == {"callback": {"attempts": 2, "answered": True}} and record.agent == "1002"


def test_handle_time_is_talk_plus_wrapup_of_answered_calls_only():
    talked = call(state=CallState.TALKING, agent="1001", queued_at=T0, answered_at=T0 + 10, talk_ended_at=T0 + 70)
    assert handle_seconds(call_record(talked, T0 + 90, 16, None), 15.0) == 75.0     # the survey is not talk
    no_end = call(state=CallState.TALKING, agent="1001", queued_at=T0, answered_at=T0 + 10)
    assert handle_seconds(call_record(no_end, T0 + 40, 16, None), 5.0) == 35.0
    assert handle_seconds(call_record(call(state=CallState.WAITING, queued_at=T0), T0 + 40, 16, None), 5.0) is None
