//! Typed settings: `config/base.yaml`, then the domain files, then `config/{local|production}.yaml`,
//! then `TRIPLEGAIN__SECTION__KEY` environment overrides. Secrets come only from the environment.
//!
//! Every struct denies unknown fields and every field has a default, so each file can also be
//! checked on its own: an invalid or unknown key is reported with the file that holds it.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use triplegain_actors::domain::TradingMode;

mod load;
pub use load::{check_ranges, ENVIRONMENT_FILES};

/// The domain files loaded after `base.yaml`, in order. Each must exist (as `<name>.yaml`).
pub const DOMAIN_FILES: [&str; 9] = [
    "orchestration",
    "risk",
    "execution",
    "portfolio",
    "hodl",
    "indicators",
    "agents",
    "notifications",
    "export",
];

/// A secret value: never printed by Debug, Display, logs or `check-config`.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(SecretString::from(s.into()))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[REDACTED]")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub app: AppSettings,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub api: ApiSettings,
    pub supervision: SupervisionSettings,
    pub market: MarketSettings,
    pub kraken: KrakenSettings,
    pub llm: LlmSettings,
    pub logging: LoggingSettings,
    pub risk: triplegain_actors::risk::RiskLimits,

    pub execution: ExecutionSettings,

    pub orchestration: triplegain_actors::coordinator::OrchestrationSettings,

    pub portfolio: triplegain_actors::portfolio::PortfolioConfig,

    pub hodl: triplegain_actors::portfolio::HodlConfig,

    pub indicators: IndicatorsSettings,

    pub agents: AgentsSettings,

    /// `config/notifications.yaml`: Telegram and webhook channels.
    pub notifications: crate::notifier::NotificationSettings,
    /// The event stream on NATS JetStream and the fleet control subjects (`config/export.yaml`).
    pub export: crate::export::ExportSettings,
    /// Set by `backtest` only, never from a file: the run's state ends with the process, so the
    /// coordinator does not save it (a save per scheduled task start would only cost time).
    #[serde(skip)]
    pub ephemeral: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            app: AppSettings::default(),
            server: ServerSettings::default(),
            database: DatabaseSettings::default(),
            api: ApiSettings::default(),
            supervision: SupervisionSettings::default(),
            market: MarketSettings::default(),
            kraken: KrakenSettings::default(),
            llm: LlmSettings::default(),
            logging: LoggingSettings::default(),
            orchestration: triplegain_actors::coordinator::OrchestrationSettings::default(),
            risk: triplegain_actors::risk::RiskLimits::default(),
            execution: ExecutionSettings::default(),
            portfolio: triplegain_actors::portfolio::PortfolioConfig::reference(),
            hodl: triplegain_actors::portfolio::HodlConfig::default(),
            indicators: IndicatorsSettings::default(),
            agents: AgentsSettings::default(),
            notifications: crate::notifier::NotificationSettings::default(),
            export: crate::export::ExportSettings::default(),
            ephemeral: false,
        }
    }
}

/// The environment variable that must confirm live trading, and its required value.
pub const LIVE_TRADING_CONFIRMATION_VAR: &str = "TRIPLEGAIN_CONFIRM_LIVE_TRADING";
pub const LIVE_TRADING_CONFIRMATION: &str = "I_UNDERSTAND_THE_RISKS";

/// The account of a process that names none: its tables stay in the `public` schema.
pub const DEFAULT_ACCOUNT: &str = "default";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppSettings {
    pub mode: TradingMode,
    /// `local` or `production`: selects the environment file.
    pub environment: String,
    /// `TRIPLEGAIN_CONFIRM_LIVE_TRADING`; live mode needs it to read `I_UNDERSTAND_THE_RISKS`.
    #[serde(skip)]
    pub live_trading_confirmation: Option<String>,
    /// The account this process trades: names its PostgreSQL schema (`default` = `public`), its
    /// single-instance lock and its NATS subjects. Lowercase letters, digits and `_`.
    pub account: String,
}

impl Default for AppSettings {
    fn default() -> Self {
        Self {
            mode: TradingMode::Paper,
            environment: "local".into(),
            live_trading_confirmation: None,
            account: DEFAULT_ACCOUNT.into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    pub bind: String,
    pub workers: usize,
    /// `POST /api/v1/actors/{name}/crash`; defaults to true in paper mode and false in live mode.
    pub fault_injection: Option<bool>,
    pub max_body_bytes: usize,
    pub shutdown_deadline_secs: u64,
    /// `GET /api/v1/events` sends a `: keep-alive` comment this often.
    pub sse_keep_alive_secs: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            workers: 2,
            fault_injection: None,
            max_body_bytes: 64 * 1024,
            shutdown_deadline_secs: 5,
            sse_keep_alive_secs: 15,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// Read from `DATABASE_URL`; never from a file.
    #[serde(skip_deserializing)]
    pub url: Option<Secret>,
    pub max_connections: usize,
    pub connect_timeout_secs: u64,
    pub wait_timeout_secs: u64,
    pub run_migrations: bool,
    /// Without a database: the most decision records and the most model answers the in-memory
    /// store keeps (older ones are dropped first).
    pub memory_max_records: usize,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: None,
            max_connections: 8,
            connect_timeout_secs: 5,
            wait_timeout_secs: 5,
            run_migrations: true,
            memory_max_records: 100_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    pub name: String,
    pub token: Secret,
    pub role: Role,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSettings {
    pub tokens: Vec<ApiToken>,
    pub rate_limit: RateLimitSettings,
    /// With no token configured, `serve` generates an admin token at first run and keeps it here.
    pub admin_token_file: String,
    /// Failed-authentication throttle and event-stream cap.
    pub guards: ApiGuardSettings,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            tokens: Vec::new(),
            rate_limit: RateLimitSettings::default(),
            admin_token_file: "data/admin-token".into(),
            guards: ApiGuardSettings::default(),
        }
    }
}

/// `api.guards`: failed authentication is throttled per client address; concurrent event
/// streams are capped per token. 0 = unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiGuardSettings {
    /// Failed authentications (401) per client address per minute before every further
    /// request from it is answered 429 until the minute has passed.
    pub auth_failures_per_minute: u32,
    /// Concurrent `GET /api/v1/events` streams per token.
    pub max_event_streams_per_token: u32,
}

impl Default for ApiGuardSettings {
    fn default() -> Self {
        Self {
            auth_failures_per_minute: 20,
            max_event_streams_per_token: 5,
        }
    }
}

/// The largest per-minute limit accepted (one request per 60 µs per token).
pub const MAX_REQUESTS_PER_MINUTE: u32 = 1_000_000;

/// Requests per minute per API token (keyed by the token's name). `GET` requests count as reads,
/// every other method as control. 0 = unlimited. `/healthz`, `/readyz` and `/metrics` are never
/// limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitSettings {
    pub reads_per_minute: u32,
    pub control_per_minute: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            reads_per_minute: 60,
            control_per_minute: 10,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SupervisionSettings {
    pub max_restarts: u32,
    pub window_secs: u64,
    pub drain_deadline_secs: u64,
}

impl Default for SupervisionSettings {
    fn default() -> Self {
        Self {
            max_restarts: 5,
            window_secs: 60,
            drain_deadline_secs: 10,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarketSource {
    Simulated,
    Kraken,
    /// Kraken public WebSocket v2 (`ohlc`, `ticker`; `kraken.ws_public_url`), with the public REST
    /// poller as the fallback while the socket is down.
    KrakenWs,
    Replay,
    /// No built-in feed: candles arrive from outside (an external collector, or tests).
    External,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MarketSettings {
    pub source: MarketSource,
    pub symbols: Vec<String>,
    pub simulated: SimulatedMarketSettings,
    pub poll_interval_secs: u64,
    /// `SYMBOL=path` entries for the replay source.
    pub replay_files: Vec<String>,
}

impl Default for MarketSettings {
    fn default() -> Self {
        Self {
            source: MarketSource::Simulated,
            symbols: vec!["BTC/USDT".into(), "XRP/USDT".into(), "XRP/BTC".into()],
            simulated: SimulatedMarketSettings::default(),
            poll_interval_secs: 10,
            replay_files: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimulatedMarketSettings {
    /// Simulated minutes per wall-clock second (1 = real time, 0 = as fast as consumed).
    pub speed: u32,
    pub seed: u64,
}

impl Default for SimulatedMarketSettings {
    fn default() -> Self {
        Self { speed: 60, seed: 42 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KrakenSettings {
    pub base_url: String,
    /// `starter`, `intermediate` or `pro`.
    pub tier: String,
    pub timeout_secs: u64,
    pub dead_mans_switch_secs: u32,
    pub dead_mans_switch_refresh_secs: u64,
    /// Our own budgets on top of Kraken's counters: private calls and order calls per minute.
    pub calls_per_minute: u32,
    pub order_calls_per_minute: u32,
    /// Live mode: Kraken WebSocket API v2 (`executions` for order and fill updates, `add_order` /
    /// `cancel_order` over the socket) in front of REST; REST becomes the safety net.
    pub websocket: bool,
    /// Private WebSocket v2 endpoint.
    pub ws_private_url: String,
    /// Public WebSocket v2 endpoint (market data: `ohlc`, `ticker`).
    pub ws_public_url: String,
    /// With the socket up, orders are verified over REST at most this often.
    pub rest_safety_net_secs: u64,
    /// How long an `add_order` / `cancel_order` over the socket waits for its reply before its
    /// outcome is unknown (looked up by client id, as after an ambiguous REST reply).
    pub ws_reply_timeout_ms: u64,
    /// REST counter points and private calls per minute only the dead man's switch may use.
    pub reserved_rest_points: f64,
    pub reserved_calls_per_minute: u32,
    /// Start the local REST counter charged (as Kraken's may still be after a restart).
    pub start_charged: bool,
    /// At shutdown, how long to wait for every stop to be confirmed on Kraken before disarming.
    pub shutdown_confirm_secs: u64,
    #[serde(skip_deserializing)]
    pub api_key: Option<Secret>,
    #[serde(skip_deserializing)]
    pub api_secret: Option<Secret>,
}

impl Default for KrakenSettings {
    fn default() -> Self {
        Self {
            base_url: "https://api.kraken.com".into(),
            tier: "starter".into(),
            timeout_secs: 10,
            dead_mans_switch_secs: 60,
            dead_mans_switch_refresh_secs: 30,
            calls_per_minute: 60,
            order_calls_per_minute: 30,
            websocket: true,
            ws_private_url: "wss://ws-auth.kraken.com/v2".into(),
            ws_public_url: "wss://ws.kraken.com/v2".into(),
            rest_safety_net_secs: 60,
            ws_reply_timeout_ms: 5000,
            reserved_rest_points: 2.0,
            reserved_calls_per_minute: 3,
            start_charged: true,
            shutdown_confirm_secs: 5,
            api_key: None,
            api_secret: None,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderSettings {
    pub base_url: String,
    #[serde(skip_deserializing)]
    pub api_key: Option<Secret>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmSettings {
    pub timeout_ms: u64,
    pub providers: BTreeMap<String, ProviderSettings>,
    /// Every real model answer of a live or paper run is appended here as JSON lines (agent,
    /// model, prompt hash, answer), for `backtest --llm-replay`; empty = not recorded.
    pub record_path: String,
}

impl Default for LlmSettings {
    fn default() -> Self {
        let p = |url: &str| ProviderSettings {
            base_url: url.into(),
            api_key: None,
        };
        Self {
            timeout_ms: 30_000,
            providers: BTreeMap::from([
                ("deepseek".into(), p("https://api.deepseek.com/v1")),
                ("anthropic".into(), p("https://api.anthropic.com")),
                ("openai".into(), p("https://api.openai.com/v1")),
                ("xai".into(), p("https://api.x.ai/v1")),
                ("ollama".into(), p("http://127.0.0.1:11434/v1")),
            ]),
            record_path: "data/llm-answers.jsonl".into(),
        }
    }
}

/// `config/indicators.yaml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IndicatorsSettings {
    /// Timeframe of the snapshot's indicators and of the TA and regime agents (reference `1h`).
    pub primary_timeframe: triplegain_actors::domain::Timeframe,
    /// The simulated market starts this many hours in the past, replayed unpaced, so the
    /// indicators are warm when the paced run begins.
    pub warm_up_hours: u32,
}

impl Default for IndicatorsSettings {
    fn default() -> Self {
        Self {
            primary_timeframe: triplegain_actors::domain::Timeframe::H1,
            warm_up_hours: 72,
        }
    }
}

/// Settings of an agent without models.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuleAgentSettings {
    pub enabled: bool,
}

impl Default for RuleAgentSettings {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// `agents.regime_detection`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegimeAgentSettings {
    pub enabled: bool,
    /// A different regime is adopted only with at least this confidence …
    pub min_regime_change_confidence: f64,
    /// … on this many consecutive runs.
    pub regime_change_periods: u32,
    /// The run interval, used to count periods after a restart.
    pub interval_secs: i64,
}

impl Default for RegimeAgentSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            min_regime_change_confidence: 0.7,
            regime_change_periods: 2,
            interval_secs: 300,
        }
    }
}

/// One model of an agent: a provider from `llm.providers` and the model id.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentModelSettings {
    pub name: String,
    pub provider: String,
    pub model: String,
}

/// `agents.sentiment_analysis`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SentimentAgentSettings {
    pub enabled: bool,
    /// Social-media sentiment (reference: xAI Grok).
    pub social: Option<AgentModelSettings>,
    /// News sentiment (reference: OpenAI GPT with web search).
    pub news: Option<AgentModelSettings>,
    pub social_weight: f64,
    pub news_weight: f64,
    pub timeout_ms: u64,
}

impl Default for SentimentAgentSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            social: Some(AgentModelSettings {
                name: "grok".into(),
                provider: "xai".into(),
                model: "grok-2".into(),
            }),
            news: Some(AgentModelSettings {
                name: "gpt".into(),
                provider: "openai".into(),
                model: "gpt-4o-search-preview".into(),
            }),
            social_weight: 0.6,
            news_weight: 0.6,
            timeout_ms: 30_000,
        }
    }
}

/// `agents.trading_decision`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecisionAgentSettings {
    pub enabled: bool,
    /// The models asked in parallel; a model whose provider has no key is skipped.
    pub models: Vec<AgentModelSettings>,
    /// One deadline for all models.
    pub timeout_secs: u64,
    /// Minimum valid answers (capped at the number of models in use).
    pub min_quorum: usize,
    pub unanimous_boost: f64,
    pub strong_majority_boost: f64,
    pub majority_boost: f64,
    pub max_tokens: u32,
    pub temperature: f64,
    /// The deterministic strategies of the panel (`rule:trend`, `rule:momentum`, `rule:breakout`,
    /// `rule:mean_reversion`) and their parameters (issue 15).
    pub strategies: triplegain_actors::agents::strategies::StrategySettings,
}

impl Default for DecisionAgentSettings {
    fn default() -> Self {
        let m = |name: &str, provider: &str, model: &str| AgentModelSettings {
            name: name.into(),
            provider: provider.into(),
            model: model.into(),
        };
        Self {
            enabled: true,
            models: vec![
                m("qwen", "ollama", "qwen2.5:7b"),
                m("gpt4", "openai", "gpt-4-turbo"),
                m("grok", "xai", "grok-2-1212"),
                m("deepseek", "deepseek", "deepseek-chat"),
                m("sonnet", "anthropic", "claude-3-5-sonnet-20241022"),
                m("opus", "anthropic", "claude-3-opus-20240229"),
            ],
            timeout_secs: 30,
            min_quorum: 4,
            unanimous_boost: 0.15,
            strong_majority_boost: 0.10,
            majority_boost: 0.05,
            max_tokens: 1024,
            temperature: 0.3,
            strategies: triplegain_actors::agents::strategies::StrategySettings::default(),
        }
    }
}

/// `config/agents.yaml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentsSettings {
    /// Use keyless providers (Ollama) too; off by default so a run without keys needs no network.
    pub local_models: bool,
    /// Per-call timeout of agent model calls, per provider name (reference: ollama 30 s, others 60 s).
    pub provider_timeouts_ms: BTreeMap<String, u64>,
    pub technical_analysis: RuleAgentSettings,
    pub regime_detection: RegimeAgentSettings,
    pub sentiment_analysis: SentimentAgentSettings,
    pub trading_decision: DecisionAgentSettings,
}

impl Default for AgentsSettings {
    fn default() -> Self {
        Self {
            local_models: false,
            provider_timeouts_ms: BTreeMap::from([
                ("ollama".into(), 30_000),
                ("openai".into(), 60_000),
                ("anthropic".into(), 60_000),
                ("deepseek".into(), 60_000),
                ("xai".into(), 60_000),
            ]),
            technical_analysis: RuleAgentSettings::default(),
            regime_detection: RegimeAgentSettings::default(),
            sentiment_analysis: SentimentAgentSettings::default(),
            trading_decision: DecisionAgentSettings::default(),
        }
    }
}

/// `config/execution.yaml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutionSettings {
    /// The paper exchange (paper mode).
    pub paper: triplegain_actors::execution::paper::PaperConfig,
    pub orders: OrderSettings,
    pub position_limits: PositionLimitSettings,
    pub tracking: TrackingSettings,
    pub contingent: ContingentSettings,
    pub trailing_stop: triplegain_actors::execution::manager::TrailingStopConfig,
    /// How long a position may go without a working stop on the exchange.
    pub protection: ProtectionSettings,
}

/// `execution.protection`: a position without a working stop on the exchange for longer than
/// `max_unprotected_secs` raises a critical alert and arms the software backup stop.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProtectionSettings {
    pub max_unprotected_secs: u64,
    /// How often the protection watchdog runs (it also runs on every candle).
    pub check_interval_ms: u64,
}

impl Default for ProtectionSettings {
    fn default() -> Self {
        Self {
            max_unprotected_secs: triplegain_actors::execution::manager::ExecutionConfig::default()
                .max_unprotected_secs,
            check_interval_ms: 1000,
        }
    }
}

/// Order defaults (reference §6.1 `orders`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrderSettings {
    /// `limit` (default) or `market` (sent as a limit bounded by `market_order_slippage_pct`).
    pub default_type: triplegain_actors::domain::OrderType,
    pub market_order_slippage_pct: rust_decimal::Decimal,
    pub max_retry_count: u32,
    pub retry_delay_ms: u64,
}

impl Default for OrderSettings {
    fn default() -> Self {
        let d = triplegain_actors::execution::manager::ExecutionConfig::default();
        Self {
            default_type: d.default_order_type,
            market_order_slippage_pct: d.market_order_slippage_pct,
            max_retry_count: d.max_retry_count,
            retry_delay_ms: d.retry_delay_ms,
        }
    }
}

/// Position limits (reference §6.1: 2 per symbol, 5 in total).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PositionLimitSettings {
    pub max_per_symbol: usize,
    pub max_total: usize,
}

impl Default for PositionLimitSettings {
    fn default() -> Self {
        Self {
            max_per_symbol: 2,
            max_total: 6,
        }
    }
}

/// Order status polling, position snapshots and reconciliation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrackingSettings {
    pub poll_interval_ms: u64,
    /// Poll interval in paper mode (fills follow the market feed closely).
    pub paper_poll_interval_ms: u64,
    pub snapshot_interval_secs: u64,
    /// Searches that must miss an order of unknown outcome (after the visibility window) before
    /// it counts as never placed.
    pub reconcile_attempts: u32,
    /// How long an order may stay invisible on the exchange after it was sent (Kraken: up to
    /// about a minute); an order of unknown outcome is never given up before.
    pub visibility_window_secs: u64,
    /// Shortest time between two searches by client id (all unknown orders in one search).
    pub search_interval_ms: u64,
    /// How often open orders and positions are synchronised with the exchange.
    pub sync_interval_secs: u64,
    /// Whether the paper exchange's account is saved (off only for a backtest, whose account
    /// ends with the run).
    pub persist_paper: bool,
}

impl Default for TrackingSettings {
    fn default() -> Self {
        Self {
            poll_interval_ms: 5000,
            paper_poll_interval_ms: 1000,
            snapshot_interval_secs: 60,
            reconcile_attempts: 3,
            visibility_window_secs: 90,
            search_interval_ms: 10_000,
            sync_interval_secs: 30,
            persist_paper: true,
        }
    }
}

/// Contingent stop-loss / take-profit orders (reference §6.1 `contingent`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContingentSettings {
    pub auto_stop_loss: bool,
    pub auto_take_profit: bool,
    pub stop_loss_type: triplegain_actors::domain::OrderType,
    pub take_profit_type: triplegain_actors::domain::OrderType,
    /// First back-off of a failed protective placement; doubles up to `retry_max_ms`.
    pub retry_ms: u64,
    pub retry_max_ms: u64,
}

impl Default for ContingentSettings {
    fn default() -> Self {
        Self {
            auto_stop_loss: true,
            auto_take_profit: true,
            stop_loss_type: triplegain_actors::domain::OrderType::StopLoss,
            take_profit_type: triplegain_actors::domain::OrderType::Limit,
            retry_ms: 1000,
            retry_max_ms: 60_000,
        }
    }
}

impl ExecutionSettings {
    /// The execution manager's configuration; `paper` selects the paper poll interval.
    pub fn manager_config(&self, paper: bool) -> triplegain_actors::execution::manager::ExecutionConfig {
        triplegain_actors::execution::manager::ExecutionConfig {
            default_order_type: self.orders.default_type,
            market_order_slippage_pct: self.orders.market_order_slippage_pct,
            max_retry_count: self.orders.max_retry_count,
            retry_delay_ms: self.orders.retry_delay_ms,
            max_positions_per_symbol: self.position_limits.max_per_symbol,
            max_positions_total: self.position_limits.max_total,
            poll_interval_ms: if paper {
                self.tracking.paper_poll_interval_ms
            } else {
                self.tracking.poll_interval_ms
            },
            snapshot_interval_secs: self.tracking.snapshot_interval_secs,
            auto_stop_loss: self.contingent.auto_stop_loss,
            auto_take_profit: self.contingent.auto_take_profit,
            stop_loss_type: self.contingent.stop_loss_type,
            take_profit_type: self.contingent.take_profit_type,
            protection_retry_ms: self.contingent.retry_ms,
            protection_retry_max_ms: self.contingent.retry_max_ms,
            reconcile_attempts: self.tracking.reconcile_attempts,
            visibility_window_secs: self.tracking.visibility_window_secs,
            search_interval_ms: self.tracking.search_interval_ms,
            max_unprotected_secs: self.protection.max_unprotected_secs,
            protection_check_interval_ms: self.protection.check_interval_ms,
            sync_interval_secs: self.tracking.sync_interval_secs,
            persist_paper: self.tracking.persist_paper,
            trailing_stop: self.trailing_stop.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingSettings {
    pub format: LogFormat,
    pub level: String,
}

impl Default for LoggingSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            level: "info".into(),
        }
    }
}

/// A configuration problem, naming the file (or environment variable) and key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration in {source_name}: {message}")]
pub struct SettingsError {
    pub source_name: String,
    pub message: String,
}

impl SettingsError {
    fn new(source_name: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            source_name: source_name.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests;
