"""Progress query: the caller keys a ticket number, the ticketing system says where it stands.

The ticketing system is asked over HTTP: ``GET <url>`` where ``{ticket}`` in the
configured URL (setting ``tickets_url``) is replaced by the digits the caller
keyed, with a short timeout (``tickets_timeout_s``). It answers ``200`` with JSON
``{"status": "accepted" | "processing" | "completed"}`` or ``404`` for an unknown
ticket. The status is read back with the prompt ``progress-<status>``. Whenever
the ticketing system is slow, down or answers something else, the caller hears
an apology (``progress-unavailable``) and is handed to an agent: a failed query
never leaves the caller alone.
"""
from __future__ import annotations

import asyncio
import json
from typing import Optional

import aiohttp

from .call import Call
from .menu_model import Target

__all__ = ["ProgressQuery", "STATUSES"]

STATUSES = ("accepted", "processing", "completed")
NODE = "progress-query"


class ProgressQuery:
    """The ``progress-query`` service of the menus."""

    def __init__(self, url: Optional[str], *, timeout: float = 1.5, tries: int = 2,
                 digits_timeout_ms: int = 8000, max_digits: int = 20) -> None:
        if url is not None and "{ticket}" not in url:
            raise ValueError("tickets_url must contain {ticket}")
        self.url = url
        self.timeout = timeout
        self.tries = tries
        self.digits_timeout_ms = digits_timeout_ms
        self.max_digits = max_digits

    async def __call__(self, call: Call) -> Target:
        agent = call.plan.fallback
        for _ in range(self.tries):
            ticket = await call.ask(NODE, "progress-ask", self.digits_timeout_ms, self.max_digits)
            if not ticket or not ticket.isdigit():
                continue
            call.path.extra["ticket"] = ticket
            status = await self.lookup(call, ticket)
            call.path.note(NODE, f"status:{status}")
            if status == "not-found":
                await call.play(NODE, "progress-not-found")
                continue
            if status not in STATUSES:
                await call.play(NODE, "progress-unavailable")
                return agent
            await call.play(NODE, f"progress-{status}")
            choice = await call.ask(NODE, "progress-more", 4000, 1)
            if choice == "0":
                return agent
            return Target("hangup", prompt="goodbye")
        return agent

    async def lookup(self, call: Call, ticket: str) -> str:
        """``accepted`` / ``processing`` / ``completed``, ``not-found``, or ``unavailable``."""
        if self.url is None:
            return "unavailable"
        url = self.url.replace("{ticket}", ticket)
        try:
            async with asyncio.timeout(self.timeout):
                async with aiohttp.ClientSession() as http:
                    async with http.get(url, headers={"Accept": "application/json"}) as reply:
                        if reply.status == 404:
                            return "not-found"
                        if reply.status != 200:
                            call.session.log.warning("ticketing system answered %d", reply.status)
                            return "unavailable"
                        body = json.loads(await reply.content.read(65536))
        except TimeoutError:
            call.session.log.warning("ticketing system did not answer within %.1f s", self.timeout)
            return "unavailable"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            call.session.log.warning("ticketing system: %r", exc)
            return "unavailable"
        status = body.get("status") if isinstance(body, dict) else None
        return status if status in STATUSES else "unavailable"
