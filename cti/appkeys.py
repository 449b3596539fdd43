"""Typed keys of the CTI application's state (``app[REDIS]`` and so on)."""
from __future__ import annotations

import ipaddress
import weakref
from typing import Optional

import asyncpg
from aiohttp import web
from redis.asyncio import Redis

from hotline.auth import AuditLog, SessionStore, SignInLimiter, UserStore

from .acd_client import AcdClient
from .events import EventHub
from .metrics import LiveCollector
from .records import TodayKpis

__all__ = ["ACD", "ALLOWED_ORIGINS", "AMI", "AUDIT", "COOKIE_SECURE", "HUB", "KPIS", "LIMITER", "METRICS", "METRICS_FROM",
           "POOL", "PUBLIC_HEALTH", "REDIS", "SESSION_CHECK", "SESSIONS", "SOCKETS", "USERS"]

REDIS = web.AppKey("cti.redis", Redis)
POOL = web.AppKey("cti.pool", asyncpg.Pool)
AMI = web.AppKey("cti.ami", object)                       # hotline.ami.AMIClient or None (not used yet)
HUB = web.AppKey("cti.hub", EventHub)                     # the one pub/sub subscription of this process
KPIS = web.AppKey("cti.kpis", TodayKpis)                  # today's call_summary, cached for a few seconds
METRICS = web.AppKey("cti.metrics", LiveCollector)
SOCKETS = web.AppKey("cti.sockets", weakref.WeakSet)      # open agent desktop WebSockets
USERS = web.AppKey("cti.users", UserStore)
SESSIONS = web.AppKey("cti.sessions", SessionStore)
AUDIT = web.AppKey("cti.audit", AuditLog)
LIMITER = web.AppKey("cti.limiter", SignInLimiter)         # failed sign-ins per user and address
ACD = web.AppKey("cti.acd", AcdClient)                     # the ACD's internal API (agents' verbs)
PUBLIC_HEALTH = web.AppKey("cti.public_health", bool)      # /api/v1/health without signing in
# networks that may scrape /metrics
METRICS_FROM: web.AppKey[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]] = web.AppKey("cti.metrics_from")
# the session cookies' Secure flag: True, False, or None: as the request came (https)
COOKIE_SECURE: web.AppKey[Optional[bool]] = web.AppKey("cti.cookie_secure")
ALLOWED_ORIGINS: web.AppKey[tuple[str, ...]] = web.AppKey("cti.allowed_origins")  # besides this server's own
SESSION_CHECK: web.AppKey[float] = web.AppKey("cti.session_check")  # seconds between checks of a desktop's session
