"""Recovery: the ACD's live picture rebuilt from Redis and from Asterisk (``CoreShowChannels``),
after a start (even after kill -9), after every AMI reconnect, when another node died, and
agents' states reconciled with the channels Asterisk has.

Mixed into :class:`acd.distributor.Distributor`, whose state (``calls``, ``waiting``, ``agents``,
``witnessed``) and actions (``_enqueue``, ``_finish``, ``free_agent``, ``_start_wrapup``) it uses.
"""
from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from hotline.ami import AMIActionError, AMIError
from hotline.keys import Keys
from hotline.model import AgentState

from .calls import UP, LiveCall, ami_duration, clean_text

__all__ = ["Recovery"]

log = logging.getLogger(__name__)


class Recovery:
    def _hangups_lost(self, known: dict[str, LiveCall], live) -> list[LiveCall]:
        """Calls followed since before Asterisk listed its channels, whose channels it no longer
        has: their Hangup event was lost. They leave the live picture; the caller ends them."""
        lost = []
        for uid, call in known.items():
            if self.calls.get(uid) is not call or uid in live or (call.leg and call.leg in live):
                continue
            if call.callback and call.leg in ("", "pending"):
                continue        # virtual hold: the caller hung up on purpose, the call waits for its call back
            log.warning("call %s: Asterisk no longer has its channel (Hangup event lost): ended", uid)
            self.calls.pop(uid, None)
            if call.leg:
                self.calls.pop(call.leg, None)
            self.waiting.pop(uid, None)
            lost.append(call)
        return lost

    def _reconnected(self) -> None:
        self._spawn(self.recover())

    async def recover(self) -> None:
        """Rebuild the live picture from Redis and Asterisk: after a restart (even kill -9) and
        after every AMI reconnect. Waiting calls are re-adopted in their order (their buckets
        are in Redis), calls that ended meanwhile get their record, callers who arrived meanwhile
        are adopted, and agents whose call is gone are freed."""
        known = {uid: call for uid, call in self.calls.items() if uid == call.uniqueid}
        try:
            _, events = await self.ami.send_list_action({"Action": "CoreShowChannels"})
            uids = await self.redis.smembers(Keys.calls)
            async with self.redis.pipeline(transaction=False) as pipe:
                for uid in uids:
                    pipe.hgetall(Keys.call(uid))
                hashes = await pipe.execute()
        except (AMIError, RedisError, OSError, asyncio.TimeoutError) as exc:
            log.warning("recovery postponed: %s", exc)
            return
        channels = {e.get("Uniqueid", ""): e for e in events if e.get("Event") == "CoreShowChannel"}
        now = self.clock()
        adopted = ended = 0
        gone: set[str] = set()
        followed_elsewhere: set[str] = set()
        answered_by: dict[str, str] = {}        # agent -> answered call that ended unfollowed
        for call in self._hangups_lost(known, channels):
            ended += 1
            gone.add(call.uniqueid)
            if call.answered_at is not None:
                answered_by[call.agent or ""] = call.uniqueid
            self._spawn(self._finish(call, now, None))
        for uid, data in zip(uids, hashes):
            if uid in self.calls or uid in gone:
                continue
            owner = data.get("owner", "")
            if not self.ours(owner):
                followed_elsewhere.add(uid)     # a live node follows it
                continue
            try:
                call = LiveCall.from_redis(data)
            except (KeyError, ValueError) as exc:
                log.warning("call %s: unreadable live state (%s); dropped", uid, exc)
                await self.redis.srem(Keys.calls, uid)
                continue
            if owner not in ("", self.node):
                # A dead node's call: ours if we take it first (the survivors race for it).
                try:
                    if not await self._save_call(call, taking_from=owner):
                        followed_elsewhere.add(uid)
                        continue
                except (RedisError, OSError):
                    continue
                log.info("call %s: adopted from node %s", uid, owner)
            call.owner = self.node
            seen = self.witnessed.pop(uid, None)
            if seen is not None:
                # What we saw while its node followed it (and after that node died).
                call.ring_attempts = max(call.ring_attempts, seen.ring_attempts)
                call.answered_at = call.answered_at or seen.answered_at
                call.talk_ended_at = call.talk_ended_at or seen.talk_ended_at
                call.caller_hung_up = call.caller_hung_up or seen.caller_hung_up
                if call.answered_at is not None and call.state in ("waiting", "ringing"):
                    call.state = "talking"
            channel = channels.get(uid)
            if channel is None and call.callback and call.answered_at is None:
                # Virtual hold: the caller hung up to be called back. Still owed a call back (its
                # place kept), or its call-back leg is in progress.
                leg = channels.get(call.leg) if call.leg not in ("", "pending") else None
                # A call back being placed when the ACD died: Asterisk has its leg by the id we gave it.
                placed = channels.get(call.leg_id) if call.leg == "pending" and call.leg_id else None
                if leg is not None or call.leg in ("", "pending"):
                    adopted += 1
                    self.calls[uid] = call
                    if placed is not None and placed.get("ChannelState") != UP:
                        log.info("call %s: its call back still rings the caller: followed, not placed again", uid)
                        call.channel = placed.get("Channel", "")
                        self.calls[call.leg_id] = call      # answered: HotlineCallbackAnswered; else its Hangup
                    elif leg is not None or placed is not None:
                        if leg is None:                     # answered meanwhile: that is the leg
                            call.leg, leg = call.leg_id, placed
                        call.channel = leg.get("Channel", "")
                        self.calls[call.leg] = call
                        await self._adopt(call, leg, now)
                    else:
                        log.info("call %s: still owed a call back: back in its place", uid)
                        call.leg, call.channel, call.agent = "", "", None
                        self._enqueue(call, {"Queue": call.queue or "", "Skills": call.skills,
                                             "CallPriority": str(call.priority)})
                    continue
            if channel is None:
                # It ended while nobody followed it: its record now, from what we knew or saw.
                ended += 1
                gone.add(uid)
                if call.answered_at is not None:
                    answered_by[call.agent or ""] = uid
                self._spawn(self._finish(call, seen.ended_at if seen and seen.ended_at else now,
                                         seen.cause if seen else None))
                continue
            adopted += 1
            self.calls[uid] = call
            await self._adopt(call, channel, now)
        for uid, channel in channels.items():
            if uid in self.calls or uid in followed_elsewhere or channel.get("Context") not in self.caller_contexts:
                continue
            if not self.owns(channel.get("Linkedid") or uid):
                continue
            # A caller who arrived while the ACD was away.
            seconds = ami_duration(channel.get("Duration", ""))
            call = LiveCall(uid, channel.get("Channel", ""), channel.get("Linkedid", uid), "main",
                            clean_text(channel.get("CallerIDNum")), now - seconds, owner=self.node)
            line = await self._getvar(call.channel, "HOTLINE_LINE")
            call.line = "enterprise" if line == "enterprise" else "main"
            self.calls[uid] = call
            try:
                if not await self._save_call(call, new=True):
                    continue
            except (RedisError, OSError):
                pass
            adopted += 1
            await self._adopt(call, channel, now)
        # Agents whose call is gone are free again; an agent "on call" with no live call wraps up
        # (only agents this node follows, or whose node is gone).
        for agent in list(self.agents.agents.values()):
            live = self.calls.get(agent.call) if agent.call else None
            if live is not None and live.agent == agent.id:
                agent.node = self.node              # its call is ours now (adopted)
            if not self.follows(agent) or agent.call in followed_elsewhere:
                continue
            if agent.call and answered_by.get(agent.id) == agent.call and \
                    agent.state in (AgentState.RESERVED, AgentState.ON_CALL):
                # Its call was answered and ended while nobody followed it: on call, then wrap-up.
                log.warning("agent %s: call %s was answered and ended unfollowed: wrap-up", agent.id, agent.call)
                self._spawn(self._answered_unfollowed(agent.id, agent.call))
                continue
            if agent.state == AgentState.RESERVED and agent.call not in gone and (live is None or live.agent != agent.id):
                log.warning("agent %s was reserved for %s, which is gone: ready again", agent.id, agent.call)
                self._spawn(self.free_agent(agent.id))
            elif agent.state == AgentState.ON_CALL and live is None:
                log.warning("agent %s was on call %s, which has ended: wrap-up", agent.id, agent.call)
                self._spawn(self._start_wrapup(agent.id))
            elif agent.state == AgentState.WRAPUP and agent.id not in self._wrapup_until:
                self._spawn(self._start_wrapup(agent.id))
        log.info("recovered: %d live call(s) adopted, %d ended meanwhile", adopted, ended)
        self.schedule_routing()

    async def _answered_unfollowed(self, agent_id: str, uid: str) -> None:
        agent = self.agents.agents.get(agent_id)
        if agent is not None and agent.state == AgentState.RESERVED:
            await self._transition(agent_id, AgentState.ON_CALL, call=uid)
        await self._start_wrapup(agent_id)

    async def reconcile_agents(self) -> int:
        """Agent states that no live channel explains are repaired (and logged): reserved or on
        call for a call Asterisk no longer has. Run periodically; returns how many were repaired."""
        known = {uid: call for uid, call in self.calls.items() if uid == call.uniqueid}
        try:
            _, events = await self.ami.send_list_action({"Action": "CoreShowChannels"})
        except (AMIError, OSError, asyncio.TimeoutError) as exc:
            log.warning("agent reconcile postponed: %s", exc)
            return 0
        live = {e.get("Uniqueid", "") for e in events if e.get("Event") == "CoreShowChannel"}
        for call in self._hangups_lost(known, live):     # its record first; its agent is repaired below
            await self._finish(call, self.clock(), None)
        repaired = 0
        for agent in list(self.agents.agents.values()):
            if agent.state not in (AgentState.RESERVED, AgentState.ON_CALL) or agent.call in live:
                continue
            if not self.follows(agent):
                continue            # another live node follows it
            if agent.call in self.calls:
                continue            # its Hangup is being handled right now
            repaired += 1
            log.warning("agent %s: %s for call %s, which Asterisk no longer has: repaired", agent.id,
                        agent.state.value, agent.call or "(none)")
            if agent.state == AgentState.RESERVED:
                await self.free_agent(agent.id)
            else:
                self._spawn(self._start_wrapup(agent.id))
        return repaired

    async def _adopt(self, call: LiveCall, channel, now: float) -> None:
        context = channel.get("Context", "")
        if channel.get("BridgeId"):
            # Answered while we were away (or while the node that followed it was dying: then we
            # witnessed the answer, but nobody moved its agent on). Its agent is on call.
            call.answered_at = call.answered_at or now
            call.state = "talking"
            agent = self.agents.agents.get(call.agent or "")
            if agent is not None and agent.state == AgentState.RESERVED and agent.call == call.uniqueid:
                self._spawn(self._transition(agent.id, AgentState.ON_CALL, call=call.uniqueid))
            self._spawn(self._save_call(call))
            return
        if context == "hotline-wait":
            if call.state == "waiting" and call.queue:
                # Queued again with its first queue time: the same place (the script is idempotent,
                # and also covers a crash between saving the call and queuing it).
                self._enqueue(call, {"Queue": call.queue, "Skills": call.skills, "CallPriority": str(call.priority)})
            else:
                if call.state == "ringing":      # rang out while we were away: back to its place
                    call.agent = None
                values = {name: await self._getvar(call.channel, f"HOTLINE_{name.upper()}")
                          for name in ("queue", "skills", "priority")}
                self._enqueue(call, {"Queue": values["queue"], "Skills": values["skills"],
                                     "CallPriority": values["priority"]})

    async def _getvar(self, channel: str, name: str) -> str:
        try:
            reply = await self.ami.send_action({"Action": "Getvar", "Channel": channel, "Variable": name})
        except (AMIActionError, AMIError, OSError, asyncio.TimeoutError):
            return ""
        return reply.get("Value") or ""
