-- Call records and agents: the first schema of the 12345 hotline.

-- One row per inbound call, written once when the call has ended.
CREATE TABLE calls (
    id              bigserial PRIMARY KEY,
    uniqueid        text NOT NULL UNIQUE,          -- Asterisk Uniqueid of the caller's channel
    linkedid        text,
    line            text NOT NULL DEFAULT 'main',  -- main / enterprise
    caller_id       text,
    arrived_at      timestamptz NOT NULL,
    queued_at       timestamptz,
    answered_at     timestamptz,
    ended_at        timestamptz NOT NULL,
    wait_s          double precision,              -- queued_at -> answered_at (or -> ended_at if abandoned)
    talk_s          double precision,              -- answered_at -> ended_at
    queue           text,
    agent           text,
    outcome         text NOT NULL CHECK (outcome IN ('answered', 'abandoned', 'ivr_completed')),
    abandoned_in    text CHECK (abandoned_in IN ('ivr', 'queue', 'ringing')),
    hangup_cause    integer,
    ring_attempts   integer NOT NULL DEFAULT 0,
    priority        integer NOT NULL DEFAULT 0,
    skills          text,
    ivr_path        jsonb,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX calls_arrived_at_idx ON calls (arrived_at);
CREATE INDEX calls_agent_idx ON calls (agent, arrived_at);

-- Agents and their skills (skill name -> level 1..5).
CREATE TABLE agents (
    id          text PRIMARY KEY,                  -- the agent's PJSIP endpoint / extension
    name        text NOT NULL,
    team        text NOT NULL DEFAULT 'default',
    skills      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Every agent state change, for occupancy and time-in-state reports.
CREATE TABLE agent_states (
    id          bigserial PRIMARY KEY,
    event_id    text NOT NULL UNIQUE,              -- written at most once from the outbox
    agent_id    text NOT NULL,
    state       text NOT NULL,
    reason      text,
    call_uniqueid text,
    at          timestamptz NOT NULL
);
CREATE INDEX agent_states_agent_at_idx ON agent_states (agent_id, at);
