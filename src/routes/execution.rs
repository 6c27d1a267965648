//! Positions, orders and trades: reads for viewers, controls (close, modify, cancel, manual trades)
//! for operators. Every control action is audited.

use super::auth::{Caller, Operator, Viewer};
use super::error::{strict_decimal, ApiError, JsonBody, OptionalJsonBody};
use super::idempotency;
use super::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use triplegain_actors::coordinator::{CoordinatorState, GetStatus};
use triplegain_actors::domain::{CorrelationId, OrderStatus, OrderType, PositionStatus, Regime, Side, Symbol};
use triplegain_actors::execution::api::{
    CancelOrder, ClosePosition, ExecuteTrade, ExecutionError, GetOrders, GetPositions, ModifyPosition,
};
use triplegain_actors::ports::PairInfo;
use triplegain_actors::risk::{
    ApproveTrade, GetMarketPrice, ProposalSource, Quote, RejectionCode, RiskVerdict, TradeProposal, ValidateTrade,
    VerdictStatus,
};
use uuid::Uuid;

fn execution_error(e: ExecutionError) -> ApiError {
    match e {
        ExecutionError::Invalid(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", m),
        ExecutionError::Rejected(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "order_rejected", m),
        ExecutionError::Unknown(m) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "outcome_unknown",
            format!("order outcome unknown, reconciling by client id: {m}"),
        ),
        ExecutionError::NotAllowed(m) => ApiError::conflict(m),
        ExecutionError::Unavailable(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m),
    }
}

fn parse_symbol(field: &str, s: &str) -> Result<Symbol, ApiError> {
    Symbol::parse(s).map_err(|e| ApiError::bad_request(format!("{field}: {e}")).with_field(field))
}

fn parse_id(s: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s).map_err(|_| ApiError::bad_request(format!("id: {s:?} is not a UUID")).with_field("id"))
}

fn store_error(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "order store unavailable");
    ApiError::unavailable("order store")
}

async fn audited(
    state: &AppState,
    caller: &Caller,
    method: &str,
    route: &str,
    body: Option<&[u8]>,
    res: Result<HttpResponse, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let (status, result) = match &res {
        Ok(r) => (r.status().as_u16(), "ok".to_owned()),
        Err(e) => (e.status.as_u16(), e.body.code.clone()),
    };
    state.audit(caller, method, route, body, status, &result).await;
    res
}

// ------------------------------------------------------------------ positions

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
    responses((status = 200, description = "positions, newest first", body = super::views::PositionList), (status = 400, description = "bad filter")))]
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
        .await
        .map_err(|e| ApiError::from_mailbox("execution manager", &e))?
        .map_err(execution_error)?;
    Ok(HttpResponse::Ok().json(super::views::PositionList { positions }))
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
    #[schema(value_type = Option<String>, format = "decimal", example = "0.5")]
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
            .await
            .map_err(|e| ApiError::from_mailbox("execution manager", &e))?
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
    #[schema(value_type = Option<String>, format = "decimal", example = "49000")]
    pub stop_loss: Option<Decimal>,
    /// New take-profit: on the winning side of the market price, at least `risk.min_reward_risk`
    /// times the stop's distance away, a multiple of the pair's tick.
    #[serde(default, deserialize_with = "strict_decimal::option")]
    #[schema(value_type = Option<String>, format = "decimal", example = "52000")]
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
        .await
        .map_err(|e| ApiError::from_mailbox("risk engine", &e))?
        .map_err(|e| ApiError::from_actor("risk engine", &e))?
        .limits;
    let long = pos.side == PositionSide::Long;
    if let Some(sl) = body.stop_loss {
        if (long && sl >= market) || (!long && sl <= market) {
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
        if (long && tp <= market) || (!long && tp >= market) {
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
            .timeout(std::time::Duration::from_secs(30))
            .await
            .map_err(|e| ApiError::from_mailbox("execution manager", &e))?
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct OrderQuery {
    #[param(pattern = "^[A-Za-z0-9]{2,10}/[A-Za-z0-9]{2,10}$", example = "BTC/USDT")]
    pub symbol: Option<String>,
    /// Only orders still working (default false).
    pub open_only: Option<bool>,
    /// One lifecycle status (`pending`, `open`, `partially_filled`, `filled`, `cancelled`, …).
    #[param(value_type = Option<OrderStatus>)]
    pub status: Option<String>,
    pub correlation_id: Option<Uuid>,
}

/// List orders, newest first.
#[utoipa::path(get, path = "/api/v1/orders", params(OrderQuery), security(("bearer" = [])),
    responses((status = 200, description = "orders", body = super::views::OrderList), (status = 400, description = "bad filter")))]
pub async fn list_orders(
    _auth: Viewer,
    state: web::Data<AppState>,
    q: web::Query<OrderQuery>,
) -> Result<HttpResponse, ApiError> {
    let symbol = q.symbol.as_deref().map(|s| parse_symbol("symbol", s)).transpose()?;
    let status = q
        .status
        .as_deref()
        .map(|s| OrderStatus::parse(s).map_err(|e| ApiError::bad_request(e).with_field("status")))
        .transpose()?;
    let orders = state
        .execution
        .send(GetOrders {
            symbol,
            open_only: q.open_only.unwrap_or(false),
            correlation_id: q.correlation_id.map(CorrelationId),
        })
        .await
        .map_err(|e| ApiError::from_mailbox("execution manager", &e))?
        .map_err(execution_error)?;
    let orders: Vec<_> = orders
        .into_iter()
        .filter(|o| status.is_none_or(|s| o.status == s))
        .collect();
    Ok(HttpResponse::Ok().json(super::views::OrderList { orders }))
}

/// One order with its status history.
#[utoipa::path(get, path = "/api/v1/orders/{id}", security(("bearer" = [])), params(("id" = Uuid, Path, description = "order id")),
    responses((status = 200, description = "the order and its transitions", body = super::views::OrderDetail), (status = 404, description = "unknown")))]
pub async fn get_order(
    _auth: Viewer,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let rec = state.stores.orders.get_order(id).await.map_err(store_error)?;
    let rec = rec.ok_or_else(|| ApiError::not_found(format!("order {id} not found")))?;
    let log = state.stores.orders.status_log(id).await.map_err(store_error)?;
    Ok(HttpResponse::Ok().json(super::views::OrderDetail {
        order: rec.view,
        reduce_only: rec.reduce_only,
        linked_order_id: rec.linked_order_id,
        error_message: rec.error_message,
        status_log: log,
    }))
}

/// Cancel a working order.
#[utoipa::path(post, path = "/api/v1/orders/{id}/cancel", security(("bearer" = [])), params(("id" = Uuid, Path, description = "order id")),
    responses((status = 200, description = "cancelled", body = triplegain_actors::execution::api::OrderView), (status = 404, description = "unknown"),
        (status = 409, description = "not working")))]
pub async fn cancel_order(
    auth: Operator,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let res = async {
        let id = parse_id(&path)?;
        let rec = state.stores.orders.get_order(id).await.map_err(store_error)?;
        let rec = rec.ok_or_else(|| ApiError::not_found(format!("order {id} not found")))?;
        if rec.view.status.is_terminal() {
            return Err(ApiError::conflict(format!("order {id} is {}", rec.view.status)));
        }
        let view = state
            .execution
            .send(CancelOrder {
                order_id: id,
                reason: format!("manual ({})", auth.caller.name),
            })
            .await
            .map_err(|e| ApiError::from_mailbox("execution manager", &e))?
            .map_err(|e| match e {
                ExecutionError::Invalid(m) => ApiError::conflict(m),
                other => execution_error(other),
            })?;
        Ok(HttpResponse::Ok().json(view))
    }
    .await;
    let route = format!("/api/v1/orders/{}/cancel", path.as_str());
    audited(&state, &auth.caller, "POST", &route, None, res).await
}

// ------------------------------------------------------------------ trades

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TradeQuery {
    #[param(pattern = "^[A-Za-z0-9]{2,10}/[A-Za-z0-9]{2,10}$", example = "BTC/USDT")]
    pub symbol: Option<String>,
    /// 1..=1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// Executions (fills), newest first.
#[utoipa::path(get, path = "/api/v1/trades", params(TradeQuery), security(("bearer" = [])),
    responses((status = 200, description = "trades", body = super::views::TradeList), (status = 422, description = "limit out of range")))]
pub async fn list_trades(
    _auth: Viewer,
    state: web::Data<AppState>,
    q: web::Query<TradeQuery>,
) -> Result<HttpResponse, ApiError> {
    let symbol = q.symbol.as_deref().map(|s| parse_symbol("symbol", s)).transpose()?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::validation("limit", "limit must be between 1 and 1000"));
    }
    let trades = state
        .stores
        .orders
        .list_trades(symbol, limit)
        .await
        .map_err(store_error)?;
    Ok(HttpResponse::Ok().json(super::views::TradeList { trades }))
}

// ------------------------------------------------------------------ manual trades

/// A trade entered by hand. Money and prices are decimal strings, checked exactly against the
/// pair's precision (nothing is rounded silently).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ManualTradeBody {
    /// One of the configured `market.symbols`, e.g. `BTC/USDT`.
    #[schema(example = "BTC/USDT")]
    pub symbol: String,
    /// `buy` or `sell`.
    #[schema(example = "buy")]
    pub side: String,
    /// Capital in USD (margin; the notional is `size_usd × leverage`); exactly one of
    /// `size_usd` and `volume`.
    #[serde(default, deserialize_with = "strict_decimal::option")]
    #[schema(value_type = Option<String>, format = "decimal", example = "1000")]
    pub size_usd: Option<Decimal>,
    /// Base units, at most the pair's lot decimals; exactly one of `size_usd` and `volume`.
    #[serde(default, deserialize_with = "strict_decimal::option")]
    #[schema(value_type = Option<String>, format = "decimal", example = "0.02")]
    pub volume: Option<Decimal>,
    /// `limit` (default) or `market`. A market order is placed as a limit order bounded by
    /// `execution.orders.market_order_slippage_pct` from the risk engine's market price
    /// (the response's `market_order` says so); it takes no `price`.
    #[schema(example = "limit")]
    pub order_type: Option<String>,
    /// Limit price (required for limit orders): a multiple of the pair's tick, at most
    /// `risk.max_limit_deviation_pct` through the market.
    #[serde(default, deserialize_with = "strict_decimal::option")]
    #[schema(value_type = Option<String>, format = "decimal", example = "50000")]
    pub price: Option<Decimal>,
    #[serde(default, deserialize_with = "strict_decimal::option")]
    #[schema(value_type = Option<String>, format = "decimal", example = "49000")]
    pub stop_loss: Option<Decimal>,
    #[serde(default, deserialize_with = "strict_decimal::option")]
    #[schema(value_type = Option<String>, format = "decimal", example = "52000")]
    pub take_profit: Option<Decimal>,
    /// 1..=5, default 1.
    #[schema(minimum = 1, maximum = 5)]
    pub leverage: Option<u32>,
    /// Only closes or shrinks an existing position.
    pub reduce_only: Option<bool>,
    #[schema(max_length = 500)]
    pub note: Option<String>,
}

struct ParsedTrade {
    proposal: TradeProposal,
    order_type: OrderType,
    volume: Option<Decimal>,
    /// The limit price asked for (limit orders).
    limit_price: Option<Decimal>,
    note: Option<String>,
}

fn positive(field: &str, v: Option<Decimal>) -> Result<(), ApiError> {
    if v.is_some_and(|v| v <= Decimal::ZERO) {
        return Err(ApiError::validation(field, format!("{field} must be positive")));
    }
    Ok(())
}

/// Refuses more decimals than `max` (trailing zeros do not count).
fn at_most_decimals(field: &str, v: Option<Decimal>, max: u32, what: &str) -> Result<(), ApiError> {
    if let Some(v) = v {
        let scale = v.normalize().scale();
        if scale > max {
            return Err(ApiError::validation(
                field,
                format!("{field} {v} has {scale} decimals; {what} have at most {max}"),
            ));
        }
    }
    Ok(())
}

/// The exchange's pair for a configured symbol; an unknown symbol is 422 naming `symbol`.
pub(crate) async fn traded_pair(state: &AppState, symbol: &Symbol) -> Result<PairInfo, ApiError> {
    if !state.analysis_symbols.contains(symbol) {
        let known: Vec<String> = state.analysis_symbols.iter().map(ToString::to_string).collect();
        return Err(ApiError::validation(
            "symbol",
            format!("{symbol} is not traded here (market.symbols: {})", known.join(", ")),
        ));
    }
    let pairs = state.exchange.pairs().await.map_err(|e| {
        tracing::warn!(error = %e, "exchange pairs unavailable");
        ApiError::unavailable("exchange")
    })?;
    pairs
        .into_iter()
        .find(|p| &p.symbol == symbol)
        .ok_or_else(|| ApiError::validation("symbol", format!("{symbol} is not a pair of the exchange")))
}

/// Checks a price field against the pair: positive, at most its decimals, a multiple of its tick.
pub(crate) fn check_price_field(field: &str, v: Option<Decimal>, pair: &PairInfo) -> Result<(), ApiError> {
    positive(field, v)?;
    at_most_decimals(field, v, pair.price_decimals, &format!("{} prices", pair.symbol))?;
    if let Some(v) = v {
        if !pair.tick_size.is_zero() && !(v % pair.tick_size).is_zero() {
            return Err(ApiError::validation(
                field,
                format!(
                    "{field} {v} is not a multiple of the tick {} of {}",
                    pair.tick_size.normalize(),
                    pair.symbol
                ),
            ));
        }
    }
    Ok(())
}

/// The risk engine's market price (fresh, or `None`).
pub(crate) async fn market_quote(state: &AppState, symbol: &Symbol) -> Result<Option<Quote>, ApiError> {
    state
        .risk
        .send(GetMarketPrice(symbol.clone()))
        .await
        .map_err(|e| ApiError::from_mailbox("risk engine", &e))
}

/// Checks the body and builds the proposal (the risk engine values it at its own market price
/// and judges the rest).
async fn parse_trade(state: &AppState, b: &ManualTradeBody) -> Result<ParsedTrade, ApiError> {
    let symbol = parse_symbol("symbol", &b.symbol)?;
    let side = Side::parse(&b.side).map_err(|e| ApiError::bad_request(e).with_field("side"))?;
    let order_type = match b.order_type.as_deref().unwrap_or("limit") {
        "limit" => OrderType::Limit,
        "market" => OrderType::Market,
        other => {
            return Err(
                ApiError::bad_request(format!("order_type {other:?}: expected market or limit"))
                    .with_field("order_type"),
            )
        }
    };
    if b.note.as_ref().is_some_and(|n| n.chars().count() > 500) {
        return Err(ApiError::validation("note", "note is longer than 500 characters"));
    }
    let pair = traded_pair(state, &symbol).await?;
    for (f, v) in [
        ("price", b.price),
        ("stop_loss", b.stop_loss),
        ("take_profit", b.take_profit),
    ] {
        check_price_field(f, v, &pair)?;
    }
    positive("size_usd", b.size_usd)?;
    positive("volume", b.volume)?;
    at_most_decimals("size_usd", b.size_usd, 8, "USD amounts")?;
    at_most_decimals(
        "volume",
        b.volume,
        pair.lot_decimals,
        &format!("{} volumes", pair.symbol),
    )?;
    match (b.size_usd, b.volume) {
        (Some(_), Some(_)) => {
            return Err(ApiError::validation(
                "volume",
                "give exactly one of size_usd and volume",
            ))
        }
        (None, None) => {
            return Err(ApiError::validation(
                "size_usd",
                "give exactly one of size_usd and volume",
            ))
        }
        _ => {}
    }
    let leverage = b.leverage.unwrap_or(1);
    if !(1..=5).contains(&leverage) {
        return Err(ApiError::validation("leverage", "leverage must be between 1 and 5"));
    }
    let entry = match order_type {
        OrderType::Limit => b
            .price
            .ok_or_else(|| ApiError::validation("price", "price is required for a limit order"))?,
        _ => {
            if b.price.is_some() {
                return Err(ApiError::validation(
                    "price",
                    "a market order takes no price: it is placed as a limit bounded by \
                     execution.orders.market_order_slippage_pct from the market price",
                ));
            }
            market_quote(state, &symbol).await?.map(|q| q.price).ok_or_else(|| {
                ApiError::validation(
                    "symbol",
                    format!("no fresh market price for {symbol}; the trade is refused, not guessed"),
                )
            })?
        }
    };
    let reduce_only = b.reduce_only.unwrap_or(false);
    if let Some(sl) = b.stop_loss {
        let wrong = match side {
            Side::Buy => sl >= entry,
            Side::Sell => sl <= entry,
        };
        if wrong {
            return Err(ApiError::validation(
                "stop_loss",
                format!("stop_loss {sl} must be on the losing side of the entry price {entry}"),
            ));
        }
    }
    if let Some(tp) = b.take_profit {
        let wrong = match side {
            Side::Buy => tp <= entry,
            Side::Sell => tp >= entry,
        };
        if wrong {
            return Err(ApiError::validation(
                "take_profit",
                format!("take_profit {tp} must be on the winning side of the entry price {entry}"),
            ));
        }
    }
    let size_usd = match (b.size_usd, b.volume) {
        (Some(s), _) => s,
        (None, Some(v)) => v * entry / Decimal::from(leverage),
        (None, None) => Decimal::ZERO,
    };
    Ok(ParsedTrade {
        proposal: TradeProposal {
            symbol,
            side,
            size_usd,
            entry_price: entry,
            stop_loss: b.stop_loss,
            take_profit: b.take_profit,
            leverage,
            confidence: 1.0,
            regime: Regime::Ranging,
            source: ProposalSource::Manual,
            correlation_id: CorrelationId::new(),
            reduce_only,
        },
        order_type,
        volume: b.volume,
        limit_price: (order_type == OrderType::Limit).then_some(entry),
        note: b.note.clone(),
    })
}

async fn risk_verdict(state: &AppState, proposal: TradeProposal) -> Result<RiskVerdict, ApiError> {
    state
        .risk
        .send(ValidateTrade(proposal))
        .await
        .map_err(|e| ApiError::from_mailbox("risk engine", &e))?
        .map_err(|e| ApiError::from_actor("risk engine", &e))
}

/// The body field a refusal is about, when there is one.
fn verdict_field(v: &RiskVerdict, volume_given: bool) -> Option<&'static str> {
    let code = v.rejections.first()?;
    let reason = v.reason.as_deref().unwrap_or_default();
    let size_field = if volume_given { "volume" } else { "size_usd" };
    Some(match code {
        RejectionCode::LimitPriceDeviation => "price",
        RejectionCode::MarketPriceUnavailable => "symbol",
        RejectionCode::StopLossRequired | RejectionCode::StopLossTooTight | RejectionCode::StopLossTooWide => {
            "stop_loss"
        }
        RejectionCode::RewardRiskTooLow => "take_profit",
        RejectionCode::LeverageExceeded => "leverage",
        RejectionCode::PositionTooLarge
        | RejectionCode::PositionTooSmall
        | RejectionCode::RiskPerTradeExceeded
        | RejectionCode::ExposureExceeded
        | RejectionCode::CorrelationExceeded
        | RejectionCode::InsufficientMargin => size_field,
        RejectionCode::InvalidProposal if reason.starts_with("stop_loss") => "stop_loss",
        RejectionCode::InvalidProposal if reason.starts_with("take_profit") => "take_profit",
        _ => return None,
    })
}

fn verdict_error(v: &RiskVerdict, volume_given: bool) -> ApiError {
    let codes: Vec<String> = v.rejections.iter().map(|c| c.to_string()).collect();
    let status = if v.status == VerdictStatus::Halted {
        StatusCode::CONFLICT
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let code = if v.status == VerdictStatus::Halted {
        "trading_halted"
    } else {
        "risk_rejected"
    };
    let err = ApiError::new(
        status,
        code,
        format!(
            "risk engine {}: {} ({})",
            if v.status == VerdictStatus::Halted {
                "halted"
            } else {
                "rejected"
            },
            codes.join(", "),
            v.reason.clone().unwrap_or_default()
        ),
    );
    match verdict_field(v, volume_given) {
        Some(f) => err.with_field(f),
        None => err,
    }
}

/// Validate a manual trade with the risk engine only; nothing is placed.
#[utoipa::path(post, path = "/api/v1/trades/validate", security(("bearer" = [])), request_body = ManualTradeBody,
    responses((status = 200, description = "the verdict", body = super::views::TradeCheck), (status = 400, description = "malformed field"),
        (status = 422, description = "a field out of range")))]
pub async fn validate_trade(
    _auth: Viewer,
    state: web::Data<AppState>,
    body: JsonBody<ManualTradeBody>,
) -> Result<HttpResponse, ApiError> {
    let parsed = parse_trade(&state, &body.0).await?;
    let correlation_id = parsed.proposal.correlation_id;
    let verdict = risk_verdict(&state, parsed.proposal).await?;
    Ok(HttpResponse::Ok().json(super::views::TradeCheck {
        correlation_id,
        verdict,
    }))
}

/// Place a trade by hand: risk engine first, then the execution manager.
#[utoipa::path(post, path = "/api/v1/trades", security(("bearer" = [])), request_body = ManualTradeBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "a repeat within 24 h returns the first result")),
    responses((status = 200, description = "verdict, orders and correlation id", body = super::views::PlacedTrade), (status = 400, description = "malformed field"),
        (status = 403, description = "viewer token"), (status = 409, description = "trading paused or halted"),
        (status = 422, description = "rejected by the risk engine or a field out of range")))]
pub async fn place_trade(
    auth: Operator,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: JsonBody<ManualTradeBody>,
    guards: Option<web::Data<super::limits::RateLimits>>,
) -> Result<HttpResponse, ApiError> {
    let raw = serde_json::to_vec(&body.0).unwrap_or_default();
    let key = req
        .headers()
        .get("Idempotency-Key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| format!("trades:{k}"));
    let guards = guards.as_ref().map(|g| g.get_ref());
    let correlation_id = CorrelationId::new();
    if let Some(k) = &key {
        if k.len() > 255 {
            return Err(
                ApiError::bad_request("Idempotency-Key is longer than 255 characters").with_field("Idempotency-Key")
            );
        }
        match idempotency::begin(&state, guards, k, &auth.caller.name, &raw, correlation_id).await? {
            idempotency::Begin::Replay(mut replay) => {
                if let Ok(v) = actix_web::http::header::HeaderValue::from_str(idempotency::store_kind(&state)) {
                    replay
                        .headers_mut()
                        .insert(actix_web::http::header::HeaderName::from_static("idempotency-store"), v);
                }
                return Ok(replay);
            }
            idempotency::Begin::Claimed => {}
        }
    }
    let (status, json) = match place_trade_inner(&state, &body.0, correlation_id).await {
        Ok(v) => (StatusCode::OK, v),
        Err(e) => (
            e.status,
            serde_json::to_value(super::error::ErrorEnvelope { error: e.body.clone() }).unwrap_or_default(),
        ),
    };
    if let Some(k) = &key {
        idempotency::finish(&state, guards, k, status.as_u16(), &json).await;
    }
    let result = if status.is_success() {
        "ok".to_owned()
    } else {
        json.pointer("/error/code")
            .and_then(|c| c.as_str())
            .unwrap_or("error")
            .to_owned()
    };
    state
        .audit(
            &auth.caller,
            "POST",
            "/api/v1/trades",
            Some(&raw),
            status.as_u16(),
            &result,
        )
        .await;
    let mut res = HttpResponse::build(status);
    if key.is_some() {
        res.insert_header(("Idempotency-Store", idempotency::store_kind(&state)));
    }
    Ok(res.json(json))
}

async fn place_trade_inner(
    state: &AppState,
    body: &ManualTradeBody,
    correlation_id: CorrelationId,
) -> Result<serde_json::Value, ApiError> {
    let mut parsed = parse_trade(state, body).await?;
    parsed.proposal.correlation_id = correlation_id;
    if !parsed.proposal.reduce_only {
        let status = state
            .coordinator
            .send(GetStatus)
            .await
            .map_err(|e| ApiError::from_mailbox("coordinator", &e))?
            .map_err(|e| ApiError::from_actor("coordinator", &e))?;
        if matches!(status.state, CoordinatorState::Paused | CoordinatorState::Halted) {
            return Err(ApiError::conflict(format!(
                "trading is {:?}: only reduce-only trades are accepted",
                status.state
            )));
        }
    }
    let judgement = state
        .risk
        .send(ApproveTrade(parsed.proposal.clone()))
        .await
        .map_err(|e| ApiError::from_mailbox("risk engine", &e))?
        .map_err(|e| ApiError::from_actor("risk engine", &e))?;
    let trade = judgement.map_err(|refused| verdict_error(refused.verdict(), parsed.volume.is_some()))?;
    let verdict = trade.verdict().clone();
    // The engine valued the proposal at its market price (`entry_price`) keeping the volume
    // asked for; a modified proposal shrinks that volume with its size.
    let approved = &verdict.proposal;
    let volume = match (parsed.volume, verdict.status) {
        (Some(v), VerdictStatus::Approved) => Some(v),
        _ if approved.entry_price > Decimal::ZERO => {
            Some(approved.size_usd * Decimal::from(approved.leverage) / approved.entry_price)
        }
        (v, _) => v,
    };
    // A limit order keeps its limit; a market order is bounded from the engine's market price.
    let limit_price = parsed.limit_price.or(Some(approved.entry_price));
    let result = state
        .execution
        .send(ExecuteTrade {
            trade,
            order_type: parsed.order_type,
            limit_price,
            volume,
            note: parsed.note,
        })
        .await
        .map_err(|e| ApiError::from_mailbox("execution manager", &e))?
        .map_err(execution_error)?;
    let market_order = (parsed.order_type == OrderType::Market).then(|| super::views::MarketOrderNote {
        placed_as: "limit",
        market_price: approved.entry_price,
        limit_price: result.orders.first().and_then(|o| o.price),
        note: "a market order is placed as a limit order bounded by execution.orders.market_order_slippage_pct from the risk engine's market price; it fills at that bound or better, or stays open",
    });
    let out = super::views::PlacedTrade {
        correlation_id,
        verdict: Some(verdict),
        recovered: false,
        orders: result.orders,
        position_id: result.position_id,
        market_order,
    };
    serde_json::to_value(out).map_err(|e| ApiError::internal(format!("trade result does not serialise: {e}")))
}
