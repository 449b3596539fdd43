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
    outbox_lock = prefix + "outbox:lock"          # STRING: the outbox writer holding the lease (expires)
    outbox_dead = prefix + "outbox:dead"          # LIST of rows PostgreSQL refused, kept for an operator
    events = prefix + "events"                    # pub/sub channel: live updates for desktops and wallboards
    broadcast = prefix + "broadcast"              # STRING: sound name of the emergency broadcast the IVR plays
    buckets = prefix + "buckets"                  # SET of waiting-call bucket ids "queue:skills"
    bucket_heads = prefix + "buckets:heads"      # ZSET bucket id -> routing score of its first call
    buckets_version = prefix + "buckets:version"  # INT, bumped when a bucket id is added (routers re-read)
    decisions = prefix + "decisions"              # LIST of recent routing explanations (JSON), newest first
    acd_nodes = prefix + "acd:nodes"              # ZSET ACD node name -> epoch of its last lease renewal

    @staticmethod
    def agent(agent_id: str) -> str:
        return f"hotline:agent:{agent_id}"        # HASH: name, team, skills, state, state_since, reason, call,
        #                                           node (the ACD node following the agent's call / wrap-up),
        #                                           pending_reason (not ready after this call), wrapup_until

    @staticmethod
    def ready_skill(skill: str) -> str:
        return f"hotline:ready:skill:{skill}"     # ZSET ready agent id -> its level in that skill

    @staticmethod
    def bucket(bucket_id: str) -> str:
        return f"hotline:wq:{bucket_id}"          # ZSET waiting uniqueid -> routing score, one exact requirement

    @staticmethod
    def busy(day: str) -> str:
        return f"hotline:busy:{day}"              # HASH agent id -> seconds on call or in wrap-up that day

    @staticmethod
    def call(uniqueid: str) -> str:
        return f"hotline:call:{uniqueid}"         # HASH: live state of one call (owner: the ACD node following it)

    @staticmethod
    def ivr_path(uniqueid: str) -> str:
        return f"hotline:ivr:{uniqueid}"          # JSON of the caller's path through the IVR

    @staticmethod
    def handle_times(queue: str) -> str:
        return f"hotline:aht:{queue}"             # LIST: handle seconds of the queue's last calls, newest first

    @staticmethod
    def last_agent(caller: str) -> str:
        return f"hotline:lastagent:{caller}"      # STRING: agent who answered this caller last (expires)

    @staticmethod
    def acd_node(node: str) -> str:
        return f"hotline:acd:node:{node}"         # pub/sub channel of one ACD node: calls handed to it, wrap-up ends

    @staticmethod
    def session(access_hash: str) -> str:
        return f"hotline:auth:session:{access_hash}"  # JSON: who holds this live access token (expires with it)

    @staticmethod
    def sign_in_failures(who: str) -> str:
        return f"hotline:auth:failures:{who}"      # INT: failed sign-ins of a user / from an address (expires)

    @staticmethod
    def survey(uniqueid: str) -> str:
        return f"hotline:survey:{uniqueid}"       # JSON of the satisfaction survey (also in the IVR path)
