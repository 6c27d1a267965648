//! The trade log: one info line per order placed, filled, cancelled or rejected, per position
//! opened or closed (with its P&L) and per stop-loss or take-profit triggered, with numbers
//! rounded for reading. An actor subscribed to the bus's execution events and risk alerts, so
//! the execution manager itself stays free of log formatting.

use actix::prelude::*;
use rust_decimal::Decimal;
use std::sync::Arc;
use triplegain_actors::bus::Bus;
use triplegain_actors::domain::OrderPurpose;
use triplegain_actors::messages::{ExecutionEvent, ExecutionEventType, RiskAlert};
use triplegain_actors::ports::{OrderRecord, OrderStore};
use triplegain_actors::supervised_basics;
use triplegain_actors::supervision::{guarded, start_supervised, Drain, Registry, SupervisedActor, SupervisionHandle};

/// Half away from zero, as people round (not banker's rounding).
fn round(d: Decimal, dp: u32) -> Decimal {
    d.round_dp_with_strategy(dp, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
}

/// A decimal rounded for reading: 6 significant digits (at least 2 places from 1 up), trailing
/// zeros dropped.
pub fn readable(d: Decimal) -> String {
    let abs = d.abs();
    let dp = if abs >= Decimal::ONE {
        // 6 significant digits, at least 2 places: 95123.46, 2.23316.
        let digits = abs.trunc().to_string().len() as u32;
        6u32.saturating_sub(digits).max(2)
    } else if abs.is_zero() {
        0
    } else {
        // Enough places for 6 significant digits below 1.
        let mut places = 0u32;
        let mut x = abs;
        while x < Decimal::ONE && places < 20 {
            x *= Decimal::TEN;
            places += 1;
        }
        places + 5
    };
    round(d, dp.min(12)).normalize().to_string()
}

/// A base quantity rounded for reading (8 places, trailing zeros dropped).
pub fn readable_size(d: Decimal) -> String {
    round(d, 8).normalize().to_string()
}

/// A signed USD amount with two places: `+12.34`, `-3.10`.
pub fn signed_usd(d: Decimal) -> String {
    let r = round(d, 2);
    if r.is_sign_negative() && !r.is_zero() {
        format!("{r:.2}")
    } else {
        format!("+{:.2}", r.abs())
    }
}

/// What an execution event means for an operator, with the order behind it when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradeLine {
    /// `order_placed`, `order_filled`, `stop_loss_triggered`, `position_closed`, …
    pub kind: &'static str,
    pub text: String,
}

/// The purpose of the order as spelled on the wire (`entry`, `stop_loss`, …), or empty.
fn purpose(order: Option<&OrderRecord>) -> &str {
    order.map_or("", |o| o.view.purpose.as_str())
}

/// Describes `e` (and the order it concerns, when found) as one line.
pub fn describe(e: &ExecutionEvent, order: Option<&OrderRecord>) -> TradeLine {
    let side = e.side.as_str();
    let size = readable_size(e.size);
    let sym = &e.symbol;
    let what = match purpose(order) {
        "" => String::new(),
        p => format!(" ({})", p.replace('_', "-")),
    };
    let at = e.fill_price.map(|p| format!(" @ {}", readable(p))).unwrap_or_default();
    match e.event_type {
        ExecutionEventType::OrderPlaced => {
            let (kind, volume, price) = order.map_or((String::new(), size.clone(), String::new()), |o| {
                (
                    format!(" {}", o.view.order_type.as_str()),
                    readable_size(o.view.volume),
                    o.view.price.map(|p| format!(" @ {}", readable(p))).unwrap_or_default(),
                )
            });
            TradeLine {
                kind: "order_placed",
                text: format!("order placed: {side} {volume} {sym}{kind}{price}{what}"),
            }
        }
        ExecutionEventType::OrderFilled | ExecutionEventType::OrderPartiallyFilled => {
            let partly = if e.event_type == ExecutionEventType::OrderPartiallyFilled {
                "partly "
            } else {
                ""
            };
            let fee = format!(", fee {}", readable(e.fee));
            match order.map(|o| o.view.purpose) {
                Some(OrderPurpose::StopLoss) => TradeLine {
                    kind: "stop_loss_triggered",
                    text: format!("stop-loss triggered: {side} {size} {sym} {partly}filled{at}{fee}"),
                },
                Some(OrderPurpose::TakeProfit) => TradeLine {
                    kind: "take_profit_triggered",
                    text: format!("take-profit triggered: {side} {size} {sym} {partly}filled{at}{fee}"),
                },
                _ => TradeLine {
                    kind: "order_filled",
                    text: format!("order {partly}filled: {side} {size} {sym}{at}{fee}{what}"),
                },
            }
        }
        ExecutionEventType::OrderCancelled => TradeLine {
            kind: "order_cancelled",
            text: format!("order cancelled: {side} {sym}{what}"),
        },
        ExecutionEventType::OrderRejected => TradeLine {
            kind: "order_rejected",
            text: format!(
                "order rejected: {side} {sym}{what}{}",
                order
                    .and_then(|o| o.error_message.as_deref())
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ),
        },
        ExecutionEventType::OrderError => TradeLine {
            kind: "order_error",
            text: format!(
                "order error: {side} {sym}{what}{}",
                order
                    .and_then(|o| o.error_message.as_deref())
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ),
        },
        ExecutionEventType::PositionOpened => {
            let dir = if e.side == triplegain_actors::domain::Side::Buy {
                "long"
            } else {
                "short"
            };
            TradeLine {
                kind: "position_opened",
                text: format!("position opened: {dir} {size} {sym}{at}"),
            }
        }
        ExecutionEventType::PositionClosed => {
            let pnl = e
                .realized_pnl
                .map(|p| format!(", P&L {} USD", signed_usd(p)))
                .unwrap_or_default();
            let reason = match purpose(order) {
                "" => String::new(),
                p => format!(" by {}", p.replace('_', "-")),
            };
            TradeLine {
                kind: "position_closed",
                text: format!("position closed{reason}: {sym}{at}{pnl}"),
            }
        }
    }
}

/// Looks up the order an event concerns (its purpose, type and limit price).
pub async fn order_of(orders: &Arc<dyn OrderStore>, e: &ExecutionEvent) -> Option<OrderRecord> {
    let id = uuid::Uuid::parse_str(&e.order_id).ok()?;
    orders.get_order(id).await.ok().flatten()
}

/// The trade log actor.
pub struct TradeLog {
    sup: SupervisionHandle,
    orders: Arc<dyn OrderStore>,
}

impl TradeLog {
    /// Starts the trade log and subscribes it to execution events and risk alerts.
    pub fn start(registry: &Registry, bus: &Bus, orders: Arc<dyn OrderStore>) -> Addr<Self> {
        let addr = start_supervised(registry, "trade_log", false, 4096, move |sup| Self { sup, orders });
        // The trade log is a record: it never loses an event to a full mailbox.
        bus.execution_events
            .subscribe_reliable("trade_log", addr.clone().recipient());
        bus.risk_alerts
            .subscribe_reliable("trade_log", addr.clone().recipient());
        addr
    }
}

impl Actor for TradeLog {
    type Context = Context<Self>;
    fn started(&mut self, _: &mut Context<Self>) {
        self.sup.on_started();
    }
}

impl actix::Supervised for TradeLog {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.sup.on_restarting();
    }
}

impl SupervisedActor for TradeLog {
    fn supervision(&self) -> &SupervisionHandle {
        &self.sup
    }
}

supervised_basics!(TradeLog);

impl Handler<Drain> for TradeLog {
    type Result = ();
    fn handle(&mut self, _: Drain, _: &mut Context<Self>) {}
}

impl Handler<ExecutionEvent> for TradeLog {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, e: ExecutionEvent, _: &mut Context<Self>) -> Self::Result {
        let orders = self.orders.clone();
        Box::pin(async move {
            let order = order_of(&orders, &e).await;
            let line = describe(&e, order.as_ref());
            let cid = e.meta.correlation_id;
            let position = e.position_id.as_deref().unwrap_or("");
            tracing::info!(event = line.kind, symbol = %e.symbol, %cid, order = %e.order_id, position, "{}", line.text);
        })
    }
}

impl Handler<RiskAlert> for TradeLog {
    type Result = ();
    fn handle(&mut self, a: RiskAlert, ctx: &mut Context<Self>) {
        let _ = guarded(self, ctx, |_, _| {
            let kind = serde_json::to_value(a.alert_type)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let severity = a.severity.as_str();
            let symbol = a.symbol.as_ref().map(ToString::to_string).unwrap_or_default();
            let action = a.action_required.as_deref().unwrap_or("");
            tracing::info!(event = "risk_alert", alert = %kind, severity, symbol, action, "risk alert: {}", a.message);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn numbers_read_rounded() {
        assert_eq!(readable(dec!(95123.456789)), "95123.46");
        assert_eq!(readable(dec!(0.000012345678)), "0.0000123457");
        assert_eq!(readable(dec!(0.52341)), "0.52341");
        assert_eq!(readable(dec!(100.00)), "100");
        assert_eq!(readable(dec!(2.2331612)), "2.23316");
        assert_eq!(readable(dec!(1234567.891)), "1234567.89");
        assert_eq!(readable_size(dec!(0.010500000000)), "0.0105");
        assert_eq!(signed_usd(dec!(12.345)), "+12.35");
        assert_eq!(signed_usd(dec!(-3.1)), "-3.10");
        assert_eq!(signed_usd(dec!(0)), "+0.00");
    }
}
