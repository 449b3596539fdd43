"""The ``hotline`` command: the composition root that starts services and tools.

Every expected failure (a bad setting, a store that cannot be reached, a port in use)
ends the program with one ``hotline: error: ...`` line and a non-zero exit code.
"""
from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Optional

import typer

from hotline.model import format_skills
from hotline.settings import Settings, SettingsError, load_settings

from .users_cli import users_app

__all__ = ["app", "main"]

app = typer.Typer(help="12345 government service hotline: IVR, ACD, CTI and a simulated PBX.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
db_app = typer.Typer(help="PostgreSQL schema.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks; each prints one JSON object as its last line.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(bench_app, name="bench")

ConfigOption = typer.Option(None, "--config", "-c", help="YAML settings file (also HOTLINE_CONFIG).",
                            dir_okay=False)


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"hotline: error: {message}", err=True)
    raise typer.Exit(code)


def _settings(config: Optional[Path], **overrides) -> Settings:
    try:
        return load_settings(config, **overrides)
    except SettingsError as exc:
        fail(str(exc))


def _logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _run(coro) -> None:
    """Run a coroutine; known failures become one line, Ctrl-C a quiet exit."""
    from acd.service import ACDConfigError
    from hotline.ami import AMIError
    from hotline.db import DatabaseError
    from hotline.embedded import EmbeddedStoreError
    from hotline.stores import StoreError

    try:
        try:
            import uvloop
            uvloop.run(coro)
        except ImportError:
            asyncio.run(coro)
    except (StoreError, DatabaseError, EmbeddedStoreError, ACDConfigError) as exc:
        fail(str(exc), 1)
    except AMIError as exc:
        fail(f"Asterisk AMI: {exc}", 1)
    except OSError as exc:
        fail(f"{exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else ""), 1)
    except KeyboardInterrupt:
        raise typer.Exit(130)


@app.command()
def demo(
    duration: Optional[float] = typer.Option(None, help="Seconds of traffic, then stop (default: until Ctrl-C)."),
    rate: float = typer.Option(120.0, help="Calls per minute (Poisson arrivals)."),
    agents: int = typer.Option(20, help="Number of agents (simulated SIP phones)."),
    summary_json: Optional[Path] = typer.Option(None, help="Write the summary computed from PostgreSQL here."),
    sim_log: Optional[Path] = typer.Option(None, help="Write the simulator's ground-truth log (JSON lines) here."),
    talk_mean: float = typer.Option(6.0, help="Mean talk time of the simulated calls, seconds."),
    patience_mean: float = typer.Option(45.0, help="Mean patience of waiting callers, seconds."),
    wrapup: Optional[float] = typer.Option(None, help="Agent wrap-up seconds (default: setting wrapup_s, 1 in the demo)."),
    seed: int = typer.Option(12345, help="Random seed of the simulated traffic."),
    config: Optional[Path] = ConfigOption,
) -> None:
    """Run everything on this machine: embedded stores, the simulated PBX, IVR, ACD, CTI, with traffic."""
    if rate <= 0:
        fail("--rate must be greater than 0")
    if agents < 0 or agents > 2000:
        fail("--agents must be between 0 and 2000")
    if duration is not None and duration <= 0:
        fail("--duration must be greater than 0")
    settings = _settings(config)
    _logging("WARNING" if settings.log_level == "INFO" else settings.log_level)
    from .demo import DemoOptions, run_demo

    options = DemoOptions(duration=duration, rate=rate, agents=agents, summary_json=summary_json,
                          sim_log=sim_log, talk_mean=talk_mean, patience_mean=patience_mean,
                          wrapup=1.0 if wrapup is None else wrapup, seed=seed)
    _run(run_demo(settings, options))


@db_app.command("upgrade")
def db_upgrade(config: Optional[Path] = ConfigOption) -> None:
    """Apply the schema migrations that are missing."""
    settings = _settings(config)
    _logging(settings.log_level)

    async def upgrade() -> None:
        from hotline.stores import open_stores

        async with open_stores(settings, migrate=False) as stores:
            from hotline.db import upgrade as apply

            applied = await apply(stores.database_url)
            typer.echo(f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else ""))

    _run(upgrade())


@app.command()
def services(config: Optional[Path] = ConfigOption) -> None:
    """Run IVR, ACD and CTI against a real Asterisk (HOTLINE_AMI_* settings)."""
    settings = _settings(config)
    _logging(settings.log_level)
    from .services import run_services

    _run(run_services(settings))


ivr_app = typer.Typer(help="The FastAGI IVR: run it (no subcommand) or check menu files.")
app.add_typer(ivr_app, name="ivr")


@ivr_app.callback(invoke_without_command=True)
def ivr(ctx: typer.Context, config: Optional[Path] = ConfigOption) -> None:
    """Run only the FastAGI IVR server."""
    if ctx.invoked_subcommand is not None:
        return
    settings = _settings(config)
    _logging(settings.log_level)
    from .services import run_one

    _run(run_one(settings, "ivr"))


@ivr_app.command("check")
def ivr_check(
    files: Optional[list[Path]] = typer.Argument(None, help="Menu files (default: every *.yaml of the menus directory)."),
    config: Optional[Path] = ConfigOption,
) -> None:
    """Check menu files: one line per problem (unknown target, missing audio, unreachable node, loop), exit 1 if any."""
    from ivr.menu import MENUS_DIR, check_file

    if not files:
        directory = _settings(config).ivr_menus_dir or MENUS_DIR
        files = sorted(Path(directory).glob("*.yaml"))
        if not files:
            fail(f"{directory}: no menu files (*.yaml)", 1)
    problems = [line for path in files for line in check_file(path)]
    for line in problems:
        typer.echo(line)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"{len(files)} menu file(s): no problems")


acd_app = typer.Typer(help="The ACD: run it (no subcommand) or manage agents through its HTTP API.")
app.add_typer(acd_app, name="acd")
app.add_typer(users_app, name="users")
acd_agents_app = typer.Typer(help="Agents of the running ACD (its HTTP API, setting acd_port).", no_args_is_help=True)
acd_app.add_typer(acd_agents_app, name="agents")


@acd_app.callback(invoke_without_command=True)
def acd(ctx: typer.Context, config: Optional[Path] = ConfigOption) -> None:
    """Run only the ACD (needs Asterisk's AMI: HOTLINE_AMI_* settings)."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = config
        return
    settings = _settings(config)
    _logging(settings.log_level)
    from .services import run_one

    _run(run_one(settings, "acd"))


def _acd_api(ctx: typer.Context, method: str, path: str, body=None, content_type: str = "application/json"):
    """One request to the running ACD's API; any failure is one error line."""
    import getpass
    import json
    import urllib.error
    import urllib.request

    settings = _settings(ctx.obj)
    if not settings.service_token:
        fail("setting HOTLINE_SERVICE_TOKEN: needed to reach the ACD's API (the value the running services have)")
    host = "127.0.0.1" if settings.acd_host in ("0.0.0.0", "::") else settings.acd_host
    url = f"http://{host}:{settings.acd_port}{path}"
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    headers = {"Content-Type": content_type, "Authorization": f"Bearer {settings.service_token}",
               "X-Hotline-Actor": f"cli:{getpass.getuser()}"}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            message = exc.reason
        fail(f"ACD: {message}", 1)
    except (urllib.error.URLError, OSError) as exc:
        fail(f"ACD API {url}: {getattr(exc, 'reason', exc)}", 1)


def _print_json(value) -> None:
    import json

    typer.echo(json.dumps(value, ensure_ascii=False, indent=2))


@acd_agents_app.command("list")
def acd_agents_list(ctx: typer.Context) -> None:
    """Agents with their skills and states."""
    for agent in _acd_api(ctx, "GET", "/agents"):
        skills = format_skills(agent["skills"])
        reason = f" ({agent['reason']})" if agent["reason"] else ""
        typer.echo(f"{agent['id']:>6}  {agent['name']:<12} {agent['team']:<12} {agent['state']}{reason:<12} {skills}")


@acd_agents_app.command("add")
def acd_agents_add(ctx: typer.Context, agent_id: str, skills: str = typer.Option(..., help="mandarin:5+english:2"),
                   name: Optional[str] = typer.Option(None), team: str = typer.Option("default")) -> None:
    """Add an agent, or change its name, team and skills (effective at once)."""
    _print_json(_acd_api(ctx, "PUT", f"/agents/{agent_id}", {"name": name or agent_id, "team": team, "skills": skills}))


@acd_agents_app.command("remove")
def acd_agents_remove(ctx: typer.Context, agent_id: str) -> None:
    """Remove a logged-out agent."""
    _print_json(_acd_api(ctx, "DELETE", f"/agents/{agent_id}"))


@acd_agents_app.command("import")
def acd_agents_import(ctx: typer.Context, file: Path = typer.Argument(..., exists=True, dir_okay=False)) -> None:
    """Add or change many agents from a YAML list or a CSV file (id,name,team,skills)."""
    kind = "text/csv" if file.suffix.lower() == ".csv" else "application/yaml"
    _print_json(_acd_api(ctx, "POST", "/agents/import", file.read_bytes(), kind))


@acd_agents_app.command("login")
def acd_agents_login(ctx: typer.Context, agent_id: str,
                     reason: Optional[str] = typer.Option(None, help="start not ready with this reason")) -> None:
    """Log an agent in (ready unless --reason)."""
    _print_json(_acd_api(ctx, "POST", f"/agents/{agent_id}/login", {"reason": reason} if reason else {}))


@acd_agents_app.command("logout")
def acd_agents_logout(ctx: typer.Context, agent_id: str) -> None:
    """Log an agent out."""
    _print_json(_acd_api(ctx, "POST", f"/agents/{agent_id}/logout", {}))


@acd_agents_app.command("ready")
def acd_agents_ready(ctx: typer.Context, agent_id: str) -> None:
    """Make an agent ready (offered the best waiting call at once)."""
    _print_json(_acd_api(ctx, "POST", f"/agents/{agent_id}/ready", {}))


@acd_agents_app.command("not-ready")
def acd_agents_not_ready(ctx: typer.Context, agent_id: str,
                         reason: str = typer.Option(..., help="break, meal, training or meeting")) -> None:
    """Make an agent not ready, with a reason."""
    _print_json(_acd_api(ctx, "POST", f"/agents/{agent_id}/not-ready", {"reason": reason}))


@acd_app.command("decisions")
def acd_decisions(ctx: typer.Context, limit: int = typer.Option(10, min=1, max=500)) -> None:
    """Why the latest calls went to their agents (candidates and scores)."""
    _print_json(_acd_api(ctx, "GET", f"/decisions?limit={limit}"))


@app.command()
def cti(config: Optional[Path] = ConfigOption) -> None:
    """Run only the CTI web service: agent desktop, wallboard, API, metrics."""
    settings = _settings(config)
    _logging(settings.log_level)
    from .services import run_one

    _run(run_one(settings, "cti"))


@app.command()
def pbxsim(
    scenario: Optional[Path] = typer.Option(None, help="Scenario YAML (keys of pbxsim.scenario.Scenario)."),
    rate: Optional[float] = typer.Option(None, help="Calls per minute (overrides the scenario)."),
    agents: Optional[int] = typer.Option(None, help="Agent phones (overrides the scenario)."),
    duration: Optional[float] = typer.Option(None, help="Seconds of traffic (default: until Ctrl-C)."),
    sim_log: Optional[Path] = typer.Option(None, help="Ground-truth log, one JSON line per call."),
    config: Optional[Path] = ConfigOption,
) -> None:
    """Run only the simulated PBX (AMI server, dialplan, callers, phones) for services started apart."""
    settings = _settings(config)
    _logging(settings.log_level)
    from pbxsim.scenario import Scenario, ScenarioError

    try:
        base = Scenario.from_file(scenario) if scenario else Scenario()
        values = {**base.__dict__, **{k: v for k, v in
                                      {"rate_per_min": rate, "agents": agents, "duration_s": duration}.items()
                                      if v is not None}}
        chosen = Scenario(**values).validated()
    except ScenarioError as exc:
        fail(str(exc))
    from .simulation import run_simulator

    _run(run_simulator(settings, chosen, sim_log))


@bench_app.command("ivr", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench_ivr(ctx: typer.Context) -> None:
    """FastAGI IVR turnaround under ~1,000 concurrent sessions, beside panoramisk's FastAGI."""
    from bench import ivr as bench_ivr_module

    bench_ivr_module.main(list(ctx.args))


@bench_app.command("acd", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench_acd(ctx: typer.Context) -> None:
    """ACD routing decisions per second and latency on a real redis-server (--processes N)."""
    from bench import acd as bench_acd_module

    bench_acd_module.main(list(ctx.args))


@bench_app.command("ami")
def bench_ami(events: int = typer.Option(200_000, help="Events to replay.")) -> None:
    """AMI client throughput against panoramisk 1.4 on a recorded Asterisk event stream."""
    from bench import ami

    ami.main(["--events", str(events)])


def main() -> None:
    try:
        app()
    except SettingsError as exc:
        typer.echo(f"hotline: error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
