"""CTI: the agent desktop (WebSocket screen pops), the supervisors' wallboard, the HTTP API
and the Prometheus metrics, read from the live state in Redis and the records in PostgreSQL.

Modules, in the order a request meets them: ``service.py`` (start on a host and port),
``app.py`` (routes, middleware, start-up and shut-down), ``api.py`` (``/api/*``),
``desktop.py`` (``/ws/agent/{id}`` and the screen pop), ``events.py`` (the one Redis
pub/sub subscription, fanned out to the sockets), ``metrics.py`` (``/metrics``),
``live.py`` (reading Redis), ``records.py`` (reading PostgreSQL).
"""
