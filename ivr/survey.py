"""Satisfaction survey: after the agent hangs up first, the caller rates the call with one key.

The dialplan (``hotline-connect`` then ``hotline-survey``) runs
``AGI(${HOTLINE_AGI}/survey,${HOTLINE_AGENT})`` when ``Dial(...,g)`` returns
answered with the caller still on the line. The caller hears ``hotline/survey``
in the language chosen in the IVR (the channel keeps ``CHANNEL(language)``) and
keys 1 (satisfied), 2 (basically satisfied) or 3 (dissatisfied).

The result is stored *before* the session closes (the caller's hang-up, which
makes the ACD write the call record, comes after): in Redis under
``hotline:survey:{uniqueid}``, and inside the call's IVR path
(``hotline:ivr:{uniqueid}``, key ``survey``), which the ACD already merges into
the PostgreSQL record, so the rating is kept with the call and its agent.
"""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any, Optional

from hotline.keys import Keys
from hotline.live import SURVEY_SCORES
from hotline.model import valid_name

from .agi import AGIHangup
from .session import AGISession, check_alive

__all__ = ["SCORES", "SURVEY_TTL", "Survey"]

SCORES = SURVEY_SCORES
SURVEY_TTL = 86400
PROMPT = "hotline/survey"


class Survey:
    """The FastAGI handler of ``agi://host:port/survey``."""

    def __init__(self, redis: Any = None, *, clock: Callable[[], float] = time.time, tries: int = 2,
                 timeout_ms: int = 5000, store_timeout: float = 2.0) -> None:
        self.redis = redis
        self.clock = clock
        self.tries = tries
        self.timeout_ms = timeout_ms
        self.store_timeout = store_timeout

    async def handle(self, session: AGISession) -> None:
        agent = session.args[0].strip() if session.args else ""
        doc: dict[str, Any] = {
            "agent": agent if agent and valid_name(agent) else None,
            "score": None, "digits": None, "result": "no-answer",
            "started_at": self.clock(), "ended_at": None,
        }
        try:
            for _ in range(self.tries):
                digits = await session.get_data(PROMPT, self.timeout_ms, 1)
                check_alive(session)
                if digits is not None and digits in SCORES:
                    doc.update(score=SCORES[digits], digits=digits, result="answered")
                    break
                if digits:  # a key that is not a rating: say so and ask again
                    await self._play(session, "hotline/invalid")
            if doc["score"] is not None:
                await session.set_variable("HOTLINE_SURVEY", doc["score"])
                await self._play(session, "hotline/survey-thanks")
        except AGIHangup:
            if doc["score"] is None:
                doc["result"] = "hangup"
        except Exception:  # a failed survey must not keep the caller: the call is over anyway
            session.log.exception("survey failed")
            doc["result"] = "error"
        finally:
            doc["ended_at"] = self.clock()
            await self._store(session, doc)
            await session.close()

    @staticmethod
    async def _play(session: AGISession, sound: str) -> None:
        reply = await session.stream_file(sound)
        if reply.result == "-1":
            await session.noop()
        check_alive(session)

    async def _store(self, session: AGISession, doc: dict[str, Any]) -> None:
        uniqueid = session.uniqueid
        if self.redis is None or not uniqueid:
            return
        try:
            async with asyncio.timeout(self.store_timeout):
                survey = json.dumps({"uniqueid": uniqueid, **doc}, separators=(",", ":"))
                raw: Optional[str | bytes] = await self.redis.get(Keys.ivr_path(uniqueid))
                path = _load(raw) or {"uniqueid": uniqueid}
                path["survey"] = doc
                async with self.redis.pipeline(transaction=True) as pipe:
                    pipe.set(Keys.survey(uniqueid), survey, ex=SURVEY_TTL)
                    pipe.set(Keys.ivr_path(uniqueid), json.dumps(path, ensure_ascii=False, separators=(",", ":")),
                             ex=SURVEY_TTL)
                    await pipe.execute()
        except Exception as exc:  # Redis down: the rating is lost, the call is not
            session.log.warning("could not store the survey in Redis: %r", exc)


def _load(raw: Optional[str | bytes]) -> Optional[dict[str, Any]]:
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
