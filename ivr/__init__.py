"""IVR service: the FastAGI server (``ivr.fastagi``), the AGI protocol (``ivr.agi``), the menu
files and their checks (``ivr.menu``, ``ivr/menus/*.yaml``), the call flow (``ivr.app``), its
services (``ivr.progress``, ``ivr.after_hours``), the satisfaction survey (``ivr.survey``) and
the prompts (``ivr.prompts``, ``ivr/prompts.yaml``)."""
