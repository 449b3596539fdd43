-- Satisfaction survey result on the call record, and the index behind "how often did this number call".
-- depends: 0001_calls_and_agents

ALTER TABLE calls
    ADD COLUMN survey text CHECK (survey IN ('satisfied', 'basically_satisfied', 'dissatisfied')),
    ADD COLUMN talk_ended_at timestamptz;

CREATE INDEX calls_caller_arrived_idx ON calls (caller_id, arrived_at);
