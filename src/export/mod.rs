//! The typed event stream on NATS JetStream (`config/export.yaml`, docs/SCALING.md).
//!
//! Every exported bus event is published as JSON on `<prefix>.<account>.<topic>[.<symbol>]`
//! (the symbol with `/` as `_`, e.g. `triplegain.main.execution_events.BTC_USDT`), with the
//! event id as `Nats-Msg-Id` (the stream's duplicate window drops a second copy) and the schema
//! version in `TripleGain-Schema`.
//!
//! Two paths, and trading waits on neither:
//! - **Money and audit** events (execution, portfolio, risk alerts, system/supervisor events,
//!   decisions) go through the transactional outbox in PostgreSQL (`event_outbox`): decisions
//!   are appended by the audit store in the transaction that records them, the execution
//!   manager's events and valuations by its writer in the transaction of the order, fill or
//!   position they describe ([`manager_outbox`]); the other bus events are written by
//!   [`bridge`]'s writer before anything is sent. The [`relay`] publishes outbox rows
//!   in order and deletes each only after JetStream acknowledged it, so an outage of NATS (or a
//!   deleted stream) only delays them.
//! - **Analysis** events (TA, regime, sentiment, trading signals) go straight to JetStream
//!   through a bounded buffer; when it is full (NATS slow or down) they are dropped and counted
//!   (`triplegain_export_dropped_total`).
//!
//! [`control`] answers `pause` / `resume` / `halt` requests on `<prefix>.<account>.control.<cmd>`
//! and `<prefix>.fleet.control.<cmd>`; [`tail`] is the `triplegain tail` consumer.

pub mod bench;
pub mod bridge;
pub mod control;
pub mod relay;
pub mod tail;

use crate::settings::Secret;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The version of the JSON payloads, sent in the `TripleGain-Schema` header.
pub const SCHEMA_VERSION: &str = "1";
pub const HEADER_SCHEMA: &str = "TripleGain-Schema";
pub const HEADER_TOPIC: &str = "TripleGain-Topic";
pub const HEADER_ACCOUNT: &str = "TripleGain-Account";
/// The outbox sequence of a relayed event (money and audit topics only).
pub const HEADER_OUTBOX_SEQ: &str = "TripleGain-Outbox-Seq";
/// The subject token that addresses every account at once (`<prefix>.fleet.control.halt`).
pub const FLEET: &str = "fleet";

/// Topics that go through the outbox: nothing of them is lost while NATS is down.
pub const DURABLE_TOPICS: [&str; 5] = [
    "execution_events",
    "portfolio_updates",
    "risk_alerts",
    "system_events",
    crate::db::outbox::DECISIONS_TOPIC,
];
/// Topics published directly; dropped (and counted) under pressure.
pub const ANALYSIS_TOPICS: [&str; 4] = ["ta_signals", "regime_updates", "sentiment_updates", "trading_signals"];

/// Every exportable topic.
pub fn all_topics() -> Vec<String> {
    DURABLE_TOPICS
        .iter()
        .chain(ANALYSIS_TOPICS.iter())
        .map(|t| (*t).to_owned())
        .collect()
}

/// What the execution manager writes to the outbox itself, in the transaction of the state each
/// event describes (`None` when the export is off or has no database).
pub fn manager_outbox(
    settings: &crate::settings::Settings,
    database: bool,
    wake: Arc<tokio::sync::Notify>,
) -> Option<triplegain_actors::execution::manager::OutboxSink> {
    let export = &settings.export;
    if !export.enabled || !database {
        return None;
    }
    Some(triplegain_actors::execution::manager::OutboxSink {
        execution: export.exports("execution_events"),
        portfolio: export.exports("portfolio_updates"),
        committed: Arc::new(move || wake.notify_one()),
    })
}

/// Events the execution manager has already written to the outbox with their state: the
/// bridge leaves them alone.
pub fn written_by_manager(topic: &str, source: &str) -> bool {
    source == triplegain_actors::execution::manager::SOURCE && matches!(topic, "execution_events" | "portfolio_updates")
}

/// Whether `topic` goes through the outbox.
pub fn is_durable(topic: &str) -> bool {
    DURABLE_TOPICS.contains(&topic)
}

/// NATS credentials, from the environment only: `NATS_TOKEN`, or `NATS_USER` and
/// `NATS_PASSWORD`, or `NATS_CREDS` (a `.creds` file).
#[derive(Debug, Clone, Default)]
pub struct NatsCredentials {
    pub token: Option<Secret>,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub creds_file: Option<String>,
}

impl NatsCredentials {
    pub fn from_env(env: &impl Fn(&str) -> Option<String>) -> Self {
        Self {
            token: env("NATS_TOKEN").map(Secret::new),
            user: env("NATS_USER"),
            password: env("NATS_PASSWORD").map(Secret::new),
            creds_file: env("NATS_CREDS"),
        }
    }
}

/// `export:` in `config/export.yaml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExportSettings {
    /// Off by default: a plain `serve` needs no NATS.
    pub enabled: bool,
    /// `nats://host:port` (several comma-separated for a cluster).
    pub url: String,
    /// First subject token: `<prefix>.<account>.<topic>[.<symbol>]`.
    pub subject_prefix: String,
    /// The JetStream stream of the deployment (created or checked at start).
    pub stream: String,
    /// Retention: the oldest events go after this long (0 = no age limit).
    pub max_age_secs: u64,
    /// Retention: the stream keeps at most this many bytes (-1 = unlimited).
    pub max_bytes: i64,
    /// Window in which a second publish of an event id is dropped by the stream.
    pub duplicate_window_secs: u64,
    /// The exported topics (default all: the durable and the analysis topics).
    pub topics: Vec<String>,
    /// Analysis events buffered before new ones are dropped (counted).
    pub analysis_buffer: usize,
    /// Outbox rows published per relay round (acknowledgements awaited together).
    pub relay_batch: usize,
    /// The relay looks at the outbox at least this often (a new bus event wakes it at once).
    pub relay_poll_ms: u64,
    /// JetStream acknowledgement timeout.
    pub ack_timeout_ms: u64,
    /// Answer pause / resume / halt on the control subjects.
    pub control: bool,
    /// Credentials come from the environment only (`NATS_TOKEN`, `NATS_USER`/`NATS_PASSWORD`,
    /// `NATS_CREDS`).
    #[serde(skip)]
    pub credentials: NatsCredentials,
}

impl Default for ExportSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            url: "nats://127.0.0.1:4222".into(),
            subject_prefix: "triplegain".into(),
            stream: "TRIPLEGAIN".into(),
            max_age_secs: 7 * 86_400,
            max_bytes: 1 << 30,
            duplicate_window_secs: 120,
            topics: all_topics(),
            analysis_buffer: 10_000,
            relay_batch: 256,
            relay_poll_ms: 200,
            ack_timeout_ms: 5_000,
            control: true,
            credentials: NatsCredentials::default(),
        }
    }
}

fn valid_token(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// An account name: 1 to 40 of `[a-z0-9_]`, starting with a letter, and not `fleet`.
///
/// # Errors
/// Why it is not one.
pub fn validate_account(account: &str) -> Result<(), String> {
    let ok = account.len() <= 40
        && account.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && account
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        return Err(format!(
            "{account:?} is not an account name: 1 to 40 lowercase letters, digits or _, starting with a letter"
        ));
    }
    if account == FLEET {
        return Err(format!(
            "{FLEET:?} is reserved (the subject that addresses every account)"
        ));
    }
    Ok(())
}

impl ExportSettings {
    /// Checks the export keys; `database` tells whether `DATABASE_URL` is set.
    ///
    /// # Errors
    /// `(key, message)`.
    pub fn validate(&self, database: bool) -> Result<(), (String, String)> {
        let err = |k: &str, m: String| Err((format!("export.{k}"), m));
        if !self.enabled {
            return Ok(());
        }
        if !database {
            return err(
                "enabled",
                "the event export needs PostgreSQL (DATABASE_URL) for its outbox".into(),
            );
        }
        if self.url.trim().is_empty() || !self.url.split(',').all(|u| u.trim().starts_with("nats://")) {
            return err("url", format!("{:?} is not a nats://host:port URL", self.url));
        }
        if !valid_token(&self.subject_prefix) {
            return err(
                "subject_prefix",
                format!(
                    "{:?} must be one subject token: letters, digits, _ or -",
                    self.subject_prefix
                ),
            );
        }
        if !valid_token(&self.stream) {
            return err(
                "stream",
                format!("{:?} must be a stream name: letters, digits, _ or -", self.stream),
            );
        }
        if self.duplicate_window_secs == 0 {
            return err("duplicate_window_secs", "must be at least 1".into());
        }
        if self.max_bytes == 0 || self.max_bytes < -1 {
            return err("max_bytes", "must be -1 (unlimited) or a positive byte count".into());
        }
        if self.max_age_secs != 0 && self.max_age_secs < self.duplicate_window_secs {
            return err(
                "max_age_secs",
                "must be 0 (no limit) or at least duplicate_window_secs".into(),
            );
        }
        if self.topics.is_empty() {
            return err("topics", "must name at least one topic".into());
        }
        let known = all_topics();
        for t in &self.topics {
            if !known.contains(t) {
                return err(
                    "topics",
                    format!("unknown topic {t:?}; topics are {}", known.join(", ")),
                );
            }
        }
        for (k, v) in [
            ("analysis_buffer", self.analysis_buffer),
            ("relay_batch", self.relay_batch),
        ] {
            if v == 0 {
                return err(k, "must be at least 1".into());
            }
        }
        for (k, v) in [
            ("relay_poll_ms", self.relay_poll_ms),
            ("ack_timeout_ms", self.ack_timeout_ms),
        ] {
            if v == 0 {
                return err(k, "must be at least 1".into());
            }
        }
        Ok(())
    }

    pub fn exports(&self, topic: &str) -> bool {
        self.topics.iter().any(|t| t == topic)
    }

    /// The stream's subjects: every exported topic of every account, with and without a symbol.
    pub fn stream_subjects(&self) -> Vec<String> {
        self.topics
            .iter()
            .flat_map(|t| {
                [
                    format!("{}.*.{t}", self.subject_prefix),
                    format!("{}.*.{t}.>", self.subject_prefix),
                ]
            })
            .collect()
    }

    /// The JetStream stream configuration from these settings.
    pub fn stream_config(&self) -> async_nats::jetstream::stream::Config {
        async_nats::jetstream::stream::Config {
            name: self.stream.clone(),
            subjects: self.stream_subjects(),
            max_age: Duration::from_secs(self.max_age_secs),
            max_bytes: self.max_bytes,
            duplicate_window: Duration::from_secs(self.duplicate_window_secs),
            storage: async_nats::jetstream::stream::StorageType::File,
            ..Default::default()
        }
    }
}

/// The subject of one event.
pub fn subject(prefix: &str, account: &str, topic: &str, symbol: Option<&str>) -> String {
    match symbol {
        Some(s) => format!("{prefix}.{account}.{topic}.{}", symbol_token(s)),
        None => format!("{prefix}.{account}.{topic}"),
    }
}

/// A symbol as one subject token: `BTC/USDT` → `BTC_USDT`.
pub fn symbol_token(symbol: &str) -> String {
    symbol
        .chars()
        .map(|c| match c {
            '/' | '.' | '*' | '>' | ' ' => '_',
            c => c,
        })
        .collect()
}

/// The headers of one exported event.
pub fn headers(event_id: &str, topic: &str, account: &str, outbox_seq: Option<i64>) -> async_nats::HeaderMap {
    let mut h = async_nats::HeaderMap::new();
    h.insert(async_nats::header::NATS_MESSAGE_ID, event_id);
    h.insert(HEADER_SCHEMA, SCHEMA_VERSION);
    h.insert(HEADER_TOPIC, topic);
    h.insert(HEADER_ACCOUNT, account);
    if let Some(seq) = outbox_seq {
        h.insert(HEADER_OUTBOX_SEQ, seq.to_string().as_str());
    }
    h
}

/// Counters of the export (also in metrics).
#[derive(Debug, Default)]
pub struct ExportStats {
    /// Events acknowledged by JetStream (both paths).
    pub published: AtomicU64,
    /// Of those, acknowledged as duplicates (dropped by the stream's window).
    pub duplicates: AtomicU64,
    /// Outbox rows relayed and deleted.
    pub relayed: AtomicU64,
    /// Money and audit events written to the outbox by the bridge.
    pub outboxed: AtomicU64,
    /// Analysis events dropped (buffer full or publish failed).
    pub dropped: AtomicU64,
    /// Failed publish attempts (retried for outbox rows).
    pub failures: AtomicU64,
}

impl ExportStats {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// Connects to NATS with the configured credentials. With `wait_first` false the client keeps
/// trying in the background when the server is unreachable (the outbox holds events meanwhile).
///
/// # Errors
/// Invalid credentials file, or (with `wait_first`) an unreachable server.
pub async fn connect(settings: &ExportSettings, name: &str, wait_first: bool) -> anyhow::Result<async_nats::Client> {
    let creds = &settings.credentials;
    let mut opts = match &creds.creds_file {
        Some(path) => async_nats::ConnectOptions::with_credentials_file(path)
            .await
            .map_err(|e| anyhow::anyhow!("NATS_CREDS {path}: {e}"))?,
        None => async_nats::ConnectOptions::new(),
    };
    if let Some(token) = &creds.token {
        opts = opts.token(token.expose().to_owned());
    }
    if let (Some(user), Some(password)) = (&creds.user, &creds.password) {
        opts = opts.user_and_password(user.clone(), password.expose().to_owned());
    }
    opts = opts
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        .request_timeout(Some(Duration::from_millis(settings.ack_timeout_ms)));
    if !wait_first {
        opts = opts.retry_on_initial_connect();
    }
    let urls: Vec<String> = settings.url.split(',').map(|u| u.trim().to_owned()).collect();
    opts.connect(urls.as_slice())
        .await
        .map_err(|e| anyhow::anyhow!("connecting to NATS at {} (export.url): {e}", settings.url))
}

/// The JetStream context with the configured acknowledgement timeout.
pub fn jetstream(client: async_nats::Client, settings: &ExportSettings) -> async_nats::jetstream::Context {
    let mut js = async_nats::jetstream::new(client);
    js.set_timeout(Duration::from_millis(settings.ack_timeout_ms));
    js
}

/// Creates the stream, or checks an existing one and updates its subjects and limits to the
/// settings.
///
/// # Errors
/// When JetStream refuses (e.g. the subjects overlap another stream).
pub async fn ensure_stream(js: &async_nats::jetstream::Context, settings: &ExportSettings) -> anyhow::Result<()> {
    let want = settings.stream_config();
    match js.get_stream(&settings.stream).await {
        Ok(mut stream) => {
            let have = stream.info().await.map_err(|e| anyhow::anyhow!("{e}"))?.config.clone();
            let mut subjects_have = have.subjects.clone();
            subjects_have.sort();
            let mut subjects_want = want.subjects.clone();
            subjects_want.sort();
            if subjects_have != subjects_want
                || have.max_age != want.max_age
                || have.max_bytes != want.max_bytes
                || have.duplicate_window != want.duplicate_window
            {
                tracing::warn!(stream = %settings.stream, "JetStream stream differs from config/export.yaml; updating it");
                js.update_stream(&want).await.map_err(|e| {
                    anyhow::anyhow!(
                        "updating JetStream stream {} (config/export.yaml): {e}",
                        settings.stream
                    )
                })?;
            }
            Ok(())
        }
        Err(_) => {
            js.create_stream(want).await.map_err(|e| {
                anyhow::anyhow!(
                    "creating JetStream stream {} (config/export.yaml): {e}",
                    settings.stream
                )
            })?;
            tracing::info!(stream = %settings.stream, "JetStream stream created");
            Ok(())
        }
    }
}

/// The running export: its tasks stop when this is shut down.
pub struct ExportHandle {
    pub stats: Arc<ExportStats>,
    pub client: async_nats::Client,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ExportHandle {
    /// Stops the export: the relay makes a last pass (bounded by `deadline`), then every task
    /// ends. Events still in the outbox are relayed by the next start.
    pub async fn shutdown(self, deadline: Duration) {
        let _ = self.stop.send(true);
        let all = futures::future::join_all(self.tasks);
        if tokio::time::timeout(deadline, all).await.is_err() {
            tracing::warn!("event export did not stop in time; the outbox keeps what was not relayed");
        }
        if let Err(e) = self.client.flush().await {
            tracing::debug!(error = %e, "NATS flush at shutdown");
        }
    }
}

/// Starts the export (when enabled): connects, ensures the stream, subscribes the bridge to the
/// bus, starts the outbox writer, the relay, the analysis publisher and the control responder.
///
/// # Errors
/// A stream JetStream refuses, or a bad credentials file.
pub async fn start(
    settings: &crate::settings::Settings,
    state: actix_web::web::Data<crate::routes::state::AppState>,
    tokens: Arc<crate::routes::auth::TokenTable>,
    wake: Arc<tokio::sync::Notify>,
) -> anyhow::Result<Option<ExportHandle>> {
    let export = &settings.export;
    if !export.enabled {
        return Ok(None);
    }
    let Some(pool) = state.pool.clone() else {
        anyhow::bail!("export.enabled (config/export.yaml): the event export needs PostgreSQL (DATABASE_URL)");
    };
    let account = settings.app.account.clone();
    let name = format!("triplegain:{account}");
    // Connected at start: the stream is created or checked now (a refused stream is a startup
    // error). Unreachable: trade anyway; the client keeps trying and the relay creates the stream.
    let (client, connected) = match connect(export, &name, true).await {
        Ok(c) => (c, true),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "NATS not reachable at start; events wait in the outbox");
            (connect(export, &name, false).await?, false)
        }
    };
    let js = jetstream(client.clone(), export);
    if connected {
        ensure_stream(&js, export).await?;
    }
    let stats = Arc::new(ExportStats::default());
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();

    let (outbox_tx, outbox_rx) = tokio::sync::mpsc::unbounded_channel();
    let (analysis_tx, analysis_rx) = tokio::sync::mpsc::channel(export.analysis_buffer);
    bridge::subscribe(&state.bus, export, outbox_tx, analysis_tx, stats.clone());
    tasks.push(tokio::spawn(bridge::outbox_writer(
        pool.clone(),
        outbox_rx,
        wake.clone(),
        stats.clone(),
        stop_rx.clone(),
    )));
    let relay = relay::Relay {
        pool,
        js: js.clone(),
        settings: export.clone(),
        account: account.clone(),
        stats: stats.clone(),
        wake: wake.clone(),
    };
    tasks.push(tokio::spawn(relay.run(stop_rx.clone())));
    tasks.push(tokio::spawn(relay::publish_analysis(
        js,
        analysis_rx,
        export.subject_prefix.clone(),
        account.clone(),
        stats.clone(),
        stop_rx.clone(),
    )));
    if export.control {
        tasks.push(control::start(client.clone(), &export.subject_prefix, &account, state, tokens, stop_rx).await?);
    }
    tracing::info!(account, stream = %export.stream, url = %export.url, "event export to NATS JetStream on");
    Ok(Some(ExportHandle {
        stats,
        client,
        stop,
        tasks,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    type Tweak = Box<dyn Fn(&mut ExportSettings)>;

    #[test]
    fn account_names_are_subject_tokens_and_schema_names() {
        for ok in ["default", "main", "acct_2", "a"] {
            assert!(validate_account(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Main", "2nd", "a.b", "a-b", "a b", "fleet", &"x".repeat(41)] {
            assert!(validate_account(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn export_settings_are_checked_only_when_on_and_name_the_key() {
        let mut s = ExportSettings::default();
        assert!(s.validate(false).is_ok(), "off needs nothing");
        s.enabled = true;
        assert_eq!(
            s.validate(false).unwrap_err().0,
            "export.enabled",
            "needs the outbox database"
        );
        assert!(s.validate(true).is_ok());
        let cases: Vec<(&str, Tweak)> = vec![
            ("export.url", Box::new(|s| s.url = "http://x".into())),
            ("export.subject_prefix", Box::new(|s| s.subject_prefix = "a.b".into())),
            ("export.stream", Box::new(|s| s.stream = "a b".into())),
            (
                "export.duplicate_window_secs",
                Box::new(|s| s.duplicate_window_secs = 0),
            ),
            ("export.max_bytes", Box::new(|s| s.max_bytes = 0)),
            ("export.max_age_secs", Box::new(|s| s.max_age_secs = 5)),
            ("export.topics", Box::new(|s| s.topics = vec!["candles".into()])),
            ("export.relay_batch", Box::new(|s| s.relay_batch = 0)),
        ];
        for (key, tweak) in cases {
            let mut s = ExportSettings {
                enabled: true,
                ..ExportSettings::default()
            };
            tweak(&mut s);
            assert_eq!(s.validate(true).unwrap_err().0, key);
        }
    }

    #[test]
    fn subjects_put_account_topic_and_symbol_in_their_own_tokens() {
        assert_eq!(
            subject("triplegain", "main", "execution_events", Some("BTC/USDT")),
            "triplegain.main.execution_events.BTC_USDT"
        );
        assert_eq!(
            subject("triplegain", "main", "portfolio_updates", None),
            "triplegain.main.portfolio_updates"
        );
        let s = ExportSettings::default();
        let subjects = s.stream_subjects();
        assert!(subjects.contains(&"triplegain.*.decisions".to_owned()));
        assert!(subjects.contains(&"triplegain.*.decisions.>".to_owned()));
        assert!(
            !subjects.iter().any(|x| x.contains("control")),
            "control requests are not captured by the stream"
        );
    }
}
