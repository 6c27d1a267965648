//! Prometheus metrics fed from the bus: execution events (orders, fills, realised P&L), risk
//! alerts and portfolio state. The `/metrics` route renders them with the actor registry gauges.

use actix::prelude::*;
use rust_decimal::prelude::ToPrimitive;
use triplegain_actors::bus::Bus;
use triplegain_actors::messages::{ExecutionEvent, ExecutionEventType, PortfolioUpdate, RiskAlert};
use triplegain_actors::supervised_basics;
use triplegain_actors::supervision::{guarded, start_supervised, Drain, Registry, SupervisedActor, SupervisionHandle};

/// Turns bus events into metrics.
pub struct MetricsRecorder {
    sup: SupervisionHandle,
}

impl MetricsRecorder {
    /// Starts the recorder and subscribes it to the topics it measures.
    pub fn start(registry: &Registry, bus: &Bus) -> Addr<Self> {
        let addr = start_supervised(registry, "metrics_recorder", false, 16_384, |sup| Self { sup });
        bus.execution_events
            .subscribe("metrics_recorder", addr.clone().recipient());
        bus.risk_alerts.subscribe("metrics_recorder", addr.clone().recipient());
        bus.portfolio_updates
            .subscribe("metrics_recorder", addr.clone().recipient());
        addr
    }
}

impl Actor for MetricsRecorder {
    type Context = Context<Self>;
    fn started(&mut self, _: &mut Context<Self>) {
        self.sup.on_started();
    }
}

impl actix::Supervised for MetricsRecorder {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.sup.on_restarting();
    }
}

impl SupervisedActor for MetricsRecorder {
    fn supervision(&self) -> &SupervisionHandle {
        &self.sup
    }
}

supervised_basics!(MetricsRecorder);

impl Handler<Drain> for MetricsRecorder {
    type Result = ();
    fn handle(&mut self, _: Drain, _: &mut Context<Self>) {}
}

fn f(d: rust_decimal::Decimal) -> f64 {
    d.to_f64().unwrap_or(0.0)
}

fn event_name(t: ExecutionEventType) -> &'static str {
    match t {
        ExecutionEventType::OrderPlaced => "order_placed",
        ExecutionEventType::OrderPartiallyFilled => "order_partially_filled",
        ExecutionEventType::OrderFilled => "order_filled",
        ExecutionEventType::OrderCancelled => "order_cancelled",
        ExecutionEventType::OrderRejected => "order_rejected",
        ExecutionEventType::OrderError => "order_error",
        ExecutionEventType::PositionOpened => "position_opened",
        ExecutionEventType::PositionClosed => "position_closed",
    }
}

impl Handler<ExecutionEvent> for MetricsRecorder {
    type Result = ();
    fn handle(&mut self, e: ExecutionEvent, ctx: &mut Context<Self>) {
        let _ = guarded(self, ctx, |_, _| {
            let symbol = e.symbol.to_string();
            metrics::counter!("triplegain_execution_events_total", "event_type" => event_name(e.event_type), "symbol" => symbol.clone())
                .increment(1);
            if matches!(
                e.event_type,
                ExecutionEventType::OrderFilled | ExecutionEventType::OrderPartiallyFilled
            ) {
                metrics::counter!("triplegain_fills_total", "symbol" => symbol.clone()).increment(1);
                metrics::gauge!("triplegain_last_fill_fee", "symbol" => symbol.clone()).set(f(e.fee));
            }
            if let Some(pnl) = e.realized_pnl {
                metrics::gauge!("triplegain_realized_pnl_last", "symbol" => symbol).set(f(pnl));
            }
        });
    }
}

impl Handler<RiskAlert> for MetricsRecorder {
    type Result = ();
    fn handle(&mut self, a: RiskAlert, ctx: &mut Context<Self>) {
        let _ = guarded(self, ctx, |_, _| {
            let kind = serde_json::to_value(a.alert_type)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            metrics::counter!("triplegain_risk_alerts_total", "alert_type" => kind, "severity" => a.severity.as_str())
                .increment(1);
        });
    }
}

impl Handler<PortfolioUpdate> for MetricsRecorder {
    type Result = ();
    fn handle(&mut self, u: PortfolioUpdate, ctx: &mut Context<Self>) {
        let _ = guarded(self, ctx, |_, _| {
            if u.meta.source == "portfolio_rebalancer" {
                return;
            }
            metrics::gauge!("triplegain_equity_usd").set(f(u.equity_usd));
            metrics::gauge!("triplegain_drawdown_pct").set(f(u.drawdown_pct));
            metrics::gauge!("triplegain_open_exposure_usd").set(f(u.open_exposure_usd));
        });
    }
}
