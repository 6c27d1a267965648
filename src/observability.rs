//! Prometheus metrics.
//!
//! - [`MetricsRecorder`] turns bus events into metrics: orders by status, fills, realised P&L,
//!   risk alerts, equity, drawdown and exposure.
//! - [`refresh`] samples, at each scrape, what is cheaper to read than to count: the actor
//!   registry (starts, restarts, mailbox drops), messages published per bus topic, open positions
//!   and unrealised P&L.
//! - [`http_metrics`] is the middleware counting HTTP requests by route pattern and status, with
//!   a latency histogram.
//! - [`record_model_call`] counts model calls, errors, latency and cost per provider (called by
//!   the model clients in `crate::llm`).
//! - The risk engine counts its verdicts by status and code itself.

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
            if !matches!(
                e.event_type,
                ExecutionEventType::PositionOpened | ExecutionEventType::PositionClosed
            ) {
                let status = serde_json::to_value(e.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_else(|| "unknown".into());
                metrics::counter!("triplegain_orders_total", "status" => status, "symbol" => symbol.clone())
                    .increment(1);
            }
            if matches!(
                e.event_type,
                ExecutionEventType::OrderFilled | ExecutionEventType::OrderPartiallyFilled
            ) {
                metrics::counter!("triplegain_fills_total", "symbol" => symbol.clone()).increment(1);
                metrics::gauge!("triplegain_last_fill_fee", "symbol" => symbol.clone()).set(f(e.fee));
            }
            if let Some(pnl) = e.realized_pnl {
                metrics::gauge!("triplegain_realized_pnl_last", "symbol" => symbol.clone()).set(f(pnl));
                // Cumulative since start (a gauge: P&L moves both ways).
                metrics::gauge!("triplegain_realized_pnl_usd", "symbol" => symbol).increment(f(pnl));
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
            metrics::gauge!("triplegain_equity_usd").set(f(u.equity_usd));
            metrics::gauge!("triplegain_drawdown_pct").set(f(u.drawdown_pct));
            metrics::gauge!("triplegain_open_exposure_usd").set(f(u.open_exposure_usd));
            metrics::gauge!("triplegain_peak_equity_usd").set(f(u.peak_equity_usd));
        });
    }
}

/// Samples the scrape-time metrics (see the module documentation).
pub async fn refresh(state: &crate::routes::state::AppState) {
    for r in state.registry.snapshot() {
        let labels = [("actor", r.name.clone())];
        metrics::counter!("triplegain_actor_starts_total", &labels).absolute(u64::from(r.starts));
        metrics::counter!("triplegain_actor_restarts_total", &labels).absolute(u64::from(r.restarts));
        metrics::counter!("triplegain_actor_mailbox_drops_total", &labels).absolute(r.mailbox_drops);
        metrics::gauge!("triplegain_actor_up", &labels).set(if r.connected { 1.0 } else { 0.0 });
    }
    for (topic, published) in state.bus.published_by_topic() {
        metrics::counter!("triplegain_bus_messages_total", "topic" => topic).absolute(published);
    }
    let open = state
        .execution
        .send(triplegain_actors::execution::api::GetPositions {
            symbol: None,
            status: Some(triplegain_actors::domain::PositionStatus::Open),
        })
        .timeout(std::time::Duration::from_secs(2))
        .await;
    match open {
        Ok(Ok(positions)) => {
            let mut by_symbol: std::collections::BTreeMap<String, (u32, rust_decimal::Decimal)> = state
                .analysis_symbols
                .iter()
                .map(|s| (s.to_string(), (0, rust_decimal::Decimal::ZERO)))
                .collect();
            for p in &positions {
                let entry = by_symbol.entry(p.symbol.to_string()).or_default();
                entry.0 += 1;
                entry.1 += p.unrealized_pnl.unwrap_or_default();
            }
            for (symbol, (count, pnl)) in by_symbol {
                metrics::gauge!("triplegain_open_positions", "symbol" => symbol.clone()).set(f64::from(count));
                metrics::gauge!("triplegain_unrealized_pnl_usd", "symbol" => symbol).set(f(pnl));
            }
        }
        Ok(Err(e)) => tracing::debug!(error = %e, "open positions not sampled"),
        Err(e) => tracing::debug!(error = %e, "open positions not sampled"),
    }
}

/// Upper bounds (seconds) of the latency histograms: HTTP requests are expected in the
/// sub-millisecond to millisecond range, model calls in seconds.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// HTTP middleware (`actix_web::middleware::from_fn`): `triplegain_http_requests_total{method,
/// route, status}` and `triplegain_http_request_duration_seconds{method, route}`, labelled with the
/// matched route pattern (`/api/v1/positions/{id}`), never the raw path; unmatched paths are
/// `route="unmatched"`.
///
/// # Errors
/// Whatever the wrapped service returns.
pub async fn http_metrics(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let method = req.method().as_str().to_owned();
    let res = next.call(req).await?;
    let route = res.request().match_pattern().unwrap_or_else(|| "unmatched".to_owned());
    let status = res.status().as_u16().to_string();
    metrics::counter!("triplegain_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("triplegain_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    Ok(res)
}

/// Counts one model call: `triplegain_llm_calls_total{provider, model, outcome}`,
/// `triplegain_llm_errors_total{provider, kind}`, `triplegain_llm_latency_seconds{provider}`,
/// tokens, and `triplegain_llm_cost_usd{provider}` (cumulative).
pub fn record_model_call(
    provider: &str,
    model: &str,
    elapsed: std::time::Duration,
    result: &Result<triplegain_actors::ports::ModelResponse, triplegain_actors::ports::ModelError>,
) {
    use triplegain_actors::ports::ModelError;
    let provider = provider.to_owned();
    metrics::histogram!("triplegain_llm_latency_seconds", "provider" => provider.clone()).record(elapsed.as_secs_f64());
    match result {
        Ok(r) => {
            metrics::counter!("triplegain_llm_calls_total", "provider" => provider.clone(), "model" => model.to_owned(), "outcome" => "ok")
                .increment(1);
            metrics::counter!("triplegain_llm_tokens_total", "provider" => provider.clone(), "direction" => "input")
                .increment(u64::from(r.input_tokens));
            metrics::counter!("triplegain_llm_tokens_total", "provider" => provider.clone(), "direction" => "output")
                .increment(u64::from(r.output_tokens));
            metrics::gauge!("triplegain_llm_cost_usd", "provider" => provider).increment(f(r.cost_usd));
        }
        Err(e) => {
            let kind = match e {
                ModelError::Timeout(_) => "timeout",
                ModelError::Provider(_) => "provider",
                ModelError::RateLimited(_) => "rate_limited",
                ModelError::BadOutput(_) => "bad_output",
                ModelError::NotConfigured(_) => "not_configured",
            };
            metrics::counter!("triplegain_llm_calls_total", "provider" => provider.clone(), "model" => model.to_owned(), "outcome" => "error")
                .increment(1);
            metrics::counter!("triplegain_llm_errors_total", "provider" => provider, "kind" => kind).increment(1);
        }
    }
}
