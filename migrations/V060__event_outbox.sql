-- Transactional outbox of the event export (docs/SCALING.md): money and audit events wait here,
-- in the order they were written, until NATS JetStream has acknowledged them; the relay deletes
-- each row after its acknowledgement. One table per account schema.
CREATE TABLE IF NOT EXISTS event_outbox (
    seq         BIGSERIAL PRIMARY KEY,
    event_id    UUID NOT NULL UNIQUE,
    topic       TEXT NOT NULL,
    symbol      TEXT,
    payload     JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
