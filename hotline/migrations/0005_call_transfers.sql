-- Call control from the desktop: a call record says who talked with the caller and how the call
-- was transferred (the 12345 rule: at most once, unless a supervisor allowed one more).
-- depends: 0003_users_sessions_audit

ALTER TABLE calls
    ADD COLUMN agents text[],               -- every agent who talked with the caller, in order
    ADD COLUMN transfers jsonb;             -- [{id, kind, to, mode, at, by, from}], one per transfer
