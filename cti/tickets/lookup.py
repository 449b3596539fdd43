"""The caller's open tickets, asked of the ticketing system for the screen pop.

``GET <base_url>/api/tickets?caller=<number>&open=true`` answering ``{"tickets": [...]}``, with a
short timeout: a slow, failing or odd ticketing system gives None (the pop shows "unknown"),
never an exception and never a late pop."""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Optional

import aiohttp

__all__ = ["open_tickets"]

log = logging.getLogger(__name__)

MAX_ANSWER = 256 * 1024
MAX_TICKETS = 20
FIELDS = ("ticket_id", "status", "category", "due", "received_at")


async def open_tickets(session: aiohttp.ClientSession, base_url: str, caller: str,
                       timeout_s: float) -> Optional[list[dict[str, Any]]]:
    """The caller's open tickets (newest first, at most 20), or None when they cannot be known in time."""
    if not caller:
        return []
    url = base_url.rstrip("/") + "/api/tickets"
    try:
        async with asyncio.timeout(timeout_s):
            async with session.get(url, params={"caller": caller, "open": "true"},
                                   headers={"Accept": "application/json"}) as reply:
                if reply.status != 200:
                    log.warning("open tickets of a caller: the ticketing system answered %d", reply.status)
                    return None
                data = json.loads(await reply.content.read(MAX_ANSWER))
    except TimeoutError:
        log.warning("open tickets of a caller: no answer within %.1f s", timeout_s)
        return None
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        log.warning("open tickets of a caller: %s", str(exc) or type(exc).__name__)
        return None
    except Exception:  # noqa: BLE001 - the pop must go out whatever the ticketing system does
        log.exception("open tickets of a caller: unexpected failure")
        return None
    tickets = data.get("tickets") if isinstance(data, dict) else None
    if not isinstance(tickets, list):
        return None
    return [{key: item.get(key) for key in FIELDS if isinstance(item.get(key), (str, int, float, type(None)))}
            for item in tickets[:MAX_TICKETS] if isinstance(item, dict)]
