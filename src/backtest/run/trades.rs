//! Trades of a backtest run: round trips and holding trades rebuilt from the stored fills, what
//! closed each position, and the trades CSV.

use crate::backtest::report::{HoldingTrade, ReportInput, TradeRecord};
use anyhow::Context as _;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use triplegain_actors::domain::Side;
use triplegain_actors::execution::api::PositionView;

/// Round trips from the stored fills: per position, the opening fills against the closing ones.
/// Positions with nothing closed yet are not trades; fills without a position are ignored. The
/// regime is `unknown` until the caller fills it in; the source is `strategy`, the exit reason
/// empty (see [`round_trips_with`]).
pub fn round_trips(fills: &[triplegain_actors::ports::TradeRecord]) -> Vec<TradeRecord> {
    round_trips_with(fills, &|_, _| String::new())
}

/// As [`round_trips`], with `exit_reason(position, last closing fill)` naming what closed each.
pub fn round_trips_with(
    fills: &[triplegain_actors::ports::TradeRecord],
    exit_reason: &dyn Fn(uuid::Uuid, &triplegain_actors::ports::TradeRecord) -> String,
) -> Vec<TradeRecord> {
    let mut by_position: BTreeMap<uuid::Uuid, Vec<&triplegain_actors::ports::TradeRecord>> = BTreeMap::new();
    for f in fills {
        if let Some(p) = f.position_id {
            by_position.entry(p).or_default().push(f);
        }
    }
    let mut out = Vec::new();
    for (pid, mut fs) in by_position {
        fs.sort_by_key(|f| (f.executed_at, f.id));
        let Some(first) = fs.first() else { continue };
        let side = first.side;
        let mut last_close = None;
        let (mut open_qty, mut open_cost, mut close_qty, mut close_value, mut fees) = (
            Decimal::ZERO,
            Decimal::ZERO,
            Decimal::ZERO,
            Decimal::ZERO,
            Decimal::ZERO,
        );
        let mut closed_at = first.executed_at;
        for f in &fs {
            fees += f.fee;
            if f.side == side {
                open_qty += f.volume;
                open_cost += f.volume * f.price;
            } else {
                close_qty += f.volume;
                close_value += f.volume * f.price;
                closed_at = f.executed_at;
                last_close = Some(*f);
            }
        }
        if close_qty.is_zero() || open_qty.is_zero() {
            continue;
        }
        let reason = last_close.map(|f| exit_reason(pid, f)).unwrap_or_default();
        out.push(TradeRecord {
            symbol: first.symbol.as_str().to_owned(),
            side,
            regime: "unknown".to_owned(),
            opened_at: first.executed_at,
            closed_at,
            quantity: close_qty,
            entry_price: (open_cost / open_qty).round_dp(12).normalize(),
            exit_price: (close_value / close_qty).round_dp(12).normalize(),
            fees: fees.normalize(),
            source: crate::backtest::report::source::STRATEGY.to_owned(),
            exit_reason: reason,
        });
    }
    // Position ids are random: order by what the trades are.
    out.sort_by(|a, b| {
        (a.closed_at, &a.symbol, a.opened_at, a.entry_price, a.quantity).cmp(&(
            b.closed_at,
            &b.symbol,
            b.opened_at,
            b.entry_price,
            b.quantity,
        ))
    });
    out
}

/// The rebalance and hodl orders' fills (fills without a position whose order has the purpose
/// `rebalance` or `hodl`), one [`HoldingTrade`] per order, in time order.
pub fn holding_trades(
    fills: &[triplegain_actors::ports::TradeRecord],
    purpose_of: &dyn Fn(uuid::Uuid) -> Option<String>,
) -> Vec<HoldingTrade> {
    let mut by_order: BTreeMap<uuid::Uuid, HoldingTrade> = BTreeMap::new();
    let mut value: BTreeMap<uuid::Uuid, Decimal> = BTreeMap::new();
    for f in fills.iter().filter(|f| f.position_id.is_none()) {
        let Some(purpose) = purpose_of(f.order_id).filter(|p| p == "rebalance" || p == "hodl") else {
            continue;
        };
        let t = by_order.entry(f.order_id).or_insert_with(|| HoldingTrade {
            source: purpose,
            symbol: f.symbol.as_str().to_owned(),
            side: f.side,
            at: f.executed_at,
            regime: "unknown".to_owned(),
            quantity: Decimal::ZERO,
            price: Decimal::ZERO,
            fees: Decimal::ZERO,
        });
        t.at = t.at.max(f.executed_at);
        t.quantity += f.volume;
        t.fees += f.fee;
        *value.entry(f.order_id).or_default() += f.volume * f.price;
    }
    let mut out: Vec<HoldingTrade> = by_order
        .into_iter()
        .filter(|(_, t)| !t.quantity.is_zero())
        .map(|(id, mut t)| {
            t.price = (value.get(&id).copied().unwrap_or_default() / t.quantity)
                .round_dp(12)
                .normalize();
            t.quantity = t.quantity.normalize();
            t.fees = t.fees.normalize();
            t
        })
        .collect();
    // Order ids are random: order by what the trades are.
    out.sort_by(|a, b| {
        (a.at, &a.symbol, &a.source, a.quantity, a.price).cmp(&(b.at, &b.symbol, &b.source, b.quantity, b.price))
    });
    out
}

/// Names what closed a position from the order of its last closing fill: a stop-loss order
/// (`trailing` when that stop had moved in the position's favour from the first one), a
/// take-profit, the run's closes at the end (`end_of_data`), and any other close: `stop` when
/// it filled at or through the position's stop (the backup trigger), `signal` otherwise.
pub(super) struct ExitClassifier {
    purpose: std::collections::HashMap<uuid::Uuid, (String, Option<Decimal>)>,
    /// Per position: the price of its first stop-loss order.
    first_stop: std::collections::HashMap<uuid::Uuid, Decimal>,
    positions: std::collections::HashMap<uuid::Uuid, PositionView>,
    end_orders: std::collections::HashSet<uuid::Uuid>,
}

impl ExitClassifier {
    pub(super) fn new(
        orders: &[triplegain_actors::ports::OrderRecord],
        positions: Vec<PositionView>,
        end_orders: std::collections::HashSet<uuid::Uuid>,
    ) -> Self {
        let mut first: std::collections::HashMap<uuid::Uuid, (DateTime<Utc>, Decimal)> = Default::default();
        for o in orders
            .iter()
            .filter(|o| o.view.purpose == triplegain_actors::domain::OrderPurpose::StopLoss)
        {
            let (Some(pid), Some(price)) = (o.view.position_id, o.view.price) else {
                continue;
            };
            let e = first.entry(pid).or_insert((o.view.created_at, price));
            if o.view.created_at < e.0 {
                *e = (o.view.created_at, price);
            }
        }
        Self {
            purpose: orders
                .iter()
                .map(|o| (o.view.id, (o.view.purpose.as_str().to_owned(), o.view.price)))
                .collect(),
            first_stop: first.into_iter().map(|(k, (_, p))| (k, p)).collect(),
            positions: positions.into_iter().map(|p| (p.id, p)).collect(),
            end_orders,
        }
    }

    pub(super) fn purpose_of(&self, order: uuid::Uuid) -> Option<String> {
        self.purpose.get(&order).map(|(p, _)| p.clone())
    }

    pub(super) fn classify(&self, pid: uuid::Uuid, last: &triplegain_actors::ports::TradeRecord) -> String {
        let long = last.side == Side::Sell;
        let reason = match self.purpose.get(&last.order_id) {
            Some((p, price)) if p == "stop_loss" => {
                let moved = match (price, self.first_stop.get(&pid)) {
                    (Some(now), Some(first)) => {
                        if long {
                            now > first
                        } else {
                            now < first
                        }
                    }
                    _ => false,
                };
                if moved {
                    "trailing"
                } else {
                    "stop"
                }
            }
            Some((p, _)) if p == "take_profit" => "take_profit",
            _ if self.end_orders.contains(&last.order_id) => "end_of_data",
            _ => {
                let through_stop = self.positions.get(&pid).and_then(|p| p.stop_loss).is_some_and(|sl| {
                    if long {
                        last.price <= sl
                    } else {
                        last.price >= sl
                    }
                });
                if through_stop {
                    "stop"
                } else {
                    "signal"
                }
            }
        };
        reason.to_owned()
    }
}

/// Writes every trade as CSV, one row each, with its `source`: the round trips (`strategy`,
/// `manual`) with their exit, fees and P&L, and the rebalance and hodl orders (`rebalance`,
/// `hodl`) with their fill time, price and fees (no exit and no P&L: they change holdings), in
/// time order (a round trip at its opening).
///
/// # Errors
/// When the file cannot be written.
pub fn write_trades_csv(path: &std::path::Path, input: &ReportInput) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    let side = |s: Side| match s {
        Side::Buy => "buy",
        Side::Sell => "sell",
    };
    let mut rows: Vec<(DateTime<Utc>, String)> = Vec::new();
    for t in &input.trades {
        rows.push((
            t.opened_at,
            format!(
                "{},{},{},{},{},{},{},{},{},{},{},{},{}",
                t.source,
                t.symbol,
                side(t.side),
                t.regime,
                t.opened_at.to_rfc3339(),
                t.closed_at.to_rfc3339(),
                t.quantity,
                t.entry_price,
                t.exit_price,
                t.fees,
                t.gross_pnl().normalize(),
                t.net_pnl().normalize(),
                t.exit_reason
            ),
        ));
    }
    for h in &input.holdings {
        rows.push((
            h.at,
            format!(
                "{},{},{},{},{},,{},{},,{},,,",
                h.source,
                h.symbol,
                side(h.side),
                h.regime,
                h.at.to_rfc3339(),
                h.quantity,
                h.price,
                h.fees
            ),
        ));
    }
    // Stable: equal times keep round trips before holdings, each in its own order.
    rows.sort_by_key(|(at, _)| *at);
    let mut out = String::from(
        "source,symbol,side,regime,opened_at,closed_at,quantity,entry_price,exit_price,fees,gross_pnl,net_pnl,exit_reason\n",
    );
    for (_, row) in rows {
        let _ = writeln!(out, "{row}");
    }
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}
