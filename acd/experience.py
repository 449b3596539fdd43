"""The caller's experience of the queue: its limits (overflow to a backup group, or the offer of a
call back that keeps the place or of a message), virtual hold and its call backs, and returning
callers waiting a few seconds for the agent who answered them last.

Mixed into :class:`acd.distributor.Distributor`, whose state (``calls``, ``waiting``, ``router``,
``agents``) and actions (``_enqueue``, ``_save_call``, ``_save_waiting``, ``_finish``) it uses.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Union

from redis.exceptions import RedisError

from hotline.ami import AMIActionError, AMIError
from hotline.keys import Keys
from hotline.model import AgentState

from .calls import LiveCall
from .router import RETURNING_QUEUE, WaitingCall, preference_skill

__all__ = ["QueueExperience"]

log = logging.getLogger(__name__)


class QueueExperience:
    async def queue_length(self, queue: str) -> int:
        """Calls waiting in this queue (every bucket of it), across ACD processes."""
        buckets = [b for b in await self.redis.smembers(Keys.buckets) if b.split(":", 1)[0] == queue]
        if not buckets:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for bucket in buckets:
                pipe.zcard(Keys.bucket(bucket))
            return sum(await pipe.execute())

    def _limit_due(self, uniqueid: str, waiting: WaitingCall) -> None:
        if self.waiting.get(uniqueid) is waiting:
            self._spawn(self._limit_reached(uniqueid, waiting))

    async def _limit_reached(self, uniqueid: str, waiting: WaitingCall) -> None:
        """The wait or the queue length passed the queue's limit: overflow, or offer a call back/message."""
        call = self.calls.get(uniqueid)
        if call is None or self.waiting.get(uniqueid) is not waiting:
            return
        rules = self.router.queues.get(waiting.queue)
        if rules.overflow and not call.overflowed_from:
            await self._withdraw_waiting(call)
            call.overflowed_from = waiting.queue
            skills = rules.overflow_skills if rules.overflow_skills is not None else call.skills
            log.info("call %s: limit of queue %s passed, overflows to %s (%s)", uniqueid, waiting.queue,
                     rules.overflow, skills or "no skill")
            # The same place in time: _enqueue keeps the first queue time.
            self._enqueue(call, {"Queue": rules.overflow, "Skills": skills, "CallPriority": str(call.priority)})
        elif rules.offer and not call.offer:
            call.offer = "+".join(rules.offer)
            log.info("call %s: limit of queue %s passed, offering %s", uniqueid, waiting.queue, call.offer)
            try:
                await self.redis.hset(Keys.call(uniqueid), "offer", call.offer)
            except (RedisError, OSError) as exc:
                log.warning("call %s: offer not saved (%s)", uniqueid, exc)

    async def _withdraw_waiting(self, call: LiveCall) -> None:
        self.waiting.pop(call.uniqueid, None)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(Keys.waiting, call.uniqueid)
            if call.bucket:
                await self.router.withdraw(pipe, call.uniqueid, call.bucket)
            await pipe.execute()

    def _queue_choice(self, call: LiveCall, choice: str, number: str) -> None:
        """The caller took the offer at the announcement (dialplan hotline-wait, UserEvent HotlineQueueChoice)."""
        if call.state != "waiting" or call.uniqueid not in self.waiting:
            return
        if choice == "message":
            call.state = "message"
            self._spawn(self._withdraw_waiting(call))
        elif choice == "callback":
            digits = "".join(ch for ch in number if ch.isdigit())
            if len(digits) < 5:
                log.warning("call %s: call back asked without a usable number", call.uniqueid)
                return
            call.callback = digits
            log.info("call %s: call back to %s, keeping the place", call.uniqueid, digits)
            self._spawn(self._save_call(call))

    async def _call_back(self, call: LiveCall, agent_id: str) -> None:
        """An agent is reserved for a caller on virtual hold: call them over the trunk; once they answer,
        the dialplan (hotline-callback) raises HotlineCallbackAnswered and rings the reserved agent."""
        call.leg = "pending"
        ring_s = self.router.queues.get(call.queue or self.default_queue).callback_ring_s
        # The leg's uniqueid is ours to choose (ChannelId), and saved before the Originate: if this
        # process dies while the caller's phone rings, recovery finds the leg instead of placing a
        # second call back.
        call.leg_id = f"{call.uniqueid}-cb{call.callback_tries + 1}"
        try:
            await self._save_call(call)
        except (RedisError, OSError) as exc:
            log.warning("call %s: call back not saved before placing it (%s)", call.uniqueid, exc)
        try:
            # The call-back leg carries the queue variables: if the agent does not answer it waits
            # in hotline-wait like any caller (and keeps the first queue time).
            await self.ami.send_action([
                ("Action", "Originate"), ("Channel", f"PJSIP/{call.callback}@trunk"), ("ChannelId", call.leg_id),
                ("Context", "hotline-callback"), ("Exten", agent_id), ("Priority", "1"),
                ("Timeout", str(int(ring_s * 1000))), ("CallerID", "12345 <12345>"),
                ("Variable", f"HOTLINE_CALLBACK_OF={call.uniqueid}"), ("Variable", f"HOTLINE_QUEUE={call.queue}"),
                ("Variable", f"HOTLINE_SKILLS={call.skills}"), ("Variable", f"HOTLINE_PRIORITY={call.priority}")],
                timeout=ring_s + 10)
        except (AMIActionError, AMIError, OSError, asyncio.TimeoutError) as exc:
            await self._call_back_failed(call, agent_id, exc)

    async def _call_back_failed(self, call: LiveCall, agent_id: str, exc: Union[Exception, str]) -> None:
        """Not answered (or not placed): the reserved agent is free again; the caller keeps the place
        and is called again after ``callback_retry_s``, up to ``callback_attempts`` calls in all."""
        call.callback_tries += 1
        call.leg, call.agent, call.state = "", None, "waiting"
        rules = self.router.queues.get(call.queue or self.default_queue)
        agent = self.agents.agents.get(agent_id)
        if agent is not None and agent.state == AgentState.RESERVED and agent.call == call.uniqueid:
            await self._transition(agent_id, AgentState.READY)
        if call.callback_tries >= rules.callback_attempts:
            log.warning("call %s: call back %d of %d failed (%s); the call ends", call.uniqueid,
                        call.callback_tries, rules.callback_attempts, exc)
            self.calls.pop(call.uniqueid, None)
            await self._finish(call, self.clock(), None)
            return
        log.info("call %s: call back %d of %d failed (%s); again in %gs, same place", call.uniqueid,
                 call.callback_tries, rules.callback_attempts, exc, rules.callback_retry_s)
        try:
            await self._save_call(call)
        except (RedisError, OSError):
            pass
        asyncio.get_running_loop().call_later(rules.callback_retry_s, self._call_back_again, call.uniqueid)

    def _call_back_again(self, uniqueid: str) -> None:
        call = self.calls.get(uniqueid)
        if call is None or not call.callback or call.leg or uniqueid in self.waiting:
            return
        # Back in its place: the first queue time is kept.
        self._enqueue(call, {"Queue": call.queue or "", "Skills": call.skills, "CallPriority": str(call.priority)})

    def _callback_answered(self, msg) -> None:
        call = self.calls.get(msg.get("Of", ""))
        if call is None or not call.callback or call.leg not in ("", "pending"):
            return
        call.leg, call.channel = msg.get("Uniqueid", ""), msg.get("Channel", "")
        self.calls[call.leg] = call
        self._spawn(self._save_call(call))

    # ---- returning callers ----------------------------------------------------------------
    async def _returning(self, call: LiveCall, waiting: WaitingCall) -> None:
        """A caller answered within ``returning.days`` waits up to ``returning.wait_s`` for the agent who
        answered them last (if that agent is logged in, not on a break, and has the skills), then is
        queued as usual with its first queue time."""
        rules = self.router.queues.returning
        try:
            agent_id = await self.redis.get(Keys.last_agent(call.caller))
        except (RedisError, OSError):
            agent_id = None
        agent = self.agents.agents.get(agent_id or "")
        usable = agent is not None and agent.state not in (AgentState.LOGGED_OUT, AgentState.NOT_READY) \
            and agent.can_serve(waiting.skills)
        if not usable or self.waiting.get(call.uniqueid) is not waiting:
            if self.waiting.get(call.uniqueid) is waiting:
                await self._save_waiting(call, waiting)
            return
        # Its own bucket, which every node's offer for that agent looks at first (acd/router.py).
        own = WaitingCall(call.uniqueid, call.channel, RETURNING_QUEUE, {preference_skill(agent.id): 1},
                          waiting.priority, waiting.queued_at)
        self.waiting[call.uniqueid] = own
        call.bucket = own.bucket
        log.info("call %s: returning caller, waits up to %gs for agent %s", call.uniqueid, rules.wait_s, agent.id)
        asyncio.get_running_loop().call_later(rules.wait_s, self._preference_over, call.uniqueid, own, waiting)
        await self._save_waiting(call, own)
        if self.waiting.get(call.uniqueid) is own and agent.state == AgentState.READY:
            self.offer_agent(agent.id)

    def _preference_over(self, uniqueid: str, own: WaitingCall, usual: WaitingCall) -> None:
        call = self.calls.get(uniqueid)
        if call is None or self.waiting.get(uniqueid) is not own:
            return

        async def requeue() -> None:
            await self._withdraw_waiting(call)
            if call.state != "waiting" or uniqueid in self.waiting:
                return
            usual.channel = call.channel
            self.waiting[uniqueid] = usual
            call.bucket = usual.bucket
            await self._save_waiting(call, usual)
        self._spawn(requeue())
