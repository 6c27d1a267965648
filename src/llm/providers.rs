//! Provider settings (the `providers` section of `config/agents.yaml`) and building clients
//! from them. A provider whose key is not configured yields no client: the agents then use
//! their rule-based model.

use super::anthropic::{AnthropicClient, ANTHROPIC_BASE_URL};
use super::chain::{CircuitBreaker, CircuitBreakerClient};
use super::http::RetryPolicy;
use super::json::JsonOutputClient;
use super::openai::{OpenAiCompatibleClient, DEEPSEEK_BASE_URL, OPENAI_BASE_URL, XAI_BASE_URL};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use triplegain_actors::ports::ModelClient;

/// Which wire format a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireFormat {
    /// OpenAI chat completions (OpenAI, DeepSeek, xAI, Ollama).
    OpenaiCompatible,
    /// Anthropic messages.
    Anthropic,
}

/// One provider as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderSettings {
    /// `openai`, `deepseek`, `xai`, `ollama`, `anthropic`, …
    pub name: String,
    pub format: WireFormat,
    /// For OpenAI-compatible providers the part before `/chat/completions`; for Anthropic the
    /// part before `/v1/messages`.
    pub base_url: String,
    /// Environment variable holding the key; `None` for keyless endpoints (Ollama).
    pub api_key_env: Option<String>,
    pub default_model: String,
    pub timeout_ms: u64,
    #[serde(default = "default_retries")]
    pub max_retries: u32,
}

fn default_retries() -> u32 {
    2
}

impl ProviderSettings {
    /// The reference system's providers (Appendix A), keys from the usual environment variables.
    pub fn defaults() -> Vec<Self> {
        let p = |name: &str, format, base_url: &str, env: Option<&str>, model: &str, timeout_ms| Self {
            name: name.into(),
            format,
            base_url: base_url.into(),
            api_key_env: env.map(Into::into),
            default_model: model.into(),
            timeout_ms,
            max_retries: default_retries(),
        };
        vec![
            p(
                "ollama",
                WireFormat::OpenaiCompatible,
                "http://localhost:11434/v1",
                None,
                "qwen2.5:7b",
                30_000,
            ),
            p(
                "openai",
                WireFormat::OpenaiCompatible,
                OPENAI_BASE_URL,
                Some("OPENAI_API_KEY"),
                "gpt-4-turbo",
                60_000,
            ),
            p(
                "anthropic",
                WireFormat::Anthropic,
                ANTHROPIC_BASE_URL,
                Some("ANTHROPIC_API_KEY"),
                "claude-3-5-sonnet-20241022",
                60_000,
            ),
            p(
                "deepseek",
                WireFormat::OpenaiCompatible,
                DEEPSEEK_BASE_URL,
                Some("DEEPSEEK_API_KEY"),
                "deepseek-chat",
                60_000,
            ),
            p(
                "xai",
                WireFormat::OpenaiCompatible,
                XAI_BASE_URL,
                Some("XAI_BEARER_API_KEY"),
                "grok-2-1212",
                60_000,
            ),
        ]
    }

    /// Reads the key from the environment; an unset or empty variable is no key.
    pub fn key_from_env(&self) -> Option<SecretString> {
        let var = self.api_key_env.as_deref()?;
        std::env::var(var)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(SecretString::from)
    }

    /// The bare client, or `None` when a key is needed and missing.
    pub fn client(&self, key: Option<SecretString>, http: &reqwest::Client) -> Option<Arc<dyn ModelClient>> {
        let retry = RetryPolicy {
            max_retries: self.max_retries,
            ..RetryPolicy::default()
        };
        match (self.format, self.api_key_env.is_some(), key) {
            (WireFormat::OpenaiCompatible, false, _) => Some(Arc::new(
                OpenAiCompatibleClient::without_key(self.name.clone(), self.base_url.clone())
                    .with_retry(retry)
                    .with_http_client(http.clone()),
            )),
            (WireFormat::OpenaiCompatible, true, Some(k)) => Some(Arc::new(
                OpenAiCompatibleClient::new(self.name.clone(), self.base_url.clone(), Some(k))
                    .with_retry(retry)
                    .with_http_client(http.clone()),
            )),
            (WireFormat::Anthropic, _, Some(k)) => Some(Arc::new(
                AnthropicClient::new(self.base_url.clone(), Some(k))
                    .with_retry(retry)
                    .with_http_client(http.clone()),
            )),
            _ => None,
        }
    }

    /// The client as agents use it: JSON-only answers behind a circuit breaker (3 failures,
    /// 300 s cooldown, 3 half-open calls). `None` when a key is needed and missing.
    pub fn guarded_client(&self, key: Option<SecretString>, http: &reqwest::Client) -> Option<Arc<dyn ModelClient>> {
        let bare = self.client(key, http)?;
        let json: Arc<dyn ModelClient> = Arc::new(JsonOutputClient::new(bare));
        Some(Arc::new(CircuitBreakerClient::new(
            json,
            CircuitBreaker::new(3, Duration::from_secs(300), 3),
        )))
    }
}

/// The trading decision agent's six models (reference §1.4): alias, provider, model.
pub const DECISION_MODELS: [(&str, &str, &str); 6] = [
    ("qwen", "ollama", "qwen2.5:7b"),
    ("gpt4", "openai", "gpt-4-turbo"),
    ("grok", "xai", "grok-2-1212"),
    ("deepseek", "deepseek", "deepseek-chat"),
    ("sonnet", "anthropic", "claude-3-5-sonnet-20241022"),
    ("opus", "anthropic", "claude-3-opus-20240229"),
];

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests assert by unwrapping"
)]
mod tests {
    use super::*;

    #[test]
    fn clients_only_for_configured_keys() {
        let http = reqwest::Client::new();
        let all = ProviderSettings::defaults();
        let by = |n: &str| all.iter().find(|p| p.name == n).unwrap();
        // keyless Ollama always has a client; keyed providers only with a key
        assert_eq!(by("ollama").client(None, &http).unwrap().provider(), "ollama");
        assert!(by("openai").client(None, &http).is_none());
        assert!(by("anthropic").client(None, &http).is_none());
        let k = || Some(SecretString::from("sk-test"));
        assert_eq!(by("anthropic").client(k(), &http).unwrap().provider(), "anthropic");
        assert_eq!(by("xai").guarded_client(k(), &http).unwrap().provider(), "xai");
        for (_, provider, _) in DECISION_MODELS {
            assert!(all.iter().any(|p| p.name == provider), "{provider} has settings");
        }
    }

    #[test]
    fn settings_deserialise_from_yaml() {
        let yaml = "name: deepseek\nformat: openai_compatible\nbase_url: http://127.0.0.1:9/v1\n\
                    api_key_env: DEEPSEEK_API_KEY\ndefault_model: deepseek-chat\ntimeout_ms: 1000\n";
        let s: ProviderSettings = serde_yaml::from_str(yaml).unwrap();
        assert_eq!((s.format, s.max_retries), (WireFormat::OpenaiCompatible, 2));
        assert!(serde_yaml::from_str::<ProviderSettings>(&yaml.replace("openai_compatible", "openai")).is_err());
    }
}
