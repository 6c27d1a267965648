//! Portfolio allocation and rebalancing, hodl bags.

use super::auth::{Operator, Viewer};
use super::error::{ApiError, OptionalJsonBody};
use super::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use triplegain_actors::portfolio::{CheckPortfolio, GetAllocation, GetHodl, GetHodlHistory, PortfolioError};

/// Reads answer fast; a rebalance check also reads balances from the exchange.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);
const ROUTE_REBALANCE: &str = "/api/v1/portfolio/rebalance";

fn portfolio_error(err: &PortfolioError) -> ApiError {
    match err {
        PortfolioError::Busy => ApiError::conflict(err.to_string()),
        PortfolioError::NoPrice(_) | PortfolioError::Unavailable(_) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", err.to_string())
        }
        PortfolioError::Actor(e) => ApiError::from_actor("portfolio_rebalancer", e),
    }
}

/// Current allocation of the available (non-hodl) holdings against the configured targets.
#[utoipa::path(get, path = "/api/v1/portfolio/allocation", security(("bearer" = [])), responses((status = 200, description = "allocation, targets and threshold", body = super::views::AllocationReport), (status = 503, description = "no price or exchange unavailable")))]
pub async fn allocation(_auth: Viewer, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let alloc = state
        .portfolio
        .send(GetAllocation)
        .timeout(READ_TIMEOUT)
        .await
        .map_err(|e| ApiError::from_mailbox("portfolio_rebalancer", &e))?
        .map_err(|e| portfolio_error(&e))?;
    let cfg = &state.portfolio_config;
    Ok(HttpResponse::Ok().json(super::views::AllocationReport {
        timestamp: state.clock.now(),
        needs_rebalance: alloc.max_deviation_pct >= cfg.rebalancing.threshold_pct,
        current_allocation: alloc,
        target_allocation: cfg.target_allocation.clone(),
        threshold_pct: cfg.rebalancing.threshold_pct,
    }))
}

/// Body of `POST /portfolio/rebalance`.
#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RebalanceBody {
    /// Rebalance even below the deviation threshold.
    #[serde(default)]
    pub force: bool,
}

/// Check the allocation now and rebalance when needed (or forced); returns the plan.
#[utoipa::path(post, path = "/api/v1/portfolio/rebalance", security(("bearer" = [])), request_body(content = Option<RebalanceBody>), responses((status = 200, description = "the rebalance plan (seed schema)", body = triplegain_actors::portfolio::RebalancePlan), (status = 400, description = "malformed body, names the field"), (status = 409, description = "a check is already running"), (status = 503, description = "no price or exchange unavailable")))]
pub async fn rebalance(
    auth: Operator,
    state: web::Data<AppState>,
    body: OptionalJsonBody<RebalanceBody>,
) -> Result<HttpResponse, ApiError> {
    let force = body.0.map(|b| b.force).unwrap_or(false);
    let digest_body = serde_json::to_vec(&serde_json::json!({ "force": force })).unwrap_or_default();
    let res = state
        .portfolio
        .send(CheckPortfolio { force })
        .timeout(CHECK_TIMEOUT)
        .await
        .map_err(|e| ApiError::from_mailbox("portfolio_rebalancer", &e))?;
    match res {
        Ok(plan) => {
            let result = format!("{:?} plan {}", plan.action, plan.id);
            state
                .audit(&auth.caller, "POST", ROUTE_REBALANCE, Some(&digest_body), 200, &result)
                .await;
            Ok(HttpResponse::Ok().json(plan))
        }
        Err(e) => {
            let err = portfolio_error(&e);
            state
                .audit(
                    &auth.caller,
                    "POST",
                    ROUTE_REBALANCE,
                    Some(&digest_body),
                    err.status.as_u16(),
                    &e.to_string(),
                )
                .await;
            Err(err)
        }
    }
}

/// Hodl bags with balances, pending amounts, thresholds and unrealised P&L.
#[utoipa::path(get, path = "/api/v1/hodl", security(("bearer" = [])), responses((status = 200, description = "hodl bags", body = triplegain_actors::portfolio::HodlView)))]
pub async fn hodl_bags(_auth: Viewer, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let view = state
        .portfolio
        .send(GetHodl)
        .timeout(READ_TIMEOUT)
        .await
        .map_err(|e| ApiError::from_mailbox("portfolio_rebalancer", &e))?
        .map_err(|e| portfolio_error(&e))?;
    Ok(HttpResponse::Ok().json(view))
}

/// Query of `GET /hodl/history`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HodlHistoryQuery {
    /// `BTC`, `XRP` or `USDT` (any case).
    #[param(pattern = "^(BTC|XRP|USDT|btc|xrp|usdt)$")]
    pub asset: Option<String>,
    /// 1..=500, default 50.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// Hodl allocations and purchases, newest first.
#[utoipa::path(get, path = "/api/v1/hodl/history", security(("bearer" = [])), params(HodlHistoryQuery), responses((status = 200, description = "transactions", body = super::views::HodlHistory), (status = 422, description = "asset or limit out of range")))]
pub async fn hodl_history(
    _auth: Viewer,
    state: web::Data<AppState>,
    query: web::Query<HodlHistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let asset = match q.asset {
        Some(a) => {
            let a = a.to_ascii_uppercase();
            if !matches!(a.as_str(), "BTC" | "XRP" | "USDT") {
                return Err(ApiError::validation("asset", "must be BTC, XRP or USDT"));
            }
            Some(a)
        }
        None => None,
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::validation("limit", "must be within 1..500"));
    }
    let txs = state
        .portfolio
        .send(GetHodlHistory {
            asset: asset.clone(),
            limit,
        })
        .timeout(READ_TIMEOUT)
        .await
        .map_err(|e| ApiError::from_mailbox("portfolio_rebalancer", &e))?
        .map_err(|e| portfolio_error(&e))?;
    Ok(HttpResponse::Ok().json(super::views::HodlHistory {
        count: txs.len(),
        transactions: txs,
        asset_filter: asset,
        timestamp: state.clock.now(),
    }))
}
