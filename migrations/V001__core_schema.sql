-- Core schema. Money, prices and sizes are NUMERIC; timestamps are TIMESTAMPTZ (UTC).

CREATE TABLE IF NOT EXISTS orders (
    id                  UUID PRIMARY KEY,
    client_order_id     TEXT NOT NULL UNIQUE,
    exchange_order_id   TEXT,
    correlation_id      UUID,
    position_id         UUID,
    parent_order_id     UUID,
    symbol              TEXT NOT NULL,
    side                TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
    order_type          TEXT NOT NULL,
    purpose             TEXT NOT NULL DEFAULT 'entry',
    status              TEXT NOT NULL,
    volume              NUMERIC(30, 12) NOT NULL,
    filled_volume       NUMERIC(30, 12) NOT NULL DEFAULT 0,
    price               NUMERIC(30, 12),
    price2              NUMERIC(30, 12),
    avg_fill_price      NUMERIC(30, 12),
    fee                 NUMERIC(30, 12) NOT NULL DEFAULT 0,
    leverage            INTEGER NOT NULL DEFAULT 1,
    reduce_only         BOOLEAN NOT NULL DEFAULT FALSE,
    linked_order_id     UUID,
    error_message       TEXT,
    trading_mode        TEXT NOT NULL DEFAULT 'paper',
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS orders_status_idx ON orders (status);
CREATE INDEX IF NOT EXISTS orders_symbol_idx ON orders (symbol, created_at DESC);
CREATE INDEX IF NOT EXISTS orders_position_idx ON orders (position_id);

CREATE TABLE IF NOT EXISTS order_status_log (
    id              BIGSERIAL PRIMARY KEY,
    order_id        UUID NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    from_status     TEXT,
    to_status       TEXT NOT NULL,
    filled_volume   NUMERIC(30, 12),
    detail          JSONB NOT NULL DEFAULT '{}'::jsonb,
    at              TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS order_status_log_order_idx ON order_status_log (order_id, at);

CREATE TABLE IF NOT EXISTS positions (
    id                  UUID PRIMARY KEY,
    correlation_id      UUID,
    symbol              TEXT NOT NULL,
    side                TEXT NOT NULL CHECK (side IN ('long', 'short')),
    status              TEXT NOT NULL CHECK (status IN ('open', 'closing', 'closed', 'liquidated')),
    size                NUMERIC(30, 12) NOT NULL,
    entry_price         NUMERIC(30, 12) NOT NULL,
    exit_price          NUMERIC(30, 12),
    leverage            INTEGER NOT NULL DEFAULT 1,
    stop_loss           NUMERIC(30, 12),
    take_profit         NUMERIC(30, 12),
    stop_loss_order_id  UUID,
    take_profit_order_id UUID,
    realized_pnl        NUMERIC(30, 12) NOT NULL DEFAULT 0,
    fees                NUMERIC(30, 12) NOT NULL DEFAULT 0,
    trading_mode        TEXT NOT NULL DEFAULT 'paper',
    opened_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    closed_at           TIMESTAMPTZ,
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS positions_status_idx ON positions (status, symbol);

CREATE TABLE IF NOT EXISTS position_snapshots (
    position_id     UUID NOT NULL REFERENCES positions (id) ON DELETE CASCADE,
    at              TIMESTAMPTZ NOT NULL,
    price           NUMERIC(30, 12) NOT NULL,
    unrealized_pnl  NUMERIC(30, 12) NOT NULL,
    unrealized_pnl_pct NUMERIC(20, 8) NOT NULL,
    PRIMARY KEY (position_id, at)
);

CREATE TABLE IF NOT EXISTS trades (
    id              UUID PRIMARY KEY,
    order_id        UUID REFERENCES orders (id),
    position_id     UUID,
    correlation_id  UUID,
    symbol          TEXT NOT NULL,
    side            TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
    volume          NUMERIC(30, 12) NOT NULL,
    price           NUMERIC(30, 12) NOT NULL,
    fee             NUMERIC(30, 12) NOT NULL DEFAULT 0,
    realized_pnl    NUMERIC(30, 12),
    trading_mode    TEXT NOT NULL DEFAULT 'paper',
    executed_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS trades_symbol_idx ON trades (symbol, executed_at DESC);

-- Named JSON state documents (coordinator, risk engine, paper exchange, …), upserted whole.
CREATE TABLE IF NOT EXISTS coordinator_state (
    key         TEXT PRIMARY KEY,
    state_data  JSONB NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS risk_state (
    key         TEXT PRIMARY KEY,
    state_data  JSONB NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS agent_outputs (
    id              BIGSERIAL PRIMARY KEY,
    agent           TEXT NOT NULL,
    symbol          TEXT NOT NULL,
    correlation_id  UUID,
    model           TEXT,
    output          JSONB NOT NULL,
    at              TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS agent_outputs_latest_idx ON agent_outputs (agent, symbol, at DESC);

CREATE TABLE IF NOT EXISTS decisions (
    id              BIGSERIAL PRIMARY KEY,
    correlation_id  UUID NOT NULL,
    stage           TEXT NOT NULL,
    symbol          TEXT,
    detail          JSONB NOT NULL,
    at              TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_correlation_idx ON decisions (correlation_id, id);

CREATE TABLE IF NOT EXISTS model_comparisons (
    id              BIGSERIAL PRIMARY KEY,
    correlation_id  UUID,
    symbol          TEXT NOT NULL,
    agent           TEXT NOT NULL,
    model           TEXT NOT NULL,
    provider        TEXT NOT NULL,
    prompt_hash     TEXT NOT NULL,
    action          TEXT,
    confidence      DOUBLE PRECISION,
    response        JSONB,
    latency_ms      BIGINT,
    input_tokens    INTEGER,
    output_tokens   INTEGER,
    cost_usd        NUMERIC(20, 8) NOT NULL DEFAULT 0,
    error           TEXT,
    at              TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS model_comparisons_replay_idx ON model_comparisons (agent, model, prompt_hash);

CREATE TABLE IF NOT EXISTS hodl_bags (
    asset               TEXT PRIMARY KEY CHECK (asset IN ('BTC', 'XRP', 'USDT')),
    balance             NUMERIC(30, 12) NOT NULL DEFAULT 0,
    cost_basis_usd      NUMERIC(30, 12) NOT NULL DEFAULT 0,
    pending_usd         NUMERIC(30, 12) NOT NULL DEFAULT 0,
    accumulation_count  INTEGER NOT NULL DEFAULT 0,
    first_accumulation  TIMESTAMPTZ,
    last_accumulation   TIMESTAMPTZ,
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS hodl_transactions (
    id              UUID PRIMARY KEY,
    asset           TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('allocation', 'purchase')),
    amount_usd      NUMERIC(30, 12) NOT NULL,
    amount_asset    NUMERIC(30, 12),
    price           NUMERIC(30, 12),
    source_trade_id UUID,
    at              TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS hodl_transactions_asset_idx ON hodl_transactions (asset, at DESC);

CREATE TABLE IF NOT EXISTS rebalance_history (
    id              UUID PRIMARY KEY,
    status          TEXT NOT NULL,
    execution_strategy TEXT NOT NULL,
    plan            JSONB NOT NULL,
    batch_index     INTEGER NOT NULL DEFAULT 0,
    batch_count     INTEGER NOT NULL DEFAULT 1,
    due_at          TIMESTAMPTZ,
    executed_at     TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS rebalance_history_due_idx ON rebalance_history (status, due_at);

CREATE TABLE IF NOT EXISTS candles (
    symbol      TEXT NOT NULL,
    timeframe   TEXT NOT NULL,
    open_time   TIMESTAMPTZ NOT NULL,
    open        NUMERIC(30, 12) NOT NULL,
    high        NUMERIC(30, 12) NOT NULL,
    low         NUMERIC(30, 12) NOT NULL,
    close       NUMERIC(30, 12) NOT NULL,
    volume      NUMERIC(30, 12) NOT NULL,
    PRIMARY KEY (symbol, timeframe, open_time)
);

CREATE TABLE IF NOT EXISTS api_audit_log (
    id          BIGSERIAL PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    request_id  TEXT,
    token_name  TEXT NOT NULL,
    role        TEXT NOT NULL,
    method      TEXT NOT NULL,
    route       TEXT NOT NULL,
    body_sha256 TEXT,
    status      INTEGER NOT NULL,
    result      TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS idempotency_keys (
    key         TEXT PRIMARY KEY,
    token_name  TEXT NOT NULL,
    response    JSONB NOT NULL,
    status      INTEGER NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- TimescaleDB is used when present, never required.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        PERFORM create_hypertable('candles', 'open_time', if_not_exists => TRUE, migrate_data => TRUE);
    END IF;
END
$$;
