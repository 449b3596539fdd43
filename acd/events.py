"""Asterisk's AMI events, one handler each: where a call's life in the ACD starts and ends.

====================================  =====================================================
``Newchannel`` (in ``from-trunk``)    a new caller: followed (by one node of several)
``UserEvent HotlineWaiting``          the dialplan queues the caller (acd/queueing.py)
``UserEvent HotlineQueueChoice``      call back or message, offered past the queue's limit
``UserEvent HotlineRingNoAnswer``     the agent did not answer: back to the head of the queue
``UserEvent HotlineCallbackAnswered`` a caller on virtual hold answered the call back
``UserEvent HotlineAgent``            an agent's feature code (acd/feature_codes.py)
``DialBegin`` / ``DialEnd``           the agent's phone rings / stopped ringing
``BridgeEnter`` / ``BridgeLeave``     answered (the agent is on call) / the conversation ended
``BlindTransfer``                     the desktop transferred the caller (acd/call_control.py)
``HangupRequest``                     the caller hung up (not the IVR or the agent)
``Hangup``                            the call's record (acd/records.py); an agent's leg: wrap-up
====================================  =====================================================

Lost, duplicated and late events are told apart by the call book (acd/callbook.py). Calls
another node follows are only witnessed.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Mapping, Optional

from hotline.live import CallState, LiveCall, clean_text
from hotline.model import AgentState
from hotline.tasks import Background

from .agent_service import AgentService
from .callbacks import CallBacks
from .callbook import CallBook, Witnessed
from .callstore import CallStore
from .connector import Connector
from .feature_codes import FeatureCodes
from .ownership import Ownership
from .queueing import Queueing
from .records import Records

__all__ = ["CallEvents"]

log = logging.getLogger(__name__)

Message = Mapping[str, str]


def _cause(msg: Message) -> Optional[int]:
    cause = msg.get("Cause", "")
    return int(cause) if cause.isdigit() else None


class CallEvents:
    def __init__(self, book: CallBook, store: CallStore, queueing: Queueing, callbacks: CallBacks,
                 records: Records, agents: AgentService, feature_codes: FeatureCodes, connector: Connector,
                 ownership: Ownership, background: Background, *, inbound_contexts: set[str],
                 enterprise_numbers: set[str], clock: Callable[[], float]) -> None:
        self.book = book
        self.store = store
        self.queueing = queueing
        self.callbacks = callbacks
        self.records = records
        self.agents = agents
        self.feature_codes = feature_codes
        self.connector = connector
        self.ownership = ownership
        self.background = background
        self.inbound_contexts = inbound_contexts
        self.enterprise_numbers = enterprise_numbers
        self.clock = clock
        self._user_events = self.user_events()

    def table(self) -> dict[str, Callable[[Message], None]]:
        return {"Newchannel": self.on_newchannel, "UserEvent": self.on_userevent,
                "DialBegin": self.on_dialbegin, "DialEnd": self.on_dialend,
                "BridgeEnter": self.on_bridgeenter, "BridgeLeave": self.on_bridgeleave,
                "BlindTransfer": self.on_blind_transfer, "HangupRequest": self.on_hangup_request, "Hangup": self.on_hangup}

    def user_events(self) -> dict[str, Callable[[Message], None]]:
        return {"HotlineAgent": self.feature_codes.on_event, "HotlineCallbackAnswered": self.callbacks.answered,
                "HotlineWaiting": self.on_waiting, "HotlineQueueChoice": self.on_queue_choice,
                "HotlineRingNoAnswer": self.on_ring_no_answer}

    def attach(self, ami: Any) -> None:
        for name, handler in self.table().items():
            ami.on_event(name, handler)

    def _witness(self, msg: Message) -> Optional[Witnessed]:
        return self.book.witness(msg, watching=self.ownership.watching, inbound_contexts=self.inbound_contexts)

    # ---- a call begins -------------------------------------------------------------------
    def on_newchannel(self, msg: Message) -> None:
        if msg.get("Context") not in self.inbound_contexts:
            return
        uid = msg.get("Uniqueid", "")
        if not uid or self.book.get(uid) is not None or self.book.has_ended(uid):
            return                      # (a late duplicate of an ended call's Newchannel)
        linkedid = msg.get("Linkedid") or uid
        if not self.ownership.owns(linkedid):
            self._witness(msg)          # another node follows this call; we only watch
            return
        exten = msg.get("Exten", "")
        call = LiveCall(uid, msg.get("Channel", ""), linkedid,
                        "enterprise" if exten in self.enterprise_numbers else "main",
                        clean_text(msg.get("CallerIDNum")), self.clock(), owner=self.ownership.node)
        self.book.follow(call, new=True)
        self.background.spawn(self.store.claim(call))

    # ---- the dialplan's own events -------------------------------------------------------
    def on_userevent(self, msg: Message) -> None:
        handler = self._user_events.get(msg.get("UserEvent", ""))
        if handler is not None:
            handler(msg)

    def on_waiting(self, msg: Message) -> None:
        call = self.book.get(msg.get("Uniqueid", ""))
        if call is None or call.answered_at is not None and not call.transferring:
            return          # answered calls never queue again (hotline-survey follows): a late duplicate
        if call.transferring == "external":
            call.transferring = "queue"     # the number transferred to did not answer: back to the queue
        if call.state == CallState.RINGING:
            # Back in the queue with its DialEnd and HotlineRingNoAnswer lost, or a late duplicate
            # of the event that queued it: Asterisk knows where the channel is.
            self.background.spawn(self._waiting_again(call, msg))
            return
        self.queueing.enqueue(call, msg.get("Queue", ""), msg.get("Skills", ""), msg.get("CallPriority", ""))

    async def _waiting_again(self, call: LiveCall, msg: Message) -> None:
        context = await self.connector.getvar(call.channel, "CONTEXT")
        if not self.book.is_followed(call) or call.state != CallState.RINGING or context != "hotline-wait":
            return
        self._agent_missed(call, call.agent or "", "NOANSWER")
        self.queueing.enqueue(call, msg.get("Queue", ""), msg.get("Skills", ""), msg.get("CallPriority", ""))

    def on_queue_choice(self, msg: Message) -> None:
        """The caller took the offer at the announcement (dialplan hotline-wait)."""
        call = self.book.get(msg.get("Uniqueid", ""))
        if call is None or call.state != CallState.WAITING or not self.book.is_waiting(call):
            return
        choice = msg.get("Choice", "")
        if choice == "message":
            self.queueing.leave_message(call)
        elif choice == "callback":
            self.callbacks.asked(call, msg.get("Number", ""))

    def on_ring_no_answer(self, msg: Message) -> None:
        call = self.book.get(msg.get("Uniqueid", ""))
        if call is None or self.book.ringing(call.uniqueid):
            return          # the agent it names is being rung right now: a late duplicate
        self._agent_missed(call, msg.get("Agent", ""), msg.get("DialStatus", ""))

    # ---- ringing the agent ---------------------------------------------------------------
    def on_dialbegin(self, msg: Message) -> None:
        call = self.book.get(msg.get("Uniqueid", ""))
        if call is not None:
            if self.book.dial_begun(call.uniqueid, msg.get("DestUniqueid", "")):
                call.ring_attempts += 1
                dest = msg.get("DestChannel", "")
                if call.agent and dest.startswith(f"PJSIP/{call.agent}-"):
                    call.agent_channel = dest       # what the desktop's hang-up and transfer act on
            return                  # (else a duplicate: this ring is counted)
        seen = self._witness(msg)
        if seen is not None:
            seen.ring_attempts += 1

    def on_dialend(self, msg: Message) -> None:
        call = self.book.get(msg.get("Uniqueid", ""))
        if call is None or not self.book.dial_ended(call.uniqueid, msg.get("DestUniqueid", "")):
            return                  # not ours, or a duplicate: this Dial's end was handled
        status = msg.get("DialStatus", "")
        # Only the end of ringing the agent reserved now (not a late copy of an earlier agent's).
        if status != "ANSWER" and call.agent and status != "CANCEL" \
                and msg.get("DestChannel", "").startswith(f"PJSIP/{call.agent}-"):
            self._agent_missed(call, call.agent, status)

    def _agent_missed(self, call: LiveCall, agent_id: str, status: str) -> None:
        agent = self.agents.directory.agents.get(agent_id)
        if agent is None or agent.state != AgentState.RESERVED or agent.call != call.uniqueid:
            return
        if call.agent != agent_id:
            return      # already handled: DialEnd and HotlineRingNoAnswer both report the same miss
        call.agent, call.state = None, CallState.WAITING
        self.background.spawn(self.agents.change(agent_id, AgentState.NOT_READY, reason="no_answer"))

    # ---- the conversation ----------------------------------------------------------------
    def on_bridgeenter(self, msg: Message) -> None:
        call = self.book.get(msg.get("Uniqueid", ""))
        if call is None:
            seen = self._witness(msg)
            if seen is not None and seen.answered_at is None:
                seen.answered_at = self.clock()
            return
        if call.answered_at is not None:
            if call.transferring in ("queue", "agent") and call.agent and call.bridged_at is None:
                self._talking_again(call)
            return
        call.answered_at = call.bridged_at = self.clock()
        call.state = CallState.TALKING
        call.agents = call.agent or ""
        if call.agent:
            self.background.spawn(self.agents.change(call.agent, AgentState.ON_CALL, call=call.uniqueid))
        self.background.spawn(self.store.save(call))

    def _talking_again(self, call: LiveCall) -> None:
        """A transferred caller is bridged with the next agent: the same call, one more agent."""
        call.bridged_at = self.clock()
        call.state, call.transferring = CallState.TALKING, ""
        call.agents = f"{call.agents}+{call.agent}" if call.agents else call.agent or ""
        self.background.spawn(self.agents.change(call.agent or "", AgentState.ON_CALL, call=call.uniqueid))
        self.background.spawn(self.store.save(call))

    def on_bridgeleave(self, msg: Message) -> None:
        # Talk time ends with the conversation, not with the survey that may follow it.
        followed = self.book.get(msg.get("Uniqueid", ""))
        if followed is not None and followed.bridged_at is not None:
            now = self.clock()
            followed.talked_s += now - followed.bridged_at
            followed.bridged_at, followed.talk_ended_at = None, now
            return
        call = followed or self._witness(msg)
        if call is not None and call.answered_at is not None and call.talk_ended_at is None:
            call.talk_ended_at = self.clock()

    def on_blind_transfer(self, msg: Message) -> None:
        """Asterisk moved the caller out of the agent's bridge (AMI BlindTransfer from the desktop,
        on any node): the follower expects the caller where it went; the agent's leg is hung up
        (wrap-up follows from its Hangup)."""
        call = self.book.get(msg.get("TransfereeUniqueid", ""))
        if call is None or msg.get("Result") != "Success":
            return
        context, exten = msg.get("Context", ""), msg.get("Extension", "")
        if context == self.connector.connect_context:
            call.transferring, call.agent, call.state = "agent", exten, CallState.RINGING
        elif context == "hotline-wait":
            call.transferring, call.agent, call.state = "queue", None, CallState.WAITING
        else:
            call.transferring, call.agent = "external", None
        call.agent_channel = ""
        self.background.spawn(self.store.save(call))

    # ---- the end -------------------------------------------------------------------------
    def on_hangup_request(self, msg: Message) -> None:
        call = self.book.get(msg.get("Uniqueid", "")) or self._witness(msg)
        if call is not None:
            call.caller_hung_up = True

    def on_hangup(self, msg: Message) -> None:
        uid = msg.get("Uniqueid", "")
        call = self.book.get(uid)
        if call is None:
            seen = self._witness(msg)
            if seen is not None:
                self.book.witnessed_end(uid, seen, _cause(msg))
            self._agent_leg_ended(msg)
            return
        if call.callback and self.callbacks.hung_up(call, uid):
            if uid != call.uniqueid:
                self.book.calls.pop(uid, None)     # that call-back leg is over
            return
        self.book.drop(call)
        self.background.spawn(self.records.finish(call, self.clock(), _cause(msg)))

    def _agent_leg_ended(self, msg: Message) -> None:
        # The agent's leg ending is what starts wrap-up (the caller may stay for a survey).
        channel = msg.get("Channel", "")
        if not channel.startswith("PJSIP/"):
            return
        agent = self.agents.directory.agents.get(channel[6:].rsplit("-", 1)[0])
        if agent is None:
            return
        # Only the leg of the agent's current call (Linkedid: the caller, or its call-back leg); a
        # late duplicate of an earlier leg's Hangup must not wrap up the call the agent is on.
        linked = msg.get("Linkedid", "")
        if linked and agent.call and linked != agent.call and self.book.call_of(linked) != agent.call:
            return
        # The node following the agent's call starts its wrap-up.
        if agent.state == AgentState.ON_CALL and self.ownership.follows(agent):
            self.background.spawn(self.agents.start_wrapup(agent.id))
