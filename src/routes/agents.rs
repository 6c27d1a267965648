//! The analysis agents' latest outputs.

use super::auth::Viewer;
use super::error::ApiError;
use super::state::AppState;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use std::time::Duration;
use triplegain_actors::agents::api::AgentName;
use triplegain_actors::domain::Symbol;

const STORE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct LatestQuery {
    /// The symbol, e.g. `BTC/USDT` (required).
    #[param(
        required = true,
        pattern = "^[A-Za-z0-9]{2,10}/[A-Za-z0-9]{2,10}$",
        example = "BTC/USDT"
    )]
    pub symbol: Option<String>,
}

/// The newest stored output of one agent for one symbol.
#[utoipa::path(get, path = "/api/v1/agents/{name}/latest", security(("bearer" = [])),
    params(
        ("name" = String, Path, pattern = "^(technical_analysis|regime_detection|sentiment_analysis|trading_decision|ta|regime|sentiment|trading)$", description = "technical_analysis | regime_detection | sentiment_analysis | trading_decision (or ta, regime, sentiment, trading)"),
        LatestQuery
    ),
    responses(
        (status = 200, description = "the newest output with its timestamp, correlation id and model", body = triplegain_actors::ports::AgentOutputRecord),
        (status = 400, description = "unknown agent or symbol (names the field)"),
        (status = 404, description = "no output yet"),
        (status = 503, description = "store not available")
    ))]
pub async fn latest_output(
    _auth: Viewer,
    state: web::Data<AppState>,
    name: web::Path<String>,
    query: web::Query<LatestQuery>,
) -> Result<HttpResponse, ApiError> {
    let agent = AgentName::parse(&name).map_err(|e| ApiError::bad_request(e).with_field("name"))?;
    let raw = query.symbol.as_deref().ok_or_else(|| {
        ApiError::bad_request("the symbol query parameter is required, e.g. ?symbol=BTC/USDT").with_field("symbol")
    })?;
    let symbol = Symbol::parse(raw).map_err(|e| ApiError::bad_request(e.to_string()).with_field("symbol"))?;
    if !state.analysis_symbols.contains(&symbol) {
        let known: Vec<&str> = state.analysis_symbols.iter().map(Symbol::as_str).collect();
        return Err(
            ApiError::bad_request(format!("unknown symbol {symbol}; configured: {}", known.join(", ")))
                .with_field("symbol"),
        );
    }
    let rec = tokio::time::timeout(
        STORE_TIMEOUT,
        state.stores.audit.latest_agent_output(agent.as_str(), symbol.as_str()),
    )
    .await
    .map_err(|_| ApiError::unavailable("agent output store"))?
    .map_err(|e| {
        tracing::error!(error = %e, "agent output query failed");
        ApiError::unavailable("agent output store")
    })?;
    match rec {
        Some(rec) => Ok(HttpResponse::Ok().json(rec)),
        None => Err(ApiError::not_found(format!("no {agent} output for {symbol} yet"))),
    }
}
