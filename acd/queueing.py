"""A caller's time in the queue: placed (an agent at once, or a place by priority and time),
ready agents asked again when the requirement widens (skill expansion), the queue's limits
(overflow to a backup group, or the offer of a call back or a message), and returning callers
waiting a few seconds for the agent who answered them last.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

from redis.exceptions import RedisError

from hotline.live import CallState, LiveCall
from hotline.model import AgentState, SkillError, format_skills, parse_skills, valid_name
from hotline.tasks import Background

from .agents import AgentDirectory
from .callbook import CallBook
from .callstore import CallStore
from .queues import QueueBook
from .router import RETURNING_QUEUE, Router, WaitingCall, preference_skill
from .routing import Routing

__all__ = ["Queueing", "queue_entry"]

log = logging.getLogger(__name__)


def queue_entry(call: LiveCall, queue: str, skills: str, priority: str, *, default_queue: str,
                now: float) -> WaitingCall:
    """The call's entry in the queue from what the dialplan said (``HOTLINE_QUEUE``, ``_SKILLS``,
    ``_PRIORITY``): a bad queue name is the default queue, bad skills none, a bad priority 0. A call
    coming back (its agent did not answer, it overflowed) keeps its first queue time: its place."""
    queue = queue or default_queue
    if not valid_name(queue):
        log.warning("call %s: invalid queue %r, using %s", call.uniqueid, queue, default_queue)
        queue = default_queue
    try:
        required = parse_skills(skills)
    except SkillError as exc:
        log.warning("call %s: %s; no skill required", call.uniqueid, exc)
        required = {}
    try:
        level = int(priority or 0)
    except ValueError:
        level = 0
    queued_at = call.queued_at if call.queued_at is not None else now
    return WaitingCall(call.uniqueid, call.channel, queue, required, level, queued_at)


class Queueing:
    def __init__(self, book: CallBook, store: CallStore, router: Router, routing: Routing,
                 directory: AgentDirectory, background: Background, *, default_queue: str,
                 clock: Callable[[], float]) -> None:
        self.book = book
        self.store = store
        self.router = router
        self.routing = routing
        self.directory = directory
        self.background = background
        self.default_queue = default_queue
        self.clock = clock

    @property
    def queues(self) -> QueueBook:
        return self.router.queues

    def enqueue(self, call: LiveCall, queue: str, skills: str, priority: str) -> None:
        """The call waits for an agent (UserEvent HotlineWaiting, or again after a miss)."""
        waiting = queue_entry(call, queue, skills, priority, default_queue=self.default_queue, now=self.clock())
        first_entry = call.queued_at is None
        call.queued_at, call.queue, call.priority = waiting.queued_at, waiting.queue, waiting.priority
        call.state, call.skills = CallState.WAITING, format_skills(waiting.skills)
        # Queued elsewhere before (a returning caller's own bucket, found again by recovery): it
        # leaves that bucket, or two agents could be offered it.
        leaving = call.bucket if call.bucket != waiting.bucket else ""
        call.bucket = waiting.bucket
        self.book.waiting[call.uniqueid] = waiting
        if first_entry and call.caller and self.queues.returning.enabled:
            self.background.spawn(self._returning(call, waiting))
            return
        self.background.spawn(self.place(call, waiting, leaving))

    def requeue(self, call: LiveCall) -> None:
        """Back in its place with what it was queued with (recovery, a call back to place again)."""
        self.enqueue(call, call.queue or "", call.skills, str(call.priority))

    async def place(self, call: LiveCall, waiting: WaitingCall, leaving: str = "") -> None:
        """One script: the best ready agent by the queue's strategy, or a place in the queue. The
        caller waits in Asterisk whatever happens: retried while they are still waiting."""
        delay = 0.2
        while self.book.is_waiting(call, waiting):
            try:
                await self.store.announce_waiting(call, leaving)
                decision = await self.router.arrive(waiting)
                break
            except (RedisError, OSError) as exc:
                log.warning("call %s: cannot queue in Redis (%s); retrying", call.uniqueid, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        else:
            return
        if decision is not None:
            await self.routing.decided(decision)
            return
        await self._watch_limits(call, waiting)
        # Skill expansion: when the requirement widens, ready agents look again.
        waited = self.clock() - waiting.queued_at
        loop = asyncio.get_running_loop()
        for after in self.router.waits_that_matter(waiting):
            if after > waited:
                loop.call_later(after - waited + 0.01, self._expansion_due, call.uniqueid)

    def _expansion_due(self, uniqueid: str) -> None:
        if uniqueid in self.book.waiting:
            self.routing.schedule()

    # ---- the queue's limits --------------------------------------------------------------
    async def _watch_limits(self, call: LiveCall, waiting: WaitingCall) -> None:
        rules = self.queues.get(waiting.queue)
        if not rules.limited or (call.overflowed_from and rules.overflow) or call.callback:
            return
        waited = self.clock() - waiting.queued_at
        too_long = False
        if rules.max_length is not None:
            try:
                too_long = await self.router.queue_length(waiting.queue) > rules.max_length
            except (RedisError, OSError):
                pass
        if too_long or (rules.max_wait_s is not None and waited >= rules.max_wait_s):
            await self._limit_reached(call.uniqueid, waiting)
        elif rules.max_wait_s is not None:
            asyncio.get_running_loop().call_later(rules.max_wait_s - waited, self._limit_due, call.uniqueid, waiting)

    def _limit_due(self, uniqueid: str, waiting: WaitingCall) -> None:
        if self.book.waiting.get(uniqueid) is waiting:
            self.background.spawn(self._limit_reached(uniqueid, waiting))

    async def _limit_reached(self, uniqueid: str, waiting: WaitingCall) -> None:
        """The wait or the queue length passed the queue's limit: overflow, or offer a call back/message."""
        call = self.book.get(uniqueid)
        if call is None or self.book.waiting.get(uniqueid) is not waiting:
            return
        rules = self.queues.get(waiting.queue)
        if rules.overflow and not call.overflowed_from:
            await self.withdraw(call)
            call.overflowed_from = waiting.queue
            skills = rules.overflow_skills if rules.overflow_skills is not None else call.skills
            log.info("call %s: limit of queue %s passed, overflows to %s (%s)", uniqueid, waiting.queue,
                     rules.overflow, skills or "no skill")
            self.enqueue(call, rules.overflow, skills, str(call.priority))     # (its first queue time kept)
        elif rules.offer and not call.offer:
            call.offer = "+".join(rules.offer)
            log.info("call %s: limit of queue %s passed, offering %s", uniqueid, waiting.queue, call.offer)
            try:
                await self.store.save_offer(call)
            except (RedisError, OSError) as exc:
                log.warning("call %s: offer not saved (%s)", uniqueid, exc)

    async def withdraw(self, call: LiveCall) -> None:
        """The call leaves the queue (overflow, a message, the end of a returning caller's wait)."""
        self.book.waiting.pop(call.uniqueid, None)
        await self.store.withdraw(call)

    def leave_message(self, call: LiveCall) -> None:
        """The caller chose to leave a message at the announcement: served by the IVR from here."""
        call.state = CallState.MESSAGE
        self.background.spawn(self.withdraw(call))

    # ---- returning callers ---------------------------------------------------------------
    async def _returning(self, call: LiveCall, waiting: WaitingCall) -> None:
        """A caller answered within ``returning.days`` waits up to ``returning.wait_s`` for the agent who
        answered them last (if that agent is logged in, not on a break, and has the skills), then is
        queued as usual with its first queue time."""
        rules = self.queues.returning
        agent_id = await self.store.last_agent(call.caller)
        agent = self.directory.agents.get(agent_id or "")
        usable = agent is not None and agent.state not in (AgentState.LOGGED_OUT, AgentState.NOT_READY) \
            and agent.can_serve(waiting.skills)
        if agent is None or not usable or not self.book.is_waiting(call, waiting):
            if self.book.is_waiting(call, waiting):
                await self.place(call, waiting)
            return
        # Its own bucket, which every node's offer for that agent looks at first (acd/router.py).
        own = WaitingCall(call.uniqueid, call.channel, RETURNING_QUEUE, {preference_skill(agent.id): 1},
                          waiting.priority, waiting.queued_at)
        self.book.waiting[call.uniqueid] = own
        call.bucket = own.bucket
        log.info("call %s: returning caller, waits up to %gs for agent %s", call.uniqueid, rules.wait_s, agent.id)
        asyncio.get_running_loop().call_later(rules.wait_s, self._preference_over, call.uniqueid, own, waiting)
        await self.place(call, own)
        if self.book.is_waiting(call, own) and agent.state == AgentState.READY:
            self.routing.offer_agent(agent.id)

    def _preference_over(self, uniqueid: str, own: WaitingCall, usual: WaitingCall) -> None:
        call = self.book.get(uniqueid)
        if call is None or self.book.waiting.get(uniqueid) is not own:
            return

        async def requeue() -> None:
            await self.withdraw(call)
            if call.state != CallState.WAITING or uniqueid in self.book.waiting:
                return
            usual.channel = call.channel
            self.book.waiting[uniqueid] = usual
            call.bucket = usual.bucket
            await self.place(call, usual)
        self.background.spawn(requeue())
