-- Ticket hand-off: the outbox of tickets (and call metadata) for the ticketing system, and the
-- built-in ticketing receiver's own table (the demo's stand-in for the city's ticketing system).
-- depends: 0003_users_sessions_audit

-- One row per hand-off, written in the transaction of the agent's submit; the delivery worker
-- (cti/tickets/delivery.py) claims due rows with FOR UPDATE SKIP LOCKED and POSTs them.
CREATE TABLE ticket_outbox (
    id               bigserial PRIMARY KEY,
    idempotency_key  text NOT NULL UNIQUE,          -- made at submit (or sent by the desktop); the receiver dedups by it
    call_uniqueid    text NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('ticket', 'call')),
    payload          jsonb NOT NULL,                -- the ticket form and the call's metadata, as POSTed
    created_at       timestamptz NOT NULL DEFAULT now(),
    created_by       text,                          -- the user who filed it (null: call-end metadata)
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    delivered_at     timestamptz,
    ticket_id        text,                          -- what the ticketing system answered
    dead_at          timestamptz,                   -- parked: an admin may re-send it
    CHECK (delivered_at IS NULL OR dead_at IS NULL)
);
CREATE INDEX ticket_outbox_due_idx ON ticket_outbox (next_attempt_at) WHERE delivered_at IS NULL AND dead_at IS NULL;
CREATE INDEX ticket_outbox_call_idx ON ticket_outbox (call_uniqueid, created_at);
CREATE INDEX ticket_outbox_dead_idx ON ticket_outbox (dead_at) WHERE dead_at IS NOT NULL;

-- The built-in receiver's tickets: kept in PostgreSQL so that a restarted receiver still dedups.
CREATE TABLE ticketing_received (
    id               bigserial PRIMARY KEY,
    idempotency_key  text NOT NULL UNIQUE,
    ticket_id        text UNIQUE CHECK (ticket_id ~ '^[0-9]{8,10}$'),   -- digits the caller keys at the IVR
    caller           text,
    kind             text NOT NULL CHECK (kind IN ('ticket', 'call')),
    status           text NOT NULL DEFAULT 'accepted' CHECK (status IN ('accepted', 'processing', 'completed')),
    payload          jsonb NOT NULL,
    received_at      timestamptz NOT NULL DEFAULT now(),
    deliveries       integer NOT NULL DEFAULT 1,   -- how often the same key came (retries answered with the same id)
    CHECK ((kind = 'ticket') = (ticket_id IS NOT NULL))   -- call metadata alone gets no ticket
);
CREATE INDEX ticketing_received_caller_idx ON ticketing_received (caller, received_at);

-- The optional hand-off of every call's metadata at call end finds new records by this.
CREATE INDEX calls_recorded_at_idx ON calls (recorded_at);
