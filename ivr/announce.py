"""While a caller waits: their place in the queue and the estimated wait, and the offer past the limit.

The dialplan's waiting loop (``hotline-wait``) plays music on hold for ``HOTLINE_ANNOUNCE_EVERY``
seconds, then runs ``AGI(${HOTLINE_AGI}/announce)``, and loops. This handler reads what the ACD
keeps in Redis (the call's hash, the waiting buckets, the agents) and says:

- the position: 1 + the calls of the same queue (every skill bucket of it) ahead of this one by
  the routing score (priority first, then queue time), i.e. the order the ACD serves them in;
- the estimated wait, in minutes (rounded up): position x average handle time (talk + wrap-up)
  of the queue's last calls (``hotline:aht:<queue>``, written by the ACD; 180 s when the queue
  has no history yet) / agents serving the queue (logged in and not on a break, with the skills
  the call needs), clamped to 1..60 minutes; not said when no agent serves the queue.

When the call passed its queue's limit (``acd/queues.yaml``: ``max_wait_s``/``max_length`` with
``offer``), the ACD put the offer in the call's hash; the caller then hears it and keys 1 for a
call back that keeps the place, or 2 to leave a message. The choice goes to the dialplan as
``HOTLINE_WAIT_CHOICE``; the dialplan tells the ACD (``UserEvent(HotlineQueueChoice)``) and runs
``AGI(${HOTLINE_AGI}/announce,<choice>)``, which confirms the call back or records the message.

Every announcement, the choice and the message are kept in the call's IVR path
(``hotline:ivr:{uniqueid}``: ``queue_announcements``, ``queue_choice``, ``message``), which the
ACD stores with the call record.
"""
from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import Callable
from typing import Any, Optional

from hotline.keys import Keys
from hotline.live import LiveCall
from hotline.model import SkillError, parse_skills

from .after_hours import MESSAGES_DIR
from .agi import AGIHangup
from .call import IVR_PATH_TTL
from .session import AGISession, check_alive

__all__ = ["Announce", "DEFAULT_HANDLE_S", "estimate_wait"]

DEFAULT_HANDLE_S = 180.0
SERVING_STATES = ("ready", "reserved", "on_call", "wrapup")
OFFER_KEYS = {"callback": "1", "message": "2"}
_UNIQUEID = re.compile(r"[0-9]+\.[0-9]+")
_ENDPOS = re.compile(r"endpos=(-?\d+)")


def estimate_wait(position: int, handle_times: list[float], agents: int) -> Optional[int]:
    """Estimated wait in seconds: position x average handle time / agents, clamped to 1..60 min."""
    if agents <= 0 or position <= 0:
        return None
    average = sum(handle_times) / len(handle_times) if handle_times else DEFAULT_HANDLE_S
    return int(min(max(position * average / agents, 60.0), 3600.0))


class Announce:
    """The FastAGI handler of ``agi://host:port/announce``."""

    def __init__(self, redis: Any = None, *, clock: Callable[[], float] = time.time, timeout_ms: int = 5000,
                 max_message_s: int = 120, store_timeout: float = 2.0) -> None:
        self.redis = redis
        self.clock = clock
        self.timeout_ms = timeout_ms
        self.max_message_s = max_message_s
        self.store_timeout = store_timeout

    async def handle(self, session: AGISession) -> None:
        try:
            choice = session.args[0].strip() if session.args else ""
            if choice == "callback":
                await self._store(session, queue_choice="callback")
                await _play(session, "hotline/queue-callback-confirm")
                await _play(session, "hotline/goodbye")
            elif choice == "message":
                await self._message(session)
            elif self.redis is not None:
                await self._announce(session)
        except AGIHangup:
            pass
        except Exception:  # the caller keeps waiting whatever went wrong here
            session.log.exception("announcement failed")
        finally:
            await session.close()

    async def position(self, uniqueid: str) -> Optional[tuple[LiveCall, int]]:
        """(the call as the ACD keeps it, position in its queue), or None if the call is not waiting."""
        data = await self.redis.hgetall(Keys.call(uniqueid))
        # Lenient: a field the ACD left out or garbled reads as its default; the caller still hears the rest.
        call = LiveCall.from_redis(data or {}, uniqueid=uniqueid, lenient=True)
        score = await self.redis.zscore(Keys.waiting, uniqueid)
        queue = call.queue
        if not queue or score is None:
            return None
        buckets = [b for b in await self.redis.smembers(Keys.buckets) if b.split(":", 1)[0] == queue]
        ahead = 0
        if buckets:
            async with self.redis.pipeline(transaction=False) as pipe:
                for bucket in buckets:
                    pipe.zcount(Keys.bucket(bucket), "-inf", f"({score!r}")
                ahead = sum(await pipe.execute())
        return call, ahead + 1

    async def serving_agents(self, skills: str) -> int:
        try:
            required = parse_skills(skills or "")
        except SkillError:
            required = {}
        ids = sorted(await self.redis.smembers(Keys.agents))
        if not ids:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for agent_id in ids:
                pipe.hmget(Keys.agent(agent_id), "state", "skills")
            rows = await pipe.execute()
        count = 0
        for state, raw in rows:
            try:
                have = json.loads(raw or "{}")
            except ValueError:
                continue
            if state in SERVING_STATES and all(have.get(s, 0) >= level for s, level in required.items()):
                count += 1
        return count

    async def _announce(self, session: AGISession) -> None:
        found = await self.position(session.uniqueid)
        if found is None:
            return
        call, position = found
        queue = call.queue
        assert queue is not None  # position() finds only calls in a queue
        handle_times = [float(x) for x in await self.redis.lrange(Keys.handle_times(queue), 0, -1)]
        agents = await self.serving_agents(call.skills)
        ewt = estimate_wait(position, handle_times, agents)
        await self._store(session, announcement={"at": self.clock(), "queue": queue, "position": position,
                                                 "ewt_s": ewt, "agents": agents})
        await _play(session, "hotline/queue-position")
        await _say(session, position)
        if ewt is not None:
            await _play(session, "hotline/queue-wait")
            await _say(session, math.ceil(ewt / 60))
        offers = [o for o in call.offer.split("+") if o in OFFER_KEYS]
        if not offers:
            return
        keys = "".join(OFFER_KEYS[o] for o in offers)
        digit = ""
        for offer in offers[:-1]:
            reply = await session.stream_file(f"hotline/queue-offer-{offer}", keys)
            check_alive(session)
            if reply.result not in ("0", "-1"):
                digit = chr(int(reply.result))
                break
        if not digit:
            digit = await session.get_data(f"hotline/queue-offer-{offers[-1]}", self.timeout_ms, 1) or ""
            check_alive(session)
        chosen = next((o for o in offers if OFFER_KEYS[o] == digit), None)
        if chosen is not None:
            await session.set_variable("HOTLINE_WAIT_CHOICE", chosen)

    async def _message(self, session: AGISession) -> None:
        uniqueid = session.uniqueid
        if not _UNIQUEID.fullmatch(uniqueid):
            return
        name = f"{MESSAGES_DIR}/{uniqueid}"
        await _play(session, "hotline/message-record")
        message: dict[str, Any] = {"file": f"{name}.wav", "seconds": None, "from": "queue"}
        await self._store(session, queue_choice="message", message=message)
        reply = await session.command("RECORD FILE", name, "wav", "#", self.max_message_s * 1000, 0, "BEEP", "s=5")
        endpos = _ENDPOS.search(reply.line)
        if endpos:
            message["seconds"] = round(max(0, int(endpos.group(1))) / 8000, 1)
        await self._store(session, message=message)
        check_alive(session)
        await _play(session, "hotline/message-saved")
        await _play(session, "hotline/goodbye")

    async def _store(self, session: AGISession, *, announcement: Optional[dict] = None, **fields: Any) -> None:
        uniqueid = session.uniqueid
        if self.redis is None or not uniqueid:
            return
        try:
            async with asyncio.timeout(self.store_timeout):
                raw = await self.redis.get(Keys.ivr_path(uniqueid))
                try:
                    path = json.loads(raw) if raw else {}
                except ValueError:
                    path = {}
                if not isinstance(path, dict):
                    path = {}
                path.setdefault("uniqueid", uniqueid)
                if announcement is not None:
                    path.setdefault("queue_announcements", []).append(announcement)
                    path["queue_announcements"] = path["queue_announcements"][-50:]
                path.update(fields)
                await self.redis.set(Keys.ivr_path(uniqueid), json.dumps(path, ensure_ascii=False,
                                                                         separators=(",", ":")), ex=IVR_PATH_TTL)
        except Exception as exc:  # Redis down: the call goes on without the note
            session.log.warning("could not store the queue announcement in Redis: %r", exc)


async def _play(session: AGISession, sound: str) -> None:
    reply = await session.stream_file(sound)
    if reply.result == "-1":
        await session.noop()
    check_alive(session)


async def _say(session: AGISession, number: int) -> None:
    await session.command("SAY NUMBER", number, "")
    check_alive(session)
