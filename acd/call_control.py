"""The ACD's call control for the desktop: hang up the agent's leg, transfer the caller (to a queue,
an agent, a policy specialist or an emergency line), allow one more transfer (supervisors).

The rules are acd/transfers.py; here they meet Redis and AMI. A transfer is checked and noted in the
call hash by one script (acd/lua/transfer.lua: still the agent's conversation, the 12345 rule of one
transfer, a target agent still ready and then reserved), then sent to Asterisk (``Setvar`` of the
caller's queue variables, ``BlindTransfer`` of the agent's leg). Asterisk refusing it undoes the
note. The node following the call learns of the transfer from the ``BlindTransfer`` event
(acd/events.py), whichever node sent it; the record (acd/records.py) takes the transfers from the
call hash.
"""
from __future__ import annotations

import json
import logging
import uuid
from typing import Any, Callable, Iterable, Optional

from redis.asyncio import Redis

from hotline.keys import Keys

from . import scripts
from .agent_service import AgentService
from .agents import AgentDirectory
from .connector import ActionFailed, Connector
from .queues import QueueBook
from .transfers import (EMERGENCY_NUMBERS, MAX_TRANSFERS, ONCE_ONLY, TransferError, TransferMode, destination,
                        transfer_entry)

__all__ = ["CallControl"]

log = logging.getLogger(__name__)

TRANSFER = scripts.load("transfer", EVENTS=Keys.events)
TRANSFER_UNDO = scripts.load("transfer_undo")
TRANSFER_ALLOW = scripts.load("transfer_allow")


class CallControl:
    def __init__(self, redis: Redis, directory: AgentDirectory, agents: AgentService, connector: Connector, *,
                 queues: Callable[[], QueueBook], default_queue: str, specialists: Iterable[str] = (),
                 clock: Callable[[], float]) -> None:
        self.redis = redis
        self.directory = directory
        self.agents = agents
        self.connector = connector
        self.queues = queues
        self.default_queue = default_queue
        self.specialists = tuple(specialists)
        self.clock = clock
        self._transfer = redis.register_script(TRANSFER)
        self._undo = redis.register_script(TRANSFER_UNDO)
        self._allow = redis.register_script(TRANSFER_ALLOW)

    def queue_names(self) -> list[str]:
        return sorted({*self.queues().queues, self.default_queue})

    def targets(self) -> dict[str, Any]:
        """What the desktop's transfer menu offers."""
        return {"queues": self.queue_names(), "specialists": list(self.specialists),
                "emergency": [{"number": n, "service": s} for n, s in EMERGENCY_NUMBERS.items()],
                "max_transfers": MAX_TRANSFERS}

    async def call(self, uniqueid: str) -> dict[str, str]:
        """The live call's hash; 404 when it is not live."""
        data = await self.redis.hgetall(Keys.call(uniqueid))
        if not data:
            raise TransferError(404, f"no live call {uniqueid}")
        return data

    async def hangup(self, uniqueid: str) -> dict[str, Any]:
        """End the agent's leg: the caller, still on the line, goes on to the survey (Dial's g)."""
        data = await self.call(uniqueid)
        channel = self._agent_leg(uniqueid, data)
        try:
            await self.connector.hangup(channel)
        except ActionFailed as exc:
            raise TransferError(409, f"call {uniqueid}: Asterisk did not hang up {channel}: {exc}") from None
        return {"call": uniqueid, "agent": data.get("agent"), "hung_up": channel}

    async def transfer(self, uniqueid: str, kind: str, target: str, *, by: str, mode: str = "blind",
                       skills: Optional[str] = None) -> dict[str, Any]:
        """Transfer the caller; :class:`TransferError` says why not (the once-only rule: 409)."""
        if mode != TransferMode.BLIND:
            raise TransferError(400, "mode: only blind transfers are offered")
        data = await self.call(uniqueid)
        transferer = data.get("agent") or ""
        channel = self._agent_leg(uniqueid, data)
        dest = destination(kind, target, queues=self.queue_names(), specialists=self.specialists,
                           skills=data.get("skills", "") if skills is None else skills,
                           priority=int(data.get("priority") or 0), transferer=transferer)
        if dest.agent and dest.agent not in self.directory.agents:
            raise TransferError(409, f"unknown agent {dest.agent}: the call stays with agent {transferer}")
        now = self.clock()
        entry = transfer_entry(kind, target, mode, round(now, 3), by, transferer=transferer,
                               entry_id=uuid.uuid4().hex[:12])
        agent_key = Keys.agent(dest.agent) if dest.agent else Keys.call(uniqueid)
        result = await self._transfer(
            keys=[Keys.call(uniqueid), agent_key, Keys.ready],
            args=[transferer, _json(entry), MAX_TRANSFERS, dest.agent, repr(now), Keys.ready_skill(""),
                  Keys.agent(""), uniqueid])
        if int(result[0]) != 1:
            raise self._refused(uniqueid, result, dest.agent)
        if dest.agent:
            self.directory.reserved(dest.agent, uniqueid, now, str(result[1]))
        try:
            for name, value in dest.variables:
                await self.connector.setvar(data.get("channel", ""), name, value)
            await self.connector.blind_transfer(channel, dest.context, dest.exten)
        except ActionFailed as exc:
            await self._undo(keys=[Keys.call(uniqueid)], args=[entry["id"], transferer])
            if dest.agent:
                await self.agents.release(dest.agent, uniqueid)
            raise TransferError(409, f"call {uniqueid}: Asterisk refused the transfer ({exc}); "
                                     f"the call stays with agent {transferer}") from None
        log.info("call %s transferred by %s: %s %s (%s)", uniqueid, by, kind, target, mode)
        return {"call": uniqueid, "transfer": entry}

    async def allow(self, uniqueid: str) -> int:
        """One more transfer allowed for this call (a supervisor's decision); the allowances now."""
        allowed = int(await self._allow(keys=[Keys.call(uniqueid)]))
        if allowed < 0:
            raise TransferError(404, f"no live call {uniqueid}")
        return allowed

    @staticmethod
    def _agent_leg(uniqueid: str, data: dict[str, str]) -> str:
        channel = data.get("agent_channel", "")
        if data.get("state") != "talking" or not data.get("agent") or not channel:
            raise TransferError(409, f"call {uniqueid} is not in conversation with an agent "
                                     f"({data.get('state', 'unknown')})")
        return channel

    @staticmethod
    def _refused(uniqueid: str, result: list[Any], agent: str) -> TransferError:
        why, detail = str(result[1]), str(result[2]) if len(result) > 2 else ""
        if why == "gone":
            return TransferError(404, f"no live call {uniqueid}")
        if why == "once":
            return TransferError(409, ONCE_ONLY)
        if why == "agent":
            return TransferError(409, f"agent {agent} is {detail}, not ready: transfer to a ready agent or a queue")
        return TransferError(409, f"call {uniqueid} is no longer this agent's conversation")


def _json(entry: dict[str, Any]) -> str:
    return json.dumps(entry, ensure_ascii=False, separators=(",", ":"))
