"""IVR service: the FastAGI server (``ivr.fastagi``), the AGI protocol (``ivr.agi``)
and the hotline's voice menus (``ivr.app``)."""
