"""The hotline's one versioned API, ``/api/v1``: each module registers its endpoints with
:data:`cti.v1.base.API` (hotline/web/api.py), which serves them and makes the OpenAPI document.

============ ==============================================================
``auth``     sign in, refresh, sign out, who am I
``calls``    call records (paged, filtered) and statistics
``calls_control`` hang up and transfer a live call (through the ACD); transfer targets
``agents``   agents, their states and profiles (through the ACD), decisions
``users``    users and the audit trail (admins)
``floor``    the live view, health
``tickets``  the ticket form (catalogue, prefill, submit), its state, dead letters (admins)
``docs``     the OpenAPI document and a page to browse it
============ ==============================================================
"""
from . import agents, auth, calls, calls_control, docs, floor, tickets, users  # noqa: F401  (each registers its endpoints)
from .base import API

__all__ = ["API"]
