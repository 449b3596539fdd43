"""IVR service: the FastAGI server (``ivr.fastagi``), one call's AGI session (``ivr.session``) and
the AGI wire format (``ivr.agi``); the menu files (``ivr.menu``: loading them; ``ivr.menu_model``,
``ivr.menu_reader``, ``ivr.menu_check``; ``ivr/menus/*.yaml``); the call flow (``ivr.app``) over
the call object, its path and route (``ivr.call``); its services (``ivr.progress``,
``ivr.after_hours``), the queue announcements (``ivr.announce``), the satisfaction survey
(``ivr.survey``) and the prompts (``ivr.prompts``, ``ivr/prompts.yaml``).

Imports point one way: ``service`` -> ``app`` -> the services and handlers (``progress``,
``after_hours``, ``announce``, ``survey``) -> ``call`` -> ``menu_model`` and ``session`` -> ``agi``.
"""
