//! What the HTTP handlers share: the actors' addresses, the stores and the settings they read.
//! Defined beside the routes that use it; `startup` builds it.

use super::auth::Caller;
use actix::Addr;
use deadpool_postgres::Pool;
use metrics_exporter_prometheus::PrometheusHandle;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use triplegain_actors::bus::Bus;
use triplegain_actors::clock::{ManualClock, SharedClock};
use triplegain_actors::coordinator::Coordinator;
use triplegain_actors::domain::TradingMode;
use triplegain_actors::execution::paper::PaperExchange;
use triplegain_actors::ports::{Exchange, Stores};
use triplegain_actors::risk::RiskEngine;
use triplegain_actors::supervision::Registry;

/// Shared state of the HTTP handlers.
pub struct AppState {
    pub registry: Registry,
    pub coordinator: Addr<Coordinator>,
    pub stores: Stores,
    pub pool: Option<Pool>,
    pub bus: Bus,
    pub clock: SharedClock,
    pub fault_injection: bool,
    pub mode: TradingMode,
    pub core_actors: Vec<String>,
    pub metrics: PrometheusHandle,
    pub risk: Addr<RiskEngine>,
    pub exchange: Arc<dyn Exchange>,
    /// The paper exchange in paper mode.
    pub paper: Option<PaperExchange>,
    // -- execution area (fields) --
    pub execution: Addr<triplegain_actors::execution::manager::OrderExecutionManager>,
    /// Live mode: the REST exchange, the WebSocket session, the dead man's switch and the API key
    /// lock (released by the safe shutdown in `Application::run_until_stopped`).
    pub live: Option<crate::live::LiveKraken>,
    // -- analysis area (fields) --
    /// The market data actor (latest views per symbol).
    pub market: Addr<triplegain_actors::market::MarketData>,
    /// The enabled analysis agents; the coordinator's schedules send them `RunAnalysis`.
    pub agents: std::collections::BTreeMap<
        triplegain_actors::agents::api::AgentName,
        actix::Recipient<triplegain_actors::agents::api::RunAnalysis>,
    >,
    /// Latest TA, regime and sentiment outputs per symbol.
    pub analysis_caches: triplegain_actors::agents::actors::AnalysisCaches,
    /// The configured market symbols.
    pub analysis_symbols: Vec<triplegain_actors::domain::Symbol>,
    // -- coordinator area (fields) --

    // -- portfolio area (fields) --
    pub portfolio: Addr<triplegain_actors::portfolio::PortfolioRebalancer>,
    pub portfolio_config: triplegain_actors::portfolio::PortfolioConfig,
    // -- operators area (fields) --
    /// The business clock moved by the market feed (every source but Kraken).
    pub business_clock: Option<ManualClock>,
    /// The event stream's keep-alive comment period.
    pub sse_keep_alive: Duration,
    /// The API audit log (PostgreSQL, or the latest records in memory).
    pub api_audit: Arc<dyn crate::db::api_audit::ApiAuditStore>,
    /// Idempotency keys of `POST /api/v1/trades` (PostgreSQL, or this server's memory).
    pub idempotency: Arc<dyn crate::db::idempotency::IdempotencyStore>,
}

impl AppState {
    /// Records a control action in the API audit log (and the log). Never fails the request.
    pub async fn audit(
        &self,
        caller: &Caller,
        method: &str,
        route: &str,
        body: Option<&[u8]>,
        status: u16,
        result: &str,
    ) {
        let digest = body.map(|b| hex(&Sha256::digest(b)));
        let role = super::auth::role_str(caller.role);
        tracing::info!(event = "audit", token = %caller.name, role, method, route, status, result, "control action");
        // The request id of the middleware that wraps every request (api-money).
        let request_id = super::limits::mark_audited();
        let rec = crate::db::api_audit::ApiAuditRecord {
            token_name: caller.name.clone(),
            role: role.to_owned(),
            method: method.to_owned(),
            route: route.to_owned(),
            body_sha256: digest,
            status,
            result: result.to_owned(),
            request_id,
        };
        if let Err(e) = self.api_audit.record(rec).await {
            tracing::error!(error = %e, "audit record not written");
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
