"""Recovery's decisions on plain data (acd/recovery_plan.py): which calls end, which are adopted and
how, which agents are repaired. No Redis, no Asterisk: the inputs are what they would have said."""
from __future__ import annotations

from acd.agents import Agent
from acd.callbook import Witnessed
from acd.recovery_plan import (Adoption, AgentRepair, Recovered, Step, adoption, lost_hangups, newcomers,
                               plan_agents, plan_call, plan_reconcile)
from hotline.live import CallState, LiveCall
from hotline.model import AgentState

NOW = 1795340100.0


def call(uid: str, **kw) -> LiveCall:
    return LiveCall(uid, f"PJSIP/trunk-{uid}", uid, "main", "13800000001", NOW - 60, **kw)


def channel(uid: str, context: str = "hotline-wait", **kw: str) -> dict[str, str]:
    return {"Event": "CoreShowChannel", "Uniqueid": uid, "Linkedid": uid, "Channel": f"PJSIP/trunk-{uid}",
            "Context": context, "ChannelState": "6", "BridgeId": "", **kw}


def agent(agent_id: str, state: AgentState, call_uid: str = "", node: str = "") -> Agent:
    return Agent(agent_id, agent_id, skills={"mandarin": 5}, state=state, state_since=NOW - 5, call=call_uid,
                 node=node)


def test_a_followed_call_whose_channel_is_gone_lost_its_hangup():
    gone, live, on_hold, back = call("1.1"), call("1.2"), call("1.3", callback="13800000001"), \
        call("1.4", callback="13800000001", leg="1.40")
    moved_on = call("1.5")
    known = {c.uniqueid: c for c in (gone, live, on_hold, back, moved_on)}
    current = dict(known, **{"1.5": call("1.5")})      # replaced meanwhile: not the call we knew
    assert lost_hangups(known, current, ["1.2", "1.40"]) == [gone]
    # The call-back leg gone too: that call has ended.
    assert lost_hangups(known, current, ["1.2"]) == [gone, back]


def test_a_call_gone_from_asterisk_ends_with_what_was_witnessed():
    step = plan_call(call("2.1", state=CallState.RINGING, agent="1001"), {}, None, NOW)
    assert (step.step, step.ended_at, step.cause) == (Step.END, NOW, None)
    seen = Witnessed(ring_attempts=2, answered_at=NOW - 30, talk_ended_at=NOW - 10, ended_at=NOW - 9, cause=16)
    step = plan_call(call("2.2", state=CallState.RINGING, agent="1001", ring_attempts=1), {}, seen, NOW)
    assert (step.step, step.ended_at, step.cause) == (Step.END, NOW - 9, 16)
    assert (step.call.state, step.call.answered_at, step.call.ring_attempts) == (CallState.TALKING, NOW - 30, 2)


def test_a_live_call_is_adopted_where_asterisk_has_it():
    waiting = call("3.1", state=CallState.WAITING, queue="general")
    step = plan_call(waiting, {"3.1": channel("3.1")}, None, NOW)
    assert step.step == Step.ADOPT and step.channel is not None
    assert adoption(waiting, step.channel) == Adoption.REQUEUE
    # rang out while nobody followed it: in the queue's dialplan, but the ACD thought it ringing
    assert adoption(call("3.2", state=CallState.RINGING, agent="1001"), channel("3.2")) == Adoption.REQUEUE_ASKING
    assert adoption(call("3.3", state=CallState.RINGING), channel("3.3", "hotline-connect", BridgeId="b1")) \
        == Adoption.ANSWERED
    assert adoption(call("3.4"), channel("3.4", "hotline-inbound")) == Adoption.NONE


def test_virtual_hold_keeps_the_place_or_follows_the_call_back_in_progress():
    owed = call("4.1", state=CallState.WAITING, queue="general", callback="13800000001")
    assert plan_call(owed, {}, None, NOW).step == Step.OWED
    # its call back placed by a process now gone: still ringing the caller, followed (not placed twice)
    placing = call("4.2", state=CallState.WAITING, callback="13800000001", leg="pending", leg_id="4.2-cb1")
    ringing = channel("4.2-cb1", "hotline-callback", ChannelState="5")
    step = plan_call(placing, {"4.2-cb1": ringing}, None, NOW)
    assert (step.step, step.channel) == (Step.RINGING_BACK, ringing)
    # ... answered meanwhile: that leg is the call's
    answered = channel("4.3-cb1", "hotline-connect")
    step = plan_call(call("4.3", callback="13800000001", leg="pending", leg_id="4.3-cb1"), {"4.3-cb1": answered},
                     None, NOW)
    assert (step.step, step.call.leg, step.channel) == (Step.LEG, "4.3-cb1", answered)
    # an answered leg Asterisk still has
    step = plan_call(call("4.4", callback="13800000001", leg="4.40"), {"4.40": channel("4.40")}, None, NOW)
    assert step.step == Step.LEG
    # the leg is gone too: the call ended
    assert plan_call(call("4.5", callback="13800000001", leg="4.50"), {}, None, NOW).step == Step.END


def test_newcomers_are_the_callers_nobody_follows_that_hash_here():
    channels = {uid: channel(uid, ctx) for uid, ctx in (("5.1", "hotline-wait"), ("5.2", "hotline-wait"),
                                                       ("5.3", "agents"), ("5.4", "hotline-inbound"),
                                                       ("5.5", "hotline-wait"))}
    found = newcomers(channels, {"5.1": call("5.1")}, {"5.2"}, caller_contexts={"hotline-wait", "hotline-inbound"},
                      owns=lambda linkedid: linkedid != "5.5")
    assert [c["Uniqueid"] for c in found] == ["5.4"]


def test_agents_whose_call_is_gone_are_freed_or_wrap_up():
    calls = {"6.1": call("6.1", agent="1001", state=CallState.RINGING)}
    recovered = Recovered(gone={"6.5"}, answered_by={"1005": "6.5"}, elsewhere={"6.6"})
    agents = [
        agent("1001", AgentState.RESERVED, "6.1", node="dead-node"),   # its call adopted here: ours now
        agent("1002", AgentState.RESERVED, "6.2"),                     # reserved for a call that is gone
        agent("1003", AgentState.ON_CALL, "6.3"),                      # on a call that ended
        agent("1004", AgentState.WRAPUP),                              # a wrap-up nobody times
        agent("1005", AgentState.RESERVED, "6.5"),                     # answered and ended unfollowed
        agent("1006", AgentState.RESERVED, "6.6"),                     # another live node follows its call
        agent("1007", AgentState.ON_CALL, "6.7", node="live-node"),    # driven by another live node
        agent("1008", AgentState.WRAPUP),                              # this node times its wrap-up
        agent("1009", AgentState.READY),
    ]
    claimed, repairs = plan_agents(agents, calls, recovered, follows=lambda a: a.node in ("", "here"),
                                   timing=lambda agent_id: agent_id == "1008")
    assert claimed == ["1001"]
    assert repairs == [("1002", AgentRepair.FREE), ("1003", AgentRepair.WRAPUP), ("1004", AgentRepair.WRAPUP),
                       ("1005", AgentRepair.ON_CALL_THEN_WRAPUP)]


def test_reconcile_repairs_only_what_no_live_channel_explains():
    agents = [agent("1001", AgentState.RESERVED, "7.1"), agent("1002", AgentState.ON_CALL, "7.2"),
              agent("1003", AgentState.ON_CALL, "7.3"), agent("1004", AgentState.RESERVED, "7.4"),
              agent("1005", AgentState.ON_CALL, "7.5", node="other"), agent("1006", AgentState.WRAPUP, "7.6")]
    repairs = plan_reconcile(agents, live={"7.3"}, followed={"7.4": call("7.4")},
                             follows=lambda a: a.node != "other")
    assert repairs == [("1001", AgentRepair.FREE), ("1002", AgentRepair.WRAPUP)]
