"""Typed keys of the CTI application's state (``app[REDIS]`` and so on)."""
from __future__ import annotations

import weakref

import asyncpg
from aiohttp import web
from redis.asyncio import Redis

from .events import EventHub
from .metrics import LiveCollector
from .records import TodayKpis

__all__ = ["AMI", "HUB", "KPIS", "METRICS", "POOL", "REDIS", "SOCKETS"]

REDIS = web.AppKey("cti.redis", Redis)
POOL = web.AppKey("cti.pool", asyncpg.Pool)
AMI = web.AppKey("cti.ami", object)                       # hotline.ami.AMIClient or None (not used yet)
HUB = web.AppKey("cti.hub", EventHub)                     # the one pub/sub subscription of this process
KPIS = web.AppKey("cti.kpis", TodayKpis)                  # today's call_summary, cached for a few seconds
METRICS = web.AppKey("cti.metrics", LiveCollector)
SOCKETS = web.AppKey("cti.sockets", weakref.WeakSet)      # open agent desktop WebSockets
