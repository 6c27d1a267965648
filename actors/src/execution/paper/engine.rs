//! The matching and accounting core of the paper exchange. Everything here is synchronous and runs
//! under the exchange's single lock, so an order moving from "open" to "closed" is never invisible.

use super::rng;
use super::{PaperConfig, PaperOp};
use crate::domain::{ClientOrderId, OrderStatus, OrderType, PositionSide, Side, Symbol};
use crate::ports::{ExchangeError, ExchangeOrder, OrderAck, OrderRef, OrderRequest, PairInfo};
use chrono::{DateTime, Utc};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

mod settle;
use settle::{describe, position_side};

const HUNDRED: Decimal = Decimal::ONE_HUNDRED;
/// Internal scale for reservations, margins and averages (well below Decimal's 28 digits).
const SCALE: u32 = 12;
/// Fees are rounded to this many decimals (half away from zero).
const FEE_DECIMALS: u32 = 8;

/// Whether a fill added liquidity (maker fee) or took it (taker fee).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Liquidity {
    Maker,
    Taker,
}

/// One order as the paper exchange keeps it (open and closed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaperOrder {
    pub id: String,
    pub client_order_id: ClientOrderId,
    pub symbol: Symbol,
    pub side: Side,
    pub order_type: OrderType,
    pub status: OrderStatus,
    /// Base units, truncated to the pair's lot decimals.
    pub volume: Decimal,
    pub filled_volume: Decimal,
    /// Σ fill price × fill volume, in quote units.
    pub filled_cost: Decimal,
    /// Σ fees, in quote units.
    pub fee: Decimal,
    /// Limit price, or trigger of stop-loss / take-profit orders (quantised to the tick).
    pub price: Option<Decimal>,
    /// Limit price of `*-limit` orders (quantised to the tick).
    pub price2: Option<Decimal>,
    /// `Some(leverage)` for margin orders; `None` for spot.
    pub margin_leverage: Option<u32>,
    pub reduce_only: bool,
    pub post_only: bool,
    /// A limit order that was marketable when it became active: it takes liquidity (taker fee).
    pub marketable: bool,
    /// A `*-limit` order whose trigger has fired.
    pub triggered: bool,
    /// Asset held for this order and the amount still held.
    pub reserve_asset: String,
    pub reserved: Decimal,
    pub opened_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
}

impl PaperOrder {
    pub fn remaining(&self) -> Decimal {
        self.volume - self.filled_volume
    }

    /// Pending, open or partially filled.
    pub fn is_live(&self) -> bool {
        !self.status.is_terminal()
    }

    pub fn avg_fill_price(&self) -> Option<Decimal> {
        if self.filled_volume.is_zero() {
            None
        } else {
            Some((self.filled_cost / self.filled_volume).round_dp(SCALE).normalize())
        }
    }

    pub fn to_exchange_order(&self) -> ExchangeOrder {
        ExchangeOrder {
            exchange_order_id: self.id.clone(),
            client_order_id: Some(self.client_order_id.clone()),
            symbol: self.symbol.clone(),
            side: self.side,
            order_type: self.order_type,
            status: self.status,
            volume: self.volume,
            filled_volume: self.filled_volume,
            avg_fill_price: self.avg_fill_price(),
            fee: self.fee,
            price: self.price,
            opened_at: Some(self.opened_at),
            closed_at: self.closed_at,
            reason: self.reason.clone(),
        }
    }
}

/// One execution, with its fee.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaperFill {
    pub order_id: String,
    pub client_order_id: ClientOrderId,
    pub symbol: Symbol,
    pub side: Side,
    pub order_type: OrderType,
    pub volume: Decimal,
    pub price: Decimal,
    /// price × volume, quote units.
    pub cost: Decimal,
    pub fee: Decimal,
    /// Fees are always charged in the quote asset.
    pub fee_asset: String,
    pub liquidity: Liquidity,
    pub margin: bool,
    /// Gross P&L (before this fill's fee) realised by a fill that reduced a margin position.
    pub realized_pnl: Option<Decimal>,
    pub timestamp: DateTime<Utc>,
}

/// A net margin position on one pair. Its collateral is taken out of the quote balance while it is open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaperPosition {
    pub symbol: Symbol,
    pub side: PositionSide,
    pub volume: Decimal,
    pub avg_price: Decimal,
    /// Collateral held, quote units (cost / leverage).
    pub margin: Decimal,
    pub leverage: u32,
    pub opened_at: DateTime<Utc>,
}

impl PaperPosition {
    /// Unrealised P&L at `price`, quote units, before fees.
    pub fn unrealized_pnl(&self, price: Decimal) -> Decimal {
        match self.side {
            PositionSide::Long => (price - self.avg_price) * self.volume,
            PositionSide::Short => (self.avg_price - price) * self.volume,
        }
    }
}

/// The last price seen for a pair and the time it refers to.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PricePoint {
    pub price: Decimal,
    pub at: DateTime<Utc>,
}

/// One market update: a tick (all four prices equal) or a closed candle.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bar {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub close: Decimal,
}

impl Bar {
    /// The part of the bar an order can see: all of it if the order existed when the bar began,
    /// otherwise only the closing price (no fills on prices from before the order was placed).
    fn for_order(&self, opened_at: DateTime<Utc>) -> Bar {
        if opened_at <= self.start {
            *self
        } else {
            Bar {
                open: self.close,
                high: self.close,
                low: self.close,
                ..*self
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Slip {
    None,
    Full,
    /// Slippage, but never through the order's limit price.
    CappedAt(Decimal),
}

#[derive(Debug, Clone, Copy)]
struct Decision {
    base: Decimal,
    liquidity: Liquidity,
    slip: Slip,
}

#[derive(Debug, Clone)]
pub(super) struct Fault {
    pub op: PaperOp,
    pub error: ExchangeError,
    /// The call takes effect and then reports the error (a lost response).
    pub apply: bool,
}

pub(super) struct Engine {
    pub cfg: PaperConfig,
    pub pairs: BTreeMap<Symbol, PairInfo>,
    pub balances: BTreeMap<String, Decimal>,
    pub reserved: BTreeMap<String, Decimal>,
    /// Keyed by exchange id; ids are zero-padded sequence numbers, so the map is in placement order.
    pub orders: BTreeMap<String, PaperOrder>,
    pub positions: BTreeMap<String, PaperPosition>,
    pub last_prices: BTreeMap<String, PricePoint>,
    pub fills: VecDeque<PaperFill>,
    pub next_seq: u64,
    pub rng: u64,
    pub dead_man: Option<DateTime<Utc>>,
    pub faults: VecDeque<Fault>,
    /// Moves with every change of an order or a balance (not with prices): a saver compares it
    /// with the revision it stored.
    pub revision: u64,
}

fn rejected(msg: &str) -> ExchangeError {
    ExchangeError::Rejected(msg.to_owned())
}

fn invalid(msg: &str) -> ExchangeError {
    ExchangeError::Invalid(msg.to_owned())
}

fn is_stop(t: OrderType) -> bool {
    matches!(t, OrderType::StopLoss | OrderType::StopLossLimit)
}

/// The price at which a trigger fires within `b`, or `None` when it does not.
/// Sell stops fire when the low reaches the trigger, buy stops when the high does; take-profits mirror.
/// A bar opening beyond the trigger (a gap) executes at the open.
fn trigger_base(order_type: OrderType, side: Side, trigger: Decimal, b: &Bar) -> Option<Decimal> {
    let falling = matches!((is_stop(order_type), side), (true, Side::Sell) | (false, Side::Buy));
    if falling {
        (b.low <= trigger).then(|| trigger.min(b.open))
    } else {
        (b.high >= trigger).then(|| trigger.max(b.open))
    }
}

fn limit_decision(limit: Decimal, side: Side, marketable: bool, b: &Bar) -> Option<Decision> {
    let buy = side == Side::Buy;
    if marketable && ((buy && b.open <= limit) || (!buy && b.open >= limit)) {
        return Some(Decision {
            base: b.open,
            liquidity: Liquidity::Taker,
            slip: Slip::CappedAt(limit),
        });
    }
    let crossed = if buy { b.low <= limit } else { b.high >= limit };
    crossed.then_some(Decision {
        base: limit,
        liquidity: Liquidity::Maker,
        slip: Slip::None,
    })
}

impl Engine {
    pub fn new(cfg: PaperConfig) -> Self {
        let pairs = cfg.pairs.iter().map(|p| (p.symbol.clone(), p.clone())).collect();
        let balances = cfg.initial_balances.clone();
        let rng = cfg.seed;
        Self {
            cfg,
            pairs,
            balances,
            reserved: BTreeMap::new(),
            orders: BTreeMap::new(),
            positions: BTreeMap::new(),
            last_prices: BTreeMap::new(),
            fills: VecDeque::new(),
            next_seq: 0,
            rng,
            dead_man: None,
            faults: VecDeque::new(),
            revision: 0,
        }
    }

    // ------------------------------------------------------------ balances

    pub fn total(&self, asset: &str) -> Decimal {
        self.balances.get(asset).copied().unwrap_or_default()
    }

    pub fn available(&self, asset: &str) -> Decimal {
        self.total(asset) - self.reserved.get(asset).copied().unwrap_or_default()
    }

    fn credit(&mut self, asset: &str, amount: Decimal) {
        *self.balances.entry(asset.to_owned()).or_default() += amount;
        self.revision += 1;
    }

    fn hold(&mut self, asset: &str, amount: Decimal) {
        let r = self.reserved.entry(asset.to_owned()).or_default();
        *r += amount;
    }

    fn release(&mut self, asset: &str, amount: Decimal) {
        if let Some(r) = self.reserved.get_mut(asset) {
            *r -= amount;
            if *r <= Decimal::ZERO {
                self.reserved.remove(asset);
            }
        }
    }

    /// Recomputes holds from the live orders (after a restore).
    pub fn rebuild_reserved(&mut self) {
        let mut reserved: BTreeMap<String, Decimal> = BTreeMap::new();
        for o in self.orders.values().filter(|o| o.is_live()) {
            *reserved.entry(o.reserve_asset.clone()).or_default() += o.reserved;
        }
        reserved.retain(|_, v| *v > Decimal::ZERO);
        self.reserved = reserved;
    }

    // ------------------------------------------------------------ faults and the dead man's switch

    pub fn take_fault(&mut self, op: PaperOp) -> Option<Fault> {
        let idx = self.faults.iter().position(|f| f.op == PaperOp::Any || f.op == op)?;
        self.faults.remove(idx)
    }

    pub fn check_dead_man(&mut self, now: DateTime<Utc>) {
        if let Some(deadline) = self.dead_man {
            if now >= deadline {
                self.dead_man = None;
                let live: Vec<String> = self
                    .orders
                    .values()
                    .filter(|o| o.is_live())
                    .map(|o| o.id.clone())
                    .collect();
                for id in live {
                    self.close_order(&id, OrderStatus::Cancelled, now, "Dead man's switch");
                }
                tracing::warn!(%deadline, "paper exchange: dead man's switch fired, all open orders cancelled");
            }
        }
    }

    pub fn arm_dead_man(&mut self, now: DateTime<Utc>, timeout_secs: u32) {
        self.dead_man = (timeout_secs > 0).then(|| now + chrono::Duration::seconds(i64::from(timeout_secs)));
    }

    // ------------------------------------------------------------ placing

    pub fn place(&mut self, req: OrderRequest, now: DateTime<Utc>) -> Result<OrderAck, ExchangeError> {
        let pair = self
            .pairs
            .get(&req.symbol)
            .cloned()
            .ok_or_else(|| rejected("EQuery:Unknown asset pair"))?;
        if req.volume <= Decimal::ZERO {
            return Err(invalid("EGeneral:Invalid arguments:volume"));
        }
        let quantise = |p: Option<Decimal>, field: &str| match p {
            Some(p) if p > Decimal::ZERO => Ok(Some(pair.quantise_price(p))),
            Some(_) => Err(invalid(&format!("EGeneral:Invalid arguments:{field}"))),
            None => Ok(None),
        };
        let (price, price2) = match req.order_type {
            OrderType::Market => (None, None),
            OrderType::Limit | OrderType::StopLoss | OrderType::TakeProfit => (
                Some(quantise(req.price, "price")?.ok_or_else(|| invalid("EGeneral:Invalid arguments:price"))?),
                None,
            ),
            OrderType::StopLossLimit | OrderType::TakeProfitLimit => (
                Some(quantise(req.price, "price")?.ok_or_else(|| invalid("EGeneral:Invalid arguments:price"))?),
                Some(quantise(req.price2, "price2")?.ok_or_else(|| invalid("EGeneral:Invalid arguments:price2"))?),
            ),
        };
        if req.post_only && req.order_type != OrderType::Limit {
            return Err(invalid("EGeneral:Invalid arguments:oflags"));
        }
        let mut volume = pair.quantise_volume(req.volume);
        if volume < pair.ordermin || volume.is_zero() {
            return Err(invalid("EOrder:Order minimum not met"));
        }
        let last = self.last_prices.get(req.symbol.as_str()).map(|p| p.price);
        let ref_price = match (req.order_type, price, price2) {
            (OrderType::Market, _, _) => last.ok_or_else(|| {
                ExchangeError::Retryable(format!("EService:Unavailable:no market price for {} yet", req.symbol))
            })?,
            (OrderType::StopLossLimit | OrderType::TakeProfitLimit, _, Some(p2)) => p2,
            (_, Some(p), _) => p,
            _ => return Err(invalid("EGeneral:Invalid arguments:price")),
        };
        if volume * ref_price < pair.costmin {
            return Err(invalid("EOrder:Cost minimum not met"));
        }
        if self.orders.values().any(|o| o.client_order_id == req.client_order_id) {
            return Err(rejected("EOrder:Duplicate cl_ord_id"));
        }

        // Margin: explicit leverage > 1, or a reduce-only order against an open position.
        let leverage = req.leverage.filter(|l| *l > 1);
        if let Some(l) = leverage {
            let max = match req.side {
                Side::Buy => pair.max_leverage_buy,
                Side::Sell => pair.max_leverage_sell,
            };
            if l > max {
                return Err(invalid("EGeneral:Invalid arguments:leverage"));
            }
        }
        let opposite = self
            .positions
            .get(req.symbol.as_str())
            .filter(|p| p.side != position_side(req.side))
            .cloned();
        let margin_leverage = match (leverage, req.reduce_only, &opposite) {
            (Some(l), _, _) => Some(l),
            (None, true, Some(p)) => Some(p.leverage),
            (None, _, _) => None,
        };
        if req.reduce_only && margin_leverage.is_some() {
            match &opposite {
                None => return Err(rejected("EOrder:Reduce only:No position exists")),
                Some(p) => volume = volume.min(p.volume),
            }
        }

        let marketable = req.order_type == OrderType::Limit
            && match (last, price) {
                (Some(l), Some(p)) => match req.side {
                    Side::Buy => p >= l,
                    Side::Sell => p <= l,
                },
                _ => false,
            };
        if req.post_only && marketable {
            return Err(rejected("EOrder:Post only order"));
        }

        // Hold funds so open orders cannot over-commit the account.
        let taker = self.cfg.taker_fee_pct / HUNDRED;
        let worst = match req.order_type {
            OrderType::Market | OrderType::StopLoss | OrderType::TakeProfit => {
                ref_price * (Decimal::ONE + self.cfg.max_slippage_bps / Decimal::from(10_000))
            }
            _ => ref_price,
        };
        let (base, quote) = (req.symbol.base().to_owned(), req.symbol.quote().to_owned());
        let (reserve_asset, amount, short_msg) = match margin_leverage {
            Some(l) => {
                let opening = (volume - opposite.as_ref().map(|p| p.volume).unwrap_or_default()).max(Decimal::ZERO);
                let collateral = opening * worst / Decimal::from(l);
                (quote, collateral + volume * worst * taker, "EOrder:Insufficient margin")
            }
            None => match req.side {
                Side::Buy => (
                    quote,
                    volume * worst * (Decimal::ONE + taker),
                    "EOrder:Insufficient funds",
                ),
                Side::Sell => (base, volume, "EOrder:Insufficient funds"),
            },
        };
        let amount = amount.round_dp_with_strategy(SCALE, RoundingStrategy::AwayFromZero);
        if self.available(&reserve_asset) < amount {
            return Err(rejected(short_msg));
        }
        // Spot exits (stop-loss / take-profit types, or reduce-only sells) are checked against the free
        // base now and again when they fill, but hold nothing: a stop and a take-profit may both cover
        // the same holding, and whichever fills second finds the base gone and is cancelled.
        let spot_exit = margin_leverage.is_none()
            && req.side == Side::Sell
            && (req.reduce_only || !matches!(req.order_type, OrderType::Limit | OrderType::Market));
        let amount = if spot_exit { Decimal::ZERO } else { amount };

        let description = describe(&req, &pair, volume, price, price2, margin_leverage);
        if req.validate {
            return Ok(OrderAck {
                exchange_order_id: String::new(),
                client_order_id: req.client_order_id,
                description,
            });
        }
        self.next_seq += 1;
        let id = format!("PAPER-{:010}", self.next_seq);
        let order = PaperOrder {
            id: id.clone(),
            client_order_id: req.client_order_id.clone(),
            symbol: req.symbol,
            side: req.side,
            order_type: req.order_type,
            status: if req.order_type == OrderType::Market {
                OrderStatus::Pending
            } else {
                OrderStatus::Open
            },
            volume,
            filled_volume: Decimal::ZERO,
            filled_cost: Decimal::ZERO,
            fee: Decimal::ZERO,
            price,
            price2,
            margin_leverage,
            reduce_only: req.reduce_only,
            post_only: req.post_only,
            marketable,
            triggered: false,
            reserve_asset: reserve_asset.clone(),
            reserved: amount,
            opened_at: now,
            closed_at: None,
            reason: None,
        };
        self.hold(&reserve_asset, amount);
        self.orders.insert(id.clone(), order);
        self.revision += 1;
        tracing::debug!(order_id = %id, cid = %req.client_order_id, %description, "paper order placed");
        Ok(OrderAck {
            exchange_order_id: id,
            client_order_id: req.client_order_id,
            description,
        })
    }

    // ------------------------------------------------------------ lookups and cancels

    fn find_id(&self, r: &OrderRef) -> Option<String> {
        match r {
            OrderRef::Exchange(id) => self.orders.contains_key(id).then(|| id.clone()),
            OrderRef::Client(cid) => self
                .orders
                .values()
                .rev()
                .find(|o| &o.client_order_id == cid)
                .map(|o| o.id.clone()),
        }
    }

    pub fn cancel(&mut self, r: &OrderRef, now: DateTime<Utc>) -> Result<(), ExchangeError> {
        let id = self
            .find_id(r)
            .filter(|id| self.orders.get(id).is_some_and(PaperOrder::is_live))
            .ok_or_else(|| rejected("EOrder:Unknown order"))?;
        self.close_order(&id, OrderStatus::Cancelled, now, "User requested");
        Ok(())
    }

    pub fn query(&self, refs: &[OrderRef]) -> Vec<ExchangeOrder> {
        refs.iter()
            .filter_map(|r| self.find_id(r))
            .filter_map(|id| self.orders.get(&id))
            .map(PaperOrder::to_exchange_order)
            .collect()
    }

    pub fn open_orders(&self) -> Vec<ExchangeOrder> {
        self.orders
            .values()
            .filter(|o| o.is_live())
            .map(PaperOrder::to_exchange_order)
            .collect()
    }

    /// Ends a live order: releases what it still holds, records the reason, trims the history.
    fn close_order(&mut self, id: &str, status: OrderStatus, now: DateTime<Utc>, reason: &str) {
        self.revision += 1;
        let Some(o) = self.orders.get_mut(id) else {
            return;
        };
        if !o.is_live() {
            return;
        }
        let (asset, held) = (o.reserve_asset.clone(), o.reserved);
        o.reserved = Decimal::ZERO;
        o.status = status;
        o.closed_at = Some(now);
        o.reason = Some(reason.to_owned());
        self.release(&asset, held);
        self.trim_history();
    }

    fn trim_history(&mut self) {
        // Counted first: on the common path nothing is over the limit and nothing is allocated.
        let excess = self
            .orders
            .values()
            .filter(|o| !o.is_live())
            .count()
            .saturating_sub(self.cfg.max_history);
        if excess == 0 {
            return;
        }
        let drop: Vec<String> = self
            .orders
            .values()
            .filter(|o| !o.is_live())
            .take(excess)
            .map(|o| o.id.clone())
            .collect();
        for id in drop {
            self.orders.remove(&id);
            self.revision += 1;
        }
    }

    // ------------------------------------------------------------ market updates

    /// Applies one market update to the live orders of `symbol`, oldest order first.
    pub fn on_bar(&mut self, symbol: &Symbol, bar: Bar, now: DateTime<Utc>) -> Vec<PaperFill> {
        self.check_dead_man(now);
        if let Some(last) = self.last_prices.get(symbol.as_str()) {
            if bar.end < last.at {
                tracing::debug!(%symbol, at = %bar.end, last = %last.at, "paper exchange: stale price ignored");
                return Vec::new();
            }
        }
        self.last_prices.insert(
            symbol.as_str().to_owned(),
            PricePoint {
                price: bar.close,
                at: bar.end,
            },
        );
        let Some(pair) = self.pairs.get(symbol).cloned() else {
            return Vec::new();
        };
        let ids: Vec<String> = self
            .orders
            .values()
            .filter(|o| o.is_live() && &o.symbol == symbol)
            .map(|o| o.id.clone())
            .collect();
        let mut fills = Vec::new();
        for id in ids {
            if let Some(fill) = self.process(&id, &bar, &pair) {
                fills.push(fill);
            }
        }
        fills
    }

    /// Whether `bar` would change anything on the exchange: fill, trigger or cancel one of the live
    /// orders of `symbol`, or fire the dead man's switch. Uses the same decision as [`Self::on_bar`]
    /// on copies of the orders, so a bar answered `false` here leaves every order as it is. A feed
    /// that runs ahead of the wall clock (a backtest) hands such bars over in one batch.
    pub fn would_act(&self, symbol: &Symbol, bar: &Bar) -> bool {
        if self.dead_man.is_some() {
            return true;
        }
        if self
            .last_prices
            .get(symbol.as_str())
            .is_some_and(|last| bar.end < last.at)
        {
            return false;
        }
        self.orders
            .values()
            .filter(|o| o.is_live() && &o.symbol == symbol)
            .any(|o| {
                let mut copy = o.clone();
                let view = bar.for_order(o.opened_at);
                self.decide(&mut copy, &view).is_some() || copy.triggered != o.triggered
            })
    }

    fn process(&mut self, id: &str, bar: &Bar, pair: &PairInfo) -> Option<PaperFill> {
        let mut o = self.orders.get(id).cloned()?;
        let view = bar.for_order(o.opened_at);
        let decision = self.decide(&mut o, &view);
        let outcome = decision.and_then(|d| self.execute(&mut o, d, pair, bar.end));
        let closed = !o.is_live();
        self.orders.insert(o.id.clone(), o);
        self.revision += 1;
        match outcome {
            Some(Ok(fill)) => {
                if closed {
                    self.trim_history();
                }
                self.fills.push_back(fill.clone());
                while self.fills.len() > self.cfg.max_fills {
                    self.fills.pop_front();
                }
                Some(fill)
            }
            Some(Err(reason)) => {
                tracing::info!(order_id = %id, %reason, "paper order cancelled by the exchange");
                self.close_order(id, OrderStatus::Cancelled, bar.end, &reason);
                None
            }
            None => None,
        }
    }

    /// Whether and at what base price the order executes in `b`; sets `triggered` on `*-limit` orders.
    fn decide(&self, o: &mut PaperOrder, b: &Bar) -> Option<Decision> {
        match o.order_type {
            OrderType::Market => Some(Decision {
                base: b.open,
                liquidity: Liquidity::Taker,
                slip: Slip::Full,
            }),
            OrderType::Limit => limit_decision(o.price?, o.side, o.marketable, b),
            OrderType::StopLoss | OrderType::TakeProfit => {
                trigger_base(o.order_type, o.side, o.price?, b).map(|base| Decision {
                    base,
                    liquidity: Liquidity::Taker,
                    slip: Slip::Full,
                })
            }
            OrderType::StopLossLimit | OrderType::TakeProfitLimit => {
                let limit = o.price2?;
                if o.triggered {
                    return limit_decision(limit, o.side, o.marketable, b);
                }
                let base = trigger_base(o.order_type, o.side, o.price?, b)?;
                o.triggered = true;
                o.marketable = match o.side {
                    Side::Buy => limit >= base,
                    Side::Sell => limit <= base,
                };
                limit_decision(limit, o.side, o.marketable, &Bar { open: base, ..*b })
            }
        }
    }

    /// Fills (part of) the order; `Some(Err(reason))` when the exchange has to cancel it instead.
    fn execute(
        &mut self,
        o: &mut PaperOrder,
        d: Decision,
        pair: &PairInfo,
        ts: DateTime<Utc>,
    ) -> Option<Result<PaperFill, String>> {
        let mut remaining = o.remaining();
        if o.reduce_only && o.margin_leverage.is_some() {
            let open = self
                .positions
                .get(o.symbol.as_str())
                .filter(|p| p.side != position_side(o.side))
                .map(|p| p.volume)
                .unwrap_or_default();
            if open.is_zero() {
                return Some(Err("Reduce only: no position to reduce".to_owned()));
            }
            remaining = remaining.min(open);
        }
        if remaining <= Decimal::ZERO {
            return None;
        }
        let volume = self.fill_volume(remaining, pair);
        let price = self.fill_price(d, o.side, pair);
        if price <= Decimal::ZERO {
            return None;
        }
        let fee_pct = match d.liquidity {
            Liquidity::Maker => self.cfg.maker_fee_pct,
            Liquidity::Taker => self.cfg.taker_fee_pct,
        };
        Some(self.settle(o, volume, price, fee_pct, d.liquidity, ts))
    }

    fn fill_volume(&mut self, remaining: Decimal, pair: &PairInfo) -> Decimal {
        if !self.cfg.partial_fills || rng::up_to(&mut self.rng, 1) == 0 {
            return remaining;
        }
        let pct = Decimal::from(30 + rng::up_to(&mut self.rng, 60));
        let part = pair.quantise_volume(remaining * pct / HUNDRED);
        if part < pair.ordermin || remaining - part < pair.ordermin {
            remaining
        } else {
            part
        }
    }

    fn fill_price(&mut self, d: Decision, side: Side, pair: &PairInfo) -> Decimal {
        let slip = match d.slip {
            Slip::None => Decimal::ZERO,
            Slip::Full | Slip::CappedAt(_) => self.draw_slippage(),
        };
        let raw = match side {
            Side::Buy => d.base * (Decimal::ONE + slip),
            Side::Sell => d.base * (Decimal::ONE - slip),
        };
        let q = pair.quantise_price(raw);
        match (d.slip, side) {
            (Slip::CappedAt(limit), Side::Buy) => q.min(limit),
            (Slip::CappedAt(limit), Side::Sell) => q.max(limit),
            _ => q,
        }
    }

    /// A seeded slippage fraction in `[0, max_slippage_bps]`, in steps of 0.01 bp.
    fn draw_slippage(&mut self) -> Decimal {
        let steps = (self.cfg.max_slippage_bps * HUNDRED).trunc();
        let max = steps.to_u64().unwrap_or(0);
        if max == 0 {
            return Decimal::ZERO;
        }
        Decimal::from(rng::up_to(&mut self.rng, max)) / Decimal::from(1_000_000)
    }
}
