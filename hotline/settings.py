"""Settings for every hotline service, in one place.

Layers, later ones win: built-in defaults -> YAML config file -> ``HOTLINE_*``
environment variables -> command-line options. Everything is validated when a
program starts; :func:`load_settings` turns any problem into one
:class:`SettingsError` line that names the setting, never a traceback.
"""
from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any, Mapping, Optional

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .yamlfile import YAMLFileError, read_yaml

__all__ = ["Settings", "SettingsError", "load_settings"]

ENV_PREFIX = "HOTLINE_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"


class SettingsError(Exception):
    """A setting is missing or wrong; the message is one line meant for the operator."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    # Stores. None means "start embedded servers in data_dir".
    database_url: Optional[str] = None
    redis_url: Optional[str] = None
    data_dir: Path = Path("hotline-data")
    db_connect_timeout_s: float = Field(5.0, gt=0, le=120)

    # Asterisk Manager Interface (our services are the client).
    ami_host: str = "127.0.0.1"
    ami_port: int = Field(5038, ge=1, le=65535)
    ami_username: str = "hotline"
    # No default: it must match manager.conf. The demo takes it from the shipped manager.conf.
    ami_secret: Optional[str] = None
    ami_action_timeout_s: float = Field(5.0, gt=0, le=120)
    ami_ping_interval_s: float = Field(10.0, gt=0, le=600)

    # FastAGI server of the IVR (Asterisk connects to it).
    agi_host: str = "127.0.0.1"
    agi_port: int = Field(4573, ge=0, le=65535)          # 0: any free port (tests)

    # CTI HTTP service: agent desktop, wallboard, API, metrics.
    cti_host: str = "127.0.0.1"
    cti_port: int = Field(8080, ge=0, le=65535)

    # Who may reach what. The CTI and the ACD share the service token (the ACD's API takes it, or a
    # signed-in user's token); None: one is made for the services of one process (hotline services,
    # the demo), and separate processes refuse to start without it.
    service_token: Optional[str] = Field(None, min_length=32, max_length=256, pattern=r"^[A-Za-z0-9_.~+/=-]+$")
    auth_access_ttl_s: float = Field(900.0, ge=60, le=86400)        # an access token's life
    auth_session_ttl_s: float = Field(43200.0, ge=300, le=604800)   # a session's life (refresh until then)
    public_health: bool = True                                       # /api/v1/health without signing in
    metrics_from: list[str] = ["127.0.0.1/32", "::1/128"]            # networks that may scrape /metrics
    cti_allowed_origins: list[str] = []                              # pages' origins besides the CTI's own
    cti_cookie_secure: Optional[bool] = None                         # None: Secure when the request was https

    # ACD HTTP API: agents, log in/out, ready/not ready, wrap-up, routing explanations (loopback only
    # by default: the CTI reaches it with the service token).
    acd_host: str = "127.0.0.1"
    acd_port: int = Field(8081, ge=0, le=65535)          # 0: any free port (tests)
    # Several ACD processes may run at once (acd/cluster.py); each needs its own name, kept across
    # restarts so that a restarted process takes its calls back at once. None: host:acd_port.
    acd_node: Optional[str] = Field(None, pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    acd_lease_s: float = Field(3.0, ge=0.5, le=60)         # a node silent this long is taken for dead

    # ACD behaviour.
    ring_timeout_s: int = Field(15, ge=3, le=120)
    wrapup_s: float = Field(5.0, ge=0, le=3600)
    default_queue: str = "general"
    acd_queues_file: Optional[Path] = None               # queue rules (strategy, skill expansion); None: acd/queues.yaml
    # Policy specialists' numbers an agent may transfer a caller to (dialled on the trunk).
    transfer_specialists: list[Annotated[str, Field(pattern=r"^[0-9]{3,20}$")]] = Field(default_factory=list)

    # IVR: menu files (None: the shipped ivr/menus) and the ticketing system of progress queries.
    ivr_menus_dir: Optional[Path] = None
    tickets_url: Optional[str] = None                    # http://host/api/tickets/{ticket}
    tickets_timeout_s: float = Field(1.5, gt=0, le=30)
    # Ticket hand-off (cti/tickets): where tickets are POSTed (None: the built-in receiver in the demo
    # and `hotline services`), the HMAC key they are signed with, retries, the files it reads.
    tickets_endpoint: Optional[str] = None
    tickets_secret: Optional[str] = Field(None, min_length=32, max_length=256, validate_default=True)
    tickets_attempts: int = Field(8, ge=1, le=100)              # then the hand-off is a dead letter
    tickets_backoff_base_s: float = Field(2.0, gt=0, le=3600)   # exponential backoff with full jitter
    tickets_backoff_max_s: float = Field(600.0, gt=0, le=86400)
    tickets_delivery_timeout_s: float = Field(5.0, gt=0, le=60)
    tickets_handoff_all_calls: bool = False                     # every call's metadata at call end too
    tickets_catalogue_file: Optional[Path] = None               # None: cti/tickets/catalogue.yaml
    tickets_holidays_file: Optional[Path] = None                # None: cti/tickets/holidays.yaml

    log_level: str = "INFO"

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not value.startswith(("postgres://", "postgresql://")):
            raise ValueError("must start with postgresql:// (or postgres://)")
        return value

    @field_validator("metrics_from")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for net in value:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ValueError(f"{net!r} is not an address or network (10.0.0.0/8, 127.0.0.1)") from None
        return value

    @field_validator("cti_allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if not origin.startswith(("http://", "https://")) or origin.count("/") != 2:
                raise ValueError(f"{origin!r} is not an origin (https://host[:port])")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("tickets_url")
    @classmethod
    def _tickets_url(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and (not value.startswith(("http://", "https://")) or "{ticket}" not in value):
            raise ValueError("must be an http(s):// URL containing {ticket}")
        return value

    @field_validator("tickets_endpoint")
    @classmethod
    def _tickets_endpoint(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s):// URL (the ticketing system's POST endpoint)")
        return value

    @field_validator("tickets_secret")
    @classmethod
    def _tickets_secret(cls, value: Optional[str], info: ValidationInfo) -> Optional[str]:
        if value is None and info.data.get("tickets_endpoint"):
            raise ValueError("required with tickets_endpoint: tickets are delivered signed (32 or more characters)")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return value

    @field_validator("default_queue")
    @classmethod
    def _queue_name(cls, value: str) -> str:
        if not value or not value.replace("-", "").replace("_", "").isalnum():
            raise ValueError("must be letters, digits, '-' or '_'")
        return value


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        data = read_yaml(path)
    except YAMLFileError as exc:
        raise SettingsError(f"config file {path}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"config file {path}: must be a mapping of setting: value")
    known = set(Settings.model_fields)
    for key in data:
        if key not in known:
            raise SettingsError(f"config file {path}: unknown setting '{key}'")
    return data


def _describe(error: Mapping[str, Any], from_env: set[str]) -> str:
    field = str(error["loc"][0]) if error.get("loc") else "?"
    source = ENV_PREFIX + field.upper() if field.upper() in from_env else field
    message = error.get("msg", "invalid value").removeprefix("Value error, ")
    if error.get("type") == "extra_forbidden":
        return f"setting {source}: unknown setting"
    value = error.get("input")
    shown = "" if isinstance(value, dict) else f" (got {value!r})"
    return f"setting {source}: {message}{shown}"


def load_settings(config_file: Optional[Path] = None, **overrides: Any) -> Settings:
    """Build the settings from all layers, or raise SettingsError with one line."""
    if config_file is None and os.environ.get(CONFIG_ENV):
        config_file = Path(os.environ[CONFIG_ENV])
    file_values = _read_config_file(config_file) if config_file else {}
    from_env = {
        name[len(ENV_PREFIX):]
        for name in os.environ
        if name.startswith(ENV_PREFIX) and name != CONFIG_ENV
    }
    known_env = {name.upper() for name in Settings.model_fields}
    for name in sorted(from_env - known_env):
        raise SettingsError(f"setting {ENV_PREFIX}{name}: unknown setting")
    # Environment beats the file: drop file keys that the environment sets.
    file_values = {k: v for k, v in file_values.items() if k.upper() not in from_env}
    values = {**file_values, **{k: v for k, v in overrides.items() if v is not None}}
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise SettingsError(_describe(exc.errors()[0], from_env)) from None
