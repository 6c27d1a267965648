//! `KrakenExchange`: the [`Exchange`] port on Kraken, with the pair registry loaded at start,
//! local order validation (tick, lot, minimums) and the dead man's switch task.

use super::assets::{normalise_asset, normalise_wsname};
use super::client::{
    AddOrderParams, AssetPair, CancelTarget, KrakenClient, KrakenOrder, Ticker, MAX_DEAD_MANS_SWITCH_SECS,
};
use chrono::{DateTime, Utc};
use futures::FutureExt;
use parking_lot::RwLock;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use triplegain_actors::domain::{Candle, ClientOrderId, OrderStatus, OrderType, Side, Symbol, Timeframe};
use triplegain_actors::ports::{
    Exchange, ExchangeError, ExchangeFuture, ExchangeOrder, OrderAck, OrderRef, OrderRequest, PairInfo,
};
use uuid::Uuid;

// ---------------------------------------------------------------- client order ids

/// The `cl_ord_id` Kraken accepts for our id: a UUID (our generated `tg-<32 hex>` ids are sent
/// as the hyphenated UUID), or free text of at most 18 ASCII characters.
///
/// # Errors
/// `Invalid` for ids Kraken would refuse.
pub fn kraken_cl_ord_id(id: &ClientOrderId) -> Result<String, ExchangeError> {
    let s = id.as_str();
    let hex = s.strip_prefix("tg-").unwrap_or(s);
    if let Ok(u) = Uuid::try_parse(hex) {
        return Ok(u.hyphenated().to_string());
    }
    if s.len() <= 18 && s.chars().all(|c| c.is_ascii_graphic()) {
        return Ok(s.to_owned());
    }
    Err(ExchangeError::Invalid(format!(
        "client order id {s:?} cannot be a Kraken cl_ord_id (needs a UUID or at most 18 ASCII characters)"
    )))
}

/// Our id for a `cl_ord_id` returned by Kraken: UUIDs become `tg-<32 hex>` (the form of
/// [`ClientOrderId::random`]), free text is kept.
pub fn client_order_id_from_kraken(cl_ord_id: &str) -> Option<ClientOrderId> {
    match Uuid::try_parse(cl_ord_id) {
        Ok(u) => ClientOrderId::parse(&format!("tg-{}", u.simple())).ok(),
        Err(_) => ClientOrderId::parse(cl_ord_id).ok(),
    }
}

// ---------------------------------------------------------------- pair registry

/// Pairs we trade, with every name Kraken uses for them (id, altname, wsname) mapped to our symbol.
#[derive(Debug, Clone, Default)]
pub struct PairRegistry {
    by_symbol: BTreeMap<Symbol, PairInfo>,
    alias: HashMap<String, Symbol>,
}

impl PairRegistry {
    /// Builds the registry from an `AssetPairs` result. With `wanted` empty every pair whose
    /// name maps to a valid symbol is kept; otherwise exactly the wanted ones.
    ///
    /// # Errors
    /// `Invalid` naming the wanted symbols Kraken does not list.
    pub fn build(pairs: &BTreeMap<String, AssetPair>, wanted: &[Symbol]) -> Result<Self, ExchangeError> {
        let mut reg = Self::default();
        for (id, p) in pairs {
            let Some(symbol) = symbol_of(p) else { continue };
            if !wanted.is_empty() && !wanted.contains(&symbol) {
                continue;
            }
            // Two Kraken entries can map to one symbol (e.g. a legacy and a new listing):
            // keep the first, deterministically (ids are iterated in order).
            if reg.by_symbol.contains_key(&symbol) {
                continue;
            }
            let info = pair_info(id, p, symbol.clone());
            for name in [
                Some(id.as_str()),
                Some(p.altname.as_str()),
                p.wsname.as_deref(),
                Some(symbol.as_str()),
            ]
            .into_iter()
            .flatten()
            {
                reg.alias.insert(name.to_ascii_uppercase(), symbol.clone());
            }
            reg.by_symbol.insert(symbol, info);
        }
        let missing: Vec<&str> = wanted
            .iter()
            .filter(|s| !reg.by_symbol.contains_key(*s))
            .map(Symbol::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(ExchangeError::Invalid(format!(
                "Kraken lists no pair for {}",
                missing.join(", ")
            )));
        }
        Ok(reg)
    }

    pub fn get(&self, symbol: &Symbol) -> Option<&PairInfo> {
        self.by_symbol.get(symbol)
    }

    /// Our symbol for any Kraken name of a registered pair (id, altname, wsname).
    pub fn symbol_for(&self, kraken_name: &str) -> Option<&Symbol> {
        self.alias.get(&kraken_name.to_ascii_uppercase())
    }

    pub fn pairs(&self) -> impl Iterator<Item = &PairInfo> {
        self.by_symbol.values()
    }
}

fn symbol_of(p: &AssetPair) -> Option<Symbol> {
    let text = p
        .wsname
        .as_deref()
        .and_then(normalise_wsname)
        .unwrap_or_else(|| format!("{}/{}", normalise_asset(&p.base), normalise_asset(&p.quote)));
    Symbol::parse(&text).ok()
}

fn pair_info(id: &str, p: &AssetPair, symbol: Symbol) -> PairInfo {
    let tick_size = p
        .tick_size
        .filter(|t| *t > Decimal::ZERO)
        .unwrap_or_else(|| Decimal::new(1, p.pair_decimals));
    PairInfo {
        symbol,
        exchange_name: id.to_owned(),
        tick_size,
        price_decimals: p.pair_decimals,
        lot_decimals: p.lot_decimals,
        ordermin: p.ordermin.unwrap_or(Decimal::ZERO),
        costmin: p.costmin.unwrap_or(Decimal::ZERO),
        max_leverage_buy: p.leverage_buy.iter().copied().max().unwrap_or(1),
        max_leverage_sell: p.leverage_sell.iter().copied().max().unwrap_or(1),
    }
}

// ---------------------------------------------------------------- validation

/// Turns an order request into `AddOrder` parameters: price(s) rounded to the tick, volume
/// truncated to the lot decimals, minimums, leverage and type rules checked, `cl_ord_id` set.
///
/// # Errors
/// `Invalid` with the reason; nothing is sent.
pub fn prepare_order(pair: &PairInfo, req: &OrderRequest) -> Result<AddOrderParams, ExchangeError> {
    let invalid = |m: String| {
        Err(ExchangeError::Invalid(format!(
            "{} {}: {m}",
            req.symbol, req.client_order_id
        )))
    };
    let needs_price = !matches!(req.order_type, OrderType::Market);
    let needs_price2 = matches!(req.order_type, OrderType::StopLossLimit | OrderType::TakeProfitLimit);
    match (needs_price, req.price) {
        (true, None) => return invalid(format!("{} order needs a price", req.order_type)),
        (false, Some(_)) => {
            return invalid("market orders take no price; bound the slippage with a limit order".into());
        }
        _ => {}
    }
    match (needs_price2, req.price2) {
        (true, None) => return invalid(format!("{} order needs a limit price (price2)", req.order_type)),
        (false, Some(_)) => return invalid(format!("{} order takes no price2", req.order_type)),
        _ => {}
    }
    if req.post_only && req.order_type != OrderType::Limit {
        return invalid("post-only applies to limit orders only".into());
    }
    let price = req.price.map(|p| pair.quantise_price(p));
    let price2 = req.price2.map(|p| pair.quantise_price(p));
    for p in price.iter().chain(price2.iter()) {
        if *p <= Decimal::ZERO {
            return invalid(format!(
                "price must be positive after rounding to tick {}",
                pair.tick_size
            ));
        }
    }
    let volume = pair.quantise_volume(req.volume);
    if volume <= Decimal::ZERO {
        return invalid(format!(
            "volume {} is zero after truncation to {} decimals",
            req.volume, pair.lot_decimals
        ));
    }
    if volume < pair.ordermin {
        return invalid(format!(
            "volume {volume} is below the pair minimum {} (ordermin)",
            pair.ordermin
        ));
    }
    // The executed price: limit price for *-limit types, else the limit/trigger price.
    // Market orders have no price to check against costmin; Kraken checks it.
    if let Some(exec_price) = price2.or(price) {
        let cost = exec_price * volume;
        if cost < pair.costmin {
            return invalid(format!(
                "order value {} is below the pair minimum {} (costmin)",
                cost.normalize(),
                pair.costmin
            ));
        }
    }
    let leverage = req.leverage.filter(|l| *l > 1);
    if let Some(l) = leverage {
        let max = match req.side {
            Side::Buy => pair.max_leverage_buy,
            Side::Sell => pair.max_leverage_sell,
        };
        if l > max {
            return invalid(format!("leverage {l} exceeds the pair maximum {max} for {}", req.side));
        }
    }
    Ok(AddOrderParams {
        pair: pair.exchange_name.clone(),
        side: req.side,
        order_type: req.order_type,
        volume,
        price,
        price2,
        leverage,
        reduce_only: req.reduce_only,
        post_only: req.post_only,
        validate: req.validate,
        cl_ord_id: Some(kraken_cl_ord_id(&req.client_order_id)?),
    })
}

/// Our view of a Kraken order; `None` for pairs we do not trade or order types we do not use.
pub fn to_exchange_order(txid: &str, o: &KrakenOrder, registry: &PairRegistry) -> Option<ExchangeOrder> {
    let symbol = registry.symbol_for(&o.descr.pair)?.clone();
    let side = Side::parse(&o.descr.side).ok()?;
    let order_type = OrderType::parse(&o.descr.ordertype).ok()?;
    let status = match o.status.as_str() {
        "pending" => OrderStatus::Pending,
        "open" if o.vol_exec > Decimal::ZERO => OrderStatus::PartiallyFilled,
        "open" => OrderStatus::Open,
        "closed" => OrderStatus::Filled,
        "canceled" | "cancelled" => OrderStatus::Cancelled,
        "expired" => OrderStatus::Expired,
        _ => return None,
    };
    Some(ExchangeOrder {
        exchange_order_id: txid.to_owned(),
        client_order_id: o.cl_ord_id.as_deref().and_then(client_order_id_from_kraken),
        symbol,
        side,
        order_type,
        status,
        volume: o.vol,
        filled_volume: o.vol_exec,
        avg_fill_price: o.price.filter(|p| *p > Decimal::ZERO && o.vol_exec > Decimal::ZERO),
        fee: o.fee,
        price: o.descr.price.filter(|p| *p > Decimal::ZERO),
        opened_at: o.opened_at(),
        closed_at: o.closed_at(),
        reason: o.reason.clone(),
    })
}

// ---------------------------------------------------------------- exchange

async fn load_registry(client: &KrakenClient, symbols: &[Symbol]) -> Result<PairRegistry, ExchangeError> {
    let pairs = client.asset_pairs().await?;
    let registry = PairRegistry::build(&pairs, symbols)?;
    for p in registry.pairs() {
        tracing::info!(symbol = %p.symbol, kraken = %p.exchange_name, tick = %p.tick_size,
            lot_decimals = p.lot_decimals, ordermin = %p.ordermin, costmin = %p.costmin,
            "Kraken pair loaded");
    }
    Ok(registry)
}

/// Kraken behind the [`Exchange`] port. Cheap to clone.
#[derive(Debug, Clone)]
pub struct KrakenExchange {
    client: KrakenClient,
    /// Replaced whole by [`KrakenExchange::refresh_pairs`].
    registry: Arc<RwLock<Arc<PairRegistry>>>,
    /// The symbols asked for at connect (empty = all).
    wanted: Arc<Vec<Symbol>>,
}

impl KrakenExchange {
    /// Loads `AssetPairs` and keeps the pairs for `symbols` (all pairs when empty).
    ///
    /// # Errors
    /// Classified [`ExchangeError`]; `Invalid` when a wanted symbol is not listed.
    pub async fn connect(client: KrakenClient, symbols: &[Symbol]) -> Result<Self, ExchangeError> {
        let registry = load_registry(&client, symbols).await?;
        let mut ex = Self::with_registry(client, registry);
        ex.wanted = Arc::new(symbols.to_vec());
        Ok(ex)
    }

    pub fn with_registry(client: KrakenClient, registry: PairRegistry) -> Self {
        let wanted = registry.pairs().map(|p| p.symbol.clone()).collect();
        Self {
            client,
            registry: Arc::new(RwLock::new(Arc::new(registry))),
            wanted: Arc::new(wanted),
        }
    }

    /// Reloads `AssetPairs` (precision or minimums changed, e.g. after
    /// `EOrder:Tick size check failed`). The old registry stays if the reload fails.
    ///
    /// # Errors
    /// Classified [`ExchangeError`].
    pub async fn refresh_pairs(&self) -> Result<(), ExchangeError> {
        let fresh = load_registry(&self.client, &self.wanted).await?;
        *self.registry.write() = Arc::new(fresh);
        Ok(())
    }

    pub fn client(&self) -> &KrakenClient {
        &self.client
    }

    /// The current pair registry.
    pub fn registry(&self) -> Arc<PairRegistry> {
        self.registry.read().clone()
    }

    fn pair(&self, symbol: &Symbol) -> Result<PairInfo, ExchangeError> {
        self.registry()
            .get(symbol)
            .cloned()
            .ok_or_else(|| ExchangeError::Invalid(format!("{symbol} is not a loaded Kraken pair")))
    }

    /// The validated `AddOrder` parameters for `req` (what [`Exchange::place_order`] sends).
    ///
    /// # Errors
    /// `Invalid` for unknown pairs and orders failing precision, minimum or type rules.
    pub fn prepare(&self, req: &OrderRequest) -> Result<AddOrderParams, ExchangeError> {
        prepare_order(&self.pair(&req.symbol)?, req)
    }

    /// Closed candles of `symbol` (the still-forming one is dropped).
    ///
    /// # Errors
    /// Classified [`ExchangeError`].
    pub async fn ohlc(
        &self,
        symbol: &Symbol,
        timeframe: Timeframe,
        since: Option<i64>,
    ) -> Result<Vec<Candle>, ExchangeError> {
        let name = self.pair(symbol)?.exchange_name.clone();
        self.client.ohlc(&name, symbol, timeframe, since).await
    }

    /// Last, bid and ask of `symbol`.
    ///
    /// # Errors
    /// Classified [`ExchangeError`].
    pub async fn ticker(&self, symbol: &Symbol) -> Result<Ticker, ExchangeError> {
        let name = self.pair(symbol)?.exchange_name.clone();
        self.client.ticker(&name).await
    }

    /// Finds an order by our client id: open orders first, then recently closed ones.
    ///
    /// # Errors
    /// Classified [`ExchangeError`]; `Invalid` for ids Kraken cannot carry.
    pub async fn find_by_client_id(&self, id: &ClientOrderId) -> Result<Option<ExchangeOrder>, ExchangeError> {
        let cl = kraken_cl_ord_id(id)?;
        let open = self.client.open_orders(Some(&cl)).await?;
        let registry = self.registry();
        let found = |m: &BTreeMap<String, KrakenOrder>| {
            m.iter()
                // Kraken filtered by cl_ord_id already; re-check in case it echoes another form.
                .filter(|(_, o)| {
                    o.cl_ord_id
                        .as_deref()
                        .is_none_or(|c| client_order_id_from_kraken(c).as_ref() == Some(id))
                })
                .find_map(|(txid, o)| to_exchange_order(txid, o, &registry))
        };
        if let Some(o) = found(&open) {
            return Ok(Some(o));
        }
        let closed = self.client.closed_orders(Some(&cl), None).await?;
        Ok(found(&closed))
    }
}

impl KrakenExchange {
    /// Finds many orders by our client ids with one `OpenOrders` and (when some are not open)
    /// one `ClosedOrders` call for all of them: 1 + 2 counter points per search, whatever the
    /// number of orders. Orders neither open nor in the newest closed page are not returned
    /// (a single id is looked up with both calls filtered by its `cl_ord_id`).
    ///
    /// # Errors
    /// Classified [`ExchangeError`] of either call: no order counts as absent on a failed search.
    pub async fn find_by_client_ids(&self, ids: &[&ClientOrderId]) -> Result<Vec<ExchangeOrder>, ExchangeError> {
        if let [one] = ids {
            // One order: the same two calls, filtered by its cl_ord_id (not limited to a page).
            return Ok(self.find_by_client_id(one).await?.into_iter().collect());
        }
        let registry = self.registry();
        let mut wanted: std::collections::HashSet<ClientOrderId> = ids.iter().map(|c| (*c).clone()).collect();
        let mut out = Vec::new();
        let mut take = |m: &BTreeMap<String, KrakenOrder>, wanted: &mut std::collections::HashSet<ClientOrderId>| {
            for (txid, o) in m {
                let Some(cid) = o.cl_ord_id.as_deref().and_then(client_order_id_from_kraken) else {
                    continue;
                };
                if !wanted.contains(&cid) {
                    continue;
                }
                if let Some(found) = to_exchange_order(txid, o, &registry) {
                    wanted.remove(&cid);
                    out.push(found);
                }
            }
        };
        let open = self.client.open_orders(None).await?;
        take(&open, &mut wanted);
        if !wanted.is_empty() {
            let closed = self.client.closed_orders(None, None).await?;
            take(&closed, &mut wanted);
        }
        Ok(out)
    }
}

impl Exchange for KrakenExchange {
    fn pairs(&self) -> ExchangeFuture<Vec<PairInfo>> {
        let pairs: Vec<PairInfo> = self.registry().pairs().cloned().collect();
        async move { Ok(pairs) }.boxed()
    }

    fn place_order(&self, req: OrderRequest) -> ExchangeFuture<OrderAck> {
        let this = self.clone();
        async move {
            let params = this.prepare(&req)?;
            let res = match this.client.add_order(&params).await {
                Ok(r) => r,
                Err(e) => {
                    if let ExchangeError::Rejected(m) = &e {
                        let m = m.to_ascii_lowercase();
                        if m.contains("tick size") || m.contains("invalid price") {
                            tracing::warn!(error = %e, "Kraken refused the price precision; reloading pairs");
                            if let Err(re) = this.refresh_pairs().await {
                                tracing::warn!(error = %re, "reloading Kraken pairs failed");
                            }
                        }
                    }
                    return Err(e);
                }
            };
            let exchange_order_id = match (res.txids.first(), req.validate) {
                (Some(t), _) => t.clone(),
                (None, true) => String::new(),
                (None, false) => {
                    return Err(ExchangeError::Unknown(format!(
                        "AddOrder for {} returned no txid; query by client id",
                        req.client_order_id
                    )))
                }
            };
            Ok(OrderAck {
                exchange_order_id,
                client_order_id: req.client_order_id,
                description: res.description,
            })
        }
        .boxed()
    }

    fn cancel_order(&self, order: OrderRef) -> ExchangeFuture<()> {
        let this = self.clone();
        async move {
            let target = match order {
                OrderRef::Exchange(txid) => CancelTarget::Txid(txid),
                OrderRef::Client(id) => CancelTarget::ClOrdId(kraken_cl_ord_id(&id)?),
            };
            this.client.cancel_order(&target).await.map(|_| ())
        }
        .boxed()
    }

    fn query_orders(&self, orders: Vec<OrderRef>) -> ExchangeFuture<Vec<ExchangeOrder>> {
        let this = self.clone();
        async move {
            let mut out = Vec::new();
            let txids: Vec<String> = orders
                .iter()
                .filter_map(|o| match o {
                    OrderRef::Exchange(t) => Some(t.clone()),
                    OrderRef::Client(_) => None,
                })
                .collect();
            if !txids.is_empty() {
                let found = this.client.query_orders(&txids).await?;
                out.extend(
                    found
                        .iter()
                        .filter_map(|(t, o)| to_exchange_order(t, o, &this.registry())),
                );
            }
            let clients: Vec<&ClientOrderId> = orders
                .iter()
                .filter_map(|o| match o {
                    OrderRef::Client(id) => Some(id),
                    OrderRef::Exchange(_) => None,
                })
                .collect();
            if !clients.is_empty() {
                out.extend(this.find_by_client_ids(&clients).await?);
            }
            Ok(out)
        }
        .boxed()
    }

    fn open_orders(&self) -> ExchangeFuture<Vec<ExchangeOrder>> {
        let this = self.clone();
        async move {
            let open = this.client.open_orders(None).await?;
            Ok(open
                .iter()
                .filter_map(|(t, o)| to_exchange_order(t, o, &this.registry()))
                .collect())
        }
        .boxed()
    }

    fn closed_orders(&self) -> ExchangeFuture<Vec<ExchangeOrder>> {
        let this = self.clone();
        async move {
            let closed = this.client.closed_orders(None, None).await?;
            Ok(closed
                .iter()
                .filter_map(|(t, o)| to_exchange_order(t, o, &this.registry()))
                .collect())
        }
        .boxed()
    }

    fn balances(&self) -> ExchangeFuture<BTreeMap<String, Decimal>> {
        let client = self.client.clone();
        async move { client.balance().await }.boxed()
    }

    fn cancel_all_after(&self, timeout_secs: u32) -> ExchangeFuture<()> {
        let client = self.client.clone();
        async move { client.cancel_all_orders_after(timeout_secs).await.map(|_| ()) }.boxed()
    }
}

// ---------------------------------------------------------------- dead man's switch

/// Dead man's switch settings: arm for `timeout_secs`, refresh every `refresh_every`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadMansSwitchConfig {
    pub timeout_secs: u32,
    pub refresh_every: Duration,
}

impl Default for DeadMansSwitchConfig {
    fn default() -> Self {
        Self {
            timeout_secs: 60,
            refresh_every: Duration::from_secs(20),
        }
    }
}

/// Controls a running dead man's switch. Dropping it stops refreshing without disarming, so
/// Kraken cancels all orders when the timeout runs out.
pub struct DeadMansSwitchHandle {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    exchange: Arc<dyn Exchange>,
}

impl std::fmt::Debug for DeadMansSwitchHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadMansSwitchHandle")
            .field("running", &self.is_running())
            .finish()
    }
}

impl DeadMansSwitchHandle {
    /// Stops refreshing; with `disarm` also sends timeout 0 so resting orders (stops!) survive a
    /// planned shutdown.
    ///
    /// # Errors
    /// The disarm call's [`ExchangeError`].
    pub async fn stop(mut self, disarm: bool) -> Result<(), ExchangeError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        if disarm {
            self.exchange.cancel_all_after(0).await?;
        }
        Ok(())
    }

    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for DeadMansSwitchHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Arms `CancelAllOrdersAfter(timeout_secs)` now and re-arms it every `refresh_every` until
/// stopped. Failed refreshes are logged and retried on the next tick.
///
/// Must be called inside a tokio runtime (actix-rt included).
///
/// # Errors
/// `Invalid` when the timeout is 0 or a day or more, or the refresh is not shorter than it.
pub fn spawn_dead_mans_switch(
    exchange: Arc<dyn Exchange>,
    config: DeadMansSwitchConfig,
) -> Result<DeadMansSwitchHandle, ExchangeError> {
    if config.timeout_secs == 0 || config.timeout_secs >= MAX_DEAD_MANS_SWITCH_SECS {
        return Err(ExchangeError::Invalid(format!(
            "dead man's switch timeout {} s must be between 1 and {} s",
            config.timeout_secs,
            MAX_DEAD_MANS_SWITCH_SECS - 1
        )));
    }
    if config.refresh_every.is_zero() || config.refresh_every >= Duration::from_secs(u64::from(config.timeout_secs)) {
        return Err(ExchangeError::Invalid(format!(
            "dead man's switch refresh {:?} must be shorter than its timeout {} s",
            config.refresh_every, config.timeout_secs
        )));
    }
    let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
    let ex = exchange.clone();
    let task = tokio::spawn(async move {
        let mut next = tokio::time::Instant::now();
        let mut last_ok: Option<DateTime<Utc>> = None;
        let mut failures: u32 = 0;
        loop {
            tokio::select! {
                _ = &mut rx => break,
                () = tokio::time::sleep_until(next) => {
                    match ex.cancel_all_after(config.timeout_secs).await {
                        Ok(()) => {
                            last_ok = Some(Utc::now());
                            failures = 0;
                            next = tokio::time::Instant::now() + config.refresh_every;
                            tracing::debug!(timeout_secs = config.timeout_secs, "dead man's switch armed");
                        }
                        Err(e) => {
                            // A failed refresh is retried soon (0.5 s, doubling, at most the refresh
                            // period), not a whole period later: two lost periods fire the switch.
                            failures = failures.saturating_add(1);
                            let retry = Duration::from_millis(500)
                                .saturating_mul(1u32 << failures.saturating_sub(1).min(8))
                                .min(config.refresh_every);
                            next = tokio::time::Instant::now() + retry;
                            tracing::error!(error = %e, last_ok = ?last_ok, failures, retry_ms = retry.as_millis() as u64,
                                "dead man's switch refresh failed; Kraken cancels all orders if this persists");
                        }
                    }
                }
            }
        }
    });
    Ok(DeadMansSwitchHandle {
        stop: Some(tx),
        task: Some(task),
        exchange,
    })
}

#[cfg(test)]
mod tests;
