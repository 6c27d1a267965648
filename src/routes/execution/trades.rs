//! Trade routes: list executions, validate a manual trade with the risk engine, place one.

use super::{
    at_most_decimals, check_price_field, execution_error, market_quote, parse_symbol, positive, store_error,
    traded_pair, ORDER_WAIT, RISK_WAIT,
};
use crate::routes::auth::{Operator, Viewer};
use crate::routes::error::{strict_decimal, ApiError, JsonBody};
use crate::routes::idempotency;
use crate::routes::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use triplegain_actors::coordinator::{CoordinatorState, GetStatus};
use triplegain_actors::domain::{CorrelationId, OrderType, Regime, Side};
use triplegain_actors::execution::api::ExecuteTrade;
use triplegain_actors::risk::{
    ApproveTrade, ProposalSource, RejectionCode, RiskVerdict, TradeProposal, ValidateTrade, VerdictStatus,
};

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
    responses((status = 200, description = "trades", body = crate::routes::views::TradeList), (status = 422, description = "limit out of range")))]
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
    Ok(HttpResponse::Ok().json(crate::routes::views::TradeList { trades }))
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
    #[schema(value_type = Option<strict_decimal::DecimalInput>, example = "1000")]
    pub size_usd: Option<Decimal>,
    /// Base units, at most the pair's lot decimals; exactly one of `size_usd` and `volume`.
    #[serde(default, deserialize_with = "strict_decimal::option")]
    #[schema(value_type = Option<strict_decimal::DecimalInput>, example = "0.02")]
    pub volume: Option<Decimal>,
    /// `limit` (default) or `market`. A market order is placed as a limit order bounded by
    /// `execution.orders.market_order_slippage_pct` from the risk engine's market price
    /// (the response's `market_order` says so); it takes no `price`.
    #[schema(example = "limit")]
    pub order_type: Option<String>,
    /// Limit price (required for limit orders): a multiple of the pair's tick, at most
    /// `risk.max_limit_deviation_pct` through the market.
    #[serde(default, deserialize_with = "strict_decimal::option")]
    #[schema(value_type = Option<strict_decimal::DecimalInput>, example = "50000")]
    pub price: Option<Decimal>,
    #[serde(default, deserialize_with = "strict_decimal::option")]
    #[schema(value_type = Option<strict_decimal::DecimalInput>, example = "49000")]
    pub stop_loss: Option<Decimal>,
    #[serde(default, deserialize_with = "strict_decimal::option")]
    #[schema(value_type = Option<strict_decimal::DecimalInput>, example = "52000")]
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
        if !side.position().stop_protects(entry, sl) {
            return Err(ApiError::validation(
                "stop_loss",
                format!("stop_loss {sl} must be on the losing side of the entry price {entry}"),
            ));
        }
    }
    if let Some(tp) = b.take_profit {
        if !side.position().take_profit_wins(entry, tp) {
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
        .timeout(RISK_WAIT)
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
    responses((status = 200, description = "the verdict", body = crate::routes::views::TradeCheck), (status = 400, description = "malformed field"),
        (status = 422, description = "a field out of range")))]
pub async fn validate_trade(
    _auth: Viewer,
    state: web::Data<AppState>,
    body: JsonBody<ManualTradeBody>,
) -> Result<HttpResponse, ApiError> {
    let parsed = parse_trade(&state, &body.0).await?;
    let correlation_id = parsed.proposal.correlation_id;
    let verdict = risk_verdict(&state, parsed.proposal).await?;
    Ok(HttpResponse::Ok().json(crate::routes::views::TradeCheck {
        correlation_id,
        verdict,
    }))
}

/// Place a trade by hand: risk engine first, then the execution manager.
#[utoipa::path(post, path = "/api/v1/trades", security(("bearer" = [])), request_body = ManualTradeBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "a repeat within 24 h returns the first result")),
    responses((status = 200, description = "verdict, orders and correlation id", body = crate::routes::views::PlacedTrade), (status = 400, description = "malformed field"),
        (status = 403, description = "viewer token"), (status = 409, description = "trading paused or halted"),
        (status = 422, description = "rejected by the risk engine or a field out of range")))]
pub async fn place_trade(
    auth: Operator,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: JsonBody<ManualTradeBody>,
) -> Result<HttpResponse, ApiError> {
    let raw = serde_json::to_vec(&body.0).unwrap_or_default();
    let key = req
        .headers()
        .get("Idempotency-Key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| format!("trades:{k}"));
    let correlation_id = CorrelationId::new();
    if let Some(k) = &key {
        if k.len() > 255 {
            return Err(
                ApiError::bad_request("Idempotency-Key is longer than 255 characters").with_field("Idempotency-Key")
            );
        }
        match idempotency::begin(&state, k, &auth.caller.name, &raw, correlation_id).await? {
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
            serde_json::to_value(crate::routes::error::ErrorEnvelope { error: e.body.clone() }).unwrap_or_default(),
        ),
    };
    if let Some(k) = &key {
        idempotency::finish(&state, k, status.as_u16(), &json).await;
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
        .timeout(RISK_WAIT)
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
        .timeout(ORDER_WAIT)
        .await
        .map_err(|e| ApiError::from_order_request("execution manager", &e))?
        .map_err(execution_error)?;
    let market_order = (parsed.order_type == OrderType::Market).then(|| crate::routes::views::MarketOrderNote {
        placed_as: "limit",
        market_price: approved.entry_price,
        limit_price: result.orders.first().and_then(|o| o.price),
        note: "a market order is placed as a limit order bounded by execution.orders.market_order_slippage_pct from the risk engine's market price; it fills at that bound or better, or stays open",
    });
    let out = crate::routes::views::PlacedTrade {
        correlation_id,
        verdict: Some(verdict),
        recovered: false,
        orders: result.orders,
        position_id: result.position_id,
        market_order,
    };
    serde_json::to_value(out).map_err(|e| ApiError::internal(format!("trade result does not serialise: {e}")))
}
