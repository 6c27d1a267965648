//! The four analysis agents as supervised actors. Each answers [`RunAnalysis`] for one symbol:
//! it gathers its inputs (the market view from the market data actor, other agents' latest
//! outputs for *that* symbol from the [`AnalysisCaches`]), computes (rule-based by default,
//! models when configured), publishes its typed event, stores the output in `agent_outputs`
//! (and every model answer in `model_comparisons`) and replies with an [`AgentRun`].
//!
//! Model I/O never blocks an actor: the inputs are moved into a future that runs beside the
//! mailbox (`ResponseActFuture`), and a panic inside it is caught, logged as a crash and turns
//! into `ctx.stop()` like any guarded handler.

use super::api::{AgentError, AgentName, AgentRun, RunAnalysis};
use super::regime_detection::{detect, HysteresisConfig, RegimeInput, RegimeOutput, RegimeTracker, TaSummary};
use super::sentiment::{self, AggregationConfig, ProviderResult, SentimentSource};
use super::strategies::{self, StrategySettings};
use super::technical_analysis::{analyse, TaInput};
use super::trading_decision::{self, consensus, rule_based_decision, ConsensusConfig, DecisionInput, ModelVote};
use crate::bus::{Bus, Latest};
use crate::clock::SharedClock;
use crate::domain::{CorrelationId, Symbol};
use crate::market::{GetSnapshot, SymbolView};
use crate::messages::{EventMeta, RegimeUpdate, SentimentUpdate, TaSignal};
use crate::ports::{AgentOutputRecord, AuditStore, ModelClient, ModelComparisonRecord, ModelError, ModelRequest};
use crate::supervised_basics;
use crate::supervision::{guarded, Drain, SupervisedActor, SupervisionHandle};
use actix::prelude::*;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use futures::FutureExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

/// Mailbox capacity of every agent actor (one request per symbol and schedule).
pub const AGENT_MAILBOX: usize = 64;
/// How long an agent waits for the market data actor.
const MARKET_TIMEOUT: Duration = Duration::from_secs(5);

/// SHA-256 (lower-case hex) of the system prompt, a NUL byte and the user prompt: the key under
/// which model answers are stored and replayed.
pub fn prompt_hash(system_prompt: &str, user_prompt: &str) -> String {
    let mut h = Sha256::new();
    h.update(system_prompt.as_bytes());
    h.update([0u8]);
    h.update(user_prompt.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The latest output of each agent per symbol (keyed by symbol, business-clock TTL).
#[derive(Clone)]
pub struct AnalysisCaches {
    pub ta: Latest<TaSignal>,
    pub regime: Latest<RegimeUpdate>,
    pub sentiment: Latest<SentimentUpdate>,
}

impl AnalysisCaches {
    /// TA 5 min, regime 15 min, sentiment 1 h (each several of its agent's run intervals).
    pub fn new(clock: SharedClock) -> Self {
        Self {
            ta: Latest::new(ChronoDuration::seconds(300), clock.clone()),
            regime: Latest::new(ChronoDuration::seconds(900), clock.clone()),
            sentiment: Latest::new(ChronoDuration::seconds(3600), clock),
        }
    }
}

/// What every agent actor is wired with.
#[derive(Clone)]
pub struct AgentContext {
    pub market: Recipient<GetSnapshot>,
    pub bus: Bus,
    pub clock: SharedClock,
    pub audit: Arc<dyn AuditStore>,
    pub caches: AnalysisCaches,
}

/// One configured model: a display name, the provider and model id, a client and its timeout.
#[derive(Clone)]
pub struct ModelSlot {
    pub name: String,
    pub provider: String,
    pub model: String,
    pub client: Arc<dyn ModelClient>,
    pub timeout_ms: u64,
}

impl ModelSlot {
    /// Calls the model under its own timeout (the client's deadline, enforced here as well).
    fn call(&self, mut req: ModelRequest) -> impl Future<Output = Result<crate::ports::ModelResponse, ModelError>> {
        req.model.clone_from(&self.model);
        req.timeout_ms = self.timeout_ms;
        let limit = Duration::from_millis(self.timeout_ms.saturating_add(250));
        let fut = self.client.complete(req);
        let timeout_ms = self.timeout_ms;
        async move {
            match actix::clock::timeout(limit, fut).await {
                Ok(r) => r,
                Err(_) => Err(ModelError::Timeout(timeout_ms)),
            }
        }
    }
}

async fn fetch_view(market: &Recipient<GetSnapshot>, symbol: &Symbol) -> Result<SymbolView, AgentError> {
    let reply = market
        .send(GetSnapshot {
            symbol: symbol.clone(),
            timeframe: None,
        })
        .timeout(MARKET_TIMEOUT)
        .await
        .map_err(|e| AgentError::Failed(format!("market data not available: {e}")))?
        .map_err(|e| AgentError::Failed(format!("market data not available: {e}")))?;
    let view = reply.ok_or_else(|| AgentError::NoData(format!("no candles for {symbol} yet")))?;
    if view.candles_applied == 0 {
        return Err(AgentError::NoData(format!(
            "no {} candle for {symbol} yet",
            view.timeframe
        )));
    }
    Ok(view)
}

async fn store_output(audit: &Arc<dyn AuditStore>, rec: AgentOutputRecord) {
    let (agent, symbol) = (rec.agent.clone(), rec.symbol.clone());
    if let Err(e) = audit.record_agent_output(rec).await {
        tracing::error!(agent = %agent, symbol = %symbol, error = %e, "agent output not stored");
    }
}

async fn record_stage(
    audit: &Arc<dyn AuditStore>,
    correlation_id: CorrelationId,
    timestamp: DateTime<Utc>,
    stage: &str,
    symbol: &Symbol,
    detail: Value,
) {
    let rec = crate::ports::DecisionRecord {
        correlation_id,
        timestamp,
        stage: stage.to_owned(),
        symbol: Some(symbol.to_string()),
        detail,
    };
    if let Err(e) = audit.record_decision(rec).await {
        tracing::error!(%correlation_id, stage, error = %e, "decision not recorded");
    }
}

async fn store_comparisons(audit: &Arc<dyn AuditStore>, recs: Vec<ModelComparisonRecord>) {
    for rec in recs {
        let (agent, model) = (rec.agent.clone(), rec.model.clone());
        if let Err(e) = audit.record_model_comparison(rec).await {
            tracing::error!(agent = %agent, model = %model, error = %e, "model answer not stored");
        }
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn panic_reason(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

type RunResult = Result<AgentRun, AgentError>;

/// Runs `fut` beside the actor's mailbox under the panic guard: a panic is recorded as a crash
/// and stops the actor (the Supervisor restarts it); the caller gets `AgentError::Failed`.
fn guarded_future<A>(
    act: &mut A,
    ctx: &mut Context<A>,
    fut: impl Future<Output = RunResult> + 'static,
) -> ResponseActFuture<A, RunResult>
where
    A: SupervisedActor,
{
    if let Err(e) = guarded(act, ctx, |_, _| ()) {
        return Box::pin(actix::fut::ready(Err(AgentError::Failed(e.to_string()))));
    }
    Box::pin(
        AssertUnwindSafe(fut)
            .catch_unwind()
            .into_actor(act)
            .map(|res, act, ctx| match res {
                Ok(r) => r,
                Err(payload) => {
                    let reason = panic_reason(payload.as_ref());
                    act.supervision().on_crash(&reason);
                    ctx.stop();
                    Err(AgentError::Failed(format!("agent crashed: {reason}")))
                }
            }),
    )
}

macro_rules! agent_lifecycle {
    ($ty:ty) => {
        impl Actor for $ty {
            type Context = Context<Self>;
            fn started(&mut self, _ctx: &mut Self::Context) {
                self.sup.on_started();
            }
            fn stopped(&mut self, _ctx: &mut Self::Context) {
                self.sup.on_stopped();
            }
        }
        impl SupervisedActor for $ty {
            fn supervision(&self) -> &SupervisionHandle {
                &self.sup
            }
        }
        supervised_basics!($ty);
        impl Handler<Drain> for $ty {
            type Result = ();
            fn handle(&mut self, _: Drain, _: &mut Self::Context) {}
        }
    };
}

fn meta_for(agent: AgentName, now: DateTime<Utc>, cid: CorrelationId) -> EventMeta {
    EventMeta::caused_by(agent.as_str(), now, cid)
}

// ---------------------------------------------------------------- technical analysis

/// Rule-based technical analysis on the primary timeframe (reference §1.1).
pub struct TechnicalAnalysisAgent {
    sup: SupervisionHandle,
    ctx: AgentContext,
}

impl TechnicalAnalysisAgent {
    pub fn new(sup: SupervisionHandle, ctx: AgentContext) -> Self {
        Self { sup, ctx }
    }
}

agent_lifecycle!(TechnicalAnalysisAgent);

impl actix::Supervised for TechnicalAnalysisAgent {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.sup.on_restarting();
    }
}

impl Handler<RunAnalysis> for TechnicalAnalysisAgent {
    type Result = ResponseActFuture<Self, RunResult>;

    fn handle(&mut self, msg: RunAnalysis, ctx: &mut Self::Context) -> Self::Result {
        let c = self.ctx.clone();
        let fut = async move {
            let view = fetch_view(&c.market, &msg.symbol).await?;
            let out = analyse(&TaInput {
                symbol: &msg.symbol,
                timeframe: view.timeframe,
                timestamp: view.summary.timestamp,
                current_price: view.snapshot.current_price,
                indicators: &view.snapshot.indicators,
                previous: view.previous_indicators.as_ref(),
                recent_candles: &view.recent_candles,
                timeframe_trends: &view.timeframe_trends,
            });
            let now = c.clock.now();
            let signal = out.to_signal(meta_for(AgentName::TechnicalAnalysis, now, msg.correlation_id));
            c.caches.ta.record(signal.clone());
            c.bus.ta_signals.publish(signal);
            let output = to_json(&out);
            tracing::debug!(agent = "technical_analysis", symbol = %msg.symbol, bias = %out.bias, confidence = %format_args!("{:.2}", out.confidence), "analysis published");
            store_output(
                &c.audit,
                AgentOutputRecord {
                    agent: AgentName::TechnicalAnalysis.as_str().to_owned(),
                    symbol: msg.symbol.to_string(),
                    timestamp: now,
                    correlation_id: msg.correlation_id,
                    model: Some(out.model_used.clone()),
                    output: output.clone(),
                },
            )
            .await;
            Ok(AgentRun {
                agent: AgentName::TechnicalAnalysis,
                symbol: msg.symbol,
                timestamp: now,
                correlation_id: msg.correlation_id,
                output,
                model_used: None,
                llm_failed: false,
            })
        };
        guarded_future(self, ctx, fut)
    }
}

// ---------------------------------------------------------------- regime detection

/// Regime detection settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegimeAgentConfig {
    pub hysteresis: HysteresisConfig,
    /// Run interval, for `periods_in_regime` after a restore.
    pub interval_secs: i64,
}

impl Default for RegimeAgentConfig {
    fn default() -> Self {
        Self {
            hysteresis: HysteresisConfig::default(),
            interval_secs: 300,
        }
    }
}

/// Rule-based regime classification with hysteresis per symbol (reference §1.2, §4); the state
/// of a symbol is restored from its newest stored output on the first run after a (re)start.
pub struct RegimeDetectionAgent {
    sup: SupervisionHandle,
    ctx: AgentContext,
    cfg: RegimeAgentConfig,
    trackers: HashMap<Symbol, RegimeTracker>,
}

impl RegimeDetectionAgent {
    pub fn new(sup: SupervisionHandle, ctx: AgentContext, cfg: RegimeAgentConfig) -> Self {
        Self {
            sup,
            ctx,
            cfg,
            trackers: HashMap::new(),
        }
    }
}

agent_lifecycle!(RegimeDetectionAgent);

impl actix::Supervised for RegimeDetectionAgent {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // Volatile state goes; the next run restores each symbol from the store.
        self.trackers.clear();
        self.sup.on_restarting();
    }
}

impl Handler<RunAnalysis> for RegimeDetectionAgent {
    type Result = ResponseActFuture<Self, RunResult>;

    fn handle(&mut self, msg: RunAnalysis, ctx: &mut Self::Context) -> Self::Result {
        if let Err(e) = guarded(self, ctx, |_, _| ()) {
            return Box::pin(actix::fut::ready(Err(AgentError::Failed(e.to_string()))));
        }
        let c = self.ctx.clone();
        let need_restore = !self.trackers.contains_key(&msg.symbol);
        let symbol = msg.symbol.clone();
        let gather = async move {
            let view = fetch_view(&c.market, &symbol).await?;
            let stored = if need_restore {
                match c
                    .audit
                    .latest_agent_output(AgentName::RegimeDetection.as_str(), symbol.as_str())
                    .await
                {
                    Ok(rec) => rec.and_then(|r| serde_json::from_value::<RegimeOutput>(r.output).ok()),
                    Err(e) => {
                        tracing::warn!(symbol = %symbol, error = %e, "regime state not restored");
                        None
                    }
                }
            } else {
                None
            };
            Ok((view, stored))
        };
        let audit = self.ctx.audit.clone();
        Box::pin(
            gather
                .into_actor(self)
                .map(
                    move |res: Result<(SymbolView, Option<RegimeOutput>), AgentError>, act, ctx| {
                        let (view, stored) = res?;
                        guarded(act, ctx, |act, _| act.classify(&msg, &view, stored))
                            .map_err(|e| AgentError::Failed(e.to_string()))
                    },
                )
                .then(move |res, _act, _ctx| {
                    actix::fut::wrap_future(async move {
                        let (run, rec) = res?;
                        store_output(&audit, rec).await;
                        Ok(run)
                    })
                }),
        )
    }
}

impl RegimeDetectionAgent {
    fn classify(
        &mut self,
        msg: &RunAnalysis,
        view: &SymbolView,
        stored: Option<RegimeOutput>,
    ) -> (AgentRun, AgentOutputRecord) {
        let now = self.ctx.clock.now();
        let key = msg.symbol.to_string();
        // Only this symbol's TA output (the reference system used whichever came last).
        let ta = self
            .ctx
            .caches
            .ta
            .get(&key)
            .filter(|s| s.symbol == msg.symbol)
            .map(|s| TaSummary::from(&s));
        let detection = detect(&RegimeInput {
            current_price: view.snapshot.current_price,
            indicators: &view.snapshot.indicators,
            ta,
        });
        let interval = self.cfg.interval_secs;
        let hysteresis = self.cfg.hysteresis;
        let tracker = self.trackers.entry(msg.symbol.clone()).or_insert_with(|| {
            let mut t = RegimeTracker::new(hysteresis);
            if let Some(stored) = &stored {
                t.restore(stored, now, interval);
                tracing::info!(symbol = %msg.symbol, regime = %stored.regime, "regime state restored");
            }
            t
        });
        let out = tracker.observe(&msg.symbol, detection, now);
        let update = out.to_update(meta_for(AgentName::RegimeDetection, now, msg.correlation_id));
        self.ctx.caches.regime.record(update.clone());
        self.ctx.bus.regime_updates.publish(update);
        tracing::debug!(agent = "regime_detection", symbol = %msg.symbol, regime = %out.regime, confidence = %format_args!("{:.2}", out.confidence), "regime published");
        let output = to_json(&out);
        (
            AgentRun {
                agent: AgentName::RegimeDetection,
                symbol: msg.symbol.clone(),
                timestamp: now,
                correlation_id: msg.correlation_id,
                output: output.clone(),
                model_used: None,
                llm_failed: false,
            },
            AgentOutputRecord {
                agent: AgentName::RegimeDetection.as_str().to_owned(),
                symbol: msg.symbol.to_string(),
                timestamp: now,
                correlation_id: msg.correlation_id,
                model: Some(out.model_used.clone()),
                output,
            },
        )
    }
}

// ---------------------------------------------------------------- sentiment

/// One sentiment provider: which source it covers and its model.
#[derive(Clone)]
pub struct SentimentProvider {
    pub source: SentimentSource,
    pub slot: ModelSlot,
}

/// Sentiment from the configured providers in parallel (reference §1.3, corrected); without any
/// provider a neutral output with confidence 0 and the reason.
pub struct SentimentAgent {
    sup: SupervisionHandle,
    ctx: AgentContext,
    providers: Vec<SentimentProvider>,
    aggregation: AggregationConfig,
}

impl SentimentAgent {
    pub fn new(
        sup: SupervisionHandle,
        ctx: AgentContext,
        providers: Vec<SentimentProvider>,
        aggregation: AggregationConfig,
    ) -> Self {
        Self {
            sup,
            ctx,
            providers,
            aggregation,
        }
    }
}

agent_lifecycle!(SentimentAgent);

impl actix::Supervised for SentimentAgent {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.sup.on_restarting();
    }
}

impl Handler<RunAnalysis> for SentimentAgent {
    type Result = ResponseActFuture<Self, RunResult>;

    fn handle(&mut self, msg: RunAnalysis, ctx: &mut Self::Context) -> Self::Result {
        let c = self.ctx.clone();
        let providers = self.providers.clone();
        let aggregation = self.aggregation.clone();
        let fut = async move {
            let (out, comparisons, llm_failed) = if providers.is_empty() {
                (
                    sentiment::neutral_fallback("no sentiment provider configured (no API key for xAI or OpenAI)"),
                    Vec::new(),
                    false,
                )
            } else {
                let calls = providers.iter().map(|p| {
                    let req = sentiment::build_request(&msg.symbol, p.source, &p.slot.model, p.slot.timeout_ms);
                    let hash = prompt_hash(&req.system_prompt, &req.user_prompt);
                    let call = p.slot.call(req);
                    let p = p.clone();
                    async move {
                        let res = call.await;
                        (
                            ProviderResult::from_call(&p.slot.provider, &p.slot.model, p.source, res),
                            hash,
                        )
                    }
                });
                let results: Vec<(ProviderResult, String)> = futures::future::join_all(calls).await;
                let now = c.clock.now();
                let comparisons = results
                    .iter()
                    .map(|(r, hash)| ModelComparisonRecord {
                        correlation_id: msg.correlation_id,
                        timestamp: now,
                        symbol: msg.symbol.to_string(),
                        agent: AgentName::SentimentAnalysis.as_str().to_owned(),
                        model: r.model.clone(),
                        provider: r.provider.clone(),
                        prompt_hash: hash.clone(),
                        action: r
                            .outcome
                            .as_ref()
                            .ok()
                            .and_then(|s| to_json(&s.bias).as_str().map(str::to_owned)),
                        confidence: r.outcome.as_ref().ok().map(|s| s.confidence),
                        response: r.outcome.as_ref().ok().map(to_json),
                        latency_ms: r.latency_ms,
                        input_tokens: 0,
                        output_tokens: 0,
                        cost_usd: r.cost_usd,
                        error: r.outcome.as_ref().err().cloned(),
                    })
                    .collect();
                let results: Vec<ProviderResult> = results.into_iter().map(|(r, _)| r).collect();
                let failed = results.iter().all(|r| r.outcome.is_err());
                if failed {
                    tracing::warn!(symbol = %msg.symbol, "every sentiment provider failed; neutral output");
                }
                (sentiment::aggregate(&results, &aggregation), comparisons, failed)
            };
            let now = c.clock.now();
            let update = out.to_update(
                meta_for(AgentName::SentimentAnalysis, now, msg.correlation_id),
                msg.symbol.clone(),
            );
            c.caches.sentiment.record(update.clone());
            c.bus.sentiment_updates.publish(update);
            tracing::debug!(agent = "sentiment_analysis", symbol = %msg.symbol, bias = ?out.bias, confidence = %format_args!("{:.2}", out.confidence), "sentiment published");
            let output = to_json(&out);
            store_comparisons(&c.audit, comparisons).await;
            store_output(
                &c.audit,
                AgentOutputRecord {
                    agent: AgentName::SentimentAnalysis.as_str().to_owned(),
                    symbol: msg.symbol.to_string(),
                    timestamp: now,
                    correlation_id: msg.correlation_id,
                    model: Some(out.model_used.clone()),
                    output: output.clone(),
                },
            )
            .await;
            let answered = !providers.is_empty() && !llm_failed;
            Ok(AgentRun {
                agent: AgentName::SentimentAnalysis,
                symbol: msg.symbol,
                timestamp: now,
                correlation_id: msg.correlation_id,
                output,
                model_used: answered.then(|| out.model_used.clone()),
                llm_failed,
            })
        };
        guarded_future(self, ctx, fut)
    }
}

// ---------------------------------------------------------------- trading decision

/// Trading decision settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionAgentConfig {
    pub consensus: ConsensusConfig,
    /// The deterministic strategies of the panel (they vote beside the models).
    pub strategies: StrategySettings,
    /// One deadline for all models (they run in parallel).
    pub deadline_ms: u64,
    pub max_tokens: u32,
    pub temperature: f64,
}

impl Default for DecisionAgentConfig {
    fn default() -> Self {
        Self {
            consensus: ConsensusConfig::default(),
            strategies: StrategySettings::default(),
            deadline_ms: 30_000,
            max_tokens: 1024,
            temperature: 0.3,
        }
    }
}

/// The trading decision (reference §1.4, corrected): the panel — the deterministic strategies
/// asked in this regime and the configured models, in parallel under one deadline — and its
/// consensus; the old single rule-based model only when the panel is empty or nobody answered.
pub struct TradingDecisionAgent {
    sup: SupervisionHandle,
    ctx: AgentContext,
    models: Vec<ModelSlot>,
    cfg: DecisionAgentConfig,
}

impl TradingDecisionAgent {
    pub fn new(sup: SupervisionHandle, ctx: AgentContext, models: Vec<ModelSlot>, cfg: DecisionAgentConfig) -> Self {
        Self { sup, ctx, models, cfg }
    }
}

agent_lifecycle!(TradingDecisionAgent);

impl actix::Supervised for TradingDecisionAgent {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.sup.on_restarting();
    }
}

fn vote_record(vote: &ModelVote, msg: &RunAnalysis, hash: &str, now: DateTime<Utc>) -> ModelComparisonRecord {
    ModelComparisonRecord {
        correlation_id: msg.correlation_id,
        timestamp: now,
        symbol: msg.symbol.to_string(),
        agent: AgentName::TradingDecision.as_str().to_owned(),
        model: vote.model.clone(),
        provider: vote.provider.clone(),
        prompt_hash: hash.to_owned(),
        action: vote.decision.as_ref().ok().map(|d| d.action.as_str().to_owned()),
        confidence: vote.decision.as_ref().ok().map(|d| d.confidence),
        response: vote
            .decision
            .as_ref()
            .ok()
            .map(trading_decision::DecisionOutput::to_json),
        latency_ms: vote.latency_ms,
        input_tokens: vote.input_tokens,
        output_tokens: vote.output_tokens,
        cost_usd: vote.cost_usd,
        error: vote.decision.as_ref().err().cloned(),
    }
}

impl Handler<RunAnalysis> for TradingDecisionAgent {
    type Result = ResponseActFuture<Self, RunResult>;

    fn handle(&mut self, msg: RunAnalysis, ctx: &mut Self::Context) -> Self::Result {
        let c = self.ctx.clone();
        let models = self.models.clone();
        let cfg = self.cfg.clone();
        let fut = async move {
            let view = fetch_view(&c.market, &msg.symbol).await?;
            let key = msg.symbol.to_string();
            let snapshot_json = serde_json::to_value(&view.snapshot).unwrap_or_default();
            // Every input is this symbol's own (never another symbol's latest output).
            let input = DecisionInput {
                symbol: msg.symbol.clone(),
                current_price: view.snapshot.current_price,
                snapshot: Some(view.snapshot),
                ta: c.caches.ta.get(&key).filter(|s| s.symbol == msg.symbol),
                regime: c.caches.regime.get(&key).filter(|s| s.symbol == msg.symbol),
                sentiment: c.caches.sentiment.get(&key).filter(|s| s.symbol == msg.symbol),
                previous_indicators: view.previous_indicators,
                recent_candles: view.recent_candles,
                timeframe_trends: view.timeframe_trends,
            };
            let inputs_used = json!({
                "ta": input.ta.is_some(),
                "regime": input.regime.is_some(),
                "sentiment": input.sentiment.is_some(),
            });
            let mut comparisons = Vec::new();
            let mut llm_failed = false;
            let mut model_used = None;
            let (rule_votes, abstained) = strategies::panel_votes(&cfg.strategies, &input);
            let (signal_of, output): (Box<dyn FnOnce(EventMeta) -> crate::messages::TradingSignal>, Value) = if models
                .is_empty()
                && rule_votes.is_empty()
            {
                let d = rule_based_decision(&input);
                let mut output = d.to_json();
                output["model_used"] = json!("rule_based");
                output["inputs"] = inputs_used;
                let symbol = msg.symbol.clone();
                (Box::new(move |meta| d.to_signal(meta, symbol)), output)
            } else {
                let req = trading_decision::build_request(&input, "", cfg.max_tokens, cfg.temperature, cfg.deadline_ms);
                let hash = prompt_hash(&req.system_prompt, &req.user_prompt);
                let deadline = Duration::from_millis(cfg.deadline_ms);
                let price = input.current_price;
                let calls = models.iter().map(|m| {
                    let call = m.call(req.clone());
                    let (model, provider) = (m.model.clone(), m.provider.clone());
                    async move {
                        match actix::clock::timeout(deadline, call).await {
                            Ok(res) => ModelVote::from_call(&model, &provider, res, price),
                            Err(_) => ModelVote::failed(&model, &provider, "no answer before the decision deadline"),
                        }
                    }
                });
                let llm_votes: Vec<ModelVote> = if models.is_empty() {
                    Vec::new()
                } else {
                    futures::future::join_all(calls).await
                };
                let llm_valid = llm_votes.iter().filter(|v| v.decision.is_ok()).count();
                let mut votes = rule_votes;
                votes.extend(llm_votes);
                let now = c.clock.now();
                comparisons = votes.iter().map(|v| vote_record(v, &msg, &hash, now)).collect();
                // The quorum cannot exceed the number of panel members asked (configured models
                // and the strategies that trade in this regime).
                let mut ccfg = cfg.consensus.clone();
                ccfg.min_quorum = ccfg.min_quorum.min(votes.len()).max(1);
                let decision = consensus(votes, &ccfg);
                if !models.is_empty() && llm_valid == 0 {
                    llm_failed = true;
                }
                if decision.valid_models == 0 {
                    tracing::warn!(symbol = %msg.symbol, models = models.len(), "no model answered validly; rule-based decision");
                    let d = rule_based_decision(&input);
                    let mut output = d.to_json();
                    output["model_used"] = json!("rule_based");
                    output["fallback"] = json!(true);
                    output["inputs"] = inputs_used;
                    output["model_votes"] = to_json(&decision.model_votes);
                    let symbol = msg.symbol.clone();
                    (Box::new(move |meta| d.to_signal(meta, symbol)), output)
                } else {
                    model_used = Some(decision.agreeing_models.join("+"));
                    let mut output = to_json(&decision);
                    output["model_used"] = json!("consensus");
                    output["inputs"] = inputs_used;
                    output["abstained"] = json!(abstained
                        .iter()
                        .map(|(m, why)| json!({"model": m, "reason": why}))
                        .collect::<Vec<_>>());
                    let symbol = msg.symbol.clone();
                    (Box::new(move |meta| decision.to_signal(meta, symbol)), output)
                }
            };
            let now = c.clock.now();
            // The head of the decision chain, written before the signal goes out so the trail
            // reads in order: the snapshot and the agent outputs the decision used, the decision.
            let inputs_json = json!({
                "technical_analysis": input.ta,
                "regime_detection": input.regime,
                "sentiment_analysis": input.sentiment,
            });
            for (stage, detail) in [
                ("snapshot", snapshot_json),
                ("agent_outputs", inputs_json),
                ("decision", output.clone()),
            ] {
                record_stage(&c.audit, msg.correlation_id, now, stage, &msg.symbol, detail).await;
            }
            let signal = signal_of(meta_for(AgentName::TradingDecision, now, msg.correlation_id));
            tracing::info!(agent = "trading_decision", symbol = %msg.symbol, action = %signal.action, confidence = %format_args!("{:.2}", signal.confidence), llm_failed, "decision published");
            c.bus.trading_signals.publish(signal);
            store_comparisons(&c.audit, comparisons).await;
            store_output(
                &c.audit,
                AgentOutputRecord {
                    agent: AgentName::TradingDecision.as_str().to_owned(),
                    symbol: msg.symbol.to_string(),
                    timestamp: now,
                    correlation_id: msg.correlation_id,
                    model: Some(model_used.clone().unwrap_or_else(|| "rule_based".to_owned())),
                    output: output.clone(),
                },
            )
            .await;
            Ok(AgentRun {
                agent: AgentName::TradingDecision,
                symbol: msg.symbol,
                timestamp: now,
                correlation_id: msg.correlation_id,
                output,
                model_used,
                llm_failed,
            })
        };
        guarded_future(self, ctx, fut)
    }
}
