//! The market data actor and the analysis agent actors, wired as in the server but driven by hand:
//! candles in → candles closed on every timeframe and snapshots with indicators; TA → regime →
//! decision per symbol without leakage between symbols; outputs and model answers stored; the
//! model path against a local OpenAI-compatible mock and the rule-based fallback when it fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code")]

use actix::prelude::*;
use chrono::{DateTime, Duration as ChronoDuration, TimeZone, Utc};
use parking_lot::Mutex;
use rust_decimal::prelude::FromPrimitive;
use rust_decimal::Decimal;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use triplegain::db::MemoryStore;
use triplegain::llm::{OpenAiCompatibleClient, RetryPolicy};
use triplegain::market::driver::batch_close_time;
use triplegain_actors::agents::actors::{
    AgentContext, AnalysisCaches, DecisionAgentConfig, ModelSlot, RegimeAgentConfig, RegimeDetectionAgent,
    SentimentAgent, TechnicalAnalysisAgent, TradingDecisionAgent,
};
use triplegain_actors::agents::api::{AgentName, RunAnalysis};
use triplegain_actors::agents::sentiment::AggregationConfig;
use triplegain_actors::agents::strategies::StrategySettings;
use triplegain_actors::bus::{Bus, Topic};
use triplegain_actors::clock::{ManualClock, SharedClock};
use triplegain_actors::domain::{Candle, CorrelationId, Symbol, Timeframe, TradeAction};
use triplegain_actors::indicators::IndicatorEngine;
use triplegain_actors::market::{CandleBatch, GetSnapshot, MarketData, MarketDataConfig, SimulatedMarket};
use triplegain_actors::messages::{
    BusinessTick, MarketSnapshot, RegimeUpdate, SentimentUpdate, TaSignal, TradingSignal,
};
use triplegain_actors::ports::{AuditStore, ModelClient};
use triplegain_actors::supervision::{start_supervised, Registry, RestartPolicy};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

// ---------------------------------------------------------------- rig

struct Collect<E: Message<Result = ()> + Send + Unpin + 'static>(Arc<Mutex<Vec<E>>>);

impl<E: Message<Result = ()> + Send + Unpin + 'static> Actor for Collect<E> {
    type Context = Context<Self>;
}

impl<E: Message<Result = ()> + Send + Unpin + 'static> Handler<E> for Collect<E> {
    type Result = ();
    fn handle(&mut self, msg: E, _: &mut Context<Self>) {
        self.0.lock().push(msg);
    }
}

fn collect<E: Message<Result = ()> + Send + Unpin + Clone + 'static>(topic: &Topic<E>) -> Arc<Mutex<Vec<E>>> {
    let store = Arc::new(Mutex::new(Vec::new()));
    let s = store.clone();
    let addr = Collect::create(move |ctx| {
        ctx.set_mailbox_capacity(1_000_000);
        Collect(s)
    });
    topic.subscribe("test", addr.recipient());
    store
}

struct Rig {
    registry: Registry,
    bus: Bus,
    clock: ManualClock,
    market: Addr<MarketData>,
    store: Arc<MemoryStore>,
    ctx: AgentContext,
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

fn rig(base: Timeframe) -> Rig {
    let clock = ManualClock::new(t0());
    let shared: SharedClock = Arc::new(clock.clone());
    let bus = Bus::default();
    let registry = Registry::new(RestartPolicy::default(), Topic::new(), shared.clone());
    let cfg = MarketDataConfig {
        base,
        primary: Timeframe::H1,
        bus: bus.clone(),
        clock: shared.clone(),
    };
    let market = start_supervised(&registry, "market_data", true, 1024, move |sup| {
        MarketData::new(sup, cfg)
    });
    let store = Arc::new(MemoryStore::default());
    let audit: Arc<dyn AuditStore> = store.clone();
    let ctx = AgentContext {
        market: market.clone().recipient(),
        bus: bus.clone(),
        clock: shared.clone(),
        audit,
        caches: AnalysisCaches::new(shared),
    };
    Rig {
        registry,
        bus,
        clock,
        market,
        store,
        ctx,
    }
}

/// Delivers `candles` grouped by open time, moving the clock first, as the feed loop does.
async fn deliver(rig: &Rig, candles: &[Candle]) {
    let mut i = 0;
    while i < candles.len() {
        let t = candles[i].open_time;
        let group: Vec<Candle> = candles[i..].iter().take_while(|c| c.open_time == t).cloned().collect();
        i += group.len();
        rig.clock.set(batch_close_time(&group).unwrap());
        rig.market.send(CandleBatch(group)).await.unwrap().unwrap();
    }
    actix::clock::sleep(Duration::from_millis(50)).await;
}

fn sym(s: &str) -> Symbol {
    Symbol::parse(s).unwrap()
}

/// Hourly candles: a trend of `drift` per hour (log) with a wobble, from midnight.
fn hourly(symbol: &str, n: usize, start: f64, drift: f64) -> Vec<Candle> {
    let p = |i: usize| start * (drift * i as f64 + 0.01 * (i as f64 * 0.7).sin()).exp();
    let d = |x: f64| Decimal::from_f64(x).unwrap().round_dp(6);
    (0..n)
        .map(|i| {
            let (o, c) = (p(i.max(1) - 1), p(i));
            Candle {
                symbol: sym(symbol),
                timeframe: Timeframe::H1,
                open_time: t0() + ChronoDuration::hours(i as i64),
                open: d(o),
                high: d(o.max(c) * 1.002),
                low: d(o.min(c) * 0.998),
                close: d(c),
                volume: d(10.0 + (i % 7) as f64),
            }
        })
        .collect()
}

/// BTC rising and XRP falling, interleaved by hour.
fn two_symbols(n: usize) -> Vec<Candle> {
    let btc = hourly("BTC/USDT", n, 90_000.0, 0.004);
    let xrp = hourly("XRP/USDT", n, 2.5, -0.004);
    let mut all: Vec<Candle> = btc.into_iter().zip(xrp).flat_map(|(a, b)| [a, b]).collect();
    all.sort_by_key(|c| c.open_time);
    all
}

fn run(symbol: &str) -> RunAnalysis {
    RunAnalysis {
        symbol: sym(symbol),
        correlation_id: CorrelationId::new(),
    }
}

// ---------------------------------------------------------------- market data

#[actix_web::test]
async fn one_minute_candles_close_every_higher_timeframe_and_tick_the_business_clock() {
    // Arrange
    let rig = rig(Timeframe::M1);
    let closed = collect(&rig.bus.candles);
    let ticks = collect::<BusinessTick>(&rig.bus.business_ticks);
    let snapshots = collect::<MarketSnapshot>(&rig.bus.market_data);
    let mut sim = SimulatedMarket::new(7, t0());
    let candles: Vec<Candle> = (0..120).flat_map(|_| sim.step()).collect();

    // Act
    deliver(&rig, &candles).await;

    // Assert: per symbol 120 × 1m, 24 × 5m, 8 × 15m, 2 × 1h, nothing for 4h and 1d yet.
    let closed = closed.lock().clone();
    for s in ["BTC/USDT", "XRP/USDT", "XRP/BTC"] {
        let count = |tf| {
            closed
                .iter()
                .filter(|c| c.candle.symbol.as_str() == s && c.candle.timeframe == tf)
                .count()
        };
        assert_eq!(
            [
                Timeframe::M1,
                Timeframe::M5,
                Timeframe::M15,
                Timeframe::H1,
                Timeframe::H4
            ]
            .map(count),
            [120, 24, 8, 2, 0],
            "{s}"
        );
    }
    let hour = closed
        .iter()
        .find(|c| c.candle.symbol.as_str() == "BTC/USDT" && c.candle.timeframe == Timeframe::H1)
        .unwrap();
    let minutes: Vec<&Candle> = candles
        .iter()
        .filter(|c| c.symbol.as_str() == "BTC/USDT")
        .take(60)
        .collect();
    assert_eq!(hour.candle.open, minutes[0].open);
    assert_eq!(hour.candle.close, minutes[59].close);
    assert_eq!(hour.candle.volume, minutes.iter().map(|c| c.volume).sum::<Decimal>());
    let ticks = ticks.lock().clone();
    assert_eq!(ticks.len(), 120, "one tick per delivered batch");
    assert_eq!(ticks.last().unwrap().now, t0() + ChronoDuration::minutes(120));
    // A snapshot per batch; its 1h indicators' time moves only with a new hourly candle.
    let times: Vec<_> = snapshots
        .lock()
        .iter()
        .filter(|s| s.symbol.as_str() == "BTC/USDT")
        .map(|s| s.indicators_at)
        .collect();
    assert_eq!(times.len(), 120);
    let mut distinct = times.clone();
    distinct.dedup();
    assert_eq!(distinct, [None, Some(t0()), Some(t0() + ChronoDuration::hours(1))]);
    assert_eq!(times.iter().filter(|t| **t == Some(t0())).count(), 60);
}

#[actix_web::test]
async fn snapshot_after_warm_up_has_the_indicator_library_values() {
    // Arrange
    let rig = rig(Timeframe::H1);
    let closed = collect(&rig.bus.candles);
    let snapshots = collect::<MarketSnapshot>(&rig.bus.market_data);
    let candles = hourly("BTC/USDT", 72, 90_000.0, 0.003);

    // Act
    deliver(&rig, &candles).await;
    let view = rig
        .market
        .send(GetSnapshot {
            symbol: sym("BTC/USDT"),
            timeframe: None,
        })
        .await
        .unwrap()
        .unwrap()
        .expect("a view after 72 candles");

    // Assert: 72 × 1h → 18 × 4h and 3 × 1d.
    let closed = closed.lock().clone();
    let count = |tf| closed.iter().filter(|c| c.candle.timeframe == tf).count();
    assert_eq!([Timeframe::H1, Timeframe::H4, Timeframe::D1].map(count), [72, 18, 3]);
    let mut engine = IndicatorEngine::new();
    let mut expected = None;
    for c in &candles {
        expected = Some(engine.update(c));
    }
    let expected = expected.unwrap();
    assert_eq!(
        view.snapshot.indicators, expected,
        "same values as the indicator library"
    );
    assert!(expected.rsi_14.is_some() && expected.macd.histogram.is_some() && expected.ema_50.is_some());
    assert_eq!(view.snapshot.indicators.ema_200, None, "EMA 200 still warming up");
    assert_eq!(view.snapshot.current_price, candles[71].close);
    assert_eq!(view.candles_applied, 72);
    assert!(view.snapshot.price_24h_ago.is_some());
    assert!(!view.snapshot.missing_data_flags.contains(&"no_indicators".to_string()));
    let snapshots = snapshots.lock().clone();
    assert_eq!(snapshots.len(), 72, "one snapshot per symbol and batch");
    assert_eq!(snapshots.last().unwrap().indicators, expected);
    assert_eq!(snapshots.last().unwrap().indicators_at, Some(candles[71].open_time));
    // Unknown symbols have no view.
    let none = rig
        .market
        .send(GetSnapshot {
            symbol: sym("XRP/BTC"),
            timeframe: None,
        })
        .await
        .unwrap()
        .unwrap();
    assert!(none.is_none());
}

// ---------------------------------------------------------------- agents

fn rule_agents(
    rig: &Rig,
) -> (
    Addr<TechnicalAnalysisAgent>,
    Addr<RegimeDetectionAgent>,
    Addr<TradingDecisionAgent>,
) {
    let c = rig.ctx.clone();
    let ta = start_supervised(&rig.registry, "technical_analysis", false, 64, move |sup| {
        TechnicalAnalysisAgent::new(sup, c)
    });
    let c = rig.ctx.clone();
    let regime = start_supervised(&rig.registry, "regime_detection", false, 64, move |sup| {
        RegimeDetectionAgent::new(sup, c, RegimeAgentConfig::default())
    });
    let c = rig.ctx.clone();
    let decision = start_supervised(&rig.registry, "trading_decision", false, 64, move |sup| {
        TradingDecisionAgent::new(sup, c, Vec::new(), DecisionAgentConfig::default())
    });
    (ta, regime, decision)
}

#[actix_web::test]
async fn ta_regime_decision_chain_runs_per_symbol_without_leakage() {
    // Arrange
    let rig = rig(Timeframe::H1);
    let ta_events = collect::<TaSignal>(&rig.bus.ta_signals);
    let regime_events = collect::<RegimeUpdate>(&rig.bus.regime_updates);
    let signals = collect::<TradingSignal>(&rig.bus.trading_signals);
    deliver(&rig, &two_symbols(60)).await;
    let (ta, regime, decision) = rule_agents(&rig);

    // Act: the whole chain for BTC only, then the decision for XRP.
    let btc_ta = ta.send(run("BTC/USDT")).await.unwrap().unwrap();
    let btc_regime = regime.send(run("BTC/USDT")).await.unwrap().unwrap();
    let btc_decision = decision.send(run("BTC/USDT")).await.unwrap().unwrap();
    let xrp_decision = decision.send(run("XRP/USDT")).await.unwrap().unwrap();
    let xrp_regime = regime.send(run("XRP/USDT")).await.unwrap().unwrap();
    actix::clock::sleep(Duration::from_millis(50)).await;

    // Assert: BTC's decision saw BTC's TA and regime.
    assert_eq!(btc_ta.agent, AgentName::TechnicalAnalysis);
    assert_eq!(btc_ta.output["symbol"], "BTC/USDT");
    assert_eq!(btc_regime.output["symbol"], "BTC/USDT");
    assert_eq!(
        btc_decision.output["inputs"],
        json!({"ta": true, "regime": true, "sentiment": false})
    );
    assert!(!btc_decision.llm_failed);
    // XRP never had a TA run: BTC's outputs must not stand in for it.
    assert_eq!(
        xrp_decision.output["inputs"],
        json!({"ta": false, "regime": false, "sentiment": false})
    );
    // every strategy holds without inputs (confidence 0; the unanimous bonus only)
    assert_eq!(xrp_decision.output["action"], "HOLD");
    assert_eq!(xrp_decision.output["agreement"], "unanimous");
    assert!(xrp_decision.output["confidence"].as_f64().unwrap() <= 0.15 + 1e-9);
    assert!(xrp_regime.output["reasoning"].as_str().is_some());
    let ta_events = ta_events.lock().clone();
    assert_eq!(ta_events.len(), 1);
    assert_eq!(ta_events[0].symbol, sym("BTC/USDT"));
    assert_eq!(ta_events[0].meta.correlation_id, btc_ta.correlation_id);
    let regime_events = regime_events.lock().clone();
    assert_eq!(
        regime_events.iter().map(|e| e.symbol.as_str()).collect::<Vec<_>>(),
        ["BTC/USDT", "XRP/USDT"]
    );
    let signals = signals.lock().clone();
    assert_eq!(signals.len(), 2);
    assert_eq!(
        (signals[0].symbol.as_str(), signals[1].symbol.as_str()),
        ("BTC/USDT", "XRP/USDT")
    );
    assert_eq!(signals[1].action, TradeAction::Hold);
    // Caches are per symbol.
    assert!(rig.ctx.caches.ta.get("XRP/USDT").is_none());
    assert!(rig.ctx.caches.regime.get("BTC/USDT").is_some());
}

#[actix_web::test]
async fn every_output_is_stored_with_its_correlation_id() {
    // Arrange
    let rig = rig(Timeframe::H1);
    deliver(&rig, &two_symbols(60)).await;
    let (ta, regime, decision) = rule_agents(&rig);
    let c = rig.ctx.clone();
    let sentiment = start_supervised(&rig.registry, "sentiment_analysis", false, 64, move |sup| {
        SentimentAgent::new(sup, c, Vec::new(), AggregationConfig::default())
    });
    let sentiment_events = collect::<SentimentUpdate>(&rig.bus.sentiment_updates);

    // Act
    let runs = vec![
        ta.send(run("XRP/USDT")).await.unwrap().unwrap(),
        regime.send(run("XRP/USDT")).await.unwrap().unwrap(),
        sentiment.send(run("XRP/USDT")).await.unwrap().unwrap(),
        decision.send(run("XRP/USDT")).await.unwrap().unwrap(),
    ];

    // Assert
    for r in &runs {
        let stored = rig
            .store
            .latest_agent_output(r.agent.as_str(), "XRP/USDT")
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{} output stored", r.agent));
        assert_eq!(stored.correlation_id, r.correlation_id);
        assert_eq!(stored.output, r.output);
    }
    // Without providers the sentiment is neutral with confidence 0 and says why.
    assert_eq!(runs[2].output["confidence"], 0.0);
    assert!(runs[2].output["reasoning"]
        .as_str()
        .unwrap()
        .contains("no sentiment provider"));
    assert!(!runs[2].llm_failed);
    actix::clock::sleep(Duration::from_millis(20)).await;
    assert_eq!(sentiment_events.lock()[0].symbol, sym("XRP/USDT"));
    // No data yet for a symbol without candles.
    let err = ta.send(run("XRP/BTC")).await.unwrap().unwrap_err();
    assert!(
        matches!(err, triplegain_actors::agents::api::AgentError::NoData(_)),
        "{err:?}"
    );
}

#[actix_web::test]
async fn regime_state_is_restored_from_the_stored_output_after_a_restart() {
    // Arrange: one run stores a regime; a fresh agent (as after a restart) continues it.
    let rig = rig(Timeframe::H1);
    deliver(&rig, &two_symbols(60)).await;
    let (_, regime, _) = rule_agents(&rig);
    let first = regime.send(run("BTC/USDT")).await.unwrap().unwrap();
    let c = rig.ctx.clone();
    let fresh = start_supervised(&rig.registry, "regime_detection_2", false, 64, move |sup| {
        RegimeDetectionAgent::new(sup, c, RegimeAgentConfig::default())
    });
    rig.clock.advance(ChronoDuration::seconds(600));

    // Act
    let second = fresh.send(run("BTC/USDT")).await.unwrap().unwrap();

    // Assert: same regime, started when the first run started it, periods counted on.
    assert_eq!(second.output["regime"], first.output["regime"]);
    assert_eq!(second.output["regime_started"], first.output["regime_started"]);
    assert!(
        second.output["periods_in_regime"].as_u64().unwrap() >= 3,
        "{}",
        second.output
    );
}

/// Hourly candles of a steady trend (`drift` per hour, log) with a small wobble and rising volume
/// over the last hours (the breakout's confirmation).
fn steady(symbol: &str, n: usize, start: f64, drift: f64) -> Vec<Candle> {
    let mut c = hourly(symbol, n, start, drift);
    let k = c.len();
    for (i, candle) in c.iter_mut().enumerate() {
        candle.volume = Decimal::from(if i + 3 >= k { 40 } else { 10 + (i % 3) as i64 });
    }
    c
}

/// Runs TA, regime and the decision for `symbol`; returns the decision and its panel rows.
async fn decide(
    rig: &Rig,
    symbol: &str,
) -> (
    triplegain_actors::agents::api::AgentRun,
    Vec<triplegain_actors::ports::ModelComparisonRecord>,
) {
    let (ta, regime, decision) = rule_agents(rig);
    ta.send(run(symbol)).await.unwrap().unwrap();
    regime.send(run(symbol)).await.unwrap().unwrap();
    let out = decision.send(run(symbol)).await.unwrap().unwrap();
    actix::clock::sleep(Duration::from_millis(20)).await;
    let rows = rig
        .store
        .model_comparisons("trading_decision")
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.correlation_id == out.correlation_id)
        .collect();
    (out, rows)
}

#[actix_web::test]
async fn a_steady_uptrend_makes_the_strategy_panel_buy_and_every_vote_is_recorded() {
    // Arrange: 120 hours of +0.4 %/h
    let rig = rig(Timeframe::H1);
    deliver(&rig, &steady("BTC/USDT", 120, 90_000.0, 0.004)).await;
    let signals = collect::<TradingSignal>(&rig.bus.trading_signals);

    // Act
    let (out, rows) = decide(&rig, "BTC/USDT").await;

    // Assert: the TA confidence is high, the regime a bull trend, the panel buys with levels
    // inside the risk rules, and each strategy asked has its row like a model's answer.
    let ta = rig.ctx.caches.ta.get("BTC/USDT").unwrap();
    assert!(ta.confidence >= 0.6, "aligned uptrend: TA confidence {}", ta.confidence);
    let regime = rig.ctx.caches.regime.get("BTC/USDT").unwrap();
    assert_eq!(out.output["action"], "BUY", "{} in {}", out.output, regime.regime);
    assert_eq!(out.output["model_used"], "consensus");
    let stop = out.output["stop_loss_pct"].as_str().unwrap().parse::<f64>().unwrap();
    let tp = out.output["take_profit_pct"].as_str().unwrap().parse::<f64>().unwrap();
    assert!(
        (0.5..=5.0).contains(&stop) && tp / stop >= 1.5 - 1e-9,
        "stop {stop} tp {tp}"
    );
    assert!(!rows.is_empty());
    assert_eq!(rows.len(), out.output["total_models"].as_u64().unwrap() as usize);
    for r in &rows {
        assert!(r.model.starts_with("rule:"), "{}", r.model);
        assert_eq!(r.provider, "rule");
        assert!(r.action.is_some() && r.response.is_some() && r.error.is_none());
        assert_eq!(r.prompt_hash.len(), 64);
    }
    assert!(rows
        .iter()
        .any(|r| r.model == "rule:trend" && r.action.as_deref() == Some("BUY")));
    assert!(
        rows.iter().all(|r| r.model != "rule:mean_reversion"),
        "mean reversion abstains in a trend"
    );
    let sig = signals.lock()[0].clone();
    assert_eq!(sig.action, TradeAction::Buy);
    assert!(sig.stop_loss_pct.is_some() && sig.take_profit_pct.is_some());
}

#[actix_web::test]
async fn a_steady_downtrend_never_makes_a_long_entry() {
    // Arrange: 120 hours of −0.4 %/h
    let rig = rig(Timeframe::H1);
    deliver(&rig, &steady("XRP/USDT", 120, 2.5, -0.004)).await;

    // Act
    let (out, rows) = decide(&rig, "XRP/USDT").await;

    // Assert
    assert_ne!(out.output["action"], "BUY", "{}", out.output);
    assert!(rows.iter().all(|r| r.action.as_deref() != Some("BUY")), "{rows:?}");
    let ta = rig.ctx.caches.ta.get("XRP/USDT").unwrap();
    assert_ne!(ta.bias, triplegain_actors::domain::Bias::Long);
    assert!(
        !out.output["votes"].to_string().contains("BUY"),
        "{}",
        out.output["votes"]
    );
}

#[actix_web::test]
async fn a_choppy_series_holds() {
    // Arrange: 120 hours zigzagging ±1.5 % around 100 with no drift
    let rig = rig(Timeframe::H1);
    let d = |x: f64| Decimal::from_f64(x).unwrap().round_dp(6);
    let candles: Vec<Candle> = (0..120)
        .map(|i| {
            let (o, c) = if i % 2 == 0 { (98.5, 101.5) } else { (101.5, 98.5) };
            Candle {
                symbol: sym("XRP/USDT"),
                timeframe: Timeframe::H1,
                open_time: t0() + ChronoDuration::hours(i),
                open: d(o),
                high: d(101.8),
                low: d(98.2),
                close: d(c),
                volume: d(10.0 + (i % 5) as f64),
            }
        })
        .collect();
    deliver(&rig, &candles).await;

    // Act
    let (out, rows) = decide(&rig, "XRP/USDT").await;

    // Assert: no strategy sees an entry, the panel holds
    assert_eq!(out.output["action"], "HOLD", "{}", out.output);
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r.action.as_deref() == Some("HOLD")), "{rows:?}");
}

// ---------------------------------------------------------------- models

fn chat_completion(content: &str) -> serde_json::Value {
    json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4-turbo",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 900, "completion_tokens": 60, "total_tokens": 960}
    })
}

fn decision_agent(rig: &Rig, server: &MockServer, name: &str) -> Addr<TradingDecisionAgent> {
    let client: Arc<dyn ModelClient> = Arc::new(
        OpenAiCompatibleClient::new(
            "openai",
            format!("{}/v1", server.uri()),
            Some(secrecy::SecretString::from("sk-test-key")),
        )
        .with_retry(RetryPolicy::none()),
    );
    let slot = ModelSlot {
        name: "gpt4".into(),
        provider: "openai".into(),
        model: "gpt-4-turbo".into(),
        client,
        timeout_ms: 5_000,
    };
    let c = rig.ctx.clone();
    start_supervised(&rig.registry, name, false, 64, move |sup| {
        TradingDecisionAgent::new(
            sup,
            c,
            vec![slot],
            // the model alone (no strategies) to test the model path
            DecisionAgentConfig {
                deadline_ms: 5_000,
                strategies: StrategySettings::none(),
                ..DecisionAgentConfig::default()
            },
        )
    })
}

#[actix_web::test]
async fn a_model_answer_becomes_the_decision_and_is_recorded() {
    // Arrange
    let server = MockServer::start().await;
    let answer = json!({
        "action": "BUY", "confidence": 0.8, "entry_price": null, "stop_loss_pct": 2.0,
        "take_profit_pct": 4.0, "position_size_pct": 10, "leverage": 1,
        "reasoning": "uptrend with rising momentum and a supportive regime"
    });
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(chat_completion(&answer.to_string())))
        .expect(1)
        .mount(&server)
        .await;
    let rig = rig(Timeframe::H1);
    deliver(&rig, &two_symbols(60)).await;
    let agent = decision_agent(&rig, &server, "trading_decision");
    let signals = collect::<TradingSignal>(&rig.bus.trading_signals);

    // Act
    let out = agent.send(run("BTC/USDT")).await.unwrap().unwrap();

    // Assert: one model, quorum capped at one: unanimous BUY with the boost.
    assert!(!out.llm_failed);
    assert_eq!(out.model_used.as_deref(), Some("gpt-4-turbo"));
    assert_eq!(out.output["action"], "BUY");
    assert_eq!(out.output["agreement"], "unanimous");
    assert!((out.output["confidence"].as_f64().unwrap() - 0.95).abs() < 1e-9);
    actix::clock::sleep(Duration::from_millis(20)).await;
    let signals = signals.lock().clone();
    assert_eq!(signals[0].action, TradeAction::Buy);
    assert_eq!(signals[0].stop_loss_pct, Some(Decimal::from(2)));
    let rows = rig.store.model_comparisons("trading_decision").await.unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!((row.model.as_str(), row.provider.as_str()), ("gpt-4-turbo", "openai"));
    assert_eq!(row.action.as_deref(), Some("BUY"));
    assert_eq!(row.correlation_id, out.correlation_id);
    assert_eq!((row.input_tokens, row.output_tokens), (900, 60));
    assert_eq!(row.prompt_hash.len(), 64);
    assert!(row.error.is_none());
}

#[actix_web::test]
async fn a_failing_model_falls_back_to_the_rule_based_decision() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(500).set_body_string("upstream exploded"))
        .mount(&server)
        .await;
    let rig = rig(Timeframe::H1);
    deliver(&rig, &two_symbols(60)).await;
    let agent = decision_agent(&rig, &server, "trading_decision");
    let signals = collect::<TradingSignal>(&rig.bus.trading_signals);

    // Act
    let out = agent.send(run("BTC/USDT")).await.unwrap().unwrap();

    // Assert: degraded, rule-based (HOLD: no TA or regime ran), answer recorded with its error.
    assert!(out.llm_failed);
    assert_eq!(out.model_used, None);
    assert_eq!(out.output["model_used"], "rule_based");
    assert_eq!(out.output["fallback"], true);
    assert_eq!(out.output["action"], "HOLD");
    actix::clock::sleep(Duration::from_millis(20)).await;
    assert_eq!(signals.lock()[0].action, TradeAction::Hold);
    let rows = rig.store.model_comparisons("trading_decision").await.unwrap();
    assert_eq!(rows.len(), 1);
    assert!(rows[0].action.is_none());
    assert!(rows[0].error.as_deref().unwrap().contains("500"), "{:?}", rows[0].error);
    let stored = rig
        .store
        .latest_agent_output("trading_decision", "BTC/USDT")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.model.as_deref(), Some("rule_based"));
}

#[actix_web::test]
async fn a_model_past_the_deadline_is_dropped_from_the_vote_but_kept_in_the_record() {
    // Arrange: the model answers after 3 s; the decision deadline is 300 ms.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(chat_completion("{}"))
                .set_delay(Duration::from_secs(3)),
        )
        .mount(&server)
        .await;
    let rig = rig(Timeframe::H1);
    deliver(&rig, &two_symbols(60)).await;
    let client: Arc<dyn ModelClient> = Arc::new(
        OpenAiCompatibleClient::new("openai", format!("{}/v1", server.uri()), Some("sk-test-key".into()))
            .with_retry(RetryPolicy::none()),
    );
    let slot = ModelSlot {
        name: "gpt4".into(),
        provider: "openai".into(),
        model: "gpt-4-turbo".into(),
        client,
        timeout_ms: 10_000,
    };
    let c = rig.ctx.clone();
    let agent = start_supervised(&rig.registry, "trading_decision", false, 64, move |sup| {
        TradingDecisionAgent::new(
            sup,
            c,
            vec![slot],
            DecisionAgentConfig {
                deadline_ms: 300,
                strategies: StrategySettings::none(),
                ..DecisionAgentConfig::default()
            },
        )
    });

    // Act
    let started = std::time::Instant::now();
    let out = agent.send(run("XRP/USDT")).await.unwrap().unwrap();

    // Assert
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the deadline bounds the run"
    );
    assert!(out.llm_failed);
    assert_eq!(out.output["model_used"], "rule_based");
    let rows = rig.store.model_comparisons("trading_decision").await.unwrap();
    assert_eq!(rows.len(), 1, "the late model is still recorded");
    assert!(
        rows[0].error.as_deref().unwrap().contains("deadline"),
        "{:?}",
        rows[0].error
    );
}

#[actix_web::test]
async fn sentiment_aggregates_the_providers_that_answered() {
    // Arrange: social answers, news fails with 500.
    let social = MockServer::start().await;
    let answer = json!({
        "bias": "bullish", "score": 0.5, "confidence": 0.8,
        "key_events": [{"event": "ETF inflows", "impact": "positive", "significance": "high", "source": "x.com"}],
        "narratives": ["institutional demand"], "reasoning": "crowd mood is upbeat about inflows"
    });
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(chat_completion(&answer.to_string())))
        .mount(&social)
        .await;
    let news = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&news)
        .await;
    let rig = rig(Timeframe::H1);
    let slot = |server: &MockServer, provider: &str, model: &str| ModelSlot {
        name: provider.into(),
        provider: provider.into(),
        model: model.into(),
        client: Arc::new(
            OpenAiCompatibleClient::new(provider, format!("{}/v1", server.uri()), Some("sk-test-key".into()))
                .with_retry(RetryPolicy::none()),
        ),
        timeout_ms: 5_000,
    };
    let providers = vec![
        triplegain_actors::agents::actors::SentimentProvider {
            source: triplegain_actors::agents::sentiment::SentimentSource::Social,
            slot: slot(&social, "xai", "grok-2"),
        },
        triplegain_actors::agents::actors::SentimentProvider {
            source: triplegain_actors::agents::sentiment::SentimentSource::News,
            slot: slot(&news, "openai", "gpt-4o-search-preview"),
        },
    ];
    let c = rig.ctx.clone();
    let agent = start_supervised(&rig.registry, "sentiment_analysis", false, 64, move |sup| {
        SentimentAgent::new(sup, c, providers, AggregationConfig::default())
    });

    // Act: sentiment needs no market data.
    let out = agent.send(run("BTC/USDT")).await.unwrap().unwrap();

    // Assert: the social answer alone decides; both answers recorded.
    assert!(!out.llm_failed);
    assert_eq!(out.output["bias"], "bullish");
    assert_eq!(out.output["social_available"], true);
    assert_eq!(out.output["news_available"], false);
    let update = rig.ctx.caches.sentiment.get("BTC/USDT").expect("cached per symbol");
    assert_eq!(update.key_events, vec!["ETF inflows".to_string()]);
    let rows = rig.store.model_comparisons("sentiment_analysis").await.unwrap();
    let by_provider = |p: &str| rows.iter().find(|r| r.provider == p).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(by_provider("xai").action.as_deref(), Some("bullish"));
    assert!(by_provider("openai").error.is_some());
}

#[actix_web::test]
async fn an_agent_restarts_after_a_crash_and_keeps_serving() {
    // Arrange
    let rig = rig(Timeframe::H1);
    deliver(&rig, &two_symbols(60)).await;
    let (ta, _, _) = rule_agents(&rig);

    // Act: a panic inside a handler (fault injection).
    rig.registry.inject_fault("technical_analysis").await.unwrap();
    let after = ta.send(run("BTC/USDT")).await.unwrap();

    // Assert
    assert!(after.is_ok(), "{after:?}");
    let rec = rig.registry.get("technical_analysis").unwrap();
    assert_eq!(rec.restarts, 1);
}
