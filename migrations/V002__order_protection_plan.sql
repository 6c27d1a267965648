-- The protection an entry order asks for, kept until its position exists (restart-safe).
ALTER TABLE orders ADD COLUMN IF NOT EXISTS stop_loss NUMERIC(30, 12);
ALTER TABLE orders ADD COLUMN IF NOT EXISTS take_profit NUMERIC(30, 12);
