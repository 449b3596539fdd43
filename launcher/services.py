"""Starting the hotline's services together (IVR, ACD, CTI) and stopping them in order."""
from __future__ import annotations

import asyncio
import logging
import secrets
import signal
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator, Optional

from acd.service import ACD, run_acd
from cti.service import bound_port, cti_urls, run_cti
from cti.tickets.receiver import start_receiver
from hotline.settings import Settings, SettingsError
from hotline.stores import Stores, open_stores
from ivr.service import run_ivr

__all__ = ["Services", "start_services", "run_services", "run_one", "wait_for_signal"]

log = logging.getLogger(__name__)


@dataclass
class Services:
    stores: Stores
    acd: ACD
    urls: dict[str, str]


def with_service_token(settings: Settings) -> Settings:
    """The services of one process share a service token: the configured one, or one made now."""
    if settings.service_token:
        return settings
    return settings.model_copy(update={"service_token": secrets.token_urlsafe(32)})


@asynccontextmanager
async def start_services(settings: Settings, stores: Stores) -> AsyncIterator[Services]:
    """IVR first (Asterisk sends callers to it), then ACD (it connects to AMI), then CTI. With no
    ticketing endpoint configured, the built-in ticketing receiver comes first of all: the CTI
    delivers tickets to it and the IVR's progress query asks it."""
    settings = with_service_token(settings)
    async with AsyncExitStack() as stack:
        receiver_url: Optional[str] = None
        if settings.tickets_endpoint is None:
            receiver = await start_receiver(stores.pool, secret := secrets.token_urlsafe(32))
            stack.push_async_callback(receiver.stop)
            receiver_url = receiver.base_url + "/"
            settings = settings.model_copy(update={"tickets_endpoint": receiver.endpoint, "tickets_secret": secret,
                                                   "tickets_url": settings.tickets_url or receiver.progress_url})
        ivr = await run_ivr(settings, stores.redis)
        stack.push_async_callback(ivr.stop)
        acd = await stack.enter_async_context(run_acd(settings, stores))
        runner = await run_cti(settings, stores, acd_url=f"http://127.0.0.1:{acd.http_port}")
        stack.push_async_callback(runner.cleanup)
        urls = cti_urls(settings, port=bound_port(runner))
        if receiver_url:
            urls["tickets"] = receiver_url
        yield Services(stores, acd, urls)


async def wait_for_signal(stop: Optional[asyncio.Event] = None) -> asyncio.Event:
    """An event set by SIGINT/SIGTERM (Ctrl-C stops the program cleanly)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def run_one(settings: Settings, service: str) -> None:
    """One service in its own process, as docker-compose runs them."""
    if service in ("acd", "cti") and not settings.service_token:
        raise SettingsError("setting HOTLINE_SERVICE_TOKEN: required when the ACD and the CTI run as separate "
                            "processes (the same random value for both, 32 characters or more)")
    stop = await wait_for_signal()
    async with open_stores(settings) as stores, AsyncExitStack() as stack:
        if service == "ivr":
            server = await run_ivr(settings, stores.redis)
            stack.push_async_callback(server.stop)
            print(f"IVR: agi://{settings.agi_host}:{server.port}/ivr", flush=True)
        elif service == "acd":
            await stack.enter_async_context(run_acd(settings, stores))
            print(f"ACD: connected to AMI {settings.ami_host}:{settings.ami_port}", flush=True)
        else:
            runner = await run_cti(settings, stores)
            stack.push_async_callback(runner.cleanup)
            for name, url in cti_urls(settings).items():
                print(f"{name:>14}: {url}", flush=True)
        await stop.wait()


async def run_services(settings: Settings) -> None:
    stop = await wait_for_signal()
    async with open_stores(settings) as stores:
        async with start_services(settings, stores) as services:
            for name, url in services.urls.items():
                print(f"{name:>14}: {url}", flush=True)
            await stop.wait()
