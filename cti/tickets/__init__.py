"""Ticket hand-off: the agent's ticket form (catalogue, deadlines over the holiday calendar),
the outbox in PostgreSQL and its delivery worker, the built-in ticketing receiver of the demo,
and the caller's open tickets for the screen pop.

============== ===================================================================================
``catalogue``  categories (code, names, default urgency) and the category an IVR path implies
``calendar``   working days over ``holidays.yaml`` (public holidays, 调休 working weekends)
``deadlines``  urgency -> 1, 3 or 7 working days -> the due date (pure)
``callfacts``  what a hand-off says of the call (live hash, record, IVR path)
``handoff``    the outbox table: submit (one transaction, idempotency key), states, re-send
``signing``    HMAC-SHA256 of ``timestamp.body``; verification (pure)
``retry``      an answer judged (delivered, retry, dead); backoff with full jitter (pure)
``delivery``   the worker: claims due rows (FOR UPDATE SKIP LOCKED), POSTs, stores the answer
``receiver``   the built-in ticketing system (demo and tests; loopback only)
``lookup``     a caller's open tickets, with a short timeout (the screen pop)
``wiring``     the pieces in the CTI application
============== ===================================================================================
"""
