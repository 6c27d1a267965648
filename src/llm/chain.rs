//! Composition of model clients: a fallback chain, a per-provider circuit breaker, an answer
//! recorder and a replay client for deterministic backtests.

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use triplegain_actors::ports::{ModelClient, ModelError, ModelFuture, ModelRequest, ModelResponse};

// ---------------------------------------------------------------- fallback chain

/// One link of a [`FallbackChain`]: a client, the model it is asked for, and its own timeout.
#[derive(Clone)]
pub struct ChainLink {
    pub client: Arc<dyn ModelClient>,
    pub model: String,
    pub timeout_ms: u64,
}

/// Clients tried in order; the first success wins. Each link gets its own model name and
/// timeout. When every link fails the error lists each failure, and the caller falls back to
/// its deterministic rule-based decision (an LLM failure is never a crash and never a trade).
#[derive(Clone, Default)]
pub struct FallbackChain {
    links: Vec<ChainLink>,
}

impl FallbackChain {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn then(mut self, client: Arc<dyn ModelClient>, model: impl Into<String>, timeout_ms: u64) -> Self {
        self.links.push(ChainLink {
            client,
            model: model.into(),
            timeout_ms,
        });
        self
    }

    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    pub fn len(&self) -> usize {
        self.links.len()
    }

    /// Runs the chain and also returns the failures met before the answer.
    ///
    /// # Errors
    /// `NotConfigured` for an empty chain; otherwise the last link's error, with every
    /// failure listed in its message.
    pub fn run(&self, req: ModelRequest) -> futures::future::BoxFuture<'static, ChainResult> {
        let links = self.links.clone();
        Box::pin(async move {
            let mut failures = Vec::new();
            for link in links {
                let mut r = req.clone();
                r.model = link.model.clone();
                r.timeout_ms = link.timeout_ms;
                let provider = link.client.provider().to_string();
                // The link's own timeout bounds the call even if the client ignores it.
                let limit = Duration::from_millis(link.timeout_ms.saturating_add(250));
                let outcome = match tokio::time::timeout(limit, link.client.complete(r)).await {
                    Ok(res) => res,
                    Err(_) => Err(ModelError::Timeout(link.timeout_ms)),
                };
                match outcome {
                    Ok(resp) => {
                        return ChainResult {
                            outcome: Ok(resp),
                            failures,
                        }
                    }
                    Err(e) => {
                        tracing::warn!(provider = %provider, model = %link.model, error = %e, "model failed, trying the next one");
                        failures.push(ChainFailure {
                            provider,
                            model: link.model,
                            error: e,
                        });
                    }
                }
            }
            let outcome = match failures.last() {
                None => Err(ModelError::NotConfigured("no model configured".into())),
                Some(last) => {
                    let all: Vec<String> = failures
                        .iter()
                        .map(|f| format!("{}/{}: {}", f.provider, f.model, f.error))
                        .collect();
                    Err(rewrap(&last.error, format!("every model failed ({})", all.join("; "))))
                }
            };
            ChainResult { outcome, failures }
        })
    }
}

/// The error class of `like` carrying `msg`.
fn rewrap(like: &ModelError, msg: String) -> ModelError {
    match like {
        ModelError::Timeout(ms) => ModelError::Timeout(*ms),
        ModelError::Provider(_) => ModelError::Provider(msg),
        ModelError::RateLimited(_) => ModelError::RateLimited(msg),
        ModelError::BadOutput(_) => ModelError::BadOutput(msg),
        ModelError::NotConfigured(_) => ModelError::NotConfigured(msg),
    }
}

/// One failed link.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainFailure {
    pub provider: String,
    pub model: String,
    pub error: ModelError,
}

/// What a chain run produced.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainResult {
    pub outcome: Result<ModelResponse, ModelError>,
    pub failures: Vec<ChainFailure>,
}

impl ModelClient for FallbackChain {
    fn provider(&self) -> &str {
        "fallback-chain"
    }

    fn complete(&self, req: ModelRequest) -> ModelFuture {
        let run = self.run(req);
        Box::pin(async move { run.await.outcome })
    }
}

/// A function answering a request with model text.
pub type AnswerFn = dyn Fn(&ModelRequest) -> Result<String, ModelError> + Send + Sync;

/// A deterministic model behind the same port: answers from a function of the request (for
/// example the rule-based decision serialised as JSON). Never fails unless the function does;
/// zero tokens, zero cost.
#[derive(Clone)]
pub struct FnModelClient {
    provider: String,
    answer: Arc<AnswerFn>,
}

impl FnModelClient {
    pub fn new(
        provider: impl Into<String>,
        answer: impl Fn(&ModelRequest) -> Result<String, ModelError> + Send + Sync + 'static,
    ) -> Self {
        Self {
            provider: provider.into(),
            answer: Arc::new(answer),
        }
    }
}

impl ModelClient for FnModelClient {
    fn provider(&self) -> &str {
        &self.provider
    }

    fn complete(&self, req: ModelRequest) -> ModelFuture {
        let started = Instant::now();
        let result = (self.answer)(&req).map(|text| ModelResponse {
            provider: self.provider.clone(),
            model: req.model.clone(),
            text,
            input_tokens: 0,
            output_tokens: 0,
            latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            cost_usd: rust_decimal::Decimal::ZERO,
        });
        Box::pin(async move { result })
    }
}

// ---------------------------------------------------------------- circuit breaker

/// Breaker states, spelled as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

/// Per-provider circuit breaker: opens after `failure_threshold` consecutive failures, blocks
/// for `cooldown`, then lets up to `half_open_max` test calls through. A success closes it; a
/// failure while half-open re-opens it; running out of test calls restarts the cooldown.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    failure_threshold: u32,
    cooldown: Duration,
    half_open_max: u32,
    state: BreakerState,
    consecutive_failures: u32,
    opened_at: Option<Instant>,
    half_open_calls: u32,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        Self::new(3, Duration::from_secs(300), 3)
    }
}

impl CircuitBreaker {
    pub fn new(failure_threshold: u32, cooldown: Duration, half_open_max: u32) -> Self {
        Self {
            failure_threshold: failure_threshold.max(1),
            cooldown,
            half_open_max: half_open_max.max(1),
            state: BreakerState::Closed,
            consecutive_failures: 0,
            opened_at: None,
            half_open_calls: 0,
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Whether a call may go out at `now` (counts half-open test calls).
    pub fn try_acquire(&mut self, now: Instant) -> bool {
        match self.state {
            BreakerState::Closed => true,
            BreakerState::Open => {
                let cooled = match self.opened_at {
                    Some(t) => now.saturating_duration_since(t) >= self.cooldown,
                    None => true,
                };
                if cooled {
                    self.state = BreakerState::HalfOpen;
                    self.half_open_calls = 1;
                }
                cooled
            }
            BreakerState::HalfOpen => {
                if self.half_open_calls < self.half_open_max {
                    self.half_open_calls += 1;
                    true
                } else {
                    self.open(now);
                    false
                }
            }
        }
    }

    pub fn on_success(&mut self) {
        self.state = BreakerState::Closed;
        self.consecutive_failures = 0;
        self.half_open_calls = 0;
        self.opened_at = None;
    }

    pub fn on_failure(&mut self, now: Instant) {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        match self.state {
            BreakerState::HalfOpen => self.open(now),
            BreakerState::Closed if self.consecutive_failures >= self.failure_threshold => self.open(now),
            _ => {}
        }
    }

    fn open(&mut self, now: Instant) {
        self.state = BreakerState::Open;
        self.opened_at = Some(now);
        self.half_open_calls = 0;
    }
}

/// A client guarded by a [`CircuitBreaker`]. A blocked call fails at once with
/// `Provider("<provider>: circuit breaker open")`. Configuration errors do not count as failures.
#[derive(Clone)]
pub struct CircuitBreakerClient {
    inner: Arc<dyn ModelClient>,
    breaker: Arc<Mutex<CircuitBreaker>>,
}

impl CircuitBreakerClient {
    pub fn new(inner: Arc<dyn ModelClient>, breaker: CircuitBreaker) -> Self {
        Self {
            inner,
            breaker: Arc::new(Mutex::new(breaker)),
        }
    }

    pub fn state(&self) -> BreakerState {
        self.breaker.lock().state()
    }
}

impl ModelClient for CircuitBreakerClient {
    fn provider(&self) -> &str {
        self.inner.provider()
    }

    fn complete(&self, req: ModelRequest) -> ModelFuture {
        let provider = self.inner.provider().to_string();
        if !self.breaker.lock().try_acquire(Instant::now()) {
            return Box::pin(async move { Err(ModelError::Provider(format!("{provider}: circuit breaker open"))) });
        }
        let fut = self.inner.complete(req);
        let breaker = Arc::clone(&self.breaker);
        Box::pin(async move {
            let res = fut.await;
            match &res {
                Ok(_) => breaker.lock().on_success(),
                Err(ModelError::NotConfigured(_)) => {}
                Err(_) => {
                    let mut b = breaker.lock();
                    let before = b.state();
                    b.on_failure(Instant::now());
                    if before != BreakerState::Open && b.state() == BreakerState::Open {
                        tracing::warn!(provider = %provider, "model circuit breaker opened");
                    }
                }
            }
            res
        })
    }
}

// ---------------------------------------------------------------- record and replay

/// The replay key's prompt hash: the agents' own, one definition for recording and replaying.
pub use triplegain_actors::agents::actors::prompt_hash;

/// Identifies one model answer: agent, model and prompt hash.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReplayKey {
    pub agent: String,
    pub model: String,
    pub prompt_hash: String,
}

impl ReplayKey {
    pub fn for_request(agent: &str, req: &ModelRequest) -> Self {
        Self {
            agent: agent.to_string(),
            model: req.model.clone(),
            prompt_hash: prompt_hash(&req.system_prompt, &req.user_prompt),
        }
    }
}

impl std::fmt::Display for ReplayKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.agent, self.model, self.prompt_hash)
    }
}

/// One recorded model call: its answer, or the error it failed with (a replay must take the
/// same fallback path as the live run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedAnswer {
    pub key: ReplayKey,
    pub outcome: Result<ModelResponse, ModelError>,
}

/// Receives every model answer for later replay.
pub trait ModelRecorder: Send + Sync + 'static {
    fn record(&self, answer: RecordedAnswer);
}

/// Keeps answers in memory.
#[derive(Debug, Default, Clone)]
pub struct MemoryRecorder {
    answers: Arc<Mutex<Vec<RecordedAnswer>>>,
}

impl MemoryRecorder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn answers(&self) -> Vec<RecordedAnswer> {
        self.answers.lock().clone()
    }
}

impl ModelRecorder for MemoryRecorder {
    fn record(&self, answer: RecordedAnswer) {
        self.answers.lock().push(answer);
    }
}

/// Appends answers to a JSON-lines file, one [`RecordedAnswer`] per line.
#[derive(Debug, Clone)]
pub struct JsonlRecorder {
    path: PathBuf,
    file: Arc<Mutex<std::fs::File>>,
}

impl JsonlRecorder {
    /// # Errors
    /// When the file cannot be opened for appending.
    pub fn open(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Self {
            path,
            file: Arc::new(Mutex::new(file)),
        })
    }
}

impl ModelRecorder for JsonlRecorder {
    fn record(&self, answer: RecordedAnswer) {
        let line = match serde_json::to_string(&answer) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "model answer not serialisable; not recorded");
                return;
            }
        };
        let mut f = self.file.lock();
        if let Err(e) = writeln!(f, "{line}") {
            tracing::error!(path = %self.path.display(), error = %e, "recording a model answer failed");
        }
    }
}

/// Records every answer (and every failure) of `inner` under (agent, model, prompt hash).
#[derive(Clone)]
pub struct RecordingClient {
    inner: Arc<dyn ModelClient>,
    agent: String,
    recorder: Arc<dyn ModelRecorder>,
}

impl RecordingClient {
    pub fn new(inner: Arc<dyn ModelClient>, agent: impl Into<String>, recorder: Arc<dyn ModelRecorder>) -> Self {
        Self {
            inner,
            agent: agent.into(),
            recorder,
        }
    }
}

impl ModelClient for RecordingClient {
    fn provider(&self) -> &str {
        self.inner.provider()
    }

    fn complete(&self, req: ModelRequest) -> ModelFuture {
        let key = ReplayKey::for_request(&self.agent, &req);
        let fut = self.inner.complete(req);
        let recorder = Arc::clone(&self.recorder);
        Box::pin(async move {
            let res = fut.await;
            recorder.record(RecordedAnswer {
                key,
                outcome: res.clone(),
            });
            res
        })
    }
}

/// Answers from recorded calls only (a recorded failure fails the same way); never calls a
/// model. A missing entry fails with
/// `NotConfigured("missing replay entry <agent>/<model>/<hash>")`.
#[derive(Clone)]
pub struct ReplayModelClient {
    agent: String,
    answers: Arc<HashMap<ReplayKey, Result<ModelResponse, ModelError>>>,
    /// Keys asked for and not found, shared by the clients of one [`ReplayBook`].
    misses: Arc<Mutex<Vec<ReplayKey>>>,
}

impl ReplayModelClient {
    /// Later duplicates of a key replace earlier ones.
    pub fn new(agent: impl Into<String>, answers: impl IntoIterator<Item = RecordedAnswer>) -> Self {
        let map = answers.into_iter().map(|a| (a.key, a.outcome)).collect();
        Self {
            agent: agent.into(),
            answers: Arc::new(map),
            misses: Arc::default(),
        }
    }

    /// Keys asked for that the record does not hold, in the order they were asked.
    pub fn misses(&self) -> Vec<ReplayKey> {
        self.misses.lock().clone()
    }

    /// Loads a file written by [`JsonlRecorder`].
    ///
    /// # Errors
    /// An I/O error, or `InvalidData` naming the line that does not parse.
    pub fn load_jsonl(agent: impl Into<String>, path: impl AsRef<Path>) -> std::io::Result<Self> {
        let path = path.as_ref();
        let file = std::fs::File::open(path)?;
        let mut answers = Vec::new();
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let a: RecordedAnswer = serde_json::from_str(&line).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}:{}: {e}", path.display(), i + 1),
                )
            })?;
            answers.push(a);
        }
        Ok(Self::new(agent, answers))
    }

    pub fn len(&self) -> usize {
        self.answers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.answers.is_empty()
    }
}

/// A loaded record of model answers for a whole run: one [`ReplayModelClient`] per agent, all
/// sharing the answers and the list of keys that were asked for and missing.
#[derive(Clone)]
pub struct ReplayBook {
    path: PathBuf,
    inner: ReplayModelClient,
}

impl ReplayBook {
    /// Loads a file written by [`JsonlRecorder`].
    ///
    /// # Errors
    /// An I/O error, or `InvalidData` naming the line that does not parse.
    pub fn load_jsonl(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let path = path.as_ref();
        Ok(Self {
            path: path.to_path_buf(),
            inner: ReplayModelClient::load_jsonl("", path)?,
        })
    }

    /// Answers held in memory (tests).
    pub fn new(path: impl Into<PathBuf>, answers: impl IntoIterator<Item = RecordedAnswer>) -> Self {
        Self {
            path: path.into(),
            inner: ReplayModelClient::new("", answers),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the record holds any answer of `model` for `agent`: the models a recorded run
    /// asked are the ones its replay asks.
    pub fn has_model(&self, agent: &str, model: &str) -> bool {
        self.inner.answers.keys().any(|k| k.agent == agent && k.model == model)
    }

    /// The client answering for `agent`.
    pub fn client(&self, agent: &str) -> ReplayModelClient {
        ReplayModelClient {
            agent: agent.to_owned(),
            ..self.inner.clone()
        }
    }

    /// Keys asked for that the record does not hold, in the order they were asked.
    pub fn misses(&self) -> Vec<ReplayKey> {
        self.inner.misses()
    }
}

impl ModelClient for ReplayModelClient {
    fn provider(&self) -> &str {
        "replay"
    }

    fn complete(&self, req: ModelRequest) -> ModelFuture {
        let key = ReplayKey::for_request(&self.agent, &req);
        let res = match self.answers.get(&key) {
            Some(r) => r.clone(),
            None => {
                let msg = format!("missing replay entry {key}");
                self.misses.lock().push(key);
                Err(ModelError::NotConfigured(msg))
            }
        };
        Box::pin(async move { res })
    }
}

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
    fn prompt_hash_is_sha256_hex_and_separates_prompts() {
        let h = prompt_hash("sys", "user");
        assert_eq!(h.len(), 64);
        assert!(h.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(h, prompt_hash("sysu", "ser"));
        assert_eq!(h, prompt_hash("sys", "user"));
        // SHA-256 of the empty system prompt, NUL, empty user prompt = SHA-256("\0")
        assert_eq!(
            prompt_hash("", ""),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }

    #[test]
    fn breaker_opens_after_three_failures_and_half_opens_after_cooldown() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(3, Duration::from_secs(300), 3);
        for _ in 0..2 {
            assert!(b.try_acquire(t0));
            b.on_failure(t0);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.try_acquire(t0));
        b.on_failure(t0);
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.try_acquire(t0 + Duration::from_secs(299)));
        // cooldown over: half-open, three test calls, the fourth restarts the cooldown
        let t1 = t0 + Duration::from_secs(300);
        assert!(b.try_acquire(t1));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.try_acquire(t1));
        assert!(b.try_acquire(t1));
        assert!(!b.try_acquire(t1));
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.try_acquire(t1 + Duration::from_secs(299)));
        // half-open failure re-opens; half-open success closes
        let t2 = t1 + Duration::from_secs(300);
        assert!(b.try_acquire(t2));
        b.on_failure(t2);
        assert_eq!(b.state(), BreakerState::Open);
        let t3 = t2 + Duration::from_secs(300);
        assert!(b.try_acquire(t3));
        b.on_success();
        assert_eq!(b.state(), BreakerState::Closed);
        b.on_failure(t3);
        assert_eq!(
            b.state(),
            BreakerState::Closed,
            "one failure after a reset does not open it"
        );
    }
}
