//! The typed REST endpoints of [`KrakenClient`] (public and private) and the parsing of their results.

use super::{
    interval_minutes, is_engine_limit, AddOrderParams, AddOrderResult, AssetPair, CancelResult, CancelTarget,
    DeadMansSwitchStatus, KrakenClient, KrakenOrder, Ticker, MAX_DEAD_MANS_SWITCH_SECS,
};
use crate::kraken::assets::{is_suffixed_asset, normalise_asset, parse_decimal};
use crate::kraken::errors::{classify_malformed, CallKind};
use crate::kraken::limits::{Lane, ADD_ORDER_COST};
use crate::kraken::sign::FormBody;
use chrono::{TimeZone, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Instant;
use triplegain_actors::domain::{Candle, Symbol, Timeframe};
use triplegain_actors::ports::ExchangeError;

impl KrakenClient {
    // ------------------------------------------------------------ public endpoints

    /// All tradable pairs, keyed by Kraken's canonical pair id.
    ///
    /// # Errors
    /// Classified [`ExchangeError`]; `Retryable` for an unparsable result.
    pub async fn asset_pairs(&self) -> Result<BTreeMap<String, AssetPair>, ExchangeError> {
        let v = self.public("AssetPairs", &FormBody::new()).await?;
        let Value::Object(map) = v else {
            return Err(classify_malformed("AssetPairs result is not an object", CallKind::Read));
        };
        let mut out = BTreeMap::new();
        for (id, entry) in map {
            match serde_json::from_value::<AssetPair>(entry) {
                Ok(p) => {
                    out.insert(id, p);
                }
                Err(e) => {
                    tracing::debug!(pair = %id, error = %e, "skipping unparsable AssetPairs entry")
                }
            }
        }
        Ok(out)
    }

    /// Closed candles of `pair` (Kraken name) for `symbol`; the last, still-forming row is dropped.
    ///
    /// # Errors
    /// Classified [`ExchangeError`]; `Retryable` for malformed rows.
    pub async fn ohlc(
        &self,
        pair: &str,
        symbol: &Symbol,
        timeframe: Timeframe,
        since: Option<i64>,
    ) -> Result<Vec<Candle>, ExchangeError> {
        let mut q = FormBody::new();
        q.push("pair", pair)
            .push("interval", interval_minutes(timeframe).to_string());
        if let Some(s) = since {
            q.push("since", s.to_string());
        }
        let v = self.public("OHLC", &q).await?;
        parse_ohlc(&v, symbol, timeframe)
    }

    /// Last trade, best bid and best ask of `pair` (Kraken name).
    ///
    /// # Errors
    /// Classified [`ExchangeError`]; `Retryable` for a malformed result.
    pub async fn ticker(&self, pair: &str) -> Result<Ticker, ExchangeError> {
        let mut q = FormBody::new();
        q.push("pair", pair);
        let v = self.public("Ticker", &q).await?;
        parse_ticker(&v)
    }

    // ------------------------------------------------------------ private endpoints

    /// Spendable balances by our asset code (`XXBT` → `BTC`, `ZUSD` → `USD`); the read-only
    /// suffixed variants (`.F`, `.S`, `.B`, `.M`, `.T`) are left out.
    ///
    /// # Errors
    /// Classified [`ExchangeError`].
    pub async fn balance(&self) -> Result<BTreeMap<String, Decimal>, ExchangeError> {
        let v = self.private("Balance", &FormBody::new(), CallKind::Read).await?;
        parse_balance(&v)
    }

    /// Available balances by our asset code from `BalanceEx`:
    /// `balance + credit − credit_used − hold_trade` (funds not reserved by open orders).
    ///
    /// # Errors
    /// Classified [`ExchangeError`].
    pub async fn available_balance(&self) -> Result<BTreeMap<String, Decimal>, ExchangeError> {
        let v = self.private("BalanceEx", &FormBody::new(), CallKind::Read).await?;
        parse_balance_ex(&v)
    }

    /// Places an order. Charges the pair's trading counter first (Kraken charges it even when
    /// the order fails validation). Never retried except once after `EAPI:Invalid nonce`.
    ///
    /// # Errors
    /// Classified [`ExchangeError`]; `Unknown` when the order may exist.
    pub async fn add_order(&self, params: &AddOrderParams) -> Result<AddOrderResult, ExchangeError> {
        self.inner.trading.acquire(&params.pair, ADD_ORDER_COST).await?;
        let v = match self.private("AddOrder", &params.to_form(), CallKind::OrderChange).await {
            Ok(v) => v,
            Err(e) => {
                if is_engine_limit(&e) {
                    self.inner.trading.saturate(&params.pair);
                }
                // The order may rest on the book: a cancel soon after still pays the penalty.
                if let (ExchangeError::Unknown(_), Some(c), false) = (&e, &params.cl_ord_id, params.validate) {
                    self.inner.trading.record_placed(&params.pair, &[c], Instant::now());
                }
                return Err(e);
            }
        };
        let txids: Vec<String> = match v.get("txid") {
            Some(Value::Array(a)) => a.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect(),
            Some(Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        };
        let description = v
            .get("descr")
            .and_then(|d| d.get("order"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if !params.validate {
            let mut ids: Vec<&str> = txids.iter().map(String::as_str).collect();
            if let Some(c) = &params.cl_ord_id {
                ids.push(c);
            }
            self.inner.trading.record_placed(&params.pair, &ids, Instant::now());
        }
        Ok(AddOrderResult { txids, description })
    }

    /// Cancels one order by txid or `cl_ord_id`, charging the young-order penalty when we
    /// placed it recently.
    ///
    /// # Errors
    /// Classified [`ExchangeError`]; `Unknown` when the cancel may or may not have happened.
    pub async fn cancel_order(&self, target: &CancelTarget) -> Result<CancelResult, ExchangeError> {
        self.inner.trading.acquire_cancel(target.id()).await?;
        let mut f = FormBody::new();
        match target {
            CancelTarget::Txid(t) => f.push("txid", t.clone()),
            CancelTarget::ClOrdId(c) => f.push("cl_ord_id", c.clone()),
        };
        let v = self.private("CancelOrder", &f, CallKind::OrderChange).await?;
        self.inner.trading.forget(&[target.id()]);
        Ok(CancelResult {
            count: v.get("count").and_then(Value::as_u64).unwrap_or(0),
            pending: v.get("pending").and_then(Value::as_bool).unwrap_or(false),
        })
    }

    /// Orders by txid (at most 50 per call; longer lists are split).
    ///
    /// # Errors
    /// Classified [`ExchangeError`].
    pub async fn query_orders(&self, txids: &[String]) -> Result<BTreeMap<String, KrakenOrder>, ExchangeError> {
        let mut out = BTreeMap::new();
        for chunk in txids.chunks(50) {
            let mut f = FormBody::new();
            f.push("txid", chunk.join(","));
            let v = self.private("QueryOrders", &f, CallKind::Read).await?;
            out.extend(parse_orders(&v)?);
        }
        Ok(out)
    }

    /// Open orders, optionally only the one with `cl_ord_id`.
    ///
    /// # Errors
    /// Classified [`ExchangeError`].
    pub async fn open_orders(&self, cl_ord_id: Option<&str>) -> Result<BTreeMap<String, KrakenOrder>, ExchangeError> {
        let mut f = FormBody::new();
        if let Some(c) = cl_ord_id {
            f.push("cl_ord_id", c);
        }
        let v = self.private("OpenOrders", &f, CallKind::Read).await?;
        parse_orders(v.get("open").unwrap_or(&Value::Null))
    }

    /// The newest page (50) of closed orders, optionally only `cl_ord_id`, optionally from `start`.
    ///
    /// # Errors
    /// Classified [`ExchangeError`].
    pub async fn closed_orders(
        &self,
        cl_ord_id: Option<&str>,
        start: Option<i64>,
    ) -> Result<BTreeMap<String, KrakenOrder>, ExchangeError> {
        let mut f = FormBody::new();
        if let Some(c) = cl_ord_id {
            f.push("cl_ord_id", c);
        }
        if let Some(s) = start {
            f.push("start", s.to_string());
        }
        let v = self.private("ClosedOrders", &f, CallKind::Read).await?;
        parse_orders(v.get("closed").unwrap_or(&Value::Null))
    }

    /// Arms (or with `0` disarms) the dead man's switch: all orders are cancelled after
    /// `timeout_secs` unless this is called again before.
    ///
    /// # Errors
    /// `Invalid` for a timeout of a day or more; otherwise classified [`ExchangeError`].
    pub async fn cancel_all_orders_after(&self, timeout_secs: u32) -> Result<DeadMansSwitchStatus, ExchangeError> {
        if timeout_secs >= MAX_DEAD_MANS_SWITCH_SECS {
            return Err(ExchangeError::Invalid(format!(
                "dead man's switch timeout {timeout_secs} s must be below {MAX_DEAD_MANS_SWITCH_SECS} s"
            )));
        }
        let mut f = FormBody::new();
        f.push("timeout", timeout_secs.to_string());
        // The switch has its own share of the budgets: polling can never starve it.
        let v = self
            .private_in("CancelAllOrdersAfter", &f, CallKind::Read, Lane::Reserved)
            .await?;
        let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        Ok(DeadMansSwitchStatus {
            current_time: text("currentTime"),
            trigger_time: text("triggerTime"),
        })
    }
}

impl KrakenClient {
    /// A token for the private WebSocket (`GetWebSocketsToken`, signed like every private call);
    /// valid for 15 minutes to connect, then for as long as the subscription stays up.
    ///
    /// # Errors
    /// Classified [`ExchangeError`]; `Retryable` when the result has no token.
    pub async fn websockets_token(&self) -> Result<String, ExchangeError> {
        let v = self
            .private("GetWebSocketsToken", &FormBody::new(), CallKind::Read)
            .await?;
        v.get("token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| malformed("GetWebSocketsToken result has no token"))
    }
}

// ---------------------------------------------------------------- result parsing

fn malformed(detail: impl Into<String>) -> ExchangeError {
    classify_malformed(&detail.into(), CallKind::Read)
}

/// Parses an OHLC result and drops its last (unfinished) row.
///
/// # Errors
/// `Retryable` (malformed) when rows are missing or not numeric.
pub fn parse_ohlc(v: &Value, symbol: &Symbol, timeframe: Timeframe) -> Result<Vec<Candle>, ExchangeError> {
    let rows = v
        .as_object()
        .and_then(|m| m.iter().find(|(k, val)| k.as_str() != "last" && val.is_array()))
        .and_then(|(_, val)| val.as_array())
        .ok_or_else(|| malformed("OHLC result has no rows"))?;
    let finished = rows.len().saturating_sub(1);
    rows.iter()
        .take(finished)
        .map(|row| {
            let cell = |i: usize| {
                row.get(i)
                    .ok_or_else(|| malformed(format!("OHLC row too short: {row}")))
            };
            let dec = |i: usize| {
                cell(i).and_then(|c| parse_decimal(c).ok_or_else(|| malformed(format!("bad OHLC cell {c}"))))
            };
            let t = cell(0)?
                .as_i64()
                .ok_or_else(|| malformed(format!("bad OHLC time in {row}")))?;
            let open_time = Utc
                .timestamp_opt(t, 0)
                .single()
                .ok_or_else(|| malformed(format!("OHLC time {t} out of range")))?;
            Ok(Candle {
                symbol: symbol.clone(),
                timeframe,
                open_time,
                open: dec(1)?,
                high: dec(2)?,
                low: dec(3)?,
                close: dec(4)?,
                volume: dec(6)?,
            })
        })
        .collect()
}

/// Parses a Ticker result (first pair in it).
///
/// # Errors
/// `Retryable` (malformed) when a field is missing.
pub fn parse_ticker(v: &Value) -> Result<Ticker, ExchangeError> {
    let entry = v
        .as_object()
        .and_then(|m| m.values().next())
        .ok_or_else(|| malformed("Ticker result is empty"))?;
    let first = |k: &str| {
        entry
            .get(k)
            .and_then(|a| a.get(0))
            .and_then(parse_decimal)
            .ok_or_else(|| malformed(format!("Ticker field {k} missing")))
    };
    Ok(Ticker {
        last: first("c")?,
        bid: first("b")?,
        ask: first("a")?,
    })
}

/// Parses a Balance result into our asset codes, summing names that map to the same asset.
///
/// # Errors
/// `Retryable` (malformed) when an amount is not a decimal.
pub fn parse_balance(v: &Value) -> Result<BTreeMap<String, Decimal>, ExchangeError> {
    let map = v
        .as_object()
        .ok_or_else(|| malformed("Balance result is not an object"))?;
    let mut out = BTreeMap::new();
    for (asset, amount) in map {
        if is_suffixed_asset(asset) {
            continue;
        }
        let amount = parse_decimal(amount).ok_or_else(|| malformed(format!("bad balance for {asset}: {amount}")))?;
        *out.entry(normalise_asset(asset)).or_insert(Decimal::ZERO) += amount;
    }
    Ok(out)
}

/// Parses a BalanceEx result into available amounts by our asset code.
///
/// # Errors
/// `Retryable` (malformed) when an entry has no decimal `balance`.
pub fn parse_balance_ex(v: &Value) -> Result<BTreeMap<String, Decimal>, ExchangeError> {
    let map = v
        .as_object()
        .ok_or_else(|| malformed("BalanceEx result is not an object"))?;
    let mut out = BTreeMap::new();
    for (asset, entry) in map {
        if is_suffixed_asset(asset) {
            continue;
        }
        let field = |k: &str| entry.get(k).and_then(parse_decimal).unwrap_or(Decimal::ZERO);
        let balance = entry
            .get("balance")
            .and_then(parse_decimal)
            .ok_or_else(|| malformed(format!("bad BalanceEx entry for {asset}: {entry}")))?;
        let available = balance + field("credit") - field("credit_used") - field("hold_trade");
        *out.entry(normalise_asset(asset)).or_insert(Decimal::ZERO) += available;
    }
    Ok(out)
}

/// Parses a `{TXID: order}` map.
///
/// # Errors
/// `Retryable` (malformed) when an order does not parse.
pub fn parse_orders(v: &Value) -> Result<BTreeMap<String, KrakenOrder>, ExchangeError> {
    let Some(map) = v.as_object() else {
        return if v.is_null() {
            Ok(BTreeMap::new())
        } else {
            Err(malformed("orders result is not an object"))
        };
    };
    map.iter()
        .map(|(txid, o)| {
            serde_json::from_value::<KrakenOrder>(o.clone())
                .map(|o| (txid.clone(), o))
                .map_err(|e| malformed(format!("order {txid}: {e}")))
        })
        .collect()
}
