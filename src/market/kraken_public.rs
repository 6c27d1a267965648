//! Kraken public REST market data: `AssetPairs` to map our symbols to Kraken's pair names,
//! `OHLC` (1-minute) polling for closed candles, `Ticker` for last prices.
//!
//! OHLC's last row is the candle still forming, so every response's last row is dropped; the
//! `last` cursor of each response is sent back as `since` on the next poll, and rows at or before
//! the newest candle already emitted are skipped, so each closed candle is emitted exactly once.

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio::time::Instant;
use triplegain_actors::domain::{Candle, Symbol, Timeframe};
use triplegain_actors::ports::{FeedError, FeedItem, MarketFeed};

/// Kraken's production REST base URL.
pub const KRAKEN_BASE_URL: &str = "https://api.kraken.com";

/// Maps a Kraken asset code to the common ticker: `XXBT`/`XBT` → `BTC`, `XXRP` → `XRP`,
/// `ZUSD` → `USD`, `XDG` → `DOGE`; anything not in the table is returned upper-cased as is
/// (prefixes are never stripped by rule: `XTZ` is Tezos).
pub fn kraken_asset_to_common(asset: &str) -> String {
    let upper = asset.trim().to_ascii_uppercase();
    let mapped = match upper.as_str() {
        "XXBT" | "XBT" => "BTC",
        "XXRP" => "XRP",
        "XETH" => "ETH",
        "XLTC" => "LTC",
        "XXLM" => "XLM",
        "XXDG" | "XDG" => "DOGE",
        "XETC" => "ETC",
        "XXMR" => "XMR",
        "XZEC" => "ZEC",
        "ZUSD" => "USD",
        "ZEUR" => "EUR",
        "ZGBP" => "GBP",
        "ZCAD" => "CAD",
        "ZJPY" => "JPY",
        _ => return upper,
    };
    mapped.to_owned()
}

#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(default)]
    error: Vec<String>,
    result: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct AssetPair {
    altname: Option<String>,
    wsname: Option<String>,
    base: String,
    quote: String,
}

/// Our symbol and Kraken's names for it, with the OHLC cursor.
#[derive(Debug, Clone)]
struct PairCursor {
    symbol: Symbol,
    /// Canonical pair id, the key of every result (e.g. `XXRPXXBT`).
    key: String,
    /// Name sent in requests (e.g. `XRPXBT`).
    altname: String,
    /// `last` of the previous OHLC response.
    since: Option<i64>,
    /// Open time of the newest candle emitted.
    newest: Option<i64>,
}

/// Polls Kraken's public REST API for closed 1-minute candles of the configured symbols.
pub struct KrakenPublicFeed {
    http: reqwest::Client,
    base_url: String,
    symbols: Vec<Symbol>,
    pairs: Option<Vec<PairCursor>>,
    poll_interval: Duration,
    last_poll: Option<Instant>,
}

impl KrakenPublicFeed {
    /// A feed against `base_url` (e.g. [`KRAKEN_BASE_URL`]) with a 10 s request timeout, polling
    /// at most every 15 s.
    ///
    /// # Errors
    /// [`FeedError::Source`] when the HTTP client cannot be built.
    pub fn new(base_url: &str, symbols: Vec<Symbol>) -> Result<Self, FeedError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("triplegain/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FeedError::Source(format!("building the HTTP client: {e}")))?;
        Ok(Self::with_client(http, base_url, symbols))
    }

    pub fn with_client(http: reqwest::Client, base_url: &str, symbols: Vec<Symbol>) -> Self {
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            symbols,
            pairs: None,
            poll_interval: Duration::from_secs(15),
            last_poll: None,
        }
    }

    /// Minimum time between two OHLC polls (zero polls on every `next()`).
    #[must_use]
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    async fn get(&self, endpoint: &str, query: &[(&str, String)]) -> Result<Value, FeedError> {
        let url = format!("{}/0/public/{endpoint}", self.base_url);
        let resp = self
            .http
            .get(&url)
            .query(query)
            .send()
            .await
            .map_err(|e| FeedError::Source(format!("{endpoint}: {e}")))?;
        let status = resp.status();
        let body = resp
            .text()
            .await
            .map_err(|e| FeedError::Source(format!("{endpoint}: reading the body: {e}")))?;
        if !status.is_success() {
            let snippet: String = body.chars().take(200).collect();
            return Err(FeedError::Source(format!("{endpoint}: HTTP {status}: {snippet}")));
        }
        let env: Envelope = serde_json::from_str(&body)
            .map_err(|e| FeedError::Source(format!("{endpoint}: response is not Kraken JSON: {e}")))?;
        if !env.error.is_empty() {
            return Err(FeedError::Source(format!("{endpoint}: {}", env.error.join("; "))));
        }
        env.result
            .ok_or_else(|| FeedError::Source(format!("{endpoint}: response has no result")))
    }

    /// Reads `AssetPairs` once and maps every configured symbol to its Kraken pair.
    ///
    /// # Errors
    /// [`FeedError::Source`] on a transport or API error, or when a symbol has no Kraken pair.
    pub async fn resolve_pairs(&mut self) -> Result<Vec<(Symbol, String)>, FeedError> {
        if self.pairs.is_none() {
            let result = self.get("AssetPairs", &[]).await?;
            let table: HashMap<String, AssetPair> =
                serde_json::from_value(result).map_err(|e| FeedError::Malformed(format!("AssetPairs: {e}")))?;
            let mut pairs = Vec::with_capacity(self.symbols.len());
            for symbol in &self.symbols {
                pairs.push(find_pair(&table, symbol)?);
            }
            self.pairs = Some(pairs);
        }
        Ok(self
            .pairs
            .iter()
            .flatten()
            .map(|p| (p.symbol.clone(), p.altname.clone()))
            .collect())
    }

    /// One OHLC request: the closed candles after `cursor.newest` and the new `last`.
    async fn poll_pair(&self, cursor: &PairCursor) -> Result<(Vec<Candle>, Option<i64>), FeedError> {
        let mut query = vec![("pair", cursor.altname.clone()), ("interval", "1".to_owned())];
        if let Some(since) = cursor.since {
            query.push(("since", since.to_string()));
        }
        let result = self.get("OHLC", &query).await?;
        let obj = result
            .as_object()
            .ok_or_else(|| FeedError::Malformed("OHLC: result is not an object".into()))?;
        let last = obj.get("last").and_then(Value::as_i64);
        let rows = obj
            .get(&cursor.key)
            .or_else(|| obj.get(&cursor.altname))
            .or_else(|| obj.iter().find(|(k, _)| k.as_str() != "last").map(|(_, v)| v))
            .and_then(Value::as_array)
            .ok_or_else(|| FeedError::Malformed(format!("OHLC: no rows for {}", cursor.key)))?;
        // The last row is the candle still forming.
        let closed = rows.len().saturating_sub(1);
        let mut candles = Vec::with_capacity(closed);
        let mut newest = cursor.newest;
        for row in rows.iter().take(closed) {
            let c = parse_ohlc_row(row, &cursor.symbol)?;
            let t = c.open_time.timestamp();
            if newest.is_some_and(|n| t <= n) {
                continue;
            }
            newest = Some(t);
            candles.push(c);
        }
        Ok((candles, last))
    }

    /// Polls OHLC for every pair. Cursors move only when every request succeeded, so a failed
    /// poll loses nothing: the next one asks again from the same cursors.
    ///
    /// # Errors
    /// The first failure of any pair.
    pub async fn poll(&mut self) -> Result<Vec<Candle>, FeedError> {
        self.resolve_pairs().await?;
        let cursors = self.pairs.clone().unwrap_or_default();
        let results = futures::future::join_all(cursors.iter().map(|c| self.poll_pair(c))).await;
        let mut updated = cursors;
        let mut all = Vec::new();
        for (cursor, result) in updated.iter_mut().zip(results) {
            let (candles, last) = result?;
            if let Some(t) = candles.last().map(|c| c.open_time.timestamp()) {
                cursor.newest = Some(t);
            }
            if last.is_some() {
                cursor.since = last;
            }
            all.extend(candles);
        }
        self.pairs = Some(updated);
        // Stable: candles of one minute stay in the configured symbol order.
        all.sort_by_key(|c| c.open_time);
        Ok(all)
    }

    /// Last traded price of every configured symbol (`Ticker`, field `c[0]`).
    ///
    /// # Errors
    /// [`FeedError::Source`] on a transport or API error, [`FeedError::Malformed`] for a bad body.
    pub async fn last_prices(&mut self) -> Result<BTreeMap<Symbol, Decimal>, FeedError> {
        self.resolve_pairs().await?;
        let pairs = self.pairs.clone().unwrap_or_default();
        let names = pairs.iter().map(|p| p.altname.as_str()).collect::<Vec<_>>().join(",");
        let result = self.get("Ticker", &[("pair", names)]).await?;
        let mut out = BTreeMap::new();
        for p in &pairs {
            let entry = result
                .get(&p.key)
                .or_else(|| result.get(&p.altname))
                .ok_or_else(|| FeedError::Malformed(format!("Ticker: no entry for {}", p.key)))?;
            let last = entry
                .get("c")
                .and_then(|c| c.get(0))
                .ok_or_else(|| FeedError::Malformed(format!("Ticker: {} has no last trade", p.key)))?;
            out.insert(
                p.symbol.clone(),
                decimal(last).map_err(|m| FeedError::Malformed(format!("Ticker: {m}")))?,
            );
        }
        Ok(out)
    }
}

fn find_pair(table: &HashMap<String, AssetPair>, symbol: &Symbol) -> Result<PairCursor, FeedError> {
    let matches = |info: &AssetPair| {
        let by_assets = kraken_asset_to_common(&info.base) == symbol.base()
            && kraken_asset_to_common(&info.quote) == symbol.quote();
        let by_wsname = info
            .wsname
            .as_deref()
            .and_then(|ws| ws.split_once('/'))
            .is_some_and(|(b, q)| {
                kraken_asset_to_common(b) == symbol.base() && kraken_asset_to_common(q) == symbol.quote()
            });
        by_assets || by_wsname
    };
    let mut found: Vec<(&String, &AssetPair)> = table
        .iter()
        .filter(|(key, info)| !key.ends_with(".d") && matches(info))
        .collect();
    // Deterministic choice if Kraken ever lists two: the shortest id.
    found.sort_by_key(|(key, _)| (key.len(), key.as_str()));
    let (key, info) = found
        .first()
        .ok_or_else(|| FeedError::Source(format!("Kraken lists no pair for {symbol}")))?;
    Ok(PairCursor {
        symbol: symbol.clone(),
        key: (*key).clone(),
        altname: info.altname.clone().unwrap_or_else(|| (*key).clone()),
        since: None,
        newest: None,
    })
}

fn decimal(v: &Value) -> Result<Decimal, String> {
    match v {
        Value::String(s) => s
            .parse::<Decimal>()
            .or_else(|_| Decimal::from_scientific(s))
            .map_err(|_| format!("{s:?} is not a decimal")),
        Value::Number(n) => {
            let s = n.to_string();
            s.parse::<Decimal>()
                .or_else(|_| Decimal::from_scientific(&s))
                .map_err(|_| format!("{s} is not a decimal"))
        }
        other => Err(format!("{other} is not a decimal")),
    }
}

/// `[time, open, high, low, close, vwap, volume, count]`.
fn parse_ohlc_row(row: &Value, symbol: &Symbol) -> Result<Candle, FeedError> {
    let bad = |m: String| FeedError::Malformed(format!("OHLC {symbol}: {m}"));
    let cells = row
        .as_array()
        .filter(|a| a.len() >= 7)
        .ok_or_else(|| bad(format!("row {row} is not an OHLC row")))?;
    let field = |i: usize| cells.get(i).ok_or_else(|| bad(format!("row {row} is short")));
    let secs = field(0)?
        .as_i64()
        .ok_or_else(|| bad(format!("time in {row} is not an integer")))?;
    let open_time =
        DateTime::<Utc>::from_timestamp(secs, 0).ok_or_else(|| bad(format!("time {secs} is out of range")))?;
    let num = |i: usize| field(i).and_then(|v| decimal(v).map_err(bad));
    Ok(Candle {
        symbol: symbol.clone(),
        timeframe: Timeframe::M1,
        open_time,
        open: num(1)?,
        high: num(2)?,
        low: num(3)?,
        close: num(4)?,
        volume: num(6)?,
    })
}

impl MarketFeed for KrakenPublicFeed {
    fn symbols(&self) -> Vec<Symbol> {
        self.symbols.clone()
    }

    /// Waits until the poll interval has passed since the previous poll, then polls OHLC:
    /// `Candles` with every newly closed candle, or `Idle` when none closed.
    fn next(&mut self) -> BoxFuture<'_, Result<FeedItem, FeedError>> {
        Box::pin(async move {
            if let Some(prev) = self.last_poll {
                tokio::time::sleep_until(prev + self.poll_interval).await;
            }
            self.last_poll = Some(Instant::now());
            let candles = self.poll().await?;
            Ok(if candles.is_empty() {
                FeedItem::Idle
            } else {
                FeedItem::Candles(candles)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kraken_assets_map_through_the_table_only() {
        assert_eq!(kraken_asset_to_common("XXBT"), "BTC");
        assert_eq!(kraken_asset_to_common("xbt"), "BTC");
        assert_eq!(kraken_asset_to_common("XXRP"), "XRP");
        assert_eq!(kraken_asset_to_common("ZUSD"), "USD");
        assert_eq!(kraken_asset_to_common("USDT"), "USDT");
        assert_eq!(kraken_asset_to_common("XTZ"), "XTZ");
    }

    #[test]
    fn ohlc_rows_accept_strings_and_numbers() {
        let sym = Symbol::parse("BTC/USDT").expect("valid symbol");
        let row = serde_json::json!([
            1_700_000_040,
            "37000.1",
            "37010.0",
            36990.5,
            "37005.2",
            "37001.0",
            "1.23456789",
            42
        ]);
        let c = parse_ohlc_row(&row, &sym);
        assert!(
            matches!(&c, Ok(c) if c.low == Decimal::new(369_905, 1) && c.volume == Decimal::new(123_456_789, 8)),
            "{c:?}"
        );
        assert!(parse_ohlc_row(&serde_json::json!(["x", "1"]), &sym).is_err());
    }
}
