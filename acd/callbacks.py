"""Virtual hold: a caller who took the offer of a call back hangs up and keeps the place; when an
agent is reserved for them, they are called back over the trunk (``Originate``), and once they
answer the dialplan rings the reserved agent. A call back not answered frees the agent at once
and is placed again after ``callback_retry_s``, up to ``callback_attempts`` calls (queues.yaml);
then the call ends, abandoned in the queue. Virtual hold is in the call hash (``callback``), so a
restarted or adopting ACD puts a caller still owed a call back into the place again.
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Callable, Mapping, Union

from redis.exceptions import RedisError

from hotline.live import CallState, LiveCall
from hotline.tasks import Background

from .agent_service import AgentService
from .callbook import CallBook
from .callstore import CallStore
from .connector import ActionFailed, Connector
from .queues import QueueBook
from .records import Records

if TYPE_CHECKING:
    from .queueing import Queueing

__all__ = ["CallBacks"]

log = logging.getLogger(__name__)


class CallBacks:
    def __init__(self, book: CallBook, store: CallStore, connector: Connector, agents: AgentService,
                 records: Records, queueing: "Queueing", background: Background, *,
                 queues: Callable[[], QueueBook], default_queue: str, clock: Callable[[], float]) -> None:
        self.book = book
        self.store = store
        self.connector = connector
        self.agents = agents
        self.records = records
        self.queueing = queueing
        self.background = background
        self.queues = queues
        self.default_queue = default_queue
        self.clock = clock

    def asked(self, call: LiveCall, number: str) -> None:
        """The caller chose a call back at the announcement (UserEvent HotlineQueueChoice)."""
        digits = "".join(ch for ch in number if ch.isdigit())
        if len(digits) < 5:
            log.warning("call %s: call back asked without a usable number", call.uniqueid)
            return
        call.callback = digits
        log.info("call %s: call back to %s, keeping the place", call.uniqueid, digits)
        self.background.spawn(self.store.save(call))

    async def place(self, call: LiveCall, agent_id: str) -> None:
        """An agent is reserved for a caller on virtual hold: call them."""
        call.leg = "pending"
        ring_s = self.queues().get(call.queue or self.default_queue).callback_ring_s
        # The leg's uniqueid is ours to choose (ChannelId), and saved before the Originate: if this
        # process dies while the caller's phone rings, recovery finds the leg instead of placing a
        # second call back.
        call.leg_id = f"{call.uniqueid}-cb{call.callback_tries + 1}"
        try:
            await self.store.save(call)
        except (RedisError, OSError) as exc:
            log.warning("call %s: call back not saved before placing it (%s)", call.uniqueid, exc)
        try:
            await self.connector.call_back(call.callback, leg_id=call.leg_id, agent_id=agent_id, of=call.uniqueid,
                                           queue=call.queue or "", skills=call.skills, priority=call.priority,
                                           ring_s=ring_s)
        except ActionFailed as exc:
            await self.failed(call, agent_id, exc)

    async def failed(self, call: LiveCall, agent_id: str, why: Union[Exception, str]) -> None:
        """Not answered (or not placed): the reserved agent is free again; the caller keeps the place
        and is called again after ``callback_retry_s``, up to ``callback_attempts`` calls in all."""
        call.callback_tries += 1
        call.leg, call.agent, call.state = "", None, CallState.WAITING
        rules = self.queues().get(call.queue or self.default_queue)
        await self.agents.release(agent_id, call.uniqueid)
        if call.callback_tries >= rules.callback_attempts:
            log.warning("call %s: call back %d of %d failed (%s); the call ends", call.uniqueid,
                        call.callback_tries, rules.callback_attempts, why)
            self.book.drop(call)
            await self.records.finish(call, self.clock(), None)
            return
        log.info("call %s: call back %d of %d failed (%s); again in %gs, same place", call.uniqueid,
                 call.callback_tries, rules.callback_attempts, why, rules.callback_retry_s)
        try:
            await self.store.save(call)
        except (RedisError, OSError):
            pass
        asyncio.get_running_loop().call_later(rules.callback_retry_s, self._again, call.uniqueid)

    def _again(self, uniqueid: str) -> None:
        call = self.book.get(uniqueid)
        if call is None or not call.callback or call.leg or uniqueid in self.book.waiting:
            return
        self.queueing.requeue(call)            # back in its place: the first queue time is kept

    def answered(self, msg: Mapping[str, str]) -> None:
        """The caller answered the call back (UserEvent HotlineCallbackAnswered): the new leg is the
        same call (one record under the first uniqueid)."""
        call = self.book.get(msg.get("Of", ""))
        if call is None or not call.callback or call.leg not in ("", "pending"):
            return
        call.leg, call.channel = msg.get("Uniqueid", ""), msg.get("Channel", "")
        self.book.follow_leg(call, call.leg)
        self.background.spawn(self.store.save(call))

    def hung_up(self, call: LiveCall, uniqueid: str) -> bool:
        """A channel of a call with a call back hung up; True when that does not end the call."""
        if uniqueid != call.uniqueid and call.leg == "pending":
            # A call back found ringing by recovery (its Originate was the dead process's) ended
            # unanswered: failed, as if its Originate had said so.
            self.background.spawn(self.failed(call, call.agent or "", "not answered"))
            return True
        if uniqueid == call.uniqueid:
            # Virtual hold: the caller hung up after asking for a call back; the place is kept (the
            # call ends with its call-back leg, or when the call back fails).
            if not call.leg or call.leg == "pending":
                call.channel = ""
                waiting = self.book.waiting.get(uniqueid)
                if waiting is not None:
                    waiting.channel = ""
            self.background.spawn(self.store.save(call))
            return True
        return False
