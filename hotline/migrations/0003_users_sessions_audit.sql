-- Who may sign in and as what; their sessions; and the audit trail of who did what to whom.
-- depends: 0002_survey_and_caller_history

CREATE TABLE users (
    id                  bigserial PRIMARY KEY,
    username            text NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
    role                text NOT NULL CHECK (role IN ('agent', 'supervisor', 'ops', 'quality', 'admin')),
    agent_id            text UNIQUE CHECK (agent_id ~ '^[0-9]{1,16}$'),   -- an agent is bound to one agent (extension)
    teams               text[] NOT NULL DEFAULT '{}',                  -- a supervisor limited to these teams ('{}': all)
    password_hash       text NOT NULL,                                 -- argon2id, as argon2-cffi writes it
    disabled            boolean NOT NULL DEFAULT false,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    password_changed_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((role = 'agent') = (agent_id IS NOT NULL))
);

-- One row per signed-in session: only hashes of its tokens are kept.
CREATE TABLE sessions (
    id                  bigserial PRIMARY KEY,
    user_id             bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    access_hash         text NOT NULL UNIQUE,
    access_expires_at   timestamptz NOT NULL,
    refresh_hash        text NOT NULL UNIQUE,
    expires_at          timestamptz NOT NULL,                          -- the end of the session (refresh no longer works)
    created_at          timestamptz NOT NULL DEFAULT now(),
    address             text
);
CREATE INDEX sessions_user_idx ON sessions (user_id);
CREATE INDEX sessions_expires_idx ON sessions (expires_at);

CREATE TABLE audit (
    id          bigserial PRIMARY KEY,
    event_id    text NOT NULL UNIQUE,   -- written at most once (directly, or from the outbox)
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text,                   -- the user (or service) who acted; null for an unknown name
    action      text NOT NULL,          -- sign_in, sign_in_failed, sign_out, user_added, agent_state, export, ...
    target      text,                   -- whom or what it concerned
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb,
    address     text                    -- from where (the client's address)
);
CREATE INDEX audit_at_idx ON audit (at);
CREATE INDEX audit_actor_at_idx ON audit (actor, at);
