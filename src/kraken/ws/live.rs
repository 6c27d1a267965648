//! [`KrakenLive`]: the [`Exchange`] port answering from the WebSocket order cache, with REST behind it.

use super::{add_order_params, reply_error, CallFailure, KrakenWs};
use crate::kraken::errors::{classify, CallKind};
use crate::kraken::exchange::{kraken_cl_ord_id, KrakenExchange};
use crate::kraken::limits::ADD_ORDER_COST;
use futures::FutureExt;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Instant;
use triplegain_actors::ports::{
    Exchange, ExchangeError, ExchangeFuture, ExchangeOrder, OrderAck, OrderRef, OrderRequest, PairInfo,
};

// ---------------------------------------------------------------- the exchange port

/// Kraken with the WebSocket in front of REST. Cheap to clone.
#[derive(Debug, Clone)]
pub struct KrakenLive {
    rest: KrakenExchange,
    ws: KrakenWs,
}

impl KrakenLive {
    pub fn new(rest: KrakenExchange, ws: KrakenWs) -> Self {
        Self { rest, ws }
    }

    pub fn ws(&self) -> &KrakenWs {
        &self.ws
    }

    pub fn rest(&self) -> &KrakenExchange {
        &self.rest
    }

    /// Whether the cache may answer now without a REST check (socket synced, last REST
    /// verification younger than `rest_every`).
    fn cache_fresh(&self) -> bool {
        if !self.ws.is_synced() {
            return false;
        }
        let c = self.ws.shared.cache.lock();
        c.last_rest
            .is_some_and(|t| t.elapsed() < self.ws.shared.config.rest_every)
    }

    fn absorb(&self, orders: &[ExchangeOrder], full_check: bool) {
        let mut c = self.ws.shared.cache.lock();
        for o in orders {
            c.absorb(o);
        }
        if full_check && c.synced {
            c.last_rest = Some(Instant::now());
        }
    }

    async fn place_ws(&self, req: OrderRequest) -> Result<OrderAck, ExchangeError> {
        let params = self.rest.prepare(&req)?;
        let Some(token) = self.ws.token() else {
            return self.rest.place_order(req).await;
        };
        let Some(frame) = add_order_params(&params, req.symbol.as_str(), &token) else {
            return self.rest.place_order(req).await;
        };
        let client = self.rest.client();
        client.trading_limiter().acquire(&params.pair, ADD_ORDER_COST).await?;
        let slot = client.order_call_budget().acquire().await?;
        match self.ws.call("add_order", frame).await {
            Err(CallFailure::NotSent) => {
                // Nothing left over the socket: REST places it (its own counters apply).
                client.order_call_budget().refund(slot);
                self.rest.place_order(req).await
            }
            Err(CallFailure::NoReply(m)) => {
                if let Some(c) = &params.cl_ord_id {
                    client
                        .trading_limiter()
                        .record_placed(&params.pair, &[c], Instant::now());
                }
                Err(ExchangeError::Unknown(format!(
                    "{m}; query by client id {}",
                    req.client_order_id
                )))
            }
            Ok(reply) => {
                self.ws.shared.stats.lock().orders_over_ws += 1;
                if let Some(e) = reply_error(&reply) {
                    let err = classify(&[e], CallKind::OrderChange);
                    if matches!(&err, ExchangeError::RateLimited(m) if m.to_ascii_lowercase().contains("eorder:rate limit"))
                    {
                        client.trading_limiter().saturate(&params.pair);
                    }
                    if let (ExchangeError::Unknown(_), Some(c)) = (&err, &params.cl_ord_id) {
                        client
                            .trading_limiter()
                            .record_placed(&params.pair, &[c], Instant::now());
                    }
                    return Err(err);
                }
                let txid = reply
                    .get("result")
                    .and_then(|r| r.get("order_id"))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let Some(txid) = txid else {
                    return Err(ExchangeError::Unknown(format!(
                        "add_order over WebSocket for {} returned no order_id; query by client id",
                        req.client_order_id
                    )));
                };
                let mut ids: Vec<&str> = vec![txid.as_str()];
                if let Some(c) = &params.cl_ord_id {
                    ids.push(c);
                }
                client
                    .trading_limiter()
                    .record_placed(&params.pair, &ids, Instant::now());
                Ok(OrderAck {
                    exchange_order_id: txid.clone(),
                    client_order_id: req.client_order_id,
                    description: format!(
                        "{} {} {} {} (WebSocket)",
                        params.side, params.volume, req.symbol, params.order_type
                    ),
                })
            }
        }
    }

    async fn cancel_ws(&self, order: OrderRef) -> Result<(), ExchangeError> {
        let Some(token) = self.ws.token() else {
            return self.rest.cancel_order(order).await;
        };
        let (field, id) = match &order {
            OrderRef::Exchange(t) => ("order_id", t.clone()),
            OrderRef::Client(c) => ("cl_ord_id", kraken_cl_ord_id(c)?),
        };
        let client = self.rest.client();
        client.trading_limiter().acquire_cancel(&id).await?;
        let slot = client.order_call_budget().acquire().await?;
        let params = format!(r#"{{{}:[{}],"token":{}}}"#, json!(field), json!(id), json!(token));
        match self.ws.call("cancel_order", params).await {
            Err(CallFailure::NotSent) => {
                client.order_call_budget().refund(slot);
                self.rest.cancel_order(order).await
            }
            Err(CallFailure::NoReply(m)) => Err(ExchangeError::Unknown(m)),
            Ok(reply) => {
                self.ws.shared.stats.lock().cancels_over_ws += 1;
                if let Some(e) = reply_error(&reply) {
                    return Err(classify(&[e], CallKind::OrderChange));
                }
                client.trading_limiter().forget(&[&id]);
                Ok(())
            }
        }
    }
}

impl Exchange for KrakenLive {
    fn pairs(&self) -> ExchangeFuture<Vec<PairInfo>> {
        self.rest.pairs()
    }

    fn place_order(&self, req: OrderRequest) -> ExchangeFuture<OrderAck> {
        let this = self.clone();
        async move {
            if this.ws.is_up() {
                this.place_ws(req).await
            } else {
                this.rest.place_order(req).await
            }
        }
        .boxed()
    }

    fn cancel_order(&self, order: OrderRef) -> ExchangeFuture<()> {
        let this = self.clone();
        async move {
            if this.ws.is_up() {
                this.cancel_ws(order).await
            } else {
                this.rest.cancel_order(order).await
            }
        }
        .boxed()
    }

    fn query_orders(&self, orders: Vec<OrderRef>) -> ExchangeFuture<Vec<ExchangeOrder>> {
        let this = self.clone();
        async move {
            if !this.cache_fresh() {
                // Socket down, not yet reconciled, or the safety net is due: REST for everything.
                let full = this.ws.is_synced();
                let found = this.rest.query_orders(orders).await?;
                this.absorb(&found, full);
                return Ok(found);
            }
            let registry = this.rest.registry();
            let mut out = Vec::new();
            let mut ask = Vec::new();
            {
                let c = this.ws.shared.cache.lock();
                for r in orders {
                    match c.lookup(&r).and_then(|o| o.to_exchange(&registry)) {
                        Some(o) => out.push(o),
                        None => ask.push(r),
                    }
                }
            }
            if !ask.is_empty() {
                let found = this.rest.query_orders(ask).await?;
                this.absorb(&found, false);
                out.extend(found);
            }
            Ok(out)
        }
        .boxed()
    }

    fn open_orders(&self) -> ExchangeFuture<Vec<ExchangeOrder>> {
        let this = self.clone();
        async move {
            if this.cache_fresh() {
                let registry = this.rest.registry();
                let c = this.ws.shared.cache.lock();
                return Ok(c
                    .orders
                    .values()
                    .filter(|o| !o.status.is_terminal())
                    .filter_map(|o| o.to_exchange(&registry))
                    .collect());
            }
            let open = this.rest.open_orders().await?;
            this.absorb(&open, false);
            Ok(open)
        }
        .boxed()
    }

    fn balances(&self) -> ExchangeFuture<BTreeMap<String, Decimal>> {
        let this = self.clone();
        async move {
            let every = this.ws.shared.config.balance_every;
            if this.ws.is_synced() {
                let c = this.ws.shared.cache.lock();
                if let Some((at, b)) = &c.balances {
                    if at.elapsed() < every {
                        return Ok(b.clone());
                    }
                }
            }
            let b = this.rest.balances().await?;
            this.ws.shared.cache.lock().balances = Some((Instant::now(), b.clone()));
            Ok(b)
        }
        .boxed()
    }

    fn cancel_all_after(&self, timeout_secs: u32) -> ExchangeFuture<()> {
        self.rest.cancel_all_after(timeout_secs)
    }
}
