"""The ACD's HTTP API and agent import, on a running ACD with the simulated PBX."""
from __future__ import annotations

import asyncio

import aiohttp

from acd.http import parse_agents_file
from hotline.model import AgentState

from .test_call_end_to_end import SERVICE, SERVICE_TOKEN, hotline, plan


async def test_agents_managed_over_http_take_effect_at_once(redis, pool, redis_url, pg_url, tmp_path):
    async with hotline(redis, pool, redis_url, pg_url, tmp_path, agents=()) as (sim, acd):
        base = f"http://127.0.0.1:{acd.http_port}"
        async with aiohttp.ClientSession(headers=SERVICE) as http:
            r = await http.put(f"{base}/agents/1001", json={"name": "Li", "team": "general",
                                                            "skills": {"mandarin": 5}})
            assert r.status == 200 and (await r.json())["state"] == "logged_out"
            r = await http.put(f"{base}/agents/1001", json={"skills": {"mandarin": 11}})
            assert r.status == 400 and "1..10" in (await r.json())["error"]
            csv_text = "id,name,team,skills\n1002,Wang,enterprise,mandarin:5+enterprise:4\n"
            r = await http.post(f"{base}/agents/import", data=csv_text, headers={"Content-Type": "text/csv"})
            assert (await r.json()) == {"imported": 1}
            assert acd.agents.get("1002").skills == {"mandarin": 5, "enterprise": 4}
            sim.register_phone("1001")
            sim.register_phone("1002")
            r = await http.post(f"{base}/agents/1002/login", json={"reason": "training"})
            assert (await r.json())["state"] == "not_ready" and (await r.json())["reason"] == "training"
            r = await http.post(f"{base}/agents/1002/not-ready", json={"reason": "nap"})
            assert r.status == 409
            r = await http.post(f"{base}/agents/1001/logout")
            assert r.status == 200
            r = await http.post(f"{base}/agents/1001/login")
            assert (await r.json())["state"] == "ready"
            caller = sim.place_call(plan(talk=0.2))
            await asyncio.wait_for(caller.done.wait(), 10)
            assert caller.agent == "1001"
            r = await http.get(f"{base}/decisions")
            decisions = await r.json()
            assert decisions[0]["agent"] == "1001" and decisions[0]["call"] == caller.channel.uniqueid
            assert decisions[0]["candidates"][0]["agent"] == "1001" and "rule" in decisions[0]
            r = await http.delete(f"{base}/agents/1001")
            assert r.status == 409                      # logged in: log out first
            r = await http.get(f"{base}/agents/9999")
            assert r.status == 404
            r = await http.get(f"{base}/agents")
            assert [a["id"] for a in await r.json()] == ["1001", "1002"]


async def test_wrapup_is_extended_by_the_agent(redis, pool, redis_url, pg_url, tmp_path):
    async with hotline(redis, pool, redis_url, pg_url, tmp_path, wrapup=0.3) as (sim, acd):
        base = f"http://127.0.0.1:{acd.http_port}"
        caller = sim.place_call(plan(talk=0.1))
        await asyncio.wait_for(caller.done.wait(), 10)
        for _ in range(100):
            if acd.agents.get("1001").state == AgentState.WRAPUP:
                break
            await asyncio.sleep(0.01)
        async with aiohttp.ClientSession(headers=SERVICE) as http:
            r = await http.post(f"{base}/agents/1001/wrapup/extend", json={"seconds": 0.5})
            assert r.status == 200
            await asyncio.sleep(0.5)
            assert acd.agents.get("1001").state == AgentState.WRAPUP       # 0.3 s passed, extended
            await asyncio.sleep(0.5)
            assert acd.agents.get("1001").state == AgentState.READY
            r = await http.post(f"{base}/agents/1001/wrapup/extend", json={"seconds": 5})
            assert r.status == 409


def test_agent_files_yaml_and_csv():
    rows = parse_agents_file("- {id: '1001', name: Li, team: general, skills: {mandarin: 5, elderly: 5}}\n", "yaml")
    assert rows == [("1001", "Li", "general", {"mandarin": 5, "elderly": 5})]
    rows = parse_agents_file("id,name,team,skills\n1003,Chen,general,cantonese:3+mandarin:4\n", "csv")
    assert rows == [("1003", "Chen", "general", {"cantonese": 3, "mandarin": 4})]
    for text, kind in (("id,name\n1,x\n", "csv"), ("{a: 1}", "yaml"), ("- {name: x}", "yaml")):
        try:
            parse_agents_file(text, kind)
        except ValueError as exc:
            assert "\n" not in str(exc)
        else:
            raise AssertionError(text)


async def _until(predicate, timeout=5.0):
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached in time")


async def test_feature_codes_on_the_agents_phone(redis, pool, redis_url, pg_url, tmp_path):
    async with hotline(redis, pool, redis_url, pg_url, tmp_path) as (sim, acd):
        agent = acd.agents.get("1001")
        sim.phone_dials("1001", "*442")                 # not ready: meal
        await _until(lambda: agent.state == AgentState.NOT_READY and agent.reason == "meal")
        sim.phone_dials("1001", "*42")                  # log out
        await _until(lambda: agent.state == AgentState.LOGGED_OUT)
        caller = sim.place_call(plan(talk=0.1, patience=30))
        await asyncio.sleep(0.3)
        assert caller.answered_at is None               # nobody logged in: the caller waits
        sim.phone_dials("1001", "*41")                  # log in: ready, takes the waiting caller
        await asyncio.wait_for(caller.done.wait(), 10)
        assert caller.agent == "1001"
        sim.register_phone("1002")                      # each phone speaks for its own agent
        await acd.agents.upsert("1002", "Agent 1002", "general", {"mandarin": 5})
        channel = sim.phone_dials("1002", "*41")
        await asyncio.sleep(0.2)
        assert acd.agents.get("1002").state == AgentState.READY and channel.name.startswith("PJSIP/1002-")


async def test_cli_manages_agents_of_the_running_acd(redis, pool, redis_url, pg_url, tmp_path):
    from typer.testing import CliRunner

    from launcher.cli import app

    runner = CliRunner()
    agents_file = tmp_path / "agents.yaml"
    agents_file.write_text("- {id: '1003', name: Chen, team: general, skills: {cantonese: 4, mandarin: 3}}\n")
    async with hotline(redis, pool, redis_url, pg_url, tmp_path) as (sim, acd):
        env = {"HOTLINE_ACD_PORT": str(acd.http_port), "HOTLINE_SERVICE_TOKEN": SERVICE_TOKEN}

        async def cli(*args):
            return await asyncio.to_thread(runner.invoke, app, ["acd", "agents", *args], env=env)

        result = await cli("import", str(agents_file))
        assert result.exit_code == 0 and '"imported": 1' in result.output
        result = await cli("add", "1004", "--skills", "english:5", "--name", "Smith")
        assert result.exit_code == 0 and acd.agents.get("1004").skills == {"english": 5}
        result = await cli("not-ready", "1001", "--reason", "break")
        assert result.exit_code == 0 and acd.agents.get("1001").reason == "break"
        result = await cli("not-ready", "1001", "--reason", "nap")
        assert result.exit_code == 1 and result.output.startswith("hotline: error: ACD: reason must be")
        result = await cli("list")
        assert result.exit_code == 0 and "1003" in result.output and "not_ready (break)" in result.output


async def test_the_acd_api_is_no_anonymous_door(redis, pool, redis_url, pg_url, tmp_path):
    """Tokens only (the CTI's service token, or a signed-in user's), JSON bodies only, and the same
    roles as the CTI's API: an agent their own seat, admins the agents' profiles."""
    from hotline.auth import Role

    from .auth_helpers import token_for

    async with hotline(redis, pool, redis_url, pg_url, tmp_path, agents=(("1001", {"mandarin": 5}),
                                                                          ("1002", {"mandarin": 5}))) as (sim, acd):
        base = f"http://127.0.0.1:{acd.http_port}"
        agent = {"Authorization": f"Bearer {await token_for(pool, redis, Role.AGENT, agent_id='1001')}"}
        async with aiohttp.ClientSession() as http:
            for method, path in (("GET", "/agents"), ("PUT", "/agents/2001"), ("POST", "/agents/1001/logout"),
                                 ("POST", "/agents/import"), ("GET", "/decisions")):
                async with http.request(method, base + path, json={}) as r:
                    assert r.status == 401, (method, path)
            async with http.post(f"{base}/agents/1001/logout", headers={"Authorization": "Bearer forged"}) as r:
                assert r.status == 401
            # A cross-site form can only send text/plain: not read as JSON.
            async with http.post(f"{base}/agents/1001/not-ready", data='{"reason": "break"}',
                                 headers={**SERVICE, "Content-Type": "text/plain"}) as r:
                assert r.status == 415
            async with http.post(f"{base}/agents/1002/not-ready", json={"reason": "break"}, headers=agent) as r:
                assert r.status == 403
            async with http.put(f"{base}/agents/2001", json={"skills": {"elderly": 5}}, headers=agent) as r:
                assert r.status == 403 and "2001" not in acd.agents.agents          # no ghost agent
            async with http.post(f"{base}/agents/import", data="id,name,team,skills\n3001,x,y,elderly:5\n",
                                 headers={**agent, "Content-Type": "text/csv"}) as r:
                assert r.status == 403
            async with http.get(f"{base}/agents", headers=agent) as r:
                assert [a["id"] for a in await r.json()] == ["1001"]
            async with http.post(f"{base}/agents/1001/not-ready", json={"reason": "break"}, headers=agent) as r:
                assert r.status == 200 and (await r.json())["state"] == "not_ready"
            assert acd.agents.get("1001").reason == "break" and acd.agents.get("1002").state == AgentState.READY
