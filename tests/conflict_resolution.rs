//! Conflict resolution end to end: the coordinator meets a TA/sentiment conflict, asks the model
//! chain built from settings (DeepSeek over the OpenAI wire format, then Claude over Anthropic's)
//! on local mock servers, and routes — or does not route — the trade through the real risk engine
//! to a recording execution double.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests assert by unwrapping"
)]

use actix::prelude::*;
use chrono::{DateTime, TimeZone, Utc};
use parking_lot::Mutex;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use triplegain::llm::ModelConflictResolver;
use triplegain::settings::{Secret, Settings};
use triplegain_actors::bus::{Bus, Topic};
use triplegain_actors::clock::{Clock, ManualClock, SharedClock};
use triplegain_actors::coordinator::{
    ConflictResolver, Coordinator, CoordinatorLinks, ExecutionLinks, GetReport, OrchestrationSettings,
};
use triplegain_actors::domain::{Bias, CorrelationId, FearGreed, Regime, SentimentBias, Symbol, Timeframe};
use triplegain_actors::domain::{EntryStrictness, TradeAction, TrendDirection};
use triplegain_actors::execution::api::{
    CloseAllPositions, ClosePosition, ExecuteTrade, ExecutionError, ExecutionResult, GetPositions, PositionView,
};
use triplegain_actors::messages::{EventMeta, PortfolioUpdate, RegimeUpdate, SentimentUpdate, TaSignal, TradingSignal};
use triplegain_actors::ports::Stores;
use triplegain_actors::risk::{RiskEngine, RiskEngineConfig, RiskLimits};
use triplegain_actors::supervision::{start_supervised, Registry, RestartPolicy};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const DEEPSEEK_KEY: &str = "sk-deepseek-0123456789abcdefghijklmnop";
const ANTHROPIC_KEY: &str = "sk-ant-0123456789abcdefghijklmnopqrstu";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
}

fn btc() -> Symbol {
    Symbol::parse("BTC/USDT").unwrap()
}

// ------------------------------------------------------------------ model servers

fn chat_completion(content: &str) -> Value {
    json!({
        "id": "chatcmpl-conflict", "object": "chat.completion", "created": 1_764_000_000,
        "model": "deepseek-chat",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 400, "completion_tokens": 60, "total_tokens": 460}
    })
}

fn anthropic_message(text: &str) -> Value {
    json!({
        "id": "msg_conflict", "type": "message", "role": "assistant", "model": "claude-3-5-sonnet-20241022",
        "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 400, "output_tokens": 60}
    })
}

/// How one mock model answers: text after a delay, or nothing configured (never asked).
#[derive(Clone)]
struct Answer {
    text: &'static str,
    delay_ms: u64,
}

fn answer(text: &'static str) -> Option<Answer> {
    Some(Answer { text, delay_ms: 0 })
}

struct Models {
    deepseek: MockServer,
    anthropic: MockServer,
}

async fn models(deepseek: Option<Answer>, anthropic: Option<Answer>) -> Models {
    let ds = MockServer::start().await;
    let an = MockServer::start().await;
    if let Some(a) = deepseek {
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .and(header("authorization", format!("Bearer {DEEPSEEK_KEY}").as_str()))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(chat_completion(a.text))
                    .set_delay(Duration::from_millis(a.delay_ms)),
            )
            .mount(&ds)
            .await;
    }
    if let Some(a) = anthropic {
        Mock::given(method("POST"))
            .and(path("/v1/messages"))
            .and(header("x-api-key", ANTHROPIC_KEY))
            .and(header("anthropic-version", "2023-06-01"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(anthropic_message(a.text))
                    .set_delay(Duration::from_millis(a.delay_ms)),
            )
            .mount(&an)
            .await;
    }
    Models {
        deepseek: ds,
        anthropic: an,
    }
}

/// The resolver exactly as startup builds it, from settings pointing at the mock servers.
fn resolver(m: &Models, deadline_ms: u64) -> Arc<dyn ConflictResolver> {
    let mut s = Settings::default();
    s.orchestration.signals.resolution_timeout_ms = deadline_ms;
    let ds = s.llm.providers.get_mut("deepseek").unwrap();
    ds.base_url = format!("{}/v1", m.deepseek.uri());
    ds.api_key = Some(Secret::new(DEEPSEEK_KEY));
    let an = s.llm.providers.get_mut("anthropic").unwrap();
    an.base_url = m.anthropic.uri();
    an.api_key = Some(Secret::new(ANTHROPIC_KEY));
    let signals = &s.orchestration.signals;
    let r = ModelConflictResolver::from_models(
        &signals.resolution_models,
        &triplegain::analysis::model_clients(&s),
        Duration::from_millis(signals.resolution_timeout_ms),
        signals.resolution_max_tokens,
    )
    .expect("deepseek and anthropic are configured");
    assert_eq!(r.len(), 2);
    Arc::new(r)
}

// ------------------------------------------------------------------ execution double

#[derive(Default)]
struct Exec {
    trades: Arc<Mutex<Vec<ExecuteTrade>>>,
}

impl Actor for Exec {
    type Context = Context<Self>;
}

impl Handler<ExecuteTrade> for Exec {
    type Result = Result<ExecutionResult, ExecutionError>;
    fn handle(&mut self, msg: ExecuteTrade, _: &mut Context<Self>) -> Self::Result {
        let cid = msg.proposal().correlation_id;
        self.trades.lock().push(msg);
        Ok(ExecutionResult {
            correlation_id: cid,
            orders: vec![],
            position_id: None,
        })
    }
}

impl Handler<ClosePosition> for Exec {
    type Result = Result<ExecutionResult, ExecutionError>;
    fn handle(&mut self, msg: ClosePosition, _: &mut Context<Self>) -> Self::Result {
        Err(ExecutionError::Unavailable(format!(
            "unexpected close {}",
            msg.position_id
        )))
    }
}

impl Handler<CloseAllPositions> for Exec {
    type Result = Result<Vec<ExecutionResult>, ExecutionError>;
    fn handle(&mut self, _: CloseAllPositions, _: &mut Context<Self>) -> Self::Result {
        Ok(vec![])
    }
}

impl Handler<GetPositions> for Exec {
    type Result = Result<Vec<PositionView>, ExecutionError>;
    fn handle(&mut self, _: GetPositions, _: &mut Context<Self>) -> Self::Result {
        Ok(vec![])
    }
}

// ------------------------------------------------------------------ harness

struct H {
    coord: Addr<Coordinator>,
    risk: Addr<RiskEngine>,
    stores: Stores,
    trades: Arc<Mutex<Vec<ExecuteTrade>>>,
    clock: ManualClock,
}

fn start(resolver: Arc<dyn ConflictResolver>, deadline_ms: u64) -> H {
    let clock = ManualClock::new(t0());
    let shared: SharedClock = Arc::new(clock.clone());
    let bus = Bus::default();
    let registry = Registry::new(RestartPolicy::default(), bus.risk_alerts.clone(), Arc::clone(&shared));
    let stores = triplegain::db::memory_stores();
    let risk_cfg = RiskEngineConfig {
        limits: RiskLimits::default(),
        store: stores.state.clone(),
        alerts: Topic::new(),
        clock: Arc::clone(&shared),
    };
    let risk = start_supervised(&registry, "risk_engine", true, 64, move |sup| {
        RiskEngine::new(sup, risk_cfg).trusting_proposal_prices()
    });
    let trades: Arc<Mutex<Vec<ExecuteTrade>>> = Arc::default();
    let exec = Exec {
        trades: Arc::clone(&trades),
    }
    .start();
    let links = CoordinatorLinks {
        risk: Some(risk.clone().recipient()),
        execution: Some(ExecutionLinks {
            execute: exec.clone().recipient(),
            close: exec.clone().recipient(),
            close_all: exec.clone().recipient(),
            positions: exec.recipient(),
        }),
        resolver: Some(resolver),
        ..CoordinatorLinks::default()
    };
    let mut settings = OrchestrationSettings {
        symbols: vec!["BTC/USDT".into()],
        evaluate_every_seconds: 0,
        ..OrchestrationSettings::default()
    };
    settings.signals.resolution_timeout_ms = deadline_ms;
    let (state, audit) = (stores.state.clone(), stores.audit.clone());
    let coord = start_supervised(&registry, "coordinator", true, 256, move |sup| {
        Coordinator::new(sup, state, shared)
            .with_settings(settings)
            .with_bus(bus)
            .with_audit(audit)
            .with_links(links)
    });
    H {
        coord,
        risk,
        stores,
        trades,
        clock,
    }
}

impl H {
    /// Equity 10 000, a ranging regime, TA long 0.7 against bearish sentiment 0.6 (a gap of 0.1 <
    /// 0.2: a conflict), then a BUY at 0.7 with a 2 % stop: the deterministic rules would wait.
    async fn conflicting_buy(&self) -> CorrelationId {
        let now = self.clock.now();
        let p = PortfolioUpdate {
            meta: EventMeta::new("position_tracker", now),
            equity_usd: dec!(10000),
            peak_equity_usd: dec!(10000),
            drawdown_pct: Decimal::ZERO,
            open_exposure_usd: Decimal::ZERO,
            exposure_by_symbol: BTreeMap::new(),
            balances: BTreeMap::new(),
            allocation_pct: BTreeMap::new(),
            position_footprint: BTreeMap::new(),
        };
        self.risk.send(p.clone()).await.unwrap();
        self.coord.send(p).await.unwrap();
        let r = RegimeUpdate {
            meta: EventMeta::new("regime_detection", now),
            symbol: btc(),
            regime: Regime::Ranging,
            confidence: 0.8,
            position_size_multiplier: 0.75,
            entry_strictness: EntryStrictness::Normal,
            stop_loss_atr_multiplier: 0.8,
            take_profit_atr_multiplier: 1.5,
            max_leverage: 2,
            previous_regime: None,
        };
        self.risk.send(r.clone()).await.unwrap();
        self.coord.send(r).await.unwrap();
        self.coord
            .send(TaSignal {
                meta: EventMeta::new("technical_analysis", now),
                symbol: btc(),
                timeframe: Timeframe::H1,
                trend_direction: TrendDirection::Bullish,
                trend_strength: 0.6,
                momentum_score: 0.3,
                bias: Bias::Long,
                confidence: 0.7,
                reasoning: "higher highs".into(),
            })
            .await
            .unwrap();
        self.coord
            .send(SentimentUpdate {
                meta: EventMeta::new("sentiment_analysis", now),
                symbol: btc(),
                bias: SentimentBias::Bearish,
                confidence: 0.6,
                fear_greed: FearGreed::Fear,
                social_score: -0.3,
                news_score: -0.2,
                key_events: vec![],
            })
            .await
            .unwrap();
        let s = TradingSignal {
            meta: EventMeta::new("trading_decision", now),
            symbol: btc(),
            action: TradeAction::Buy,
            confidence: 0.7,
            entry_price: Some(dec!(50000)),
            stop_loss_pct: Some(dec!(2)),
            take_profit_pct: Some(dec!(4)),
            position_size_pct: Some(dec!(10)),
            leverage: 1,
            reasoning: "breakout".into(),
        };
        let cid = s.meta.correlation_id;
        self.coord.send(s).await.unwrap();
        cid
    }

    /// Waits until the chain reached a final stage; returns its stages and records.
    async fn chain(&self, cid: CorrelationId) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        for _ in 0..100 {
            actix::clock::sleep(Duration::from_millis(30)).await;
            out = self
                .stores
                .audit
                .decision_chain(cid)
                .await
                .unwrap()
                .into_iter()
                .map(|r| (r.stage, r.detail))
                .collect();
            let resolution = out.iter().find(|(s, _)| s == "resolution");
            let done = match resolution {
                Some((_, r)) if r["action"] == "wait" || r["action"] == "abort" => true,
                Some(_) => out.iter().any(|(s, _)| s == "execution_result"),
                None => false,
            };
            if done {
                break;
            }
        }
        out
    }
}

fn d(v: &Value) -> Decimal {
    v.as_str()
        .unwrap_or_else(|| panic!("not a decimal string: {v}"))
        .parse()
        .unwrap()
}

fn stage<'a>(chain: &'a [(String, Value)], name: &str) -> &'a Value {
    &chain
        .iter()
        .find(|(s, _)| s == name)
        .unwrap_or_else(|| panic!("no {name} in {chain:#?}"))
        .1
}

fn stages(chain: &[(String, Value)]) -> Vec<&str> {
    chain.iter().map(|(s, _)| s.as_str()).collect()
}

const PROCEED: &str = r#"{"action":"proceed","confidence":0.8,"reasoning":"TA and regime outweigh sentiment"}"#;
const WAIT: &str = r#"{"action":"wait","confidence":0.6,"reasoning":"sentiment turning; wait for confirmation"}"#;
const ABORT: &str = r#"{"action":"abort","confidence":0.7,"reasoning":"the setup is invalidated"}"#;
const MODIFY: &str = "I suggest a smaller, cheaper entry:\n```json\n{\"action\":\"modify\",\"confidence\":0.65,\
\"reasoning\":\"half size, better entry\",\"modifications\":{\"size_reduction_pct\":50,\"entry_adjustment_pct\":-1,\
\"leverage\":1}}\n```";
const MALFORMED: &str = "I would probably proceed, but carefully.";
const OUT_OF_RANGE: &str = r#"{"action":"modify","confidence":0.9,"reasoning":"more","modifications":{"leverage":20}}"#;

const DEADLINE_MS: u64 = 1_500;

#[actix::test]
async fn proceed_routes_the_trade_through_risk_to_execution() {
    // Arrange
    let m = models(answer(PROCEED), None).await;
    let h = start(resolver(&m, DEADLINE_MS), DEADLINE_MS);
    // Act
    let cid = h.conflicting_buy().await;
    let chain = h.chain(cid).await;
    // Assert: the model saw the conflict in its prompt ...
    let received = m.deepseek.received_requests().await.unwrap();
    assert_eq!(received.len(), 1);
    let body: Value = received[0].body_json().unwrap();
    assert_eq!(body["model"], "deepseek-chat");
    assert_eq!(body["max_tokens"], 500);
    let prompt = body["messages"][1]["content"].as_str().unwrap();
    for needle in [
        "BTC/USDT",
        "BUY",
        "ta_sentiment_conflict",
        "stop loss %: 2",
        "take profit %: 4",
    ] {
        assert!(prompt.contains(needle), "{needle} not in {prompt}");
    }
    assert!(body["messages"][0]["content"].as_str().unwrap().contains("\"modify\""));
    // ... and its answer sent the trade through the risk engine to execution.
    assert_eq!(
        stages(&chain),
        [
            "signal",
            "consensus",
            "conflict",
            "resolution",
            "proposal",
            "risk_verdict",
            "execution_requested",
            "execution_result"
        ]
    );
    let res = stage(&chain, "resolution");
    assert_eq!(res["action"], "proceed");
    assert_eq!(res["resolved_by"], "deepseek/deepseek-chat");
    assert!(res.get("fallback").is_none(), "{res}");
    assert_eq!(stage(&chain, "risk_verdict")["status"], "approved");
    let trades = h.trades.lock().clone();
    assert_eq!(trades.len(), 1);
    assert_eq!(trades[0].proposal().size_usd, dec!(750));
    assert_eq!(trades[0].proposal().correlation_id, cid);
    assert!(m.anthropic.received_requests().await.unwrap().is_empty());
    assert_eq!(
        h.coord.send(GetReport).await.unwrap().unwrap().statistics.trades_routed,
        1
    );
}

#[actix::test]
async fn wait_and_abort_place_no_trade() {
    for (text, action) in [(WAIT, "wait"), (ABORT, "abort")] {
        let m = models(answer(text), None).await;
        let h = start(resolver(&m, DEADLINE_MS), DEADLINE_MS);
        let cid = h.conflicting_buy().await;
        let chain = h.chain(cid).await;
        assert_eq!(
            stages(&chain),
            ["signal", "consensus", "conflict", "resolution"],
            "{action}"
        );
        let res = stage(&chain, "resolution");
        assert_eq!(res["action"], action);
        assert_eq!(res["resolved_by"], "deepseek/deepseek-chat");
        actix::clock::sleep(Duration::from_millis(100)).await;
        assert!(h.trades.lock().is_empty(), "{action}");
    }
}

#[actix::test]
async fn modify_sends_the_bounded_modified_proposal_to_the_risk_engine() {
    // DeepSeek has no answer (HTTP 404); Claude answers in a fence with prose around it.
    let m = models(None, answer(MODIFY)).await;
    let h = start(resolver(&m, DEADLINE_MS), DEADLINE_MS);
    let cid = h.conflicting_buy().await;
    let chain = h.chain(cid).await;
    let res = stage(&chain, "resolution");
    assert_eq!(res["action"], "modify", "{chain:#?}");
    assert_eq!(res["resolved_by"], "anthropic/claude-3-5-sonnet-20241022");
    assert_eq!(res["modifications"]["size_reduction_pct"], 50.0);
    // 750 × (1 − 50 %) = 375; entry 50 000 − 1 % = 49 500; the 2 % stop moves with it: 48 510.
    let verdict = stage(&chain, "risk_verdict");
    assert_eq!(verdict["status"], "approved", "{verdict}");
    let proposal = stage(&chain, "proposal");
    assert_eq!(d(&proposal["size_usd"]), dec!(375));
    assert_eq!(d(&proposal["entry_price"]), dec!(49500));
    assert_eq!(d(&proposal["stop_loss"]), dec!(48510));
    assert_eq!(d(&verdict["proposal"]["size_usd"]), dec!(375), "{verdict}");
    let trades = h.trades.lock().clone();
    assert_eq!(trades.len(), 1);
    let p = &trades[0].proposal();
    assert_eq!(
        (p.size_usd, p.entry_price, p.stop_loss, p.leverage),
        (dec!(375), dec!(49500), Some(dec!(48510)), 1)
    );
    assert_eq!(m.deepseek.received_requests().await.unwrap().len(), 1);
}

#[actix::test]
async fn malformed_out_of_range_and_slow_answers_fall_back_to_the_rules() {
    // (DeepSeek, Claude, deadline, words in the fallback reason)
    let slow = Some(Answer {
        text: PROCEED,
        delay_ms: 2_000,
    });
    let cases: Vec<(Option<Answer>, Option<Answer>, u64, &str)> = vec![
        (answer(MALFORMED), answer(MALFORMED), DEADLINE_MS, "no JSON object"),
        (
            answer(OUT_OF_RANGE),
            answer(OUT_OF_RANGE),
            DEADLINE_MS,
            "modifications.leverage",
        ),
        (slow.clone(), slow, 300, " ms"),
    ];
    for (i, (ds, an, deadline, why)) in cases.into_iter().enumerate() {
        let m = models(ds, an).await;
        let h = start(resolver(&m, deadline), deadline);
        let started = std::time::Instant::now();
        let cid = h.conflicting_buy().await;
        let chain = h.chain(cid).await;
        let res = stage(&chain, "resolution");
        // The deterministic rules: a TA/sentiment conflict at confidence 0.7 < 0.75 waits.
        assert_eq!(res["action"], "wait", "case {i}: {res}");
        assert_eq!(res["resolved_by"], "deterministic", "case {i}");
        let fallback = res["fallback"].as_str().unwrap_or_default();
        assert!(fallback.contains(why), "case {i}: {fallback}");
        assert!(res["reasoning"].as_str().unwrap().contains("fallback"), "case {i}");
        assert_eq!(
            stages(&chain),
            ["signal", "consensus", "conflict", "resolution"],
            "case {i}"
        );
        assert!(h.trades.lock().is_empty(), "case {i}");
        if deadline == 300 {
            // Resolved at the deadline, not after the model's 2 s.
            assert!(
                started.elapsed() < Duration::from_millis(1_500),
                "{:?}",
                started.elapsed()
            );
        }
    }
}
