//! OpenAI chat-completions client. The same wire format serves OpenAI, DeepSeek, xAI (Grok) and
//! Ollama's OpenAI-compatible endpoint; they differ only in base URL, key and prices.

use super::http::{post_json, RetryPolicy};
use super::pricing::PriceTable;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Instant;
use triplegain_actors::ports::{ModelClient, ModelError, ModelFuture, ModelRequest, ModelResponse};

/// Default base URLs (each ends before `/chat/completions`).
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
pub const DEEPSEEK_BASE_URL: &str = "https://api.deepseek.com/v1";
pub const XAI_BASE_URL: &str = "https://api.x.ai/v1";
pub const OLLAMA_BASE_URL: &str = "http://localhost:11434/v1";

/// A chat-completions endpoint. Cheap to clone (one shared HTTP connection pool).
#[derive(Clone)]
pub struct OpenAiCompatibleClient {
    inner: Arc<Inner>,
}

struct Inner {
    provider: String,
    base_url: String,
    api_key: Option<SecretString>,
    key_required: bool,
    http: reqwest::Client,
    prices: PriceTable,
    json_mode: bool,
    retry: RetryPolicy,
}

impl std::fmt::Debug for OpenAiCompatibleClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiCompatibleClient")
            .field("provider", &self.inner.provider)
            .field("base_url", &self.inner.base_url)
            .field("api_key", &self.inner.api_key.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

#[derive(Deserialize)]
struct ChatResponse {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: Message,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: u32,
    #[serde(default)]
    completion_tokens: u32,
}

impl OpenAiCompatibleClient {
    /// A client for `provider` at `base_url` (the part before `/chat/completions`). A key is
    /// required unless it is `None` on purpose (Ollama): see [`Self::without_key`].
    pub fn new(provider: impl Into<String>, base_url: impl Into<String>, api_key: Option<SecretString>) -> Self {
        Self::build(provider.into(), base_url.into(), api_key, true)
    }

    /// A keyless endpoint (a local Ollama).
    pub fn without_key(provider: impl Into<String>, base_url: impl Into<String>) -> Self {
        Self::build(provider.into(), base_url.into(), None, false)
    }

    pub fn openai(api_key: Option<SecretString>) -> Self {
        Self::new("openai", OPENAI_BASE_URL, api_key)
    }

    pub fn deepseek(api_key: Option<SecretString>) -> Self {
        Self::new("deepseek", DEEPSEEK_BASE_URL, api_key)
    }

    pub fn xai(api_key: Option<SecretString>) -> Self {
        Self::new("xai", XAI_BASE_URL, api_key)
    }

    pub fn ollama(base_url: impl Into<String>) -> Self {
        Self::without_key("ollama", base_url)
    }

    fn build(provider: String, base_url: String, api_key: Option<SecretString>, key_required: bool) -> Self {
        let base_url = base_url.trim_end_matches('/').to_string();
        let api_key = api_key.filter(|k| !k.expose_secret().trim().is_empty());
        Self {
            inner: Arc::new(Inner {
                provider,
                base_url,
                api_key,
                key_required,
                http: reqwest::Client::new(),
                prices: PriceTable::default(),
                json_mode: true,
                retry: RetryPolicy::default(),
            }),
        }
    }

    fn map_inner(self, f: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = match Arc::try_unwrap(self.inner) {
            Ok(i) => i,
            Err(shared) => Inner {
                provider: shared.provider.clone(),
                base_url: shared.base_url.clone(),
                api_key: shared.api_key.clone(),
                key_required: shared.key_required,
                http: shared.http.clone(),
                prices: shared.prices.clone(),
                json_mode: shared.json_mode,
                retry: shared.retry,
            },
        };
        f(&mut inner);
        Self { inner: Arc::new(inner) }
    }

    /// Replaces the price table used for `cost_usd`.
    pub fn with_prices(self, prices: PriceTable) -> Self {
        self.map_inner(|i| i.prices = prices)
    }

    /// Sends `response_format: {"type": "json_object"}` (on by default).
    pub fn with_json_mode(self, on: bool) -> Self {
        self.map_inner(|i| i.json_mode = on)
    }

    pub fn with_retry(self, retry: RetryPolicy) -> Self {
        self.map_inner(|i| i.retry = retry)
    }

    /// Shares an existing HTTP client (connection pool).
    pub fn with_http_client(self, http: reqwest::Client) -> Self {
        self.map_inner(|i| i.http = http)
    }

    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// Whether a call can be made at all (a key is present or none is needed).
    pub fn is_configured(&self) -> bool {
        !self.inner.key_required || self.inner.api_key.is_some()
    }

    /// The request body in the chat-completions wire format.
    pub fn request_body(&self, req: &ModelRequest) -> serde_json::Value {
        let mut body = serde_json::json!({
            "model": req.model,
            "messages": [
                {"role": "system", "content": req.system_prompt},
                {"role": "user", "content": req.user_prompt},
            ],
            "max_tokens": req.max_tokens,
            "temperature": req.temperature,
        });
        if self.inner.json_mode {
            body["response_format"] = serde_json::json!({"type": "json_object"});
        }
        body
    }
}

async fn call(inner: Arc<Inner>, body: serde_json::Value, req: ModelRequest) -> Result<ModelResponse, ModelError> {
    let mut headers = HeaderMap::new();
    match &inner.api_key {
        Some(key) => {
            let mut v = HeaderValue::from_str(&format!("Bearer {}", key.expose_secret())).map_err(|_| {
                ModelError::NotConfigured(format!("{}: API key is not a valid header value", inner.provider))
            })?;
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        None if inner.key_required => {
            return Err(ModelError::NotConfigured(format!(
                "{}: no API key configured",
                inner.provider
            )))
        }
        None => {}
    }
    let url = format!("{}/chat/completions", inner.base_url);
    let started = Instant::now();
    let value = post_json(
        &inner.http,
        &inner.provider,
        &url,
        headers,
        &body,
        req.timeout_ms,
        inner.retry,
    )
    .await?;
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let parsed: ChatResponse = serde_json::from_value(value)
        .map_err(|e| ModelError::Provider(format!("{}: unexpected response shape: {e}", inner.provider)))?;
    let text = parsed
        .choices
        .into_iter()
        .next()
        .and_then(|c| c.message.content)
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| ModelError::BadOutput(format!("{}: choices[0].message.content is empty", inner.provider)))?;
    let (input_tokens, output_tokens) = parsed
        .usage
        .map(|u| (u.prompt_tokens, u.completion_tokens))
        .unwrap_or((0, 0));
    let model = parsed.model.unwrap_or_else(|| req.model.clone());
    let cost_usd = inner.prices.cost(&req.model, input_tokens, output_tokens);
    Ok(ModelResponse {
        provider: inner.provider.clone(),
        model,
        text,
        input_tokens,
        output_tokens,
        latency_ms,
        cost_usd,
    })
}

impl ModelClient for OpenAiCompatibleClient {
    fn provider(&self) -> &str {
        &self.inner.provider
    }

    fn complete(&self, req: ModelRequest) -> ModelFuture {
        let inner = Arc::clone(&self.inner);
        let body = self.request_body(&req);
        Box::pin(async move {
            let provider = inner.provider.clone();
            let model = req.model.clone();
            let started = Instant::now();
            let result = call(inner, body, req).await;
            crate::observability::record_model_call(&provider, &model, started.elapsed(), &result);
            result
        })
    }
}
