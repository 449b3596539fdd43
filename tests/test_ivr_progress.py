"""Progress query: the IVR asks a real HTTP ticketing system (aiohttp on a free port) and reads back the status;
when it is slow, failing or down, the caller hears an apology and gets an agent."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp import web

from hotline.embedded import free_port
from ivr.progress import ProgressQuery
from tests.test_ivr_app import MAIN, SET_OK, TIMEOUT, call, key, menu, played, set_route, stored_path

ASK = "progress-ask"


def ask(reply: list[str]) -> tuple[str, list[str]]:
    return menu(ASK, reply, 8000, 20)


@pytest_asyncio.fixture
async def tickets() -> AsyncIterator[tuple[str, list[str]]]:
    """A ticketing system: 123 is being handled, 777 completed, 500 fails, 999 is slow, others unknown."""
    asked: list[str] = []

    async def ticket(request: web.Request) -> web.Response:
        number = request.match_info["ticket"]
        asked.append(number)
        if number == "999":
            await asyncio.sleep(5)
        if number == "500":
            return web.Response(status=500, text="boom")
        status = {"123": "processing", "777": "completed", "888": "on-the-moon"}.get(number)
        if status is None:
            return web.json_response({"error": "no such ticket"}, status=404)
        return web.json_response({"ticket": number, "status": status})

    app = web.Application()
    app.router.add_get("/api/tickets/{ticket}", ticket)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/api/tickets/{{ticket}}", asked
    finally:
        await runner.cleanup()


def services(url: str, timeout: float = 0.3) -> dict:
    return {"progress-query": ProgressQuery(url, timeout=timeout)}


async def test_status_is_read_back_then_goodbye(redis, tickets) -> None:
    url, asked = tickets
    await call([*MAIN, menu("main-menu", key("4")), ask(key("123")), played("progress-processing"),
                menu("progress-more", TIMEOUT, 4000), played("goodbye"),
                ("SET VARIABLE HOTLINE_IVR_RESULT completed", SET_OK)], redis=redis, services=services(url))
    assert asked == ["123"]
    path = await stored_path(redis)
    assert path["result"] == "completed" and path["ticket"] == "123"
    assert ("progress-query", None, None, "status:processing") in [
        (s["node"], s["prompt"], s["digits"], s["result"]) for s in path["steps"]]


async def test_unknown_ticket_asks_again_then_agent_on_request(tickets) -> None:
    url, asked = tickets
    await call([*MAIN, menu("main-menu", key("4")), ask(key("42")), played("progress-not-found"),
                ask(key("777")), played("progress-completed"), menu("progress-more", key("0"), 4000),
                played("transfer-agent"), *set_route("general", "mandarin:1", 0)], services=services(url))
    assert asked == ["42", "777"]


@pytest.mark.parametrize("ticket", ["999", "500", "888"], ids=["slow", "error", "unknown-status"])
async def test_ticketing_trouble_is_an_apology_and_an_agent(redis, tickets, ticket: str) -> None:
    url, asked = tickets
    loop = asyncio.get_running_loop()
    started = loop.time()
    await call([*MAIN, menu("main-menu", key("4")), ask(key(ticket)), played("progress-unavailable"),
                played("transfer-agent"), *set_route("general", "mandarin:1", 0)], redis=redis,
               services=services(url, timeout=0.3))
    assert loop.time() - started < 2.0  # the caller never waits for a slow ticketing system
    path = await stored_path(redis)
    assert path["queue"] == "general" and path["ticket"] == ticket


async def test_ticketing_system_down_is_an_apology_and_an_agent() -> None:
    url = f"http://127.0.0.1:{free_port()}/api/tickets/{{ticket}}"  # nothing listens
    await call([*MAIN, menu("main-menu", key("4")), ask(key("123")), played("progress-unavailable"),
                played("transfer-agent"), *set_route("general", "mandarin:1", 0)], services=services(url))


async def test_no_ticket_number_keyed_goes_to_an_agent() -> None:
    await call([*MAIN, menu("main-menu", key("4")), ask(TIMEOUT), ask(["200 result="]),
                played("transfer-agent"), *set_route("general", "mandarin:1", 0)], services=services(None))


async def test_not_configured_is_an_apology_and_an_agent() -> None:
    await call([*MAIN, menu("main-menu", key("4")), ask(key("123")), played("progress-unavailable"),
                played("transfer-agent"), *set_route("general", "mandarin:1", 0)], services=services(None))


def test_url_must_hold_the_ticket_placeholder() -> None:
    with pytest.raises(ValueError):
        ProgressQuery("http://tickets/api")
