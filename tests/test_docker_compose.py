"""docker-compose.yml and the Dockerfile: services, images, health checks, wiring, settings."""
from __future__ import annotations

import configparser
import ipaddress
import re
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from hotline.settings import Settings
from pbxsim.asterisk_conf import load_conf

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

OUR_SERVICES = ("ivr", "acd", "cti")
# Settings the deployment may set through HOTLINE_* (the brief of this file).
DEPLOYABLE_SETTINGS = {
    "database_url", "redis_url", "data_dir", "ami_host", "ami_port", "ami_username", "ami_secret",
    "agi_host", "agi_port", "cti_host", "cti_port", "ring_timeout_s", "wrapup_s", "default_queue",
    "log_level", "service_token",
}
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")
# ${VAR:?message}: the deployment must set it (compose refuses to start otherwise).
_REQUIRED = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*):\?[^}]*\}")
REQUIRED_EXAMPLE = "an-example-secret-that-a-deployment-sets-0123456789"


@lru_cache(maxsize=None)
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def service(name: str) -> dict[str, Any]:
    services = compose()["services"]
    assert name in services, f"service {name} missing"
    return services[name]


def interpolate(value: Any) -> str:
    """Compose's ${VAR:-default} with an empty environment: the defaults (a required ${VAR:?...}:
    an example of what the deployment sets)."""
    return _VARIABLE.sub(lambda m: m.group(2) or "", _REQUIRED.sub(REQUIRED_EXAMPLE, str(value)))


def environment(name: str) -> dict[str, str]:
    env = service(name).get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: interpolate(value) for key, value in env.items()}


def effective(name: str, setting: str) -> Any:
    """The value a service runs with: its environment, else the Settings default."""
    env = environment(name)
    key = "HOTLINE_" + setting.upper()
    return env[key] if key in env else Settings.model_fields[setting].default


def host_network(name: str) -> bool:
    return service(name).get("network_mode") == "host"


def published(name: str) -> list[tuple[str, int]]:
    """(host address, host port) of a service's published ports."""
    result = []
    for port in service(name).get("ports") or []:
        parts = str(port).split(":")
        address = parts[0] if len(parts) == 3 else "0.0.0.0"
        result.append((address, int(parts[-2])))
    return result


def dialplan_globals() -> dict[str, str]:
    section = load_conf(ROOT / "asterisk-config" / "extensions.conf").get("globals")
    assert section is not None
    return {e.key: e.value for e in section.entries}


# ------------------------------------------------------------------ services and images


def test_services_present() -> None:
    assert {"asterisk", "postgres", "redis", *OUR_SERVICES} <= set(compose()["services"])


def test_images() -> None:
    assert re.fullmatch(r"andrius/asterisk:22(\.[\w.-]+)?", service("asterisk")["image"])
    assert service("postgres")["image"] == "postgres:16"
    assert service("redis")["image"] == "redis:7"


def test_asterisk_config_is_mounted_read_only() -> None:
    mounts = []
    for volume in service("asterisk").get("volumes", []):
        if isinstance(volume, str):
            parts = volume.split(":")
            mounts.append((parts[0], parts[1], parts[2:] == ["ro"]))
        else:
            mounts.append((volume.get("source"), volume.get("target"), bool(volume.get("read_only"))))
    assert ("./asterisk-config", "/etc/asterisk", True) in mounts


def test_named_volumes_are_declared() -> None:
    declared = set(compose().get("volumes") or {})
    for name, spec in compose()["services"].items():
        for volume in spec.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source")
            if source and not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume '{source}' is not declared"


def test_healthchecks() -> None:
    postgres = " ".join(service("postgres")["healthcheck"]["test"])
    assert "pg_isready" in postgres
    assert service("redis")["healthcheck"]["test"][1:] == ["redis-cli", "ping"]
    assert service("asterisk")["healthcheck"]["test"]


def test_postgres_environment_matches_the_database_url() -> None:
    env = environment("postgres")
    assert {"POSTGRES_USER", "POSTGRES_DB", "POSTGRES_PASSWORD"} <= set(env)
    for name in OUR_SERVICES:
        url = urlsplit(effective(name, "database_url"))
        assert url.scheme in ("postgresql", "postgres")
        assert (url.username, url.password, url.path.lstrip("/")) == (
            env["POSTGRES_USER"], env["POSTGRES_PASSWORD"], env["POSTGRES_DB"],
        )


def test_redis_keeps_its_data() -> None:
    # The outbox of call records not yet in PostgreSQL lives in Redis.
    redis = service("redis")
    assert "--appendonly" in redis.get("command", []) and any(
        str(v).endswith(":/data") for v in redis.get("volumes", [])
    )


# ------------------------------------------------------------------ our services


@pytest.mark.parametrize("name", OUR_SERVICES)
def test_our_services_are_built_here_and_run_their_command(name: str) -> None:
    spec = service(name)
    build = spec["build"]
    assert (build if isinstance(build, str) else build.get("context")) == "."
    command = spec["command"]
    assert (command if isinstance(command, list) else command.split()) == [name]


@pytest.mark.parametrize("name", OUR_SERVICES)
def test_our_services_wait_for_healthy_stores(name: str) -> None:
    depends = service(name)["depends_on"]
    assert isinstance(depends, dict), "depends_on needs conditions"
    for store in ("postgres", "redis"):
        assert depends[store]["condition"] == "service_healthy"
    for dependency, spec in depends.items():
        assert spec["condition"] == "service_healthy"
        assert "healthcheck" in service(dependency), f"{dependency} has no healthcheck to wait for"


@pytest.mark.parametrize("name", OUR_SERVICES)
def test_environment_names_are_settings(name: str) -> None:
    env = environment(name)
    names = {key[len("HOTLINE_"):].lower() for key in env if key.startswith("HOTLINE_")}
    assert names, f"{name} sets no HOTLINE_ variable"
    assert names <= DEPLOYABLE_SETTINGS, sorted(names - DEPLOYABLE_SETTINGS)
    assert names <= set(Settings.model_fields), sorted(names - set(Settings.model_fields))
    assert {"database_url", "redis_url", "ami_host"} <= names
    # Values must pass the settings' own validation.
    Settings(**{key[len("HOTLINE_"):].lower(): value for key, value in env.items() if key.startswith("HOTLINE_")})


@pytest.mark.parametrize("name", OUR_SERVICES)
def test_stores_are_reachable_from_the_services_network(name: str) -> None:
    for setting, store, port in (("database_url", "postgres", 5432), ("redis_url", "redis", 6379)):
        url = urlsplit(effective(name, setting))
        if host_network(name):
            # Host networking: compose service names do not resolve; the store must be
            # published on the host's loopback.
            assert url.hostname == "127.0.0.1", f"{name}: {setting} must use 127.0.0.1 with host networking"
            assert ("127.0.0.1", url.port or port) in published(store), f"{store} is not published on loopback"
        else:
            assert url.hostname == store


def test_stores_are_not_published_beyond_loopback() -> None:
    for store in ("postgres", "redis"):
        for address, _ in published(store):
            assert ipaddress.ip_address(address).is_loopback, f"{store} published on {address}"


# ------------------------------------------------------------------ wiring to Asterisk


def test_asterisk_shares_the_host_network_with_ami_and_agi_clients() -> None:
    # AMI is bound to loopback and the dialplan calls FastAGI on loopback: the services that
    # use them must share Asterisk's network namespace.
    assert host_network("asterisk")
    for name in OUR_SERVICES:
        assert host_network(name), f"{name} cannot reach Asterisk's loopback"


@pytest.mark.parametrize("name", ("acd", "cti"))
def test_ami_settings_match_manager_conf(name: str) -> None:
    manager = load_conf(ROOT / "asterisk-config" / "manager.conf")
    general = manager.get("general")
    assert effective(name, "ami_host") == general.get("bindaddr")
    assert int(effective(name, "ami_port")) == int(general.get("port") or 5038)
    user = manager.get(effective(name, "ami_username"))
    assert user is not None, f"{name}: AMI user {effective(name, 'ami_username')} is not in manager.conf"
    assert effective(name, "ami_secret") == user.get("secret"), f"{name}: AMI secret differs from manager.conf"


def test_ivr_listens_where_the_dialplan_calls_it() -> None:
    agi = urlsplit(dialplan_globals()["HOTLINE_AGI"])
    assert agi.scheme == "agi"
    assert (effective("ivr", "agi_host"), int(effective("ivr", "agi_port"))) == (agi.hostname, agi.port or 4573)


def test_acd_agrees_with_the_dialplan_defaults() -> None:
    globals_ = dialplan_globals()
    assert int(effective("acd", "ring_timeout_s")) == int(globals_["HOTLINE_RING_TIMEOUT"])
    assert effective("acd", "default_queue") == globals_["HOTLINE_DEFAULT_QUEUE"]


# ------------------------------------------------------------------ Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def test_dockerfile_installs_the_package() -> None:
    assert DOCKERFILE.is_file()
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    runs = " ".join(rest for word, rest in instructions if word == "RUN")
    assert re.search(r"\bpip install (\S+ )*\.(\s|$)", runs), "the Dockerfile must 'pip install .'"
    entrypoint = [rest for word, rest in instructions if word == "ENTRYPOINT"]
    assert entrypoint and yaml.safe_load(entrypoint[-1]) == ["hotline"]
    users = [rest for word, rest in instructions if word == "USER"]
    assert users and users[-1] not in ("root", "0"), "the services should not run as root"


def test_dockerfile_copies_every_package_and_the_build_files() -> None:
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    packages = {p.split(".")[0] for p in setup["options.packages.find"]["include"].split()}
    copied = set()
    for word, rest in dockerfile_instructions():
        if word == "COPY":
            copied.update(Path(src).name for src in rest.split()[:-1])
    missing = sorted(packages - copied)
    assert not missing, f"packages in setup.cfg that the image would not contain: {missing}"
    assert {"setup.cfg", "pyproject.toml"} <= copied


def test_dockerfile_environment_names_are_settings() -> None:
    for word, rest in dockerfile_instructions():
        if word == "ENV":
            for name in re.findall(r"\b(HOTLINE_[A-Z_]+)=", rest):
                assert name[len("HOTLINE_"):].lower() in DEPLOYABLE_SETTINGS & set(Settings.model_fields)
