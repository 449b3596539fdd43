"""The agent service: every change of an agent goes through here, whoever asks for it.

- **Verbs** (the HTTP API, the phone's feature codes, the desktop): log in, log out, ready, not
  ready with a reason (now, or after this call: a pending reason applied when wrap-up ends),
  extend or end wrap-up, add or change, import, remove. A change the state machine
  refuses raises :class:`AgentError`.
- **The ACD's own steps** (a call answered, ended, not answered, recovery's repairs): the same
  state machine; a refusal is logged, not raised (the event that asked came too late).

On every path the change is checked by the state machine of ``acd/agents.py`` (compare-and-set in
Redis). With Redis down it is kept in memory and written back when Redis answers again
(acd/writeback.py); the result says so (``stored``).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Callable, Iterable

from redis.exceptions import RedisError

from hotline.keys import Keys
from hotline.model import NOT_READY_REASONS, AgentState

from .agents import TRANSITIONS, Agent, AgentDirectory, AgentError
from .router import AgentChanged, Router
from .routing import Routing
from .wrapups import Wrapups
from .writeback import WriteBack

__all__ = ["AgentChange", "AgentService"]

log = logging.getLogger(__name__)

# Where "not ready after this call" may be asked: on a call, or ringing for one, or wrapping it up.
AFTER_CALL_STATES = (AgentState.RESERVED, AgentState.ON_CALL, AgentState.WRAPUP)


@dataclass
class AgentChange:
    agent: Agent
    stored: bool = True             # False: kept in memory until Redis answers again


class AgentService:
    def __init__(self, directory: AgentDirectory, router: Router, routing: Routing, writeback: WriteBack,
                 wrapups: Wrapups, *, clock: Callable[[], float]) -> None:
        self.directory = directory
        self.router = router
        self.routing = routing
        self.writeback = writeback
        self.wrapups = wrapups
        self.clock = clock

    # ---- verbs ---------------------------------------------------------------------------
    async def login(self, agent_id: str, reason: str = "") -> AgentChange:
        """Log in ready (offered the best waiting call at once), or not ready for ``reason``."""
        agent = self.directory.get(agent_id)
        if agent.state != AgentState.LOGGED_OUT:
            raise AgentError(f"agent {agent_id} is already logged in ({agent.state.value})")
        if reason:
            return await self.not_ready(agent_id, reason)
        return await self.ready(agent_id)

    async def ready(self, agent_id: str) -> AgentChange:
        agent = self.directory.get(agent_id)
        if AgentState.READY not in TRANSITIONS[agent.state] and agent.state != AgentState.READY:
            raise AgentError(f"agent {agent_id}: {agent.state.value} -> ready is not allowed")
        await self._drop_pending(agent_id)
        stored = await self.free(agent_id)
        return AgentChange(self.directory.get(agent_id), stored)

    async def not_ready(self, agent_id: str, reason: str) -> AgentChange:
        if reason not in NOT_READY_REASONS:
            raise AgentError(f"reason must be one of {', '.join(NOT_READY_REASONS)}")
        change = await self._change(agent_id, AgentState.NOT_READY, reason=reason)
        await self._drop_pending(agent_id)
        return change

    async def logout(self, agent_id: str) -> AgentChange:
        change = await self._change(agent_id, AgentState.LOGGED_OUT)
        await self._drop_pending(agent_id)
        return change

    async def not_ready_after_call(self, agent_id: str, reason: str) -> Agent:
        """Not ready once this call's wrap-up ends, instead of ready (kept in the agent's hash, so
        the desktop shows it and whichever node ends the wrap-up applies it)."""
        if reason not in NOT_READY_REASONS:
            raise AgentError(f"reason must be one of {', '.join(NOT_READY_REASONS)}")
        agent = self.directory.get(agent_id)
        if agent.state not in AFTER_CALL_STATES:
            raise AgentError(f"agent {agent_id} is {agent.state.value}, not on a call: "
                             "be not ready now instead of after this call")
        await self._set_pending(agent_id, reason)
        return agent

    async def cancel_after_call(self, agent_id: str) -> Agent:
        """Ready after this call after all (the pending not-ready reason withdrawn)."""
        agent = self.directory.get(agent_id)
        if not agent.pending_reason and not await self.directory.redis.hget(Keys.agent(agent_id), "pending_reason"):
            raise AgentError(f"agent {agent_id}: no not-ready-after-this-call to cancel")
        await self._set_pending(agent_id, "")
        return agent

    async def end_wrapup(self, agent_id: str) -> AgentChange:
        """Wrap-up over now: ready and offered the best waiting call (or not ready, if the agent
        asked for it after this call). The wrap-up timer finds the agent changed and stops."""
        agent = self.directory.get(agent_id)
        if agent.state != AgentState.WRAPUP:
            raise AgentError(f"agent {agent_id} is {agent.state.value}, not in wrap-up")
        stored = await self._wrapup_over(agent_id)
        self.wrapups.wake(agent_id)
        return AgentChange(self.directory.get(agent_id), stored)

    async def _set_pending(self, agent_id: str, reason: str) -> None:
        redis = self.directory.redis
        key = Keys.agent(agent_id)
        async with redis.pipeline(transaction=True) as pipe:
            if reason:
                pipe.hset(key, "pending_reason", reason)
            else:
                pipe.hdel(key, "pending_reason")
            pipe.publish(Keys.events, json.dumps({"type": "agent_pending", "agent": agent_id,
                                                  "pending_reason": reason}))
            await pipe.execute()
        agent = self.directory.agents.get(agent_id)
        if agent is not None:
            agent.pending_reason = reason

    async def _drop_pending(self, agent_id: str) -> None:
        """A state chosen now outdates a reason asked for after the call (it would else apply
        after the next one)."""
        try:
            if await self.directory.redis.hdel(Keys.agent(agent_id), "pending_reason"):
                await self.directory.redis.publish(Keys.events, json.dumps(
                    {"type": "agent_pending", "agent": agent_id, "pending_reason": ""}))
        except (RedisError, OSError) as exc:
            log.warning("agent %s: pending reason not withdrawn: %s", agent_id, exc)
        agent = self.directory.agents.get(agent_id)
        if agent is not None:
            agent.pending_reason = ""

    async def _take_pending(self, agent_id: str) -> str:
        """The reason asked for after this call, withdrawn as it is applied ("" if none)."""
        try:
            async with self.directory.redis.pipeline(transaction=True) as pipe:
                pipe.hget(Keys.agent(agent_id), "pending_reason")
                pipe.hdel(Keys.agent(agent_id), "pending_reason")
                reason, _ = await pipe.execute()
        except (RedisError, OSError) as exc:
            agent = self.directory.agents.get(agent_id)
            reason = agent.pending_reason if agent is not None else ""
            log.warning("agent %s: pending reason read from memory (%r): %s", agent_id, reason, exc)
        agent = self.directory.agents.get(agent_id)
        if agent is not None:
            agent.pending_reason = ""
        return reason if reason in NOT_READY_REASONS else ""

    async def _wrapup_over(self, agent_id: str) -> bool:
        reason = await self._take_pending(agent_id)
        if reason:
            return await self.change(agent_id, AgentState.NOT_READY, reason=reason)
        return await self.free(agent_id)

    async def extend_wrapup(self, agent_id: str, seconds: float) -> float:
        """Longer wrap-up (the agent finishes the ticket); returns its new end."""
        return await self.wrapups.extend(agent_id, seconds)

    async def save(self, agent_id: str, name: str, team: str, skills: dict[str, int]) -> Agent:
        """Add an agent or change one's name, team and skills; the routing indexes follow at once."""
        agent = await self.directory.upsert(agent_id, name, team, skills)
        await self.router.prepare([agent.skills])
        if agent.state == AgentState.READY:
            self.routing.offer_agent(agent_id)        # new skills may fit a waiting call
        return agent

    async def import_agents(self, rows: Iterable[tuple[str, str, str, dict[str, int]]]) -> int:
        rows = list(rows)
        for agent_id, name, team, skills in rows:
            await self.directory.upsert(agent_id, name, team, skills)
        await self.router.prepare(skills for _, _, _, skills in rows)
        return len(rows)

    async def remove(self, agent_id: str) -> None:
        await self.directory.remove(agent_id)

    async def _change(self, agent_id: str, state: AgentState, *, reason: str = "", call: str = "") -> AgentChange:
        try:
            agent = await self.directory.transition(agent_id, state, reason=reason, call=call)
        except (RedisError, OSError) as exc:
            log.warning("agent %s -> %s kept in memory until Redis is back: %s", agent_id, state.value, exc)
            self.writeback.failed()
            return AgentChange(self.directory.get(agent_id), stored=False)
        finally:
            if state == AgentState.READY:
                self.routing.offer_agent(agent_id)
        return AgentChange(agent)

    # ---- the ACD's own steps -------------------------------------------------------------
    async def change(self, agent_id: str, state: AgentState, *, reason: str = "", call: str = "") -> bool:
        """As the calls ask (answered: on call; not answered: not ready; ...). A change the state
        machine refuses is logged; False when it is kept in memory until Redis answers."""
        try:
            return (await self._change(agent_id, state, reason=reason, call=call)).stored
        except AgentError as exc:
            log.warning("%s", exc)
            return True

    async def free(self, agent_id: str, _again: bool = True) -> bool:
        """The agent becomes ready and is offered the best waiting call, in one script (a
        returning caller waiting for this agent is taken first). False: kept in memory."""
        now = self.clock()
        try:
            step = self.directory.ready_step(agent_id, now)
        except AgentError as exc:
            log.warning("%s", exc)
            return True
        try:
            decision = await self.router.offer(agent_id, self.directory.get(agent_id).skills, now,
                                               becoming_ready=step)
        except AgentChanged as exc:
            # Another node (or request) changed the agent since our copy: check again with Redis's.
            log.info("%s; ready checked again", exc)
            if _again and await self.directory.reload(agent_id) is not None:
                return await self.free(agent_id, _again=False)
            return True
        except (RedisError, OSError):
            return await self.change(agent_id, AgentState.READY)      # kept in memory, saved later
        self.directory.became_ready(agent_id, now)
        if decision is not None:
            await self.routing.decided(decision)
        return True

    async def release(self, agent_id: str, call: str) -> None:
        """The agent reserved for this call is free again (the call ended or moved on, or ringing
        the agent failed)."""
        agent = self.directory.agents.get(agent_id)
        if agent is not None and agent.state == AgentState.RESERVED and agent.call == call:
            await self.change(agent_id, AgentState.READY)

    async def start_wrapup(self, agent_id: str) -> None:
        """The agent's leg of the call ended: wrap-up, then ready when it runs out."""
        await self.change(agent_id, AgentState.WRAPUP)
        if await self.wrapups.run(self.directory.get(agent_id)):
            await self._wrapup_over(agent_id)

    def wrapup_for(self, agent_id: str) -> float:
        return self.wrapups.seconds_for(agent_id)
