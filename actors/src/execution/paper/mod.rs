//! The paper exchange: the [`Exchange`] port filled against the market feed instead of Kraken.
//!
//! It mirrors what the Kraken adapter does and answers at the port:
//! - **Precision:** prices are rounded to the pair's tick and volumes truncated to its lot decimals
//!   (the adapter does the same before sending). The effective values show in the order and the ack.
//! - **Minimums:** below `ordermin` gives `Invalid("EOrder:Order minimum not met")`; below `costmin` gives
//!   `Invalid("EOrder:Cost minimum not met")`. Malformed arguments give `Invalid("EGeneral:Invalid arguments:…")`.
//! - **Rejections:** what Kraken itself refuses is `Rejected`, with Kraken's text:
//!   `EQuery:Unknown asset pair`, `EOrder:Insufficient funds`, `EOrder:Insufficient margin`, `EOrder:Unknown order`
//!   (cancel of an unknown or already closed order), `EOrder:Duplicate cl_ord_id`, `EOrder:Post only order`.
//! - **No price yet:** a market order on a pair without a price is `Retryable`; nothing was placed.
//!
//! Fill rules, per market update (a tick from [`PaperExchange::on_price`] or a closed candle from
//! [`PaperExchange::on_candle`]); orders are processed oldest first:
//! - An order sees the whole candle only if it existed when the candle opened; otherwise only the close.
//! - **Market** orders stay `pending` until the next update and fill at its (visible) open plus seeded
//!   slippage in `[0, max_slippage_bps]`: buys pay up, sells receive less. Taker fee.
//! - **Limit** orders fill at the limit price when the price crosses it (buy: low ≤ limit; sell: high ≥ limit).
//!   Maker fee. A limit that was marketable when placed fills at the next open plus slippage, never through
//!   its limit, with the taker fee.
//! - **Stop-loss** (sell: low ≤ trigger; buy: high ≥ trigger) and **take-profit** (sell: high ≥ trigger;
//!   buy: low ≤ trigger) fill like market orders at the trigger, or at the open when the market gapped through.
//! - `*-limit` variants: `price` is the trigger, `price2` the limit; once triggered they behave as limit orders.
//! - With `partial_fills`, a fill event may fill a seeded 30–90 % of what remains (never leaving less than
//!   `ordermin`); the rest fills on later updates.
//!
//! Accounting: per-asset balances; fees in the quote asset, `cost × fee_pct / 100` rounded to 8 decimals.
//! Open orders hold funds (buys: quote for the worst price plus the taker fee; sells: base), so the account
//! cannot be over-committed; a fill that finds too little (a market buy after a jump) is cancelled with reason
//! `Insufficient funds`. Spot exits (stop-loss / take-profit types, or reduce-only sells) are checked against
//! the free base when placed and again when they fill, but hold nothing, so a stop and a take-profit can both
//! cover one holding; the one that fills second finds the base gone and is cancelled (`Insufficient funds`),
//! never selling it twice. Orders with leverage > 1 trade on margin: one net position per pair, collateral
//! = cost / leverage taken out of the quote balance, P&L realised into the quote balance on reduction, never
//! a negative base balance. Reduce-only orders only reduce such a position.
//!
//! `balances()` returns totals, as Kraken's `Balance` does (held funds included); see
//! [`PaperExchange::available_balances`] for what is free.
//!
//! Not modelled: margin liquidation and rollover fees, time-in-force / expiry (every order is GTC),
//! iceberg and trailing orders, order-book depth (a fill never moves the price).
//!
//! Persistence: [`PaperExchange::snapshot`] / [`PaperExchange::restore`], or [`PaperExchange::save_to`] /
//! [`PaperExchange::load_from`] under [`STATE_KEY`]; the generator state is part of the snapshot, so a
//! restored exchange continues the same seeded sequence.

mod engine;
mod rng;
#[cfg(test)]
mod tests;

pub use engine::{Liquidity, PaperFill, PaperOrder, PaperPosition, PricePoint};

use crate::clock::SharedClock;
use crate::domain::{Candle, Symbol};
use crate::ports::{
    Exchange, ExchangeError, ExchangeFuture, ExchangeOrder, OrderAck, OrderRef, OrderRequest, PairInfo, StateStore,
    StoreError, StoreFuture,
};
use chrono::{DateTime, Utc};
use engine::{Bar, Engine, Fault};
use futures::FutureExt;
use parking_lot::Mutex;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Key of the paper exchange's document in the [`StateStore`].
pub const STATE_KEY: &str = "paper_exchange";
const SNAPSHOT_VERSION: u32 = 1;

/// Settings of the paper exchange (`execution.paper` in the configuration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaperConfig {
    /// Percent of the cost, e.g. 0.16.
    pub maker_fee_pct: Decimal,
    /// Percent of the cost, e.g. 0.26.
    pub taker_fee_pct: Decimal,
    /// Maximum simulated slippage in basis points; each market-like fill draws from `[0, max]`.
    pub max_slippage_bps: Decimal,
    pub seed: u64,
    pub partial_fills: bool,
    pub initial_balances: BTreeMap<String, Decimal>,
    /// Pairs with their precision, minimums and maximum leverage (see [`PaperExchange::default_pairs`]).
    pub pairs: Vec<PairInfo>,
    /// Closed orders kept for queries (the oldest are dropped first).
    pub max_history: usize,
    /// Fills kept in the fill log.
    pub max_fills: usize,
}

impl Default for PaperConfig {
    fn default() -> Self {
        Self {
            maker_fee_pct: Decimal::new(16, 2),
            taker_fee_pct: Decimal::new(26, 2),
            max_slippage_bps: Decimal::new(10, 0),
            seed: 42,
            partial_fills: false,
            initial_balances: [
                ("USDT", Decimal::new(10000, 0)),
                ("BTC", Decimal::ZERO),
                ("XRP", Decimal::ZERO),
            ]
            .into_iter()
            .map(|(a, v)| (a.to_owned(), v))
            .collect(),
            pairs: PaperExchange::default_pairs(),
            max_history: 1000,
            max_fills: 10_000,
        }
    }
}

/// A configuration the paper exchange cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid paper exchange configuration: {0}")]
pub struct PaperConfigError(pub String);

impl PaperConfig {
    /// # Errors
    /// [`PaperConfigError`] for negative fees, slippage or balances, or a pair with a non-positive tick.
    pub fn validate(&self) -> Result<(), PaperConfigError> {
        let err = |m: String| Err(PaperConfigError(m));
        if self.maker_fee_pct < Decimal::ZERO || self.taker_fee_pct < Decimal::ZERO {
            return err("fees must not be negative".into());
        }
        if self.max_slippage_bps < Decimal::ZERO {
            return err("max_slippage_bps must not be negative".into());
        }
        if let Some((asset, _)) = self.initial_balances.iter().find(|(_, v)| **v < Decimal::ZERO) {
            return err(format!("initial balance of {asset} is negative"));
        }
        if let Some(p) = self
            .pairs
            .iter()
            .find(|p| p.tick_size <= Decimal::ZERO || p.ordermin < Decimal::ZERO)
        {
            return err(format!(
                "pair {} needs a positive tick size and a non-negative ordermin",
                p.symbol
            ));
        }
        Ok(())
    }
}

/// Account value in one quote asset, see [`PaperExchange::equity_in`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Equity {
    pub quote: String,
    pub total: Decimal,
    /// Assets or positions that could not be valued for lack of a price.
    pub unpriced: Vec<String>,
}

/// Which call an injected fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaperOp {
    Any,
    Pairs,
    PlaceOrder,
    CancelOrder,
    QueryOrders,
    OpenOrders,
    Balances,
    CancelAllAfter,
}

/// Everything needed to continue after a restart: balances, orders (open and the kept history),
/// margin positions, prices, the fill log, the id counter and the generator state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaperSnapshot {
    pub version: u32,
    pub balances: BTreeMap<String, Decimal>,
    pub orders: Vec<PaperOrder>,
    pub positions: Vec<PaperPosition>,
    pub last_prices: BTreeMap<String, PricePoint>,
    pub fills: Vec<PaperFill>,
    pub next_seq: u64,
    pub rng_state: u64,
    pub dead_man_deadline: Option<DateTime<Utc>>,
}

/// The paper exchange. Cheap to clone; clones share one account.
#[derive(Clone)]
pub struct PaperExchange {
    inner: Arc<Mutex<Engine>>,
    clock: SharedClock,
}

impl std::fmt::Debug for PaperExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaperExchange").finish_non_exhaustive()
    }
}

fn pair(
    symbol: &str,
    exchange_name: &str,
    tick: Decimal,
    price_decimals: u32,
    ordermin: Decimal,
    costmin: Decimal,
    leverage: u32,
) -> Option<PairInfo> {
    Some(PairInfo {
        symbol: Symbol::parse(symbol).ok()?,
        exchange_name: exchange_name.to_owned(),
        tick_size: tick,
        price_decimals,
        lot_decimals: 8,
        ordermin,
        costmin,
        max_leverage_buy: leverage,
        max_leverage_sell: leverage,
    })
}

impl PaperExchange {
    /// # Errors
    /// [`PaperConfigError`] when the configuration is invalid.
    pub fn new(config: PaperConfig, clock: SharedClock) -> Result<Self, PaperConfigError> {
        config.validate()?;
        Ok(Self {
            inner: Arc::new(Mutex::new(Engine::new(config))),
            clock,
        })
    }

    /// Kraken-like precision for the traded pairs. Live values come from `AssetPairs` at start.
    pub fn default_pairs() -> Vec<PairInfo> {
        [
            pair(
                "BTC/USDT",
                "XBTUSDT",
                Decimal::new(1, 1),
                1,
                Decimal::new(5, 5),
                Decimal::new(5, 1),
                5,
            ),
            pair(
                "XRP/USDT",
                "XRPUSDT",
                Decimal::new(1, 5),
                5,
                Decimal::new(10, 0),
                Decimal::new(5, 1),
                5,
            ),
            pair(
                "XRP/BTC",
                "XRPXBT",
                Decimal::new(1, 8),
                8,
                Decimal::new(10, 0),
                Decimal::new(2, 5),
                5,
            ),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    // ------------------------------------------------------------ market input

    /// A trade price at `ts`. Updates older than the last one for the pair are ignored.
    /// Returns the fills it caused.
    pub fn on_price(&self, symbol: &Symbol, price: Decimal, ts: DateTime<Utc>) -> Vec<PaperFill> {
        if price <= Decimal::ZERO {
            return Vec::new();
        }
        let bar = Bar {
            start: ts,
            end: ts,
            open: price,
            high: price,
            low: price,
            close: price,
        };
        let now = self.clock.now();
        self.inner.lock().on_bar(symbol, bar, now)
    }

    /// A closed candle: triggers use its whole range for orders that existed when it opened.
    /// Returns the fills it caused.
    pub fn on_candle(&self, candle: &Candle) -> Vec<PaperFill> {
        let Some(bar) = candle_bar(candle) else {
            return Vec::new();
        };
        let now = self.clock.now();
        self.inner.lock().on_bar(&candle.symbol, bar, now)
    }

    /// A counter that moves with every change of an order or a balance (prices alone do not move
    /// it): a snapshot taken after reading revision `r` holds every change up to `r`.
    pub fn revision(&self) -> u64 {
        self.inner.lock().revision
    }

    /// Whether [`Self::on_candle`] with this candle would fill, trigger or cancel an order (see
    /// [`Engine::would_act`]); a candle that would not leaves the exchange as it is.
    pub fn candle_would_act(&self, candle: &Candle) -> bool {
        candle_bar(candle).is_some_and(|bar| self.inner.lock().would_act(&candle.symbol, &bar))
    }

    // ------------------------------------------------------------ inspection

    pub fn last_price(&self, symbol: &Symbol) -> Option<Decimal> {
        self.inner.lock().last_prices.get(symbol.as_str()).map(|p| p.price)
    }

    /// The last price with the time it was seen.
    pub fn last_quote(&self, symbol: &Symbol) -> Option<crate::risk::Quote> {
        self.inner
            .lock()
            .last_prices
            .get(symbol.as_str())
            .map(|p| crate::risk::Quote {
                price: p.price,
                at: p.at,
            })
    }

    /// Totals minus what open orders hold.
    pub fn available_balances(&self) -> BTreeMap<String, Decimal> {
        let eng = self.inner.lock();
        eng.balances.keys().map(|a| (a.clone(), eng.available(a))).collect()
    }

    /// What open orders hold, per asset.
    pub fn reserved_balances(&self) -> BTreeMap<String, Decimal> {
        self.inner.lock().reserved.clone()
    }

    /// Open margin positions.
    pub fn positions(&self) -> Vec<PaperPosition> {
        self.inner.lock().positions.values().cloned().collect()
    }

    /// The fill log, oldest first.
    pub fn fills(&self) -> Vec<PaperFill> {
        self.inner.lock().fills.iter().cloned().collect()
    }

    /// Σ fees of the fill log, per fee asset.
    pub fn total_fees(&self) -> BTreeMap<String, Decimal> {
        let mut out: BTreeMap<String, Decimal> = BTreeMap::new();
        for f in self.inner.lock().fills.iter() {
            *out.entry(f.fee_asset.clone()).or_default() += f.fee;
        }
        out
    }

    /// Account value in `quote`: every balance at the last `ASSET/quote` price, plus the collateral and
    /// unrealised P&L of the margin positions. Nothing is guessed: assets (or positions) without a price
    /// are left out and named in [`Equity::unpriced`].
    pub fn equity_in(&self, quote: &str) -> Equity {
        let eng = self.inner.lock();
        let mut holdings = eng.balances.clone();
        let mut unpriced = Vec::new();
        for p in eng.positions.values() {
            let value = match eng.last_prices.get(p.symbol.as_str()) {
                Some(px) => p.margin + p.unrealized_pnl(px.price),
                None => {
                    unpriced.push(p.symbol.to_string());
                    p.margin
                }
            };
            *holdings.entry(p.symbol.quote().to_owned()).or_default() += value;
        }
        let mut total = Decimal::ZERO;
        for (asset, amount) in holdings.into_iter().filter(|(_, a)| !a.is_zero()) {
            if asset == quote {
                total += amount;
            } else if let Some(px) = eng.last_prices.get(&format!("{asset}/{quote}")) {
                total += amount * px.price;
            } else {
                unpriced.push(asset);
            }
        }
        Equity {
            quote: quote.to_owned(),
            total,
            unpriced,
        }
    }

    /// The full record of an order (open or kept in the history).
    pub fn order(&self, order: &OrderRef) -> Option<PaperOrder> {
        let eng = self.inner.lock();
        match order {
            OrderRef::Exchange(id) => eng.orders.get(id).cloned(),
            OrderRef::Client(cid) => eng.orders.values().rev().find(|o| &o.client_order_id == cid).cloned(),
        }
    }

    // ------------------------------------------------------------ fault injection

    /// The next call of any kind fails with `error` and has no effect.
    pub fn fail_next(&self, error: ExchangeError) {
        self.fail_next_op(PaperOp::Any, error, false);
    }

    /// The next call of kind `op` fails with `error`. With `apply`, the call takes effect first (the order
    /// is placed or cancelled) and only the answer is lost, as after a timeout once the engine accepted it.
    pub fn fail_next_op(&self, op: PaperOp, error: ExchangeError, apply: bool) {
        self.inner.lock().faults.push_back(Fault { op, error, apply });
    }

    // ------------------------------------------------------------ persistence

    pub fn snapshot(&self) -> PaperSnapshot {
        let eng = self.inner.lock();
        PaperSnapshot {
            version: SNAPSHOT_VERSION,
            balances: eng.balances.clone(),
            orders: eng.orders.values().cloned().collect(),
            positions: eng.positions.values().cloned().collect(),
            last_prices: eng.last_prices.clone(),
            fills: eng.fills.iter().cloned().collect(),
            next_seq: eng.next_seq,
            rng_state: eng.rng,
            dead_man_deadline: eng.dead_man,
        }
    }

    /// Replaces the account with `snap`; the configuration (fees, pairs) stays as configured.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for an unknown version or inconsistent content; nothing is changed then.
    pub fn restore(&self, snap: PaperSnapshot) -> Result<(), StoreError> {
        if snap.version != SNAPSHOT_VERSION {
            return Err(StoreError::Corrupt(format!(
                "paper exchange snapshot version {}",
                snap.version
            )));
        }
        if let Some(o) = snap
            .orders
            .iter()
            .find(|o| o.reserved < Decimal::ZERO || o.filled_volume > o.volume)
        {
            return Err(StoreError::Corrupt(format!("paper order {} is inconsistent", o.id)));
        }
        let max_seq = snap
            .orders
            .iter()
            .filter_map(|o| o.id.strip_prefix("PAPER-").and_then(|n| n.parse::<u64>().ok()))
            .max()
            .unwrap_or(0);
        let mut eng = self.inner.lock();
        eng.balances = snap.balances;
        eng.orders = snap.orders.into_iter().map(|o| (o.id.clone(), o)).collect();
        eng.positions = snap
            .positions
            .into_iter()
            .map(|p| (p.symbol.as_str().to_owned(), p))
            .collect();
        eng.last_prices = snap.last_prices;
        eng.fills = snap.fills.into_iter().collect();
        eng.next_seq = snap.next_seq.max(max_seq);
        eng.rng = snap.rng_state;
        eng.dead_man = snap.dead_man_deadline;
        eng.rebuild_reserved();
        Ok(())
    }

    /// Saves the snapshot under [`STATE_KEY`].
    pub fn save_to(&self, store: &dyn StateStore) -> StoreFuture<()> {
        match serde_json::to_value(self.snapshot()) {
            Ok(v) => store.save_state(STATE_KEY, v),
            Err(e) => futures::future::ready(Err(StoreError::Corrupt(e.to_string()))).boxed(),
        }
    }

    /// Restores from [`STATE_KEY`] if a snapshot is stored; `Ok(false)` when there is none (fresh account).
    pub fn load_from(&self, store: &dyn StateStore) -> StoreFuture<bool> {
        let load = store.load_state(STATE_KEY);
        let me = self.clone();
        async move {
            let Some(value) = load.await? else {
                return Ok(false);
            };
            let snap: PaperSnapshot =
                serde_json::from_value(value).map_err(|e| StoreError::Corrupt(format!("paper exchange: {e}")))?;
            me.restore(snap)?;
            Ok(true)
        }
        .boxed()
    }

    // ------------------------------------------------------------ port plumbing

    fn call<T: Send + 'static>(
        &self,
        op: PaperOp,
        f: impl FnOnce(&mut Engine, DateTime<Utc>) -> Result<T, ExchangeError>,
    ) -> ExchangeFuture<T> {
        let now = self.clock.now();
        let result = {
            let mut eng = self.inner.lock();
            eng.check_dead_man(now);
            match eng.take_fault(op) {
                Some(Fault {
                    error, apply: false, ..
                }) => Err(error),
                Some(Fault { error, apply: true, .. }) => {
                    let _ignored = f(&mut eng, now);
                    Err(error)
                }
                None => f(&mut eng, now),
            }
        };
        futures::future::ready(result).boxed()
    }
}

impl Exchange for PaperExchange {
    fn pairs(&self) -> ExchangeFuture<Vec<PairInfo>> {
        self.call(PaperOp::Pairs, |eng, _| Ok(eng.pairs.values().cloned().collect()))
    }

    fn place_order(&self, req: OrderRequest) -> ExchangeFuture<OrderAck> {
        self.call(PaperOp::PlaceOrder, move |eng, now| eng.place(req, now))
    }

    fn cancel_order(&self, order: OrderRef) -> ExchangeFuture<()> {
        self.call(PaperOp::CancelOrder, move |eng, now| eng.cancel(&order, now))
    }

    fn query_orders(&self, orders: Vec<OrderRef>) -> ExchangeFuture<Vec<ExchangeOrder>> {
        self.call(PaperOp::QueryOrders, move |eng, _| Ok(eng.query(&orders)))
    }

    fn open_orders(&self) -> ExchangeFuture<Vec<ExchangeOrder>> {
        self.call(PaperOp::OpenOrders, |eng, _| Ok(eng.open_orders()))
    }

    fn balances(&self) -> ExchangeFuture<BTreeMap<String, Decimal>> {
        self.call(PaperOp::Balances, |eng, _| Ok(eng.balances.clone()))
    }

    fn cancel_all_after(&self, timeout_secs: u32) -> ExchangeFuture<()> {
        self.call(PaperOp::CancelAllAfter, move |eng, now| {
            eng.arm_dead_man(now, timeout_secs);
            Ok(())
        })
    }
}

/// The bar a closed candle stands for; `None` for a candle with an impossible range.
fn candle_bar(candle: &Candle) -> Option<Bar> {
    if candle.low <= Decimal::ZERO || candle.low > candle.high {
        return None;
    }
    Some(Bar {
        start: candle.open_time,
        end: candle.open_time + chrono::Duration::seconds(candle.timeframe.seconds()),
        open: candle.open,
        high: candle.high,
        low: candle.low,
        close: candle.close,
    })
}

/// The paper exchange's last trades are a market price source of the risk engine.
impl crate::risk::PriceSource for PaperExchange {
    fn quote(&self, symbol: &Symbol) -> Option<crate::risk::Quote> {
        self.last_quote(symbol)
    }
}
