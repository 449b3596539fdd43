"""A small ticketing system built in, for the demo and the tests: the stand-in for the city's
real one, on loopback only (it answers loopback clients and nobody else; it has no users).

==================================  ==============================================================
``POST /api/tickets``               a hand-off, signed (cti/tickets/signing.py): 401 for a bad
                                    signature or a timestamp outside the window; the same
                                    ``Idempotency-Key`` again is the same ticket (200, same id)
``GET /api/tickets/{ticket}``       ``{"ticket_id", "status"}`` (accepted, processing, completed)
                                    or 404: what ``ivr/progress.py`` asks
``GET /api/tickets?caller=N&open=true``  the caller's tickets (open ones: not completed)
``GET /``                           what arrived, newest first (callers' numbers masked), as JSON
==================================  ==============================================================

Tickets are kept in PostgreSQL (table ``ticketing_received``), so a restarted receiver still
knows every key it answered. Ticket ids are 10 random digits (the caller keys them at the IVR).
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import asyncpg
from aiohttp import web

from .signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, WINDOW_S, verify

__all__ = ["Receiver", "make_receiver", "start_receiver"]

log = logging.getLogger(__name__)

MAX_BODY = 256 * 1024
KEY_MAX = 128
STATUSES = ("accepted", "processing", "completed")
UPSERT = """
INSERT INTO ticketing_received (idempotency_key, ticket_id, caller, kind, payload) VALUES ($1, $2, $3, $4, $5::jsonb)
ON CONFLICT (idempotency_key) DO UPDATE SET deliveries = ticketing_received.deliveries + 1
RETURNING ticket_id, deliveries
"""


@dataclass
class ReceiverState:
    pool: asyncpg.Pool
    secret: str
    window_s: float
    clock: Callable[[], float]
    posts: int = 0              # POSTs answered 2xx (a retry counts again)
    refused: int = 0            # POSTs refused (signature, timestamp, body)


STATE = web.AppKey("tickets.receiver", ReceiverState)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _mask(number: Optional[str]) -> Optional[str]:
    if not number or len(number) <= 4:
        return number and "*" * len(number)
    return number[:3] + "*" * max(len(number) - 7, 1) + number[-4:]


@web.middleware
async def _loopback_only(request: web.Request, handler) -> web.StreamResponse:
    try:
        local = ipaddress.ip_address((request.remote or "").split("%")[0]).is_loopback
    except ValueError:
        local = False
    if not local:
        return _error(403, "the built-in ticketing receiver answers loopback clients only")
    try:
        return await handler(request)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncio.TimeoutError) as exc:
        log.warning("ticketing receiver: store unavailable: %s", str(exc) or type(exc).__name__)
        return _error(503, "ticket store unavailable")


def make_receiver(pool: asyncpg.Pool, secret: str, *, window_s: float = WINDOW_S,
                  clock: Callable[[], float] = time.time) -> web.Application:
    app = web.Application(middlewares=[_loopback_only], client_max_size=MAX_BODY)
    app[STATE] = ReceiverState(pool, secret, window_s, clock)
    app.add_routes([web.post("/api/tickets", receive), web.get("/api/tickets/{ticket}", ticket_status),
                    web.get("/api/tickets", caller_tickets), web.get("/", listing)])
    return app


async def receive(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await request.read()
    why = verify(state.secret, request.headers.get(TIMESTAMP_HEADER), request.headers.get(SIGNATURE_HEADER), body,
                 state.clock(), state.window_s)
    if why is not None:
        state.refused += 1
        log.warning("ticketing receiver: refused a hand-off: %s", why)
        return _error(401, why)
    key = request.headers.get(IDEMPOTENCY_HEADER, "")
    if not key or len(key) > KEY_MAX or not key.isprintable():
        state.refused += 1
        return _error(400, f"{IDEMPOTENCY_HEADER} is required (at most {KEY_MAX} characters)")
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or doc.get("kind") not in ("ticket", "call"):
        state.refused += 1
        return _error(400, "the body must be a JSON object with kind 'ticket' or 'call'")
    if doc.get("idempotency_key", key) != key:
        state.refused += 1
        return _error(400, f"{IDEMPOTENCY_HEADER} differs from the body's idempotency_key")
    caller = doc.get("caller") if isinstance(doc.get("caller"), str) else None
    for _ in range(5):          # a new random id that happens to be taken: draw again
        ticket_id = str(1_000_000_000 + secrets.randbelow(9_000_000_000)) if doc["kind"] == "ticket" else None
        try:
            row = await state.pool.fetchrow(UPSERT, key, ticket_id, caller, doc["kind"], body.decode("utf-8"))
            break
        except asyncpg.UniqueViolationError:
            continue
    else:
        return _error(503, "no free ticket id")
    assert row is not None
    state.posts += 1
    again = row["deliveries"] > 1
    if again:
        log.info("ticketing receiver: key %s again (%d times): ticket %s", key, row["deliveries"], row["ticket_id"])
    return web.json_response({"ticket_id": row["ticket_id"], "status": "accepted", "duplicate": again},
                             status=200 if again else 201)


async def ticket_status(request: web.Request) -> web.Response:
    ticket = request.match_info["ticket"]
    if not ticket.isdigit() or len(ticket) > 20:
        return _error(404, "no such ticket")
    row = await request.app[STATE].pool.fetchrow(
        "SELECT ticket_id, status FROM ticketing_received WHERE ticket_id = $1", ticket)
    if row is None:
        return _error(404, "no such ticket")
    return web.json_response({"ticket_id": row["ticket_id"], "status": row["status"]})


async def caller_tickets(request: web.Request) -> web.Response:
    caller = request.query.get("caller", "")
    if not caller or len(caller) > 32 or not all(ch.isdigit() or ch in "+*#" for ch in caller):
        return _error(400, "parameter 'caller': the caller's number")
    only_open = request.query.get("open", "false").lower() in ("1", "true", "yes")
    rows = await request.app[STATE].pool.fetch(
        "SELECT ticket_id, status, payload->'ticket'->>'category' AS category, "
        "payload->'ticket'->'deadline'->>'due' AS due, received_at FROM ticketing_received "
        "WHERE caller = $1 AND kind = 'ticket' AND ($2 = false OR status <> 'completed') "
        "ORDER BY received_at DESC LIMIT 20", caller, only_open)
    return web.json_response({"tickets": [{"ticket_id": r["ticket_id"], "status": r["status"],
                                           "category": r["category"], "due": r["due"],
                                           "received_at": r["received_at"].isoformat()} for r in rows]})


async def listing(request: web.Request) -> web.Response:
    state = request.app[STATE]
    rows = await state.pool.fetch(
        "SELECT ticket_id, kind, caller, status, deliveries, received_at, payload->'ticket'->>'category' AS category, "
        "payload->'ticket'->>'summary' AS summary FROM ticketing_received ORDER BY id DESC LIMIT 50")
    total = await state.pool.fetchval("SELECT count(*) FROM ticketing_received")
    return web.json_response({
        "what": "the built-in ticketing receiver (a demo stand-in for the city's ticketing system)",
        "received": total, "posts": state.posts, "refused": state.refused,
        "latest": [{"ticket_id": r["ticket_id"], "kind": r["kind"], "caller": _mask(r["caller"]),
                    "status": r["status"], "category": r["category"], "summary": r["summary"],
                    "deliveries": r["deliveries"], "received_at": r["received_at"].isoformat()} for r in rows]},
        dumps=lambda value: json.dumps(value, ensure_ascii=False))


@dataclass
class Receiver:
    runner: web.AppRunner
    app: web.Application
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> str:
        return f"{self.base_url}/api/tickets"

    @property
    def progress_url(self) -> str:
        return f"{self.base_url}/api/tickets/{{ticket}}"

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_receiver(pool: asyncpg.Pool, secret: str, *, port: int = 0, **kw: Any) -> Receiver:
    """Serve the receiver on 127.0.0.1 (port 0: a free one); the caller must ``await stop()``."""
    app = make_receiver(pool, secret, **kw)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    bound = next(int(a[1]) for a in runner.addresses if isinstance(a, tuple))
    log.info("ticketing receiver (built in, loopback only) on http://127.0.0.1:%d", bound)
    return Receiver(runner, app, bound)
