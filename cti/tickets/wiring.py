"""The ticket hand-off in the CTI application: the catalogue and calendar the API uses, and the
delivery worker, started and stopped with the application (``cleanup_ctx``)."""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any, AsyncIterator, Optional

import asyncpg
from aiohttp import web
from redis.asyncio import Redis

from .calendar import WorkCalendar, load_calendar
from .catalogue import Catalogue, load_catalogue
from .delivery import DeliveryConfig, DeliveryWorker

__all__ = ["TICKETS", "Tickets", "TicketsConfig", "install", "tickets_config"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TicketsConfig:
    catalogue: Optional[Catalogue] = None       # None: the shipped cti/tickets/catalogue.yaml
    calendar: Optional[WorkCalendar] = None     # None: the shipped cti/tickets/holidays.yaml
    delivery: Optional[DeliveryConfig] = None   # None: tickets wait in the outbox (no worker here)


@dataclass
class Tickets:
    catalogue: Catalogue
    calendar: WorkCalendar
    worker: Optional[DeliveryWorker]

    def written(self) -> None:
        """A hand-off was written: the worker looks now."""
        if self.worker is not None:
            self.worker.wake()


TICKETS = web.AppKey("cti.tickets", Tickets)


@functools.cache
def _shipped() -> tuple[Catalogue, WorkCalendar]:
    return load_catalogue(), load_calendar()


def install(app: web.Application, redis: Redis, pool: asyncpg.Pool, config: TicketsConfig) -> None:
    catalogue = config.catalogue or _shipped()[0]
    calendar = config.calendar or _shipped()[1]
    worker = DeliveryWorker(pool, redis, config.delivery) if config.delivery is not None else None
    app[TICKETS] = Tickets(catalogue, calendar, worker)
    if worker is not None:
        app.cleanup_ctx.append(_delivery)


async def _delivery(app: web.Application) -> AsyncIterator[None]:
    worker = app[TICKETS].worker
    assert worker is not None
    worker.start()
    log.info("tickets: delivering to %s", worker.config.endpoint)
    yield
    await worker.stop()


def tickets_config(settings: Any, *, endpoint: Optional[str] = None, secret: Optional[str] = None) -> TicketsConfig:
    """From the settings (or the built-in receiver's ``endpoint`` and ``secret``); the files are read
    and checked here, so a bad one stops the service with one line (CatalogueError, CalendarError)."""
    catalogue = load_catalogue(settings.tickets_catalogue_file) if settings.tickets_catalogue_file else None
    calendar = load_calendar(settings.tickets_holidays_file) if settings.tickets_holidays_file else None
    endpoint = endpoint or settings.tickets_endpoint
    secret = secret or settings.tickets_secret
    delivery = None
    if endpoint and secret:
        delivery = DeliveryConfig(endpoint, secret, attempts=settings.tickets_attempts,
                                  backoff_base_s=settings.tickets_backoff_base_s,
                                  backoff_max_s=max(settings.tickets_backoff_max_s, settings.tickets_backoff_base_s),
                                  timeout_s=settings.tickets_delivery_timeout_s,
                                  claim_s=max(30.0, settings.tickets_delivery_timeout_s * 3),
                                  handoff_all_calls=settings.tickets_handoff_all_calls)
    else:
        log.warning("tickets: no ticketing endpoint (setting tickets_endpoint): tickets wait in the outbox "
                    "until a CTI with one delivers them")
    return TicketsConfig(catalogue, calendar, delivery)
