"""The simulated PBX's BlindTransfer against Asterisk 22's own documentation (no recording shows
one): the action's answers (manager.c action_blind_transfer) and the BlindTransfer event's headers
([Syntax] in reference/ami-event-docs.txt), on a call bridged through our dialplan."""
from __future__ import annotations

import asyncio

from hotline.model import AgentState
from pbxsim.ami_server import AMIUser

from .test_agent_after_call import until
from .test_call_end_to_end import hotline, plan
from .test_pbxsim_ami_conformance import RawAMI, documented_syntax, value


async def test_blind_transfer_answers_and_event_as_documented(redis, pool, redis_url, pg_url, tmp_path):
    async with hotline(redis, pool, redis_url, pg_url, tmp_path, wrapup=0.1) as (sim, acd):
        sim.pbx.ami.users["conformance"] = AMIUser("conformance", "conformance")
        ami = await RawAMI.connect(sim.ami_port)
        await ami.login(username="conformance", secret="conformance")
        caller = sim.place_call(plan(talk=5.0))
        await until(lambda: caller.channel is not None and caller.queued_at is not None)
        # Not bridged yet (or any more): Asterisk publishes the event with Result Invalid and refuses.
        [reply] = await ami.action([("Action", "BlindTransfer"), ("ActionID", "t1"),
                                    ("Channel", caller.channel.name), ("Context", "hotline-wait"), ("Exten", "s")], 1)
        assert (value(reply, "Response"), value(reply, "Message")) == ("Error", "Transfer invalid")
        invalid = await ami.event("BlindTransfer", Result="Invalid")
        assert value(invalid, "TransfererChannel") == caller.channel.name
        for n, (headers, message) in enumerate((([("Exten", "s")], "No channel specified"),
                                 ([("Channel", caller.channel.name)], "No extension specified"),
                                 ([("Channel", "PJSIP/9999-00000000"), ("Exten", "s")],
                                  "Channel specified does not exist"))):
            [reply] = await ami.action([("Action", "BlindTransfer"), ("ActionID", f"e{n}"), *headers], 1)
            assert (value(reply, "Response"), value(reply, "Message")) == ("Error", message)
        await until(lambda: acd.agents.get("1001").state == AgentState.ON_CALL)
        agent_leg = caller.channel.peer
        assert agent_leg is not None
        [reply] = await ami.action([("Action", "BlindTransfer"), ("ActionID", "t2"), ("Channel", agent_leg.name),
                                    ("Context", "hotline-wait"), ("Exten", "s")], 1)
        assert (value(reply, "Response"), value(reply, "Message")) == ("Success", "Transfer succeeded")
        event = await ami.event("BlindTransfer", Result="Success")
        documented = [n for n in documented_syntax("BlindTransfer") if not n.startswith("[")]
        assert [n for n, _ in event] == ["Event", "Privilege", *documented]
        assert value(event, "Privilege") == "call,all" and value(event, "IsExternal") == "Yes"
        assert value(event, "TransfereeUniqueid") == caller.channel.uniqueid
        assert (value(event, "Context"), value(event, "Extension")) == ("hotline-wait", "s")
        # The caller leaves the bridge first and queues again; the agent's leg, left alone, is hung up.
        leave = await ami.event("BridgeLeave", Uniqueid=caller.channel.uniqueid)
        hangup = await ami.event("Hangup", Channel=agent_leg.name)
        assert value(leave, "BridgeUniqueid") == value(event, "BridgeUniqueid") and hangup
        await ami.event("UserEvent", UserEvent="HotlineWaiting", Uniqueid=caller.channel.uniqueid)
        ami.close()
        await asyncio.wait_for(caller.done.wait(), 15)
