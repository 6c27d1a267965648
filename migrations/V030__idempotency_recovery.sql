-- Idempotency keys record the trade they claim and the server process that claimed them, so a
-- key whose request died with its process is resolved from the order store (replayed or
-- released) instead of staying pending for 24 hours.
ALTER TABLE idempotency_keys ADD COLUMN IF NOT EXISTS correlation_id UUID;
ALTER TABLE idempotency_keys ADD COLUMN IF NOT EXISTS instance_id UUID;
ALTER TABLE idempotency_keys ADD COLUMN IF NOT EXISTS request_sha256 TEXT;
CREATE INDEX IF NOT EXISTS api_audit_log_request_id ON api_audit_log (request_id);
