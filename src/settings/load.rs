//! Loading [`Settings`]: the layered files and environment overrides, the strict deserialisation
//! with key paths, the config directory check and the validation of ranges and cross-field rules.

use super::{
    ApiToken, MarketSource, Role, Secret, Settings, SettingsError, DOMAIN_FILES, LIVE_TRADING_CONFIRMATION,
    LIVE_TRADING_CONFIRMATION_VAR, MAX_REQUESTS_PER_MINUTE,
};
use config::{Config, Environment, File, FileFormat};
use std::path::{Path, PathBuf};
use triplegain_actors::domain::TradingMode;

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Settings {
    /// Loads settings from `dir` and the process environment.
    ///
    /// # Errors
    /// [`SettingsError`] naming the file and key of the first invalid or unknown setting.
    pub fn load(dir: &Path) -> Result<Self, SettingsError> {
        Self::load_with_env(dir, env_var)
    }

    /// The files read, in order, that exist.
    pub fn files(dir: &Path, environment: &str) -> Vec<PathBuf> {
        let mut names: Vec<String> = vec!["base".into()];
        names.extend(DOMAIN_FILES.iter().map(|s| (*s).to_owned()));
        names.push(environment.to_owned());
        names
            .into_iter()
            .map(|n| dir.join(format!("{n}.yaml")))
            .filter(|p| p.exists())
            .collect()
    }

    /// As [`Settings::load`], reading the environment through `env`.
    ///
    /// # Errors
    /// [`SettingsError`] naming the file and key of the first invalid or unknown setting.
    pub fn load_with_env(dir: &Path, env: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        if !dir.join("base.yaml").exists() {
            return Err(SettingsError::new(
                dir.join("base.yaml").display().to_string(),
                "file not found (use --config DIR to point at the config directory)",
            ));
        }
        let environment = env("TRIPLEGAIN_ENV").unwrap_or_else(|| "local".into());
        if !matches!(environment.as_str(), "local" | "production") {
            return Err(SettingsError::new(
                "TRIPLEGAIN_ENV",
                format!("must be local or production, got {environment:?}"),
            ));
        }
        check_config_dir(dir, &environment)?;
        let files = Self::files(dir, &environment);
        // Each file on its own first, so an error names the file that holds the bad key.
        for file in &files {
            let cfg = Config::builder()
                .add_source(File::from(file.as_path()).format(FileFormat::Yaml))
                .build()
                .map_err(|e| SettingsError::new(file.display().to_string(), e.to_string()))?;
            let alone = deserialize_strict(cfg).map_err(|e| SettingsError::new(file.display().to_string(), e))?;
            // Out-of-range values are reported with the file that holds them (defaults are in range).
            check_ranges(&alone).map_err(|e| {
                SettingsError::new(file.display().to_string(), format!("{}: {}", e.source_name, e.message))
            })?;
        }
        let mut builder = Config::builder();
        for file in &files {
            builder = builder.add_source(File::from(file.as_path()).format(FileFormat::Yaml));
        }
        let overrides: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with("TRIPLEGAIN__"))
            .collect();
        let mut env_map = config::Map::new();
        for (k, _) in &overrides {
            if let Some(v) = env(k) {
                env_map.insert(k.clone(), v);
            }
        }
        builder = builder.add_source(
            Environment::with_prefix("TRIPLEGAIN")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(env_map)),
        );
        let cfg = builder
            .build()
            .map_err(|e| SettingsError::new("environment (TRIPLEGAIN__*)", e.to_string()))?;
        let mut settings: Settings =
            deserialize_strict(cfg).map_err(|e| SettingsError::new("environment (TRIPLEGAIN__*)", e))?;
        settings.app.environment = environment;

        settings.database.url = env("DATABASE_URL").map(Secret::new);
        settings.app.live_trading_confirmation = env(LIVE_TRADING_CONFIRMATION_VAR);
        settings.kraken.api_key = env("KRAKEN_API_KEY").map(Secret::new);
        settings.kraken.api_secret = env("KRAKEN_API_SECRET").map(Secret::new);
        for (provider, var) in [
            ("deepseek", "DEEPSEEK_API_KEY"),
            ("anthropic", "ANTHROPIC_API_KEY"),
            ("openai", "OPENAI_API_KEY"),
            ("xai", "XAI_API_KEY"),
        ] {
            if let Some(p) = settings.llm.providers.get_mut(provider) {
                p.api_key = env(var).map(Secret::new);
            }
        }
        // -- notifications (issue 17): bot and webhook tokens only from the environment --
        settings.notifications.telegram.bot_token = env(crate::notifier::TELEGRAM_TOKEN_VAR).map(Secret::new);
        settings.notifications.webhook.auth_token = env(crate::notifier::WEBHOOK_TOKEN_VAR).map(Secret::new);
        settings.export.credentials = crate::export::NatsCredentials::from_env(&env);
        if let Some(token) = env("TRIPLEGAIN_API_TOKEN") {
            settings.api.tokens.push(ApiToken {
                name: "env:TRIPLEGAIN_API_TOKEN".into(),
                token: Secret::new(token),
                role: Role::Admin,
            });
        }
        settings.validate()?;
        Ok(settings)
    }

    /// Cross-field checks the types cannot express.
    ///
    /// # Errors
    /// [`SettingsError`] naming the key.
    pub fn validate(&self) -> Result<(), SettingsError> {
        check_ranges(self)?;
        self.notifications.validate()?;
        if self.server.bind.parse::<std::net::SocketAddr>().is_err() {
            return Err(SettingsError::new(
                "server.bind",
                format!("{:?} is not an address like 127.0.0.1:8080", self.server.bind),
            ));
        }
        if self.server.workers == 0 {
            return Err(SettingsError::new("server.workers", "must be at least 1"));
        }
        if self.database.memory_max_records == 0 {
            return Err(SettingsError::new("database.memory_max_records", "must be at least 1"));
        }
        if self.supervision.max_restarts == 0 || self.supervision.window_secs == 0 {
            return Err(SettingsError::new(
                "supervision.max_restarts / supervision.window_secs",
                "must be at least 1",
            ));
        }
        for (i, t) in self.api.tokens.iter().enumerate() {
            if t.token.expose().len() < 16 {
                return Err(SettingsError::new(
                    format!("api.tokens[{i}].token ({})", t.name),
                    "must be at least 16 characters",
                ));
            }
        }
        for (key, value) in [
            ("api.rate_limit.reads_per_minute", self.api.rate_limit.reads_per_minute),
            (
                "api.rate_limit.control_per_minute",
                self.api.rate_limit.control_per_minute,
            ),
        ] {
            if value > MAX_REQUESTS_PER_MINUTE {
                return Err(SettingsError::new(
                    key,
                    format!("must be between 0 (unlimited) and {MAX_REQUESTS_PER_MINUTE}, got {value}"),
                ));
            }
        }
        // issue 15: the strategy panel's parameters (config/agents.yaml)
        if let Err((key, why)) = self.agents.trading_decision.strategies.validate() {
            return Err(SettingsError::new(
                "config/agents.yaml",
                format!("agents.trading_decision.strategies.{key}: {why}"),
            ));
        }
        for s in &self.market.symbols {
            triplegain_actors::domain::Symbol::parse(s)
                .map_err(|e| SettingsError::new("market.symbols", e.to_string()))?;
        }
        crate::export::validate_account(&self.app.account)
            .map_err(|e| SettingsError::new("app.account (config/base.yaml)", e))?;
        self.export
            .validate(self.database.url.is_some())
            .map_err(|(key, e)| SettingsError::new(format!("{key} (config/export.yaml)"), e))?;
        if !matches!(self.kraken.tier.as_str(), "starter" | "intermediate" | "pro") {
            return Err(SettingsError::new(
                "kraken.tier",
                "must be starter, intermediate or pro",
            ));
        }
        if self.execution.protection.max_unprotected_secs == 0 {
            return Err(SettingsError::new(
                "execution.protection.max_unprotected_secs",
                "must be at least 1 second",
            ));
        }
        if self.execution.tracking.visibility_window_secs == 0 {
            return Err(SettingsError::new(
                "execution.tracking.visibility_window_secs",
                "must be at least 1 second (Kraken shows a new order within about a minute)",
            ));
        }
        for (key, url) in [
            ("kraken.ws_private_url", &self.kraken.ws_private_url),
            ("kraken.ws_public_url", &self.kraken.ws_public_url),
        ] {
            if !(url.starts_with("ws://") || url.starts_with("wss://")) {
                return Err(SettingsError::new(
                    key,
                    format!("{url:?} must start with ws:// or wss://"),
                ));
            }
        }
        if !(0.0..=5.0).contains(&self.kraken.reserved_rest_points) {
            return Err(SettingsError::new(
                "kraken.reserved_rest_points",
                "must be between 0 and 5 points of the REST counter",
            ));
        }
        if self.kraken.rest_safety_net_secs == 0 || self.kraken.ws_reply_timeout_ms == 0 {
            return Err(SettingsError::new(
                "kraken.rest_safety_net_secs / kraken.ws_reply_timeout_ms",
                "must be at least 1",
            ));
        }
        if self.app.mode == TradingMode::Live {
            if self.database.url.is_none() {
                return Err(SettingsError::new(
                    "DATABASE_URL",
                    "live mode requires PostgreSQL: set DATABASE_URL (the in-memory store keeps nothing across restarts)",
                ));
            }
            if self.kraken.api_key.is_none() || self.kraken.api_secret.is_none() {
                return Err(SettingsError::new(
                    "KRAKEN_API_KEY / KRAKEN_API_SECRET",
                    "live mode requires Kraken API credentials",
                ));
            }
            if self.app.live_trading_confirmation.as_deref() != Some(LIVE_TRADING_CONFIRMATION) {
                return Err(SettingsError::new(
                    LIVE_TRADING_CONFIRMATION_VAR,
                    format!("live mode requires {LIVE_TRADING_CONFIRMATION_VAR}={LIVE_TRADING_CONFIRMATION}"),
                ));
            }
        }
        self.validate_money_safety()
    }

    pub fn fault_injection(&self) -> bool {
        self.server
            .fault_injection
            .unwrap_or(self.app.mode == TradingMode::Paper && self.app.environment != "production")
    }

    // ---- money safety: what live mode trades on, and where faults may be injected ----------

    /// Live mode trades real money, so it prices on the real Kraken feed only (paper mode may
    /// use any source), and fault injection is for paper runs outside production.
    ///
    /// # Errors
    /// [`SettingsError`] naming `market.source` or `server.fault_injection`.
    pub fn validate_money_safety(&self) -> Result<(), SettingsError> {
        let on_kraken = matches!(self.market.source, MarketSource::Kraken | MarketSource::KrakenWs);
        if self.app.mode == TradingMode::Live && !on_kraken {
            return Err(SettingsError::new(
                "market.source",
                format!(
                    "live mode trades real money on Kraken and must price on the real Kraken feed: \
                     set market.source: kraken_ws or kraken (got {})",
                    serde_json::to_value(self.market.source)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                ),
            ));
        }
        if self.server.fault_injection == Some(true)
            && (self.app.mode != TradingMode::Paper || self.app.environment == "production")
        {
            return Err(SettingsError::new(
                "server.fault_injection",
                format!(
                    "fault injection is only allowed in paper mode outside production (mode {}, TRIPLEGAIN_ENV {})",
                    if self.app.mode == TradingMode::Paper {
                        "paper"
                    } else {
                        "live"
                    },
                    self.app.environment
                ),
            ));
        }
        Ok(())
    }

    /// The resolved settings as YAML with every secret redacted.
    ///
    /// # Errors
    /// Serialisation failure (not expected).
    pub fn redacted_yaml(&self) -> Result<String, serde_yaml::Error> {
        serde_yaml::to_string(self)
    }
}

// ---- configuration that cannot silently go wrong (issue 17) ---------------------------------
// The config directory holds exactly base.yaml, the domain files and the environment files; a
// missing, misnamed (`risk.yml`) or unknown file is an error naming it. Values are deserialised
// through serde_json with the key path tracked, so messages read `api.tokens[0].role: unknown
// variant `boss`, expected one of `viewer`, `operator`, `admin``. Every limit has a range,
// checked by `check-config` and at start with the key named.

/// The environment files `TRIPLEGAIN_ENV` selects between.
pub const ENVIRONMENT_FILES: [&str; 2] = ["local", "production"];

fn check_config_dir(dir: &Path, environment: &str) -> Result<(), SettingsError> {
    let known: Vec<String> = std::iter::once("base")
        .chain(DOMAIN_FILES)
        .chain(ENVIRONMENT_FILES)
        .map(|n| format!("{n}.yaml"))
        .collect();
    let entries = std::fs::read_dir(dir).map_err(|e| {
        SettingsError::new(
            dir.display().to_string(),
            format!("cannot read the config directory: {e}"),
        )
    })?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // Hidden files (editor swap files, .gitkeep) are not configuration.
        if name.starts_with('.') || known.contains(&name) {
            continue;
        }
        let path = dir.join(&name);
        let stem = name.rsplit_once('.').map_or(name.as_str(), |(stem, _)| stem);
        let hint = if known.contains(&format!("{stem}.yaml")) {
            format!("misnamed file: rename it to {stem}.yaml (only .yaml files are read)")
        } else {
            format!(
                "unknown file in the config directory (expected only {}); remove or rename it",
                known.join(", ")
            )
        };
        return Err(SettingsError::new(path.display().to_string(), hint));
    }
    for name in DOMAIN_FILES {
        let path = dir.join(format!("{name}.yaml"));
        if !path.exists() {
            return Err(SettingsError::new(
                path.display().to_string(),
                format!(
                    "file not found: every domain file is required ({}.yaml)",
                    DOMAIN_FILES.join(".yaml, ")
                ),
            ));
        }
    }
    let env_file = dir.join(format!("{environment}.yaml"));
    if !env_file.exists() {
        return Err(SettingsError::new(
            env_file.display().to_string(),
            format!("file not found: TRIPLEGAIN_ENV={environment} reads it"),
        ));
    }
    Ok(())
}

/// Deserialises `cfg` into [`Settings`] with the key path of any error in the message.
fn deserialize_strict(cfg: Config) -> Result<Settings, String> {
    let value: serde_json::Value = cfg.try_deserialize().map_err(|e| e.to_string())?;
    // An empty file is an empty table.
    let value = if value.is_null() {
        serde_json::Value::Object(serde_json::Map::new())
    } else {
        value
    };
    serde_path_to_error::deserialize::<_, Settings>(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path.is_empty() || path == "." {
            inner
        } else {
            format!("{path}: {inner}")
        }
    })
}

/// What a numeric setting must satisfy.
#[derive(Debug, Clone, Copy)]
enum Range {
    /// Inclusive bounds.
    Between(f64, f64),
    /// Strictly greater than zero.
    Positive,
    /// Zero or more.
    NonNegative,
}

/// Keys whose 0 means "off" or "as fast as possible" rather than a broken interval.
const ZERO_ALLOWED: [&str; 1] = ["orchestration.evaluate_every_seconds"];

/// The range of the setting at `path` (its last key `key`), if it has one.
fn range_for(path: &str, key: &str) -> Option<Range> {
    let is_cooldown_or_pause = key.ends_with("_min") || key.ends_with("_minutes");
    if key.ends_with("_pct") {
        Some(Range::Between(0.0, 100.0))
    } else if path.contains("leverage") {
        Some(Range::Between(1.0, 5.0))
    } else if key.ends_with("volume_ratio") {
        // A volume against its average (1.2 = 20 % above it), not a share.
        Some(Range::Positive)
    } else if path.contains("confidence")
        || key.ends_with("_ratio")
        || (key.ends_with("_threshold") && path.contains("correlation"))
    {
        Some(Range::Between(0.0, 1.0))
    } else if is_cooldown_or_pause || ZERO_ALLOWED.contains(&path) {
        Some(Range::NonNegative)
    } else if key.ends_with("_secs")
        || key.ends_with("_seconds")
        || key.ends_with("_ms")
        || key.ends_with("_hours")
        || key.contains("interval")
        || path.contains("timeout")
    {
        Some(Range::Positive)
    } else {
        None
    }
}

fn number_of(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        // Money and percentages are decimals, serialised as strings.
        serde_json::Value::String(s) => s.parse::<rust_decimal::Decimal>().ok().and_then(|d| {
            use rust_decimal::prelude::ToPrimitive;
            d.to_f64()
        }),
        _ => None,
    }
}

fn walk_ranges(path: &str, key: &str, v: &serde_json::Value) -> Result<(), SettingsError> {
    match v {
        serde_json::Value::Object(map) => {
            for (k, child) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk_ranges(&p, k, child)?;
            }
            Ok(())
        }
        serde_json::Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                walk_ranges(&format!("{path}[{i}]"), key, child)?;
            }
            Ok(())
        }
        other => {
            let (Some(range), Some(x)) = (range_for(path, key), number_of(other)) else {
                return Ok(());
            };
            let ok = match range {
                Range::Between(lo, hi) => (lo..=hi).contains(&x),
                Range::Positive => x > 0.0,
                Range::NonNegative => x >= 0.0,
            };
            if ok {
                return Ok(());
            }
            let shown = match other {
                serde_json::Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            let want = match range {
                Range::Between(lo, hi) => format!("must be between {lo} and {hi}"),
                Range::Positive => "must be greater than 0".to_owned(),
                Range::NonNegative => "must not be negative".to_owned(),
            };
            Err(SettingsError::new(path.to_owned(), format!("{want}, got {shown}")))
        }
    }
}

/// Every limit within its range: percentages 0..=100, leverage 1..=5, confidences and ratios
/// 0..=1, intervals and timeouts above 0, cooldowns not negative.
///
/// # Errors
/// [`SettingsError`] naming the first key out of range.
pub fn check_ranges(settings: &Settings) -> Result<(), SettingsError> {
    let value = serde_json::to_value(settings)
        .map_err(|e| SettingsError::new("settings", format!("cannot inspect the settings: {e}")))?;
    walk_ranges("", "", &value)?;
    let r = &settings.risk;
    if r.volatility_window == 0 {
        return Err(SettingsError::new("risk.volatility_window", "must be at least 1"));
    }
    if r.min_stop_distance_pct > r.max_stop_distance_pct {
        return Err(SettingsError::new(
            "risk.min_stop_distance_pct",
            format!(
                "must not exceed risk.max_stop_distance_pct ({} > {})",
                r.min_stop_distance_pct, r.max_stop_distance_pct
            ),
        ));
    }
    Ok(())
}
