"""Who may do what: the roles, the signed-in principal, and the rules that scope an agent to their
own seat and a supervisor to their teams. Rules on plain data, no I/O.

========== =====================================================================
agent      bound to one agent id (the extension): their own state and calls only
supervisor the floor (live view, agents' states, decisions), limited to ``teams`` if set
ops        statistics and exports
quality    recordings (for quality checks)
admin      users, agents, configuration, the audit trail
========== =====================================================================
"""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Optional

__all__ = ["Principal", "Role", "USERNAME", "valid_username"]

USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


def valid_username(name: str) -> bool:
    return bool(USERNAME.fullmatch(name))


class Role(enum.StrEnum):
    AGENT = "agent"
    SUPERVISOR = "supervisor"
    OPS = "ops"
    QUALITY = "quality"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    """Who is asking: a signed-in user, or another service of the hotline (``service``)."""

    username: str
    role: Optional[Role]                 # None for a service
    agent_id: Optional[str] = None       # an agent's own agent id
    teams: tuple[str, ...] = ()          # a supervisor's teams (empty: every team)
    service: bool = False
    session_id: Optional[int] = None

    def has(self, *roles: Role) -> bool:
        return self.service or self.role in roles

    def _reaches(self, agent_id: str, team: Optional[str], every: tuple[Role, ...]) -> bool:
        """A service and the roles of ``every`` reach any agent; an agent only themself; a
        supervisor the agents of their teams (all, with no teams set)."""
        if self.service or self.role in every:
            return True
        if self.role == Role.AGENT:
            return agent_id == self.agent_id
        if self.role == Role.SUPERVISOR:
            return not self.teams or team in self.teams
        return False

    def may_see_agent(self, agent_id: str, team: Optional[str]) -> bool:
        """Admins and ops see every agent; an agent themself; a supervisor their teams."""
        return self._reaches(agent_id, team, (Role.ADMIN, Role.OPS))

    def may_change_agent(self, agent_id: str, team: Optional[str]) -> bool:
        """Admins change any agent; an agent their own state; a supervisor their teams' agents."""
        return self._reaches(agent_id, team, (Role.ADMIN,))

    @property
    def name(self) -> str:
        return f"service:{self.username}" if self.service else self.username
