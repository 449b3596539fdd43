"""Names of the Redis keys the services share: one place, so no two modules spell them differently."""
from __future__ import annotations

__all__ = ["Keys"]


class Keys:
    prefix = "hotline:"

    agents = prefix + "agents"                    # SET of agent ids
    ready = prefix + "ready"                      # ZSET agent id -> epoch it became ready (longest idle first)
    waiting = prefix + "waiting"                  # ZSET call uniqueid -> routing score (priority, then age)
    calls = prefix + "calls"                      # SET of live call uniqueids
    outbox = prefix + "outbox"                    # LIST of JSON rows not yet committed to PostgreSQL
    outbox_dead = prefix + "outbox:dead"          # LIST of rows PostgreSQL refused, kept for an operator
    events = prefix + "events"                    # pub/sub channel: live updates for desktops and wallboards

    @staticmethod
    def agent(agent_id: str) -> str:
        return f"hotline:agent:{agent_id}"        # HASH: name, team, skills, state, state_since, reason, call

    @staticmethod
    def call(uniqueid: str) -> str:
        return f"hotline:call:{uniqueid}"         # HASH: live state of one call

    @staticmethod
    def ivr_path(uniqueid: str) -> str:
        return f"hotline:ivr:{uniqueid}"          # JSON of the caller's path through the IVR
