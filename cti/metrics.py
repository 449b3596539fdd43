"""``/metrics``: the live picture as Prometheus gauges, computed at scrape time.

The Redis part (calls waiting per queue, longest wait, calls per state, agents per state) is
read on every scrape: three pipelined round trips. Today's counts come from PostgreSQL
through the few-seconds cache of :class:`cti.records.TodayKpis`, so a scrape stays fast and
a slow database cannot make it time out. A store that cannot be read shows as
``hotline_cti_store_up{store=...} 0`` instead of a failed scrape.

Metric names (for dashboards and alerts):

=========================================  =====================================================
``hotline_calls_waiting{queue}``           calls waiting for an agent, per queue
``hotline_calls_waiting_longest_seconds``  longest current wait, per queue and overall (queue="")
``hotline_calls_in_progress{state}``       live calls per state: ivr, waiting, ringing, talking
``hotline_agents{state}``                  agents per state (logged_out, ready, reserved, ...)
``hotline_calls_offered_today``            since local midnight, from the call records
``hotline_calls_answered_today``           (also ``_abandoned_today``, ``_ivr_completed_today``)
``hotline_answer_rate_today``              answered / offered to agents (0..1)
``hotline_wait_seconds_avg_today``         average wait of answered calls (``talk`` likewise)
``hotline_cti_desktops_connected``         open agent desktop WebSockets of this process
``hotline_cti_store_up{store}``            1 when redis / postgres answered this scrape
=========================================  =====================================================
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Iterable, Optional

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from redis.asyncio import Redis
from redis.exceptions import RedisError

from .live import AGENT_STATES, CALL_STATES, live_snapshot
from .records import TodayKpis

__all__ = ["CONTENT_TYPE_LATEST", "LiveCollector"]

log = logging.getLogger(__name__)

MAX_QUEUES_REMEMBERED = 200
_TODAY = (("offered", "calls offered"), ("answered", "calls answered by an agent"),
          ("abandoned", "calls abandoned by the caller"), ("ivr_completed", "calls the IVR served alone"))


class LiveCollector:
    """A prometheus_client collector fed with a snapshot taken just before each scrape.

    ``collect()`` is synchronous (prometheus_client's contract) while Redis and PostgreSQL
    are read asynchronously: :meth:`scrape` reads them, then renders the registry with no
    await in between, so concurrent scrapes never see each other's snapshot.
    """

    def __init__(self, redis: Redis, kpis: TodayKpis, *, desktops: Callable[[], int] = lambda: 0,
                 redis_timeout_s: float = 2.0) -> None:
        self.redis = redis
        self.kpis = kpis
        self.desktops = desktops
        self.redis_timeout_s = redis_timeout_s
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        ProcessCollector(registry=self.registry)   # process_cpu_seconds_total, memory, open fds
        self._live: Optional[dict[str, Any]] = None
        self._today: Optional[dict[str, Any]] = None
        self._queues: set[str] = set()      # a queue seen once keeps reporting (0 rather than absent)

    async def scrape(self) -> bytes:
        live, today = await asyncio.gather(self._read_live(), self.kpis.get())
        self._live, self._today = live, today
        try:
            return generate_latest(self.registry)
        finally:
            self._live = self._today = None

    async def _read_live(self) -> Optional[dict[str, Any]]:
        try:
            async with asyncio.timeout(self.redis_timeout_s):
                return await live_snapshot(self.redis)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            log.warning("metrics: redis unavailable: %s", str(exc) or type(exc).__name__)
            return None

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        live, today = self._live, self._today
        up = GaugeMetricFamily("hotline_cti_store_up", "1 when the store answered this scrape", labels=["store"])
        up.add_metric(["redis"], 1 if live is not None else 0)
        up.add_metric(["postgres"], 1 if today is not None else 0)
        yield up
        yield GaugeMetricFamily("hotline_cti_desktops_connected", "open agent desktop WebSockets",
                                value=self.desktops())
        if live is not None:
            yield from self._collect_live(live)
        if today is not None:
            yield from self._collect_today(today)

    def _collect_live(self, live: dict[str, Any]) -> Iterable[Metric]:
        queues = {row["queue"]: row for row in live["queues"]}
        for name in queues:
            if len(self._queues) < MAX_QUEUES_REMEMBERED:
                self._queues.add(name)
        names = sorted(self._queues | set(queues))
        waiting = GaugeMetricFamily("hotline_calls_waiting", "calls waiting for an agent", labels=["queue"])
        longest = GaugeMetricFamily("hotline_calls_waiting_longest_seconds",
                                    "longest current wait (queue=\"\": all queues)", labels=["queue"])
        longest.add_metric([""], live["longest_wait_s"])
        for name in names:
            row = queues.get(name, {})
            waiting.add_metric([name], row.get("waiting", 0))
            longest.add_metric([name], row.get("longest_wait_s", 0.0))
        yield waiting
        yield longest
        calls = GaugeMetricFamily("hotline_calls_in_progress", "live calls per state", labels=["state"])
        for state in CALL_STATES:
            calls.add_metric([state], live["calls"].get(state, 0))
        yield calls
        agents = GaugeMetricFamily("hotline_agents", "agents per state", labels=["state"])
        for state in AGENT_STATES + tuple(s for s in live["agents"] if s not in AGENT_STATES):
            agents.add_metric([state], live["agents"].get(state, 0))
        yield agents

    def _collect_today(self, today: dict[str, Any]) -> Iterable[Metric]:
        for key, text in _TODAY:
            yield GaugeMetricFamily(f"hotline_calls_{key}_today", f"{text} since local midnight",
                                    value=today.get(key) or 0)
        for key, name, text in (("answer_rate", "hotline_answer_rate_today", "answered / offered to agents"),
                                ("avg_wait_s", "hotline_wait_seconds_avg_today", "average wait, answered calls"),
                                ("avg_talk_s", "hotline_talk_seconds_avg_today", "average talk, answered calls")):
            if today.get(key) is not None:
                yield GaugeMetricFamily(name, f"{text}, since local midnight", value=today[key])
