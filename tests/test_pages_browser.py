"""The pages in a real headless Chromium (Debian's, driven by Playwright): an agent signs in on the
desktop and gets their own seat over the WebSocket; the wallboard asks a supervisor to sign in;
a wrong password is refused on the page. Skipped where the machine has no Chromium."""
from __future__ import annotations

import shutil

import pytest
from aiohttp.test_utils import TestServer

try:
    from playwright.async_api import expect
except ImportError:         # (a test extra; skipped with the rest where it is missing)
    expect = None

from acd.agents import AgentDirectory
from cti.app import make_app
from hotline.auth import Role
from hotline.model import AgentState

from .auth_helpers import PASSWORD, make_user

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt-get install chromium)")
# The flags the machine needs: no sandbox as root, no network beyond loopback.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@pytest.fixture
async def browser():
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield chromium
        await chromium.close()


@pytest.fixture
async def site(redis, pool):
    directory = AgentDirectory(redis)
    await directory.upsert("1001", "王芳", "general", {"mandarin": 5})
    await directory.transition("1001", AgentState.READY)
    await make_user(pool, Role.AGENT, agent_id="1001")
    await make_user(pool, Role.SUPERVISOR, "sup")
    server = TestServer(make_app(redis, pool))
    await server.start_server()
    yield f"http://127.0.0.1:{server.port}"
    await server.close()


async def test_an_agent_signs_in_on_the_desktop_and_gets_their_seat(browser, site):
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{site}/desktop")
    await page.wait_for_selector("#login:not([hidden])")
    await page.fill("#username", "agent1001")
    await page.fill("#password", "not the password")
    await page.click("#login button[type=submit]")
    await expect(page.locator("#message")).to_contain_text("wrong")
    await page.fill("#password", PASSWORD)
    await page.click("#login button[type=submit]")
    await expect(page.locator("#link")).to_have_class("on", timeout=5000)
    assert await page.text_content("#a-name") == "王芳"
    assert "空闲" in (await page.text_content("#state") or "")
    assert "1001" in (await page.text_content("#who") or "")
    # Reloaded, the page is still signed in (the session cookie), and signing out ends it.
    await page.reload()
    await expect(page.locator("#link")).to_have_class("on", timeout=5000)
    await page.click("#logout")
    await page.wait_for_selector("#login:not([hidden])")
    resp = await page.request.get(f"{site}/api/v1/auth/me")
    assert resp.status == 401 and errors == []


async def test_the_wallboard_asks_a_supervisor_to_sign_in(browser, site):
    page = await browser.new_page()
    await page.goto(f"{site}/wallboard")
    await page.wait_for_selector("#signin[open]")
    await page.fill("#username", "sup")
    await page.fill("#password", PASSWORD)
    await page.click("#login button[type=submit]")
    await expect(page.locator("#status")).to_contain_text("live", timeout=5000)
    await expect(page.locator("#ag-ready")).to_have_text("1")
