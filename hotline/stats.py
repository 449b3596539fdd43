"""Call statistics computed from the PostgreSQL records: the KPIs a 12345 hotline publishes."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

import asyncpg

__all__ = ["call_summary"]

SUMMARY = """
SELECT count(*)                                              AS offered,
       count(*) FILTER (WHERE outcome = 'answered')          AS answered,
       count(*) FILTER (WHERE outcome = 'abandoned')         AS abandoned,
       count(*) FILTER (WHERE outcome = 'ivr_completed')     AS ivr_completed,
       avg(wait_s) FILTER (WHERE outcome = 'answered')       AS avg_wait_s,
       avg(talk_s) FILTER (WHERE outcome = 'answered')       AS avg_talk_s,
       max(talk_s)                                           AS max_talk_s,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY wait_s) FILTER (WHERE outcome = 'answered') AS p90_wait_s
FROM calls
WHERE ($1::timestamptz IS NULL OR arrived_at >= $1) AND ($2::timestamptz IS NULL OR arrived_at < $2)
  AND ($3::text IS NULL OR queue = $3) AND ($4::text IS NULL OR agent = $4) AND ($5::text IS NULL OR line = $5)
"""


async def call_summary(conn: asyncpg.Connection | asyncpg.Pool, since: Optional[datetime] = None,
                       until: Optional[datetime] = None, *, queue: Optional[str] = None, agent: Optional[str] = None,
                       line: Optional[str] = None) -> dict[str, Any]:
    """offered, answered, abandoned, answer_rate, avg_wait_s, avg_talk_s (answered calls), max_talk_s; of
    the calls that arrived in [since, until), of one queue, line or agent (the calls that agent answered)."""
    row = await conn.fetchrow(SUMMARY, since, until, queue, agent, line)
    offered = row["offered"]
    rounded = lambda v: round(float(v), 3) if v is not None else None
    # Calls the IVR served by itself were not offered to an agent: leave them out of the rate.
    to_agents = offered - row["ivr_completed"]
    return {
        "offered": offered,
        "answered": row["answered"],
        "abandoned": row["abandoned"],
        "ivr_completed": row["ivr_completed"],
        "answer_rate": round(row["answered"] / to_agents, 4) if to_agents else None,
        "avg_wait_s": rounded(row["avg_wait_s"]),
        "p90_wait_s": rounded(row["p90_wait_s"]),
        "avg_talk_s": rounded(row["avg_talk_s"]),
        "max_talk_s": rounded(row["max_talk_s"]),
    }
