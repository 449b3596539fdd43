"""The agent's verbs from the SIP phone: feature codes dialled in the dialplan's ``[agents]``
context raise ``UserEvent(HotlineAgent, Agent: ${CHANNEL(endpoint)}, Action: ...)``: ``*41`` log
in, ``*42`` log out, ``*43`` ready, ``*44N`` not ready (1 break, 2 meal, 3 training, 4 meeting).
They go to the same agent service as the HTTP API.
"""
from __future__ import annotations

import logging
from typing import Awaitable, Mapping

from hotline.tasks import Background

from .agent_service import AgentChange, AgentService
from .agents import AgentError
from .ownership import Ownership

__all__ = ["FeatureCodes", "REASON_DIGITS"]

log = logging.getLogger(__name__)

REASON_DIGITS = {"1": "break", "2": "meal", "3": "training", "4": "meeting"}


class FeatureCodes:
    def __init__(self, agents: AgentService, ownership: Ownership, background: Background) -> None:
        self.agents = agents
        self.ownership = ownership
        self.background = background

    def on_event(self, msg: Mapping[str, str]) -> None:
        agent_id, action = msg.get("Agent", ""), msg.get("Action", "")
        # Only the agent's own phone, in the agents' context, speaks for the agent.
        if msg.get("Context") != "agents" or not msg.get("Channel", "").startswith(f"PJSIP/{agent_id}-"):
            log.warning("feature code from %s ignored (agent %r)", msg.get("Channel"), agent_id)
            return
        if not self.ownership.owns(msg.get("Linkedid") or msg.get("Uniqueid", "")):
            return                      # one node acts on it
        if agent_id not in self.agents.directory.agents:
            log.warning("feature code %s from unknown agent %r", action, agent_id)
            return
        reason = REASON_DIGITS.get(msg.get("Reason", ""), "")
        verb: Awaitable[AgentChange]
        if action == "login":
            verb = self.agents.login(agent_id)
        elif action == "ready":
            verb = self.agents.ready(agent_id)
        elif action == "logout":
            verb = self.agents.logout(agent_id)
        elif action == "not_ready" and reason:
            verb = self.agents.not_ready(agent_id, reason)
        else:
            log.warning("agent %s: feature code %s not understood", agent_id, action)
            return
        self.background.spawn(self._run(agent_id, action, verb))

    @staticmethod
    async def _run(agent_id: str, action: str, verb: Awaitable[AgentChange]) -> None:
        try:
            change = await verb
        except AgentError as exc:
            log.warning("agent %s: feature code %s refused: %s", agent_id, action, exc)
            return
        if not change.stored:
            log.warning("agent %s: %s kept in memory until Redis is back", agent_id, action)
