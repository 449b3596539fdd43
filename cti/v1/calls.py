"""/api/v1/calls and /api/v1/stats: the call records and the KPIs computed from them."""
from __future__ import annotations

import asyncio
from datetime import datetime

from aiohttp import web

from hotline.auth.roles import Role
from hotline.stats import call_summary
from hotline.web.api import ApiError, Request

from ..appkeys import AUDIT, POOL
from ..records import CallFilter, call_page, record_view
from .base import API, decode_cursor, encode_cursor, json_answer, local
from .schemas import CallsPage, CallsQuery, Stats, StatsQuery

QUERY_TIMEOUT_S = 15.0


def mask_number(number: str | None) -> str | None:
    """A caller's number as ops see it: enough to tell calls apart, not to call the citizen."""
    if not number:
        return number
    if len(number) <= 4:
        return "*" * len(number)
    keep = 3 if len(number) >= 8 else 1
    return number[:keep] + "*" * (len(number) - keep - 4) + number[-4:]


@API.endpoint("GET", "/calls", roles=(Role.AGENT, Role.SUPERVISOR, Role.OPS, Role.ADMIN), tag="calls",
              summary="Call records, newest first, paged; an agent gets their own calls only; ops see callers' "
                      "numbers masked",
              query=CallsQuery, response=CallsPage)
async def list_calls(request: Request) -> web.Response:
    q: CallsQuery = request.query
    user = request.user
    agent = q.agent
    if user.role == Role.AGENT:
        if agent is not None and agent != user.agent_id:
            raise ApiError(403, "an agent sees only their own calls")
        agent = user.agent_id
    since, until = local(q.since), local(q.until)
    if since is not None and until is not None and until <= since:
        raise ApiError(400, "parameter 'until': must be later than 'since'", parameter="until")
    after = decode_cursor(q.cursor, (datetime, int))
    where = CallFilter(since, until, q.queue, agent, q.outcome, q.line, q.caller)
    async with asyncio.timeout(QUERY_TIMEOUT_S):
        rows = await call_page(request.app[POOL], where, limit=q.limit + 1,
                               after=(after[0], after[1]) if after else None)
    page = [record_view(row) for row in rows[:q.limit]]
    if user.role == Role.OPS:
        for row in page:
            row["caller_id"] = mask_number(row["caller_id"])
    next_cursor = encode_cursor(rows[q.limit - 1]["arrived_at"], rows[q.limit - 1]["id"]) if len(rows) > q.limit \
        else None
    if q.caller is not None and user.role != Role.AGENT:
        # Looking a citizen up by number is an access to their personal data: on record.
        await request.app[AUDIT].write("calls_by_caller", actor=user.name, target=mask_number(q.caller),
                                       detail={"rows": len(page)}, address=request.http.remote)
    return json_answer({"calls": page, "next_cursor": next_cursor})


@API.endpoint("GET", "/stats", roles=(Role.SUPERVISOR, Role.OPS, Role.ADMIN), tag="calls",
              summary="KPIs of the calls that arrived in [since, until), of one queue, line or agent",
              query=StatsQuery, response=Stats)
async def stats(request: Request) -> web.Response:
    q: StatsQuery = request.query
    since, until = local(q.since), local(q.until)
    if since is not None and until is not None and until <= since:
        raise ApiError(400, "parameter 'until': must be later than 'since'", parameter="until")
    async with asyncio.timeout(QUERY_TIMEOUT_S):
        summary = await call_summary(request.app[POOL], since=since, until=until, queue=q.queue, agent=q.agent,
                                     line=q.line)
    return json_answer({"since": since, "until": until, "queue": q.queue, "agent": q.agent, "line": q.line,
                        **summary})
