"""Recovery: the live picture rebuilt from Redis and from Asterisk (``CoreShowChannels``) after a
start (even after kill -9), after every AMI reconnect and when another node died; and agents'
states reconciled with the channels Asterisk has, every 30 s.

The decisions are acd/recovery_plan.py's; this part reads the inputs and applies them.
"""
from __future__ import annotations

import logging
from typing import Callable, Mapping

from redis.exceptions import RedisError

from hotline.live import CallState, LiveCall, clean_text
from hotline.model import AgentState
from hotline.tasks import Background

from .agent_service import AgentService
from .agents import AgentDirectory
from .callbook import CallBook
from .callstore import CallStore
from .connector import ActionFailed, Connector
from .ownership import Ownership
from .queueing import Queueing
from .records import Records
from .recovery_plan import (Adoption, AgentRepair, Channel, Recovered, Step, adoption, lost_hangups, newcomers,
                            plan_agents, plan_call, plan_reconcile)
from .routing import Routing

__all__ = ["Recovery", "ami_duration"]

log = logging.getLogger(__name__)


def ami_duration(text: str) -> float:
    """AMI Duration ``HH:MM:SS`` in seconds (0 if unreadable)."""
    try:
        hours, minutes, seconds = (int(part) for part in text.split(":"))
    except ValueError:
        return 0.0
    return hours * 3600 + minutes * 60 + seconds


class Recovery:
    def __init__(self, book: CallBook, store: CallStore, connector: Connector, records: Records,
                 agents: AgentService, directory: AgentDirectory, queueing: Queueing, routing: Routing,
                 ownership: Ownership, background: Background, *, caller_contexts: set[str],
                 clock: Callable[[], float]) -> None:
        self.book = book
        self.store = store
        self.connector = connector
        self.records = records
        self.agents = agents
        self.directory = directory
        self.queueing = queueing
        self.routing = routing
        self.ownership = ownership
        self.background = background
        self.caller_contexts = caller_contexts
        self.clock = clock

    def on_connected(self) -> None:
        """After every AMI login (the first one, every reconnect)."""
        self.background.spawn(self.recover())

    async def recover(self) -> None:
        """Rebuild the live picture: waiting calls are re-adopted in their order (their buckets
        are in Redis), calls that ended meanwhile get their record, callers who arrived meanwhile
        are adopted, and agents whose call is gone are freed."""
        known = self.book.followed_calls()
        try:
            channels = await self.connector.channels()
            hashes = await self.store.live()
        except (ActionFailed, RedisError, OSError) as exc:
            log.warning("recovery postponed: %s", exc)
            return
        now = self.clock()
        recovered = Recovered()
        for call in self._end_lost(known, channels, now):
            recovered.ended(call)
        adopted = 0
        for uid, data in hashes.items():
            if uid in self.book.calls or uid in recovered.gone:
                continue
            adopted += await self._recover_call(uid, data, channels, recovered, now)
        for channel in newcomers(channels, self.book.calls, recovered.elsewhere,
                                 caller_contexts=self.caller_contexts, owns=self.ownership.owns):
            adopted += await self._newcomer(channel, now)
        claimed, repairs = plan_agents(list(self.directory.agents.values()), self.book.calls, recovered,
                                       follows=self.ownership.follows, timing=self.agents.wrapups.timing)
        for agent_id in claimed:
            self.directory.driven_by(agent_id, self.ownership.node)
        for agent_id, repair in repairs:
            self._repair(agent_id, repair)
        log.info("recovered: %d live call(s) adopted, %d ended meanwhile", adopted, len(recovered.gone))
        self.routing.schedule()

    def _end_lost(self, known: Mapping[str, LiveCall], channels: Mapping[str, Channel], now: float) -> list[LiveCall]:
        lost = lost_hangups(known, self.book.calls, channels)
        for call in lost:
            log.warning("call %s: Asterisk no longer has its channel (Hangup event lost): ended", call.uniqueid)
            self.book.drop(call)
            self.background.spawn(self.records.finish(call, now, None))
        return lost

    async def _recover_call(self, uid: str, data: dict[str, str], channels: Mapping[str, Channel],
                            recovered: Recovered, now: float) -> int:
        """A call Redis knows and this node does not follow: ours (or a dead node's) to finish or adopt."""
        owner = data.get("owner", "")
        if not self.ownership.ours(owner):
            recovered.elsewhere.add(uid)         # a live node follows it
            return 0
        try:
            call = LiveCall.from_redis(data)
        except (KeyError, ValueError) as exc:
            log.warning("call %s: unreadable live state (%s); dropped", uid, exc)
            await self.store.forget(uid)
            return 0
        step = plan_call(call, channels, self.book.witnessed.get(uid), now)
        if owner not in ("", self.ownership.node):
            # A dead node's call: ours if we take it first (the survivors race for it).
            try:
                if not await self.store.claim(call, taking_from=owner):
                    recovered.elsewhere.add(uid)
                    return 0
            except (RedisError, OSError):
                return 0
            log.info("call %s: adopted from node %s", uid, owner)
        call.owner = self.ownership.node
        self.book.witnessed.pop(uid, None)
        if step.step == Step.END:
            # It ended while nobody followed it: its record now, from what we knew or saw.
            recovered.ended(call)
            self.background.spawn(self.records.finish(call, step.ended_at or now, step.cause))
            return 0
        self.book.follow(call)
        if step.step == Step.RINGING_BACK:
            log.info("call %s: its call back still rings the caller: followed, not placed again", uid)
            assert step.channel is not None
            call.channel = step.channel.get("Channel", "")
            self.book.follow_leg(call, call.leg_id)     # answered: HotlineCallbackAnswered; else its Hangup
        elif step.step == Step.OWED:
            log.info("call %s: still owed a call back: back in its place", uid)
            call.leg, call.channel, call.agent = "", "", None
            self.queueing.requeue(call)
        elif step.channel is not None:          # ADOPT, or LEG: its answered call back
            if step.step == Step.LEG:
                call.channel = step.channel.get("Channel", "")
                self.book.follow_leg(call, call.leg)
            await self.adopt(call, step.channel, now)
        return 1

    async def _newcomer(self, channel: Channel, now: float) -> int:
        """A caller who arrived while the ACD was away."""
        uid = channel.get("Uniqueid", "")
        seconds = ami_duration(channel.get("Duration", ""))
        call = LiveCall(uid, channel.get("Channel", ""), channel.get("Linkedid", uid), "main",
                        clean_text(channel.get("CallerIDNum")), now - seconds, owner=self.ownership.node)
        line = await self.connector.getvar(call.channel, "HOTLINE_LINE")
        call.line = "enterprise" if line == "enterprise" else "main"
        self.book.follow(call)
        try:
            if not await self.store.claim(call):
                return 0
        except (RedisError, OSError):
            pass
        await self.adopt(call, channel, now)
        return 1

    async def adopt(self, call: LiveCall, channel: Channel, now: float) -> None:
        """Follow a live call again where Asterisk has it."""
        how = adoption(call, channel)
        if how == Adoption.ANSWERED:
            # Answered while we were away (or while the node that followed it was dying: then we
            # witnessed the answer, but nobody moved its agent on). Its agent is on call.
            call.answered_at = call.answered_at or now
            call.state = CallState.TALKING
            agent = self.directory.agents.get(call.agent or "")
            if agent is not None and agent.state == AgentState.RESERVED and agent.call == call.uniqueid:
                self.background.spawn(self.agents.change(agent.id, AgentState.ON_CALL, call=call.uniqueid))
            self.background.spawn(self.store.save(call))
        elif how == Adoption.REQUEUE:
            # Queued again with its first queue time: the same place (the script is idempotent,
            # and also covers a crash between saving the call and queuing it).
            self.queueing.requeue(call)
        elif how == Adoption.REQUEUE_ASKING:
            if call.state == CallState.RINGING:      # rang out while we were away: back to its place
                call.agent = None
            values = {name: await self.connector.getvar(call.channel, f"HOTLINE_{name.upper()}")
                      for name in ("queue", "skills", "priority")}
            self.queueing.enqueue(call, values["queue"], values["skills"], values["priority"])

    def _repair(self, agent_id: str, repair: AgentRepair) -> None:
        agent = self.directory.agents[agent_id]
        if repair == AgentRepair.ON_CALL_THEN_WRAPUP:
            log.warning("agent %s: call %s was answered and ended unfollowed: wrap-up", agent_id, agent.call)
            self.background.spawn(self._answered_unfollowed(agent_id, agent.call))
        elif repair == AgentRepair.FREE:
            log.warning("agent %s was reserved for %s, which is gone: ready again", agent_id, agent.call)
            self.background.spawn(self.agents.free(agent_id))
        else:
            if agent.state == AgentState.ON_CALL:
                log.warning("agent %s was on call %s, which has ended: wrap-up", agent_id, agent.call)
            self.background.spawn(self.agents.start_wrapup(agent_id))

    async def _answered_unfollowed(self, agent_id: str, uid: str) -> None:
        agent = self.directory.agents.get(agent_id)
        if agent is not None and agent.state == AgentState.RESERVED:
            await self.agents.change(agent_id, AgentState.ON_CALL, call=uid)
        await self.agents.start_wrapup(agent_id)

    async def reconcile_agents(self) -> int:
        """Agent states that no live channel explains are repaired (and logged): reserved or on
        call for a call Asterisk no longer has. Run periodically; returns how many were repaired."""
        known = self.book.followed_calls()
        try:
            channels = await self.connector.channels()
        except ActionFailed as exc:
            log.warning("agent reconcile postponed: %s", exc)
            return 0
        for call in lost_hangups(known, self.book.calls, channels):     # its record first; its agent below
            log.warning("call %s: Asterisk no longer has its channel (Hangup event lost): ended", call.uniqueid)
            self.book.drop(call)
            await self.records.finish(call, self.clock(), None)
        repairs = plan_reconcile(list(self.directory.agents.values()), set(channels), self.book.calls,
                                 follows=self.ownership.follows)
        for agent_id, repair in repairs:
            agent = self.directory.agents[agent_id]
            log.warning("agent %s: %s for call %s, which Asterisk no longer has: repaired", agent_id,
                        agent.state.value, agent.call or "(none)")
            if repair == AgentRepair.FREE:
                await self.agents.free(agent_id)
            else:
                self.background.spawn(self.agents.start_wrapup(agent_id))
        return len(repairs)
