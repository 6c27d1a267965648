//! The bus listener of a backtest run: risk alert and decision counts and the regime timeline.

use actix::{Actor, Context, Handler};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use triplegain_actors::messages::{RegimeUpdate, RiskAlert, TradingSignal};

/// Collects the risk alert and decision counts and the regime timeline from the bus.
#[derive(Default)]
pub(super) struct Collected {
    pub(super) alerts: BTreeMap<String, u64>,
    /// The first message of each alert type.
    pub(super) alert_examples: BTreeMap<String, String>,
    /// Trading decisions by action.
    pub(super) decisions: BTreeMap<String, u64>,
    /// Per symbol: business time of each regime change and the new regime.
    regimes: BTreeMap<String, BTreeMap<DateTime<Utc>, String>>,
}

impl Collected {
    /// The regime of `symbol` in force at `at` (the last update at or before it).
    pub(super) fn regime_at(&self, symbol: &str, at: DateTime<Utc>) -> Option<String> {
        self.regimes
            .get(symbol)?
            .range(..=at)
            .next_back()
            .map(|(_, r)| r.clone())
    }
}

pub(super) struct Collector(pub(super) Arc<Mutex<Collected>>);

impl Actor for Collector {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1 << 16);
    }
}

impl Handler<RegimeUpdate> for Collector {
    type Result = ();

    fn handle(&mut self, u: RegimeUpdate, _: &mut Self::Context) {
        let regime = serde_json::to_value(u.regime)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("{:?}", u.regime));
        if let Ok(mut c) = self.0.lock() {
            // Only changes: the regime in force at a time is the last change before it.
            let timeline = c.regimes.entry(u.symbol.as_str().to_owned()).or_default();
            if timeline.range(..=u.meta.timestamp).next_back().map(|(_, r)| r) != Some(&regime) {
                timeline.insert(u.meta.timestamp, regime);
            }
        }
    }
}

impl Handler<RiskAlert> for Collector {
    type Result = ();

    fn handle(&mut self, a: RiskAlert, _: &mut Self::Context) {
        let code = serde_json::to_value(a.alert_type)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("{:?}", a.alert_type));
        if let Ok(mut c) = self.0.lock() {
            c.alert_examples.entry(code.clone()).or_insert(a.message);
            *c.alerts.entry(code).or_insert(0) += 1;
        }
    }
}

impl Handler<TradingSignal> for Collector {
    type Result = ();

    fn handle(&mut self, s: TradingSignal, _: &mut Self::Context) {
        let action = serde_json::to_value(s.action)
            .ok()
            .and_then(|v| v.as_str().map(str::to_ascii_lowercase))
            .unwrap_or_else(|| s.action.to_string().to_ascii_lowercase());
        if let Ok(mut c) = self.0.lock() {
            *c.decisions.entry(action).or_insert(0) += 1;
        }
    }
}

/// A no-op round trip: answered after everything queued before it.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub(super) struct Flush;

impl Handler<Flush> for Collector {
    type Result = ();

    fn handle(&mut self, _: Flush, _: &mut Self::Context) {}
}
