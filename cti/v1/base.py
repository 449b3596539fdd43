"""The API object every /api/v1 module registers its endpoints with, and what they share."""
from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any, Optional

from aiohttp import web

from hotline.auth.roles import Role
from hotline.web.api import Api, ApiError

__all__ = ["API", "ANY_ROLE", "decode_cursor", "encode_cursor", "json_answer", "local"]

API = Api("/api/v1", title="12345 hotline", version="1",
          description="The hotline's API: sign-in, call records and statistics, agents, the floor's live view, "
                      "users and the audit trail. Every endpoint but sign-in and this document needs a signed-in "
                      "role (x-roles); an agent sees and changes only their own seat and calls.")

ANY_ROLE = tuple(Role)


def json_answer(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda value: json.dumps(value, ensure_ascii=False,
                                                                                 default=_default))


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone().isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def local(value: Optional[datetime]) -> Optional[datetime]:
    """A date-time without an offset is the hotline's local time."""
    if value is None:
        return None
    return value.astimezone() if value.tzinfo is None else value


def encode_cursor(*values: Any) -> str:
    raw = json.dumps(values, separators=(",", ":"), default=_default).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: Optional[str], types: tuple[type, ...]) -> Optional[list[Any]]:
    if text is None:
        return None
    try:
        values = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if not isinstance(values, list) or len(values) != len(types):
            raise ValueError
        return [datetime.fromisoformat(v) if t is datetime else t(v) for v, t in zip(values, types)]
    except (ValueError, TypeError, UnicodeDecodeError):
        raise ApiError(400, "parameter 'cursor': not a cursor of this list", parameter="cursor") from None
