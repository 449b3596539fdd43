"""A user as stored (table ``users``), read from its row."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional

import asyncpg

from .roles import Principal, Role

__all__ = ["COLUMNS", "User", "user_from_row"]


@dataclass(frozen=True)
class User:
    id: int
    username: str
    role: Role
    agent_id: Optional[str]
    teams: tuple[str, ...]
    disabled: bool
    created_at: datetime
    updated_at: datetime

    def principal(self, session_id: Optional[int] = None) -> Principal:
        return Principal(self.username, self.role, self.agent_id, self.teams, session_id=session_id)

    def to_json(self) -> dict[str, Any]:
        return {"username": self.username, "role": self.role.value, "agent_id": self.agent_id,
                "teams": list(self.teams), "disabled": self.disabled, "created_at": self.created_at.isoformat(),
                "updated_at": self.updated_at.isoformat()}


COLUMNS = "id, username, role, agent_id, teams, disabled, created_at, updated_at"


def user_from_row(row: asyncpg.Record) -> User:
    return User(row["id"], row["username"], Role(row["role"]), row["agent_id"], tuple(row["teams"]),
                row["disabled"], row["created_at"], row["updated_at"])


