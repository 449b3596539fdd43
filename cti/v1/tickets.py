"""/api/v1/tickets and /api/v1/calls/{call_id}/ticket: the agent's ticket form (catalogue,
prefill, submit into the outbox), its state, and the admins' view of dead letters (re-send)."""
from __future__ import annotations

from datetime import datetime

from aiohttp import web

from hotline.auth.roles import Role
from hotline.web.api import ApiError, Request
from hotline.web.security import client_address

from ..appkeys import AUDIT, POOL, REDIS
from ..tickets.callfacts import CallFacts, read_call_facts
from ..tickets.deadlines import URGENCY_DAYS, Urgency, deadline_for
from ..tickets.handoff import (HandoffConflict, OutboxState, handoff_view, list_outbox, new_key, resend, submit,
                               ticket_payload, tickets_of_call)
from ..tickets.wiring import TICKETS
from .base import API, decode_cursor, encode_cursor, json_answer
from .schemas import (CallPath, CallTickets, Handoff, OutboxPage, OutboxPath, OutboxQuery, TicketCatalogue,
                      TicketFiled, TicketForm)

FLOOR = (Role.AGENT, Role.SUPERVISOR, Role.ADMIN)
ADMIN = (Role.ADMIN,)


@API.endpoint("GET", "/tickets/catalogue", roles=FLOOR, tag="tickets", response=TicketCatalogue,
              summary="The ticket categories and the working days of each urgency")
async def catalogue(request: Request) -> web.Response:
    tickets = request.app[TICKETS]
    return json_answer({"categories": [c.to_json() for c in tickets.catalogue.categories],
                        "urgency_days": {u.value: days for u, days in URGENCY_DAYS.items()}})


async def _call_of(request: Request) -> CallFacts:
    """The call, if the user may file on it: an agent only on a call that is or was theirs."""
    call_id = request.path.call_id
    facts = await read_call_facts(request.app[REDIS], request.app[POOL], call_id)
    if facts is None:
        raise ApiError(404, f"unknown call {call_id}")
    user = request.user
    if user.role == Role.AGENT and user.agent_id not in facts.handled_by:
        raise ApiError(403, "an agent files tickets on their own calls only")
    return facts


@API.endpoint("GET", "/calls/{call_id}/ticket", roles=FLOOR, tag="tickets", path_model=CallPath,
              response=CallTickets, statuses=(404,),
              summary="The call's tickets (queued, delivered with the ticket id, or dead) and the form's prefill")
async def call_tickets(request: Request) -> web.Response:
    facts = await _call_of(request)
    tickets = request.app[TICKETS]
    rows = [handoff_view(row) for row in await tickets_of_call(request.app[POOL], facts.uniqueid)]
    latest = rows[-1] if rows else None
    category = tickets.catalogue.get(tickets.catalogue.category_for_ivr(facts.ivr_path) or "")
    return json_answer({"call_id": facts.uniqueid, "state": latest["state"] if latest else None,
                        "ticket_id": latest["ticket_id"] if latest else None, "tickets": rows,
                        "prefill": {"category": category.code if category else None,
                                    "urgency": category.urgency.value if category else None,
                                    "caller": facts.caller, "line": facts.line, "agent": facts.agent,
                                    "queue": facts.queue, "recording": facts.recording}})


@API.endpoint("POST", "/calls/{call_id}/ticket", roles=FLOOR, tag="tickets", path_model=CallPath,
              body=TicketForm, response=TicketFiled, success=202, statuses=(404, 409),
              summary="File a ticket on the call: written to the outbox with the call's metadata, then delivered "
                      "to the ticketing system (the same idempotency_key again is the same ticket)")
async def file_ticket(request: Request) -> web.Response:
    form: TicketForm = request.body
    facts = await _call_of(request)
    tickets = request.app[TICKETS]
    category = tickets.catalogue.get(form.category)
    if category is None:
        raise ApiError(400, f"field 'category': {form.category!r} is not in the catalogue", field="category")
    filed_at = datetime.now().astimezone()
    deadline = deadline_for(tickets.calendar, Urgency(form.urgency) if form.urgency else category.urgency,
                            filed_at.date())
    key = form.idempotency_key or new_key()
    payload = ticket_payload(key=key, category=category.to_json(), summary=form.summary.strip(),
                             address=form.address.strip() if form.address else None, deadline=deadline,
                             facts=facts, filed_by=request.user.name, filed_at=filed_at)
    try:
        handoff = await submit(request.app[POOL], key=key, call_uniqueid=facts.uniqueid, kind="ticket",
                               payload=payload, created_by=request.user.name)
    except HandoffConflict as exc:
        raise ApiError(409, str(exc)) from None
    if handoff.created:
        tickets.written()
    return json_answer({**handoff_view(handoff.row), "created": handoff.created}, status=202)


@API.endpoint("GET", "/tickets/outbox", roles=ADMIN, tag="tickets", query=OutboxQuery, response=OutboxPage,
              summary="Hand-offs newest first, paged; state=dead for the dead letters")
async def outbox(request: Request) -> web.Response:
    q: OutboxQuery = request.query
    after = decode_cursor(q.cursor, (int,))
    rows = await list_outbox(request.app[POOL], OutboxState(q.state) if q.state else None,
                             after=after[0] if after else None, limit=q.limit + 1)
    page = [handoff_view(row) for row in rows[:q.limit]]
    return json_answer({"handoffs": page,
                        "next_cursor": encode_cursor(page[-1]["id"]) if len(rows) > q.limit else None})


@API.endpoint("POST", "/tickets/outbox/{id}/resend", roles=ADMIN, tag="tickets", path_model=OutboxPath,
              response=Handoff, statuses=(404,),
              summary="Send a dead letter again (same idempotency key, attempts counted afresh)")
async def resend_dead(request: Request) -> web.Response:
    row = await resend(request.app[POOL], request.path.id)
    if row is None:
        raise ApiError(404, f"no dead letter {request.path.id}")
    request.app[TICKETS].written()
    view = handoff_view(row)
    await request.app[AUDIT].write("ticket_resent", actor=request.user.name, target=str(row["id"]),
                                   address=client_address(request.http),
                                   detail={"call": row["call_uniqueid"], "kind": row["kind"],
                                           "last_error": row["last_error"]})
    return json_answer(view)
