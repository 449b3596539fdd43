"""The CTI's client of the ACD's internal API: agents' verbs and profiles, routing decisions.

The CTI has checked who asks; it calls the ACD with the service token the two share, naming the
user it acts for (``X-Hotline-Actor``). The ACD's answers pass through: its refusals (404, 409)
as they are, the ACD out of reach as 503.
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Optional

import aiohttp

from hotline.web.api import ApiError
from hotline.web.security import ACTOR_HEADER

__all__ = ["AcdClient"]

log = logging.getLogger(__name__)


class AcdClient:
    def __init__(self, base_url: str, service_token: Optional[str], *, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.service_token = service_token
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: Optional[aiohttp.ClientSession] = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def call(self, method: str, path: str, actor: str, *, body: Any = None, text: Optional[str] = None,
                   content_type: str = "application/json") -> tuple[int, Any]:
        """(status, JSON answer) of the ACD; its refusals raise :class:`ApiError` with its status."""
        if not self.service_token:
            raise ApiError(503, "the ACD cannot be asked: no service token is set (HOTLINE_SERVICE_TOKEN)")
        headers = {"Authorization": f"Bearer {self.service_token}", ACTOR_HEADER: actor}
        data: Optional[str] = None
        if body is not None:
            data = json.dumps(body, ensure_ascii=False)
        elif text is not None:
            data = text
        if data is not None:
            headers["Content-Type"] = content_type
        try:
            async with self._client().request(method, self.base_url + path, data=data, headers=headers) as resp:
                try:
                    answer = await resp.json(content_type=None)
                except ValueError:
                    answer = {"error": (await resp.text())[:200]}
                status = resp.status
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            log.warning("ACD %s %s: %s", method, path, str(exc) or type(exc).__name__)
            raise ApiError(503, "the ACD is unavailable") from None
        if status >= 400:
            message = answer.get("error") if isinstance(answer, dict) else None
            if status in (401, 403):
                log.error("the ACD refused the CTI's service token (%s): are HOTLINE_SERVICE_TOKEN the same?", status)
                raise ApiError(503, "the ACD refused this service (service token)")
            raise ApiError(status if status < 500 else 502, message or f"the ACD answered {status}")
        return status, answer
