//! Anthropic messages API client.

use super::http::{post_json, RetryPolicy};
use super::pricing::PriceTable;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Instant;
use triplegain_actors::ports::{ModelClient, ModelError, ModelFuture, ModelRequest, ModelResponse};

pub const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Anthropic messages endpoint. Cheap to clone.
#[derive(Clone)]
pub struct AnthropicClient {
    inner: Arc<Inner>,
}

struct Inner {
    base_url: String,
    api_key: Option<SecretString>,
    http: reqwest::Client,
    prices: PriceTable,
    retry: RetryPolicy,
}

impl std::fmt::Debug for AnthropicClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnthropicClient")
            .field("base_url", &self.inner.base_url)
            .field("api_key", &self.inner.api_key.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

#[derive(Deserialize)]
struct MessagesResponse {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    content: Vec<ContentBlock>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct ContentBlock {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    input_tokens: u32,
    #[serde(default)]
    output_tokens: u32,
}

impl AnthropicClient {
    /// `base_url` is the part before `/v1/messages`.
    pub fn new(base_url: impl Into<String>, api_key: Option<SecretString>) -> Self {
        let base_url = base_url.into().trim_end_matches('/').to_string();
        let api_key = api_key.filter(|k| !k.expose_secret().trim().is_empty());
        Self {
            inner: Arc::new(Inner {
                base_url,
                api_key,
                http: reqwest::Client::new(),
                prices: PriceTable::default(),
                retry: RetryPolicy::default(),
            }),
        }
    }

    fn map_inner(self, f: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = match Arc::try_unwrap(self.inner) {
            Ok(i) => i,
            Err(shared) => Inner {
                base_url: shared.base_url.clone(),
                api_key: shared.api_key.clone(),
                http: shared.http.clone(),
                prices: shared.prices.clone(),
                retry: shared.retry,
            },
        };
        f(&mut inner);
        Self { inner: Arc::new(inner) }
    }

    pub fn with_prices(self, prices: PriceTable) -> Self {
        self.map_inner(|i| i.prices = prices)
    }

    pub fn with_retry(self, retry: RetryPolicy) -> Self {
        self.map_inner(|i| i.retry = retry)
    }

    pub fn with_http_client(self, http: reqwest::Client) -> Self {
        self.map_inner(|i| i.http = http)
    }

    pub fn is_configured(&self) -> bool {
        self.inner.api_key.is_some()
    }

    /// The request body in the messages wire format.
    pub fn request_body(req: &ModelRequest) -> serde_json::Value {
        serde_json::json!({
            "model": req.model,
            "max_tokens": req.max_tokens,
            "temperature": req.temperature,
            "system": req.system_prompt,
            "messages": [{"role": "user", "content": req.user_prompt}],
        })
    }
}

async fn call(inner: Arc<Inner>, req: ModelRequest) -> Result<ModelResponse, ModelError> {
    const PROVIDER: &str = "anthropic";
    let key = inner
        .api_key
        .as_ref()
        .ok_or_else(|| ModelError::NotConfigured(format!("{PROVIDER}: no API key configured")))?;
    let mut headers = HeaderMap::new();
    let mut key_value = HeaderValue::from_str(key.expose_secret())
        .map_err(|_| ModelError::NotConfigured(format!("{PROVIDER}: API key is not a valid header value")))?;
    key_value.set_sensitive(true);
    headers.insert(HeaderName::from_static("x-api-key"), key_value);
    headers.insert(
        HeaderName::from_static("anthropic-version"),
        HeaderValue::from_static(ANTHROPIC_VERSION),
    );
    let url = format!("{}/v1/messages", inner.base_url);
    let body = AnthropicClient::request_body(&req);
    let started = Instant::now();
    let value = post_json(&inner.http, PROVIDER, &url, headers, &body, req.timeout_ms, inner.retry).await?;
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let parsed: MessagesResponse = serde_json::from_value(value)
        .map_err(|e| ModelError::Provider(format!("{PROVIDER}: unexpected response shape: {e}")))?;
    let text = parsed
        .content
        .into_iter()
        .find(|b| b.kind == "text")
        .and_then(|b| b.text)
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| ModelError::BadOutput(format!("{PROVIDER}: content has no text block")))?;
    let (input_tokens, output_tokens) = parsed
        .usage
        .map(|u| (u.input_tokens, u.output_tokens))
        .unwrap_or((0, 0));
    Ok(ModelResponse {
        provider: PROVIDER.to_string(),
        model: parsed.model.unwrap_or_else(|| req.model.clone()),
        text,
        input_tokens,
        output_tokens,
        latency_ms,
        cost_usd: inner.prices.cost(&req.model, input_tokens, output_tokens),
    })
}

impl ModelClient for AnthropicClient {
    fn provider(&self) -> &str {
        "anthropic"
    }

    fn complete(&self, req: ModelRequest) -> ModelFuture {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let model = req.model.clone();
            let started = Instant::now();
            let result = call(inner, req).await;
            crate::observability::record_model_call("anthropic", &model, started.elapsed(), &result);
            result
        })
    }
}
