//! Order routes: list and read orders, cancel a working one.

use super::{audited, execution_error, parse_id, parse_symbol, store_error};
use crate::routes::auth::{Operator, Viewer};
use crate::routes::error::ApiError;
use crate::routes::state::AppState;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use triplegain_actors::domain::{CorrelationId, OrderStatus};
use triplegain_actors::execution::api::{CancelOrder, ExecutionError, GetOrders};
use uuid::Uuid;

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
    responses((status = 200, description = "orders", body = crate::routes::views::OrderList), (status = 400, description = "bad filter")))]
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
        .timeout(super::READ_WAIT)
        .await
        .map_err(|e| ApiError::from_mailbox("execution manager", &e))?
        .map_err(execution_error)?;
    let orders: Vec<_> = orders
        .into_iter()
        .filter(|o| status.is_none_or(|s| o.status == s))
        .collect();
    Ok(HttpResponse::Ok().json(crate::routes::views::OrderList { orders }))
}

/// One order with its status history.
#[utoipa::path(get, path = "/api/v1/orders/{id}", security(("bearer" = [])), params(("id" = Uuid, Path, description = "order id")),
    responses((status = 200, description = "the order and its transitions", body = crate::routes::views::OrderDetail), (status = 404, description = "unknown")))]
pub async fn get_order(
    _auth: Viewer,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let rec = state.stores.orders.get_order(id).await.map_err(store_error)?;
    let rec = rec.ok_or_else(|| ApiError::not_found(format!("order {id} not found")))?;
    let log = state.stores.orders.status_log(id).await.map_err(store_error)?;
    Ok(HttpResponse::Ok().json(crate::routes::views::OrderDetail {
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
            .timeout(super::ORDER_WAIT)
            .await
            .map_err(|e| ApiError::from_order_request("execution manager", &e))?
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
