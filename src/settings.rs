//! Typed settings: `config/base.yaml`, then the domain files, then `config/{local|production}.yaml`,
//! then `TRIPLEGAIN__SECTION__KEY` environment overrides. Secrets come only from the environment.
//!
//! Every struct denies unknown fields and every field has a default, so each file can also be
//! checked on its own: an invalid or unknown key is reported with the file that holds it.

use config::{Config, Environment, File, FileFormat};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use triplegain_actors::domain::TradingMode;

/// The domain files loaded after `base.yaml`, in order.
pub const DOMAIN_FILES: [&str; 7] = [
    "orchestration",
    "risk",
    "execution",
    "portfolio",
    "hodl",
    "indicators",
    "agents",
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

    pub orchestration: serde_json::Value,

    pub portfolio: triplegain_actors::portfolio::PortfolioConfig,

    pub hodl: triplegain_actors::portfolio::HodlConfig,

    pub indicators: serde_json::Value,

    pub agents: serde_json::Value,
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
            orchestration: serde_json::Value::Object(Default::default()),
            risk: triplegain_actors::risk::RiskLimits::default(),
            execution: ExecutionSettings::default(),
            portfolio: triplegain_actors::portfolio::PortfolioConfig::reference(),
            hodl: triplegain_actors::portfolio::HodlConfig::default(),
            indicators: serde_json::Value::Object(Default::default()),
            agents: serde_json::Value::Object(Default::default()),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppSettings {
    pub mode: TradingMode,
    /// `local` or `production`: selects the environment file.
    pub environment: String,
}

impl Default for AppSettings {
    fn default() -> Self {
        Self {
            mode: TradingMode::Paper,
            environment: "local".into(),
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
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            workers: 2,
            fault_injection: None,
            max_body_bytes: 64 * 1024,
            shutdown_deadline_secs: 10,
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
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: None,
            max_connections: 8,
            connect_timeout_secs: 5,
            wait_timeout_secs: 5,
            run_migrations: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSettings {
    pub tokens: Vec<ApiToken>,
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
    Replay,
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
            dead_mans_switch_refresh_secs: 20,
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
        }
    }
}

/// `config/execution.yaml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutionSettings {
    /// The paper exchange (paper mode).
    pub paper: triplegain_actors::execution::paper::PaperConfig,
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
        let files = Self::files(dir, &environment);
        // Each file on its own first, so an error names the file that holds the bad key.
        for file in &files {
            let cfg = Config::builder()
                .add_source(File::from(file.as_path()).format(FileFormat::Yaml))
                .build()
                .map_err(|e| SettingsError::new(file.display().to_string(), e.to_string()))?;
            cfg.try_deserialize::<Settings>()
                .map_err(|e| SettingsError::new(file.display().to_string(), e.to_string()))?;
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
        let mut settings: Settings = cfg
            .try_deserialize()
            .map_err(|e| SettingsError::new("environment (TRIPLEGAIN__*)", e.to_string()))?;
        settings.app.environment = environment;

        settings.database.url = env("DATABASE_URL").map(Secret::new);
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
        if self.server.bind.parse::<std::net::SocketAddr>().is_err() {
            return Err(SettingsError::new(
                "server.bind",
                format!("{:?} is not an address like 127.0.0.1:8080", self.server.bind),
            ));
        }
        if self.server.workers == 0 {
            return Err(SettingsError::new("server.workers", "must be at least 1"));
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
        for s in &self.market.symbols {
            triplegain_actors::domain::Symbol::parse(s)
                .map_err(|e| SettingsError::new("market.symbols", e.to_string()))?;
        }
        if !matches!(self.kraken.tier.as_str(), "starter" | "intermediate" | "pro") {
            return Err(SettingsError::new(
                "kraken.tier",
                "must be starter, intermediate or pro",
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
        }
        Ok(())
    }

    pub fn fault_injection(&self) -> bool {
        self.server
            .fault_injection
            .unwrap_or(self.app.mode == TradingMode::Paper)
    }

    /// The resolved settings as YAML with every secret redacted.
    ///
    /// # Errors
    /// Serialisation failure (not expected).
    pub fn redacted_yaml(&self) -> Result<String, serde_yaml::Error> {
        serde_yaml::to_string(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[(&str, &str)]) -> tempdir::Dir {
        let d = tempdir::Dir::new();
        for (name, body) in files {
            std::fs::write(d.path().join(name), body).unwrap();
        }
        d
    }

    mod tempdir {
        pub struct Dir(std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                let p = std::env::temp_dir().join(format!("tg-settings-{}", uuid::Uuid::new_v4()));
                std::fs::create_dir_all(&p).unwrap();
                Self(p)
            }
            pub fn path(&self) -> &std::path::Path {
                &self.0
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let d = dir_with(&[("base.yaml", "server:\n  bind: 127.0.0.1:0\n  bogus_key: 1\n")]);
        let err = Settings::load_with_env(d.path(), no_env).unwrap_err();
        assert!(err.source_name.ends_with("base.yaml"), "{err}");
        assert!(err.message.contains("bogus_key"), "{err}");
    }

    #[test]
    fn secrets_never_print() {
        let d = dir_with(&[("base.yaml", "app:\n  mode: paper\n")]);
        let s = Settings::load_with_env(d.path(), |k| match k {
            "KRAKEN_API_SECRET" => Some("s3cr3t-value-abcdef".into()),
            "TRIPLEGAIN_API_TOKEN" => Some("admin-token-0123456789".into()),
            "DATABASE_URL" => Some("postgres://u:pw@h/db".into()),
            _ => None,
        })
        .unwrap();
        let yaml = s.redacted_yaml().unwrap();
        let dbg = format!("{s:?}");
        for secret in ["s3cr3t-value-abcdef", "admin-token-0123456789", "pw@h"] {
            assert!(!yaml.contains(secret), "yaml leaks {secret}");
            assert!(!dbg.contains(secret), "debug leaks {secret}");
        }
        assert!(yaml.contains("[REDACTED]"));
    }

    #[test]
    fn live_mode_without_database_is_refused() {
        let d = dir_with(&[("base.yaml", "app:\n  mode: live\n")]);
        let err = Settings::load_with_env(d.path(), no_env).unwrap_err();
        assert_eq!(err.source_name, "DATABASE_URL");
    }

    #[test]
    fn environment_overrides_files() {
        let d = dir_with(&[("base.yaml", "server:\n  workers: 2\n")]);
        std::env::set_var("TRIPLEGAIN__SERVER__WORKERS", "3");
        let s = Settings::load_with_env(d.path(), |k| std::env::var(k).ok());
        std::env::remove_var("TRIPLEGAIN__SERVER__WORKERS");
        assert_eq!(s.unwrap().server.workers, 3);
    }
}
