//! Model clients behind the [`ModelClient`](triplegain_actors::ports::ModelClient) port.
//!
//! - [`openai::OpenAiCompatibleClient`]: OpenAI chat completions (OpenAI, DeepSeek, xAI, Ollama).
//! - [`anthropic::AnthropicClient`]: Anthropic messages API.
//! - [`json`]: strict extraction of the JSON object a model answers with.
//! - [`chain`]: fallback chain, circuit breaker, answer recorder and replay client.
//! - [`pricing`]: per-model token prices for cost accounting.
//! - [`providers`]: provider settings and building (guarded) clients from them.
//! - [`resolver`]: conflict resolution by the configured model chain.
//!
//! Every call has a deadline (`ModelRequest::timeout_ms`, covering retries), bounded retries with
//! backoff on 429 and 5xx only, token and cost accounting, and latency. API keys are
//! [`secrecy::SecretString`]s and never appear in logs or error messages.

pub mod anthropic;
pub mod chain;
mod http;
pub mod json;
pub mod openai;
pub mod pricing;
pub mod providers;
pub mod resolver;

pub use anthropic::AnthropicClient;
pub use chain::{
    prompt_hash, BreakerState, ChainFailure, ChainLink, ChainResult, CircuitBreaker, CircuitBreakerClient,
    FallbackChain, FnModelClient, JsonlRecorder, MemoryRecorder, ModelRecorder, RecordedAnswer, RecordingClient,
    ReplayKey, ReplayModelClient,
};
pub use http::RetryPolicy;
pub use json::{extract_json_object, parse_decision, parse_output, parse_sentiment, JsonOutputClient};
pub use openai::OpenAiCompatibleClient;
pub use pricing::{ModelPrice, PriceTable};
pub use providers::{ProviderSettings, WireFormat, DECISION_MODELS};
pub use resolver::{ModelConflictResolver, ResolverLink};
