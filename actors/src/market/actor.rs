//! The `MarketData` actor: takes batches of closed base candles from the feed loop, aggregates
//! them into the higher timeframes, keeps one incremental indicator engine per symbol and
//! timeframe, publishes `CandleClosed` for every closed candle, a `MarketSnapshot` per symbol
//! and a `BusinessTick`, and answers the agents' [`GetSnapshot`] requests.
//!
//! The feed itself lives outside this crate (it does I/O): a loop calls `MarketFeed::next`,
//! moves the business clock to the candles' close time and `send().await`s a [`CandleBatch`]
//! here, so a slow consumer slows the feed instead of losing candles.

use super::history::{MarketHeadline, MarketHistory};
use crate::agents::technical_analysis::timeframe_trend;
use crate::bus::Bus;
use crate::clock::SharedClock;
use crate::domain::{Candle, Symbol, Timeframe, TrendDirection};
use crate::indicators::{IndicatorEngine, IndicatorSnapshot};
use crate::messages::{BusinessTick, CandleClosed, EventMeta, MarketSnapshot};
use crate::supervised_basics;
use crate::supervision::{guarded, ActorError, Drain, SupervisedActor, SupervisionHandle};
use actix::prelude::*;
use rust_decimal::prelude::FromPrimitive;
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::sync::Arc;

/// How the market data actor is set up.
#[derive(Clone)]
pub struct MarketDataConfig {
    /// Timeframe of the candles the feed delivers (1m for the simulated and Kraken feeds).
    pub base: Timeframe,
    /// Timeframe the snapshot's indicators are computed on (reference default 1h).
    pub primary: Timeframe,
    pub bus: Bus,
    pub clock: SharedClock,
}

/// Closed base candles from the feed, in time order. Replies with the number of candles closed
/// (base plus aggregated).
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<usize, ActorError>")]
pub struct CandleBatch(pub Vec<Candle>);

/// The latest market view of one symbol; `timeframe` `None` = the primary timeframe.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Option<SymbolView>, ActorError>")]
pub struct GetSnapshot {
    pub symbol: Symbol,
    pub timeframe: Option<Timeframe>,
}

/// What an agent needs about one symbol on one timeframe.
#[derive(Debug, Clone, PartialEq)]
pub struct SymbolView {
    pub symbol: Symbol,
    pub timeframe: Timeframe,
    /// The snapshot as published (indicators of the requested timeframe).
    pub snapshot: MarketSnapshot,
    /// The candle-derived fields the snapshot was built from (the candle lists are not copied:
    /// `recent_candles` has the requested timeframe's).
    pub summary: MarketHeadline,
    /// Indicators one candle earlier (MACD crosses).
    pub previous_indicators: Option<IndicatorSnapshot>,
    /// Kept candles of the timeframe, oldest first; shared with the actor's cache until the
    /// timeframe's next candle.
    pub recent_candles: Arc<[Candle]>,
    /// EMA 9 vs EMA 21 trend of every other timeframe with data.
    pub timeframe_trends: Vec<(Timeframe, TrendDirection)>,
    /// Candles applied to the timeframe's indicator engine.
    pub candles_applied: u64,
}

#[derive(Debug, Clone, Default)]
struct EngineState {
    engine: IndicatorEngine,
    previous: Option<IndicatorSnapshot>,
    current: IndicatorSnapshot,
}

pub struct MarketData {
    sup: SupervisionHandle,
    cfg: MarketDataConfig,
    history: MarketHistory,
    /// Per symbol, one engine slot per timeframe (index [`Timeframe::index`]): looked up by
    /// `&Symbol` once per base candle, without building a `(Symbol, Timeframe)` key.
    engines: HashMap<Symbol, [Option<EngineState>; 6]>,
    refused: u64,
}

impl MarketData {
    pub fn new(sup: SupervisionHandle, cfg: MarketDataConfig) -> Self {
        Self {
            sup,
            history: Self::history_for(cfg.base),
            cfg,
            engines: HashMap::new(),
            refused: 0,
        }
    }

    fn history_for(base: Timeframe) -> MarketHistory {
        // 25 hourly candles are needed for the 24 h fields.
        MarketHistory::from_base(base).with_lookback(Timeframe::H1, 48)
    }

    fn ingest(&mut self, candles: Vec<Candle>) -> usize {
        let mut closed_total = 0;
        let mut touched: Vec<Symbol> = Vec::new();
        for candle in &candles {
            let closed = match self.history.push(candle) {
                Ok(closed) => closed,
                Err(e) => {
                    self.refused += 1;
                    tracing::warn!(error = %e, refused = self.refused, "candle refused by market data");
                    continue;
                }
            };
            // Every closed candle is of the base candle's symbol.
            let engines = match self.engines.get_mut(&candle.symbol) {
                Some(e) => e,
                None => self.engines.entry(candle.symbol.clone()).or_default(),
            };
            for c in closed {
                let state = engines[c.timeframe.index()].get_or_insert_with(EngineState::default);
                match state.engine.try_update(&c) {
                    Ok(snap) => {
                        state.previous = Some(std::mem::replace(&mut state.current, snap));
                    }
                    Err(e) => {
                        tracing::warn!(symbol = %c.symbol, timeframe = %c.timeframe, error = %e, "indicator update skipped")
                    }
                }
                closed_total += 1;
                let meta = EventMeta::new("market_data", self.cfg.clock.now());
                self.cfg.bus.candles.publish(CandleClosed { meta, candle: c });
            }
            if !touched.contains(&candle.symbol) {
                touched.push(candle.symbol.clone());
            }
        }
        for symbol in touched {
            if let Some((snapshot, _)) = self.snapshot(&symbol, self.cfg.primary) {
                self.cfg.bus.market_data.publish(snapshot);
            }
        }
        let now = self.cfg.clock.now();
        self.cfg.bus.business_ticks.publish(BusinessTick {
            meta: EventMeta::new("market_data", now),
            now,
        });
        closed_total
    }

    /// The view of `symbol` on `tf`; `None` before its first candle.
    fn view(&mut self, symbol: &Symbol, tf: Timeframe) -> Option<SymbolView> {
        let (snapshot, summary) = self.snapshot(symbol, tf)?;
        let engines = self.engines.get(symbol);
        let state = engines.and_then(|e| e[tf.index()].as_ref());
        let timeframe_trends = Timeframe::ALL
            .into_iter()
            .filter(|t| *t != tf)
            .filter_map(|t| {
                let s = engines?[t.index()].as_ref()?;
                timeframe_trend(&s.current).map(|d| (t, d))
            })
            .collect();
        Some(SymbolView {
            symbol: symbol.clone(),
            timeframe: tf,
            snapshot,
            previous_indicators: state.and_then(|s| s.previous.clone()),
            recent_candles: self.history.recent(symbol, tf),
            timeframe_trends,
            candles_applied: state.map_or(0, |s| s.engine.candles_applied()),
            summary,
        })
    }

    /// The snapshot of `symbol` on `tf` (what is published after every batch) and the headline it
    /// was built from; `None` before its first candle.
    fn snapshot(&self, symbol: &Symbol, tf: Timeframe) -> Option<(MarketSnapshot, MarketHeadline)> {
        let now = self.cfg.clock.now();
        let summary = self.history.headline(symbol, tf, now)?;
        let state = self.engine(symbol, tf);
        let indicators = state.map(|s| s.current.clone()).unwrap_or_default();
        let mut flags = summary.missing_data_flags();
        if state.is_none_or(|s| s.current.rsi_14.is_none()) {
            flags.push("no_indicators".to_owned());
        }
        let snapshot = MarketSnapshot {
            meta: EventMeta::new("market_data", now),
            symbol: symbol.clone(),
            current_price: summary.current_price,
            price_24h_ago: summary.price_24h_ago,
            price_change_24h_pct: summary.price_change_24h_pct,
            volume_24h: summary.volume_24h,
            volume_vs_avg: summary.volume_vs_avg.or_else(|| {
                indicators
                    .volume_vs_avg
                    .and_then(Decimal::from_f64)
                    .map(|d| d.round_dp(4))
            }),
            indicators,
            indicators_at: state.and_then(|s| s.engine.last_open_time()),
            data_age_seconds: summary.data_age_seconds,
            missing_data_flags: flags,
        };
        Some((snapshot, summary))
    }

    fn engine(&self, symbol: &Symbol, tf: Timeframe) -> Option<&EngineState> {
        self.engines.get(symbol)?[tf.index()].as_ref()
    }
}

impl Actor for MarketData {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        self.sup.on_started();
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.sup.on_stopped();
    }
}

impl actix::Supervised for MarketData {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // Volatile state only: the feed keeps delivering and the indicators warm up again.
        self.history = Self::history_for(self.cfg.base);
        self.engines.clear();
        self.sup.on_restarting();
    }
}

impl SupervisedActor for MarketData {
    fn supervision(&self) -> &SupervisionHandle {
        &self.sup
    }
}

supervised_basics!(MarketData);

impl Handler<Drain> for MarketData {
    type Result = ();
    fn handle(&mut self, _: Drain, _: &mut Self::Context) {}
}

impl Handler<CandleBatch> for MarketData {
    type Result = Result<usize, ActorError>;

    fn handle(&mut self, msg: CandleBatch, ctx: &mut Self::Context) -> Self::Result {
        guarded(self, ctx, |act, _| act.ingest(msg.0))
    }
}

impl Handler<GetSnapshot> for MarketData {
    type Result = Result<Option<SymbolView>, ActorError>;

    fn handle(&mut self, msg: GetSnapshot, ctx: &mut Self::Context) -> Self::Result {
        guarded(self, ctx, |act, _| {
            act.view(&msg.symbol, msg.timeframe.unwrap_or(act.cfg.primary))
        })
    }
}
