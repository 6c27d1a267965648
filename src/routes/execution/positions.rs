//! Position routes: list and read positions, close one, move its stop-loss and take-profit.

use super::{
    audited, check_price_field, execution_error, market_quote, parse_id, parse_symbol, store_error, traded_pair,
};
use crate::routes::auth::{Operator, Viewer};
use crate::routes::error::{strict_decimal, ApiError, JsonBody, OptionalJsonBody};
use crate::routes::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use triplegain_actors::domain::PositionStatus;
use triplegain_actors::execution::api::{ClosePosition, ExecutionError, GetPositions, ModifyPosition};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PositionQuery {
    /// e.g. `BTC/USDT`.
    #[param(pattern = "^[A-Za-z0-9]{2,10}/[A-Za-z0-9]{2,10}$", example = "BTC/USDT")]
    pub symbol: Option<String>,
    /// `open` (default), `closing`, `closed`, `liquidated` or `all`.
    #[param(pattern = "^(open|closing|closed|liquidated|all)$")]
    pub status: Option<String>,
}

/// List positions.
#[utoipa::path(get, path = "/api/v1/positions", params(PositionQuery), security(("bearer" = [])),
    responses((status = 200, description = "positions, newest first", body = crate::routes::views::PositionList), (status = 400, description = "bad filter")))]
pub async fn list_positions(
    _auth: Viewer,
    state: web::Data<AppState>,
    q: web::Query<PositionQuery>,
) -> Result<HttpResponse, ApiError> {
    let symbol = q.symbol.as_deref().map(|s| parse_symbol("symbol", s)).transpose()?;
    let status = match q.status.as_deref().unwrap_or("open") {
        "all" => None,
        "closed" => Some(PositionStatus::Closed),
        other => Some(PositionStatus::parse(other).map_err(|e| ApiError::bad_request(e).with_field("status"))?),
    };
    let positions = state
        .execution
        .send(GetPositions { symbol, status })
        .timeout(super::READ_WAIT)
        .await
        .map_err(|e| ApiError::from_mailbox("execution manager", &e))?
        .map_err(execution_error)?;
    Ok(HttpResponse::Ok().json(crate::routes::views::PositionList { positions }))
}

/// One position.
#[utoipa::path(get, path = "/api/v1/positions/{id}", security(("bearer" = [])), params(("id" = Uuid, Path, description = "position id")),
    responses((status = 200, description = "the position", body = triplegain_actors::execution::api::PositionView), (status = 404, description = "unknown")))]
pub async fn get_position(
    _auth: Viewer,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let pos = state.stores.orders.get_position(id).await.map_err(store_error)?;
    let pos = pos.ok_or_else(|| ApiError::not_found(format!("position {id} not found")))?;
    Ok(HttpResponse::Ok().json(pos))
}

#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseBody {
    /// Fraction of the position to close, a decimal string with 0 < f ≤ 1 (default `"1"`: all).
    #[serde(default, deserialize_with = "strict_decimal::option")]
    #[schema(value_type = Option<strict_decimal::DecimalInput>, example = "0.5")]
    pub fraction: Option<Decimal>,
    /// Free text kept in the decision trail (default `manual (<token name>)`).
    #[schema(max_length = 500, example = "taking profit")]
    pub reason: Option<String>,
}

/// Close (part of) a position with a bounded market order; its stop and take-profit are cancelled.
#[utoipa::path(post, path = "/api/v1/positions/{id}/close", security(("bearer" = [])), params(("id" = Uuid, Path, description = "position id")), request_body(content = Option<CloseBody>),
    responses((status = 200, description = "close order placed", body = triplegain_actors::execution::api::ExecutionResult), (status = 404, description = "unknown"),
        (status = 409, description = "not open"), (status = 422, description = "fraction out of range")))]
pub async fn close_position(
    auth: Operator,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: OptionalJsonBody<CloseBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0.unwrap_or_default();
    let raw = serde_json::to_vec(&body).unwrap_or_default();
    let res = async {
        let id = parse_id(&path)?;
        if body.reason.as_ref().is_some_and(|r| r.chars().count() > 500) {
            return Err(ApiError::validation("reason", "reason is longer than 500 characters"));
        }
        let fraction = body.fraction.unwrap_or(Decimal::ONE);
        if fraction <= Decimal::ZERO || fraction > Decimal::ONE {
            return Err(ApiError::validation(
                "fraction",
                "fraction must be greater than 0 and at most 1",
            ));
        }
        let pos = state.stores.orders.get_position(id).await.map_err(store_error)?;
        let pos = pos.ok_or_else(|| ApiError::not_found(format!("position {id} not found")))?;
        if pos.status != PositionStatus::Open {
            return Err(ApiError::conflict(format!("position {id} is {}", pos.status)));
        }
        let result = state
            .execution
            .send(ClosePosition {
                position_id: id,
                fraction,
                reason: body
                    .reason
                    .clone()
                    .unwrap_or_else(|| format!("manual ({})", auth.caller.name)),
                correlation_id: pos.correlation_id,
            })
            .timeout(super::ORDER_WAIT)
            .await
            .map_err(|e| ApiError::from_order_request("execution manager", &e))?
            .map_err(execution_error)?;
        Ok(HttpResponse::Ok().json(result))
    }
    .await;
    let route = format!("/api/v1/positions/{}/close", path.as_str());
    audited(&state, &auth.caller, "POST", &route, Some(&raw), res).await
}

#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModifyBody {
    /// New stop-loss: on the losing side of the market price, `risk.min_stop_distance_pct`..=
    /// `risk.max_stop_distance_pct` away from it, a multiple of the pair's tick.
    #[serde(default, deserialize_with = "strict_decimal::option")]
    #[schema(value_type = Option<strict_decimal::DecimalInput>, example = "49000")]
    pub stop_loss: Option<Decimal>,
    /// New take-profit: on the winning side of the market price, at least `risk.min_reward_risk`
    /// times the stop's distance away, a multiple of the pair's tick.
    #[serde(default, deserialize_with = "strict_decimal::option")]
    #[schema(value_type = Option<strict_decimal::DecimalInput>, example = "52000")]
    pub take_profit: Option<Decimal>,
}

/// A stop / take-profit change judged like a new proposal against the current market: tick and
/// decimals, side, stop distance, reward:risk. Returns 422 naming the field.
async fn check_protection_change(
    state: &AppState,
    pos: &triplegain_actors::execution::api::PositionView,
    body: &ModifyBody,
) -> Result<(), ApiError> {
    use triplegain_actors::domain::PositionSide;
    let pair = traded_pair(state, &pos.symbol).await?;
    check_price_field("stop_loss", body.stop_loss, &pair)?;
    check_price_field("take_profit", body.take_profit, &pair)?;
    let first_field = if body.stop_loss.is_some() {
        "stop_loss"
    } else {
        "take_profit"
    };
    let market = market_quote(state, &pos.symbol)
        .await?
        .map(|q| q.price)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "market_price_unavailable",
                format!(
                    "no fresh market price for {}; the change is refused, not guessed",
                    pos.symbol
                ),
            )
            .with_field(first_field)
        })?;
    let limits = state
        .risk
        .send(triplegain_actors::risk::GetRiskState)
        .timeout(super::RISK_WAIT)
        .await
        .map_err(|e| ApiError::from_mailbox("risk engine", &e))?
        .map_err(|e| ApiError::from_actor("risk engine", &e))?
        .limits;
    let long = pos.side == PositionSide::Long;
    if let Some(sl) = body.stop_loss {
        if !pos.side.stop_protects(market, sl) {
            return Err(ApiError::validation(
                "stop_loss",
                format!(
                    "stop_loss {sl} must be {} the market price {market} for a {} position",
                    if long { "below" } else { "above" },
                    pos.side
                ),
            ));
        }
        let distance = (market - sl).abs() / market * Decimal::ONE_HUNDRED;
        if distance < limits.min_stop_distance_pct || distance > limits.max_stop_distance_pct {
            return Err(ApiError::validation(
                "stop_loss",
                format!(
                    "stop_loss {sl} is {}% from the market price {market}; it must be {}%..={}% away",
                    distance.round_dp(2).normalize(),
                    limits.min_stop_distance_pct.normalize(),
                    limits.max_stop_distance_pct.normalize()
                ),
            ));
        }
    }
    if let Some(tp) = body.take_profit {
        if !pos.side.take_profit_wins(market, tp) {
            return Err(ApiError::validation(
                "take_profit",
                format!(
                    "take_profit {tp} must be {} the market price {market} for a {} position",
                    if long { "above" } else { "below" },
                    pos.side
                ),
            ));
        }
        if let Some(sl) = body.stop_loss.or(pos.stop_loss) {
            let risk = (market - sl).abs();
            let reward = (tp - market).abs();
            if risk > Decimal::ZERO && reward / risk < limits.min_reward_risk {
                return Err(ApiError::validation(
                    "take_profit",
                    format!(
                        "take_profit {tp} gives reward:risk {} against the stop {sl} at the market price {market}; at least {} is required",
                        (reward / risk).round_dp(2).normalize(),
                        limits.min_reward_risk.normalize()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Move a position's stop-loss and/or take-profit; the exchange orders are replaced (new before old),
/// and the stored value changes only once the exchange confirmed the new order (a refused order
/// changes nothing; the old one keeps working).
#[utoipa::path(patch, path = "/api/v1/positions/{id}", security(("bearer" = [])), params(("id" = Uuid, Path, description = "position id")), request_body = ModifyBody,
    responses((status = 200, description = "modified", body = triplegain_actors::execution::api::PositionView), (status = 404, description = "unknown"),
        (status = 422, description = "a price out of range")))]
pub async fn modify_position(
    auth: Operator,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: JsonBody<ModifyBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let raw = serde_json::to_vec(&body).unwrap_or_default();
    let res = async {
        let id = parse_id(&path)?;
        if body.stop_loss.is_none() && body.take_profit.is_none() {
            return Err(ApiError::validation("stop_loss", "give stop_loss and/or take_profit"));
        }
        for (field, v) in [("stop_loss", body.stop_loss), ("take_profit", body.take_profit)] {
            if v.is_some_and(|v| v <= Decimal::ZERO) {
                return Err(ApiError::validation(field, format!("{field} must be positive")));
            }
        }
        let pos = state.stores.orders.get_position(id).await.map_err(store_error)?;
        let pos = pos.ok_or_else(|| ApiError::not_found(format!("position {id} not found")))?;
        if pos.status != PositionStatus::Open {
            return Err(ApiError::conflict(format!("position {id} is {}", pos.status)));
        }
        check_protection_change(&state, &pos, &body).await?;
        let view = state
            .execution
            .send(ModifyPosition {
                position_id: id,
                stop_loss: body.stop_loss,
                take_profit: body.take_profit,
            })
            // The new protective order is placed and confirmed before the answer.
            .timeout(super::ORDER_WAIT)
            .await
            .map_err(|e| ApiError::from_order_request("execution manager", &e))?
            .map_err(|e| match e {
                ExecutionError::Invalid(m) if m.starts_with("stop_loss") => ApiError::validation("stop_loss", m),
                other => execution_error(other),
            })?;
        Ok(HttpResponse::Ok().json(view))
    }
    .await;
    let route = format!("/api/v1/positions/{}", path.as_str());
    audited(&state, &auth.caller, "PATCH", &route, Some(&raw), res).await
}

// ------------------------------------------------------------------ orders
