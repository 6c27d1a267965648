//! CSV replay: one file per symbol, merged in time order.
//!
//! Two formats are accepted and told apart by the first non-empty line:
//! - a header row `timestamp,open,high,low,close,volume` (further columns are ignored), the
//!   timestamp in unix seconds or RFC 3339;
//! - Kraken's headerless OHLCVT export `unix,open,high,low,close,volume,trades`.
//!
//! A malformed row stops the replay with `FeedError::Malformed("path:LINE: …")`; a row that is not
//! strictly later than the row before it is an error too (files are never silently sorted).
//! The timeframe of a file is the smallest gap between its first rows (falling back to a Kraken
//! `_N` interval suffix in the file name, then to 1m for a single-row file).

use super::kraken_public::kraken_asset_to_common;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use rust_decimal::Decimal;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use triplegain_actors::domain::{Candle, Symbol, Timeframe};
use triplegain_actors::ports::{FeedError, FeedItem, MarketFeed};

/// Rows read ahead to tell a file's timeframe.
const TIMEFRAME_PROBE_ROWS: usize = 50;

/// 3000-01-01T00:00:00Z; anything later is taken for a millisecond timestamp.
const LATEST_TIMESTAMP: i64 = 32_503_680_000;

const HEADER: [&str; 6] = ["timestamp", "open", "high", "low", "close", "volume"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// `timestamp,open,high,low,close,volume[,…]` after a header row.
    Header,
    /// `unix,open,high,low,close,volume,trades` without a header.
    KrakenOhlcvt,
}

#[derive(Debug, Clone)]
struct Row {
    ts: i64,
    line: usize,
    open: Decimal,
    high: Decimal,
    low: Decimal,
    close: Decimal,
    volume: Decimal,
}

fn parse_decimal(field: &str, name: &str) -> Result<Decimal, String> {
    let f = field.trim();
    f.parse::<Decimal>()
        .or_else(|_| Decimal::from_scientific(f))
        .map_err(|_| format!("{name} {f:?} is not a number"))
}

fn parse_timestamp(field: &str) -> Result<i64, String> {
    let f = field.trim();
    if let Ok(secs) = f.parse::<i64>() {
        return Ok(secs);
    }
    DateTime::parse_from_rfc3339(f)
        .map(|t| t.timestamp())
        .map_err(|_| format!("timestamp {f:?} is neither unix seconds nor RFC 3339"))
}

fn looks_like_data(first_field: &str) -> bool {
    parse_timestamp(first_field).is_ok()
}

/// One CSV file being read row by row.
struct CsvSource {
    path: String,
    symbol: Symbol,
    timeframe: Timeframe,
    reader: BufReader<File>,
    /// The current line (reused: one allocation for the whole file).
    buf: String,
    line_no: usize,
    format: Format,
    ahead: VecDeque<Row>,
    last_ts: Option<i64>,
    done: bool,
}

impl CsvSource {
    fn open(path: &Path, symbol: Symbol) -> Result<Self, FeedError> {
        let shown = path.display().to_string();
        let file = File::open(path).map_err(|e| FeedError::Source(format!("{shown}: {e}")))?;
        let mut src = Self {
            path: shown,
            symbol,
            timeframe: Timeframe::M1,
            reader: BufReader::with_capacity(1 << 16, file),
            buf: String::new(),
            line_no: 0,
            format: Format::KrakenOhlcvt,
            ahead: VecDeque::new(),
            last_ts: None,
            done: false,
        };
        src.detect_format()?;
        while src.ahead.len() < TIMEFRAME_PROBE_ROWS {
            match src.read_row()? {
                Some(row) => src.ahead.push_back(row),
                None => break,
            }
        }
        src.timeframe = src.detect_timeframe(path)?;
        Ok(src)
    }

    fn err(&self, line: usize, msg: impl std::fmt::Display) -> FeedError {
        FeedError::Malformed(format!("{}:{line}: {msg}", self.path))
    }

    /// Next non-empty line with its number, BOM stripped.
    fn next_line(&mut self) -> Result<Option<usize>, FeedError> {
        loop {
            self.buf.clear();
            let read = self
                .reader
                .read_line(&mut self.buf)
                .map_err(|e| self.err(self.line_no + 1, e))?;
            if read == 0 {
                return Ok(None);
            }
            self.line_no += 1;
            if !self.text().is_empty() {
                return Ok(Some(self.line_no));
            }
        }
    }

    /// The current line without BOM, line end and surrounding blanks.
    fn text(&self) -> &str {
        self.buf.trim_start_matches('\u{feff}').trim()
    }

    fn detect_format(&mut self) -> Result<(), FeedError> {
        let Some(line) = self.next_line()? else {
            return Ok(());
        };
        let text = self.text().to_owned();
        let first = text.split(',').next().unwrap_or_default();
        if looks_like_data(first) {
            self.format = Format::KrakenOhlcvt;
            let row = self.parse_row(line, &text)?;
            self.accept(row)
        } else {
            let cols: Vec<String> = text.split(',').map(|c| c.trim().to_ascii_lowercase()).collect();
            let ok = cols.len() >= HEADER.len() && cols.iter().zip(HEADER).all(|(c, h)| c == h);
            if !ok {
                return Err(self.err(
                    line,
                    format!("unrecognised header {text:?} (expected {} or headerless unix,open,high,low,close,volume,trades)", HEADER.join(",")),
                ));
            }
            self.format = Format::Header;
            Ok(())
        }
    }

    fn parse_row(&self, line: usize, text: &str) -> Result<Row, FeedError> {
        // The first six columns are read; the rest are only counted.
        let mut fields = [""; 6];
        let mut count = 0;
        for (i, f) in text.split(',').enumerate() {
            if let Some(slot) = fields.get_mut(i) {
                *slot = f;
            }
            count += 1;
        }
        let expected = match self.format {
            Format::Header => count >= 6,
            Format::KrakenOhlcvt => count == 6 || count == 7,
        };
        if !expected {
            let want = match self.format {
                Format::Header => "at least 6",
                Format::KrakenOhlcvt => "6 or 7",
            };
            return Err(self.err(line, format!("expected {want} columns, found {count}")));
        }
        let get = |i: usize| fields.get(i).copied().unwrap_or_default();
        let num = |i: usize, name: &str| parse_decimal(get(i), name).map_err(|m| self.err(line, m));
        let ts = parse_timestamp(get(0)).map_err(|m| self.err(line, m))?;
        if !(0..=LATEST_TIMESTAMP).contains(&ts) {
            return Err(self.err(
                line,
                format!("timestamp {ts} is outside 1970..3000 (unix seconds expected, not milliseconds)"),
            ));
        }
        let row = Row {
            ts,
            line,
            open: num(1, "open")?,
            high: num(2, "high")?,
            low: num(3, "low")?,
            close: num(4, "close")?,
            volume: num(5, "volume")?,
        };
        if row.low <= Decimal::ZERO {
            return Err(self.err(line, format!("prices must be positive, low is {}", row.low)));
        }
        if row.high < row.low || row.high < row.open.max(row.close) || row.low > row.open.min(row.close) {
            return Err(self.err(
                line,
                format!(
                    "inconsistent OHLC: open {} high {} low {} close {}",
                    row.open, row.high, row.low, row.close
                ),
            ));
        }
        if row.volume < Decimal::ZERO {
            return Err(self.err(line, format!("volume {} is negative", row.volume)));
        }
        if let Some(trades) = fields.get(6) {
            if self.format == Format::KrakenOhlcvt && trades.trim().parse::<u64>().is_err() {
                return Err(self.err(line, format!("trades {:?} is not a count", trades.trim())));
            }
        }
        Ok(row)
    }

    /// Checks time order and keeps the row for later.
    fn accept(&mut self, row: Row) -> Result<(), FeedError> {
        self.check_order(&row)?;
        self.ahead.push_back(row);
        Ok(())
    }

    fn check_order(&mut self, row: &Row) -> Result<(), FeedError> {
        if let Some(prev) = self.last_ts {
            if row.ts <= prev {
                return Err(self.err(
                    row.line,
                    format!(
                        "timestamp {} is not after the previous row's {} (rows must be in time order)",
                        row.ts, prev
                    ),
                ));
            }
        }
        self.last_ts = Some(row.ts);
        Ok(())
    }

    /// Reads and validates the next data row from the file (not from the read-ahead).
    fn read_row(&mut self) -> Result<Option<Row>, FeedError> {
        if self.done {
            return Ok(None);
        }
        let Some(line) = self.next_line()? else {
            self.done = true;
            return Ok(None);
        };
        let row = self.parse_row(line, self.text())?;
        self.check_order(&row)?;
        Ok(Some(row))
    }

    fn detect_timeframe(&self, path: &Path) -> Result<Timeframe, FeedError> {
        let rows: Vec<&Row> = self.ahead.iter().collect();
        let gap = rows
            .windows(2)
            .filter_map(|w| w.get(1).zip(w.first()))
            .map(|(b, a)| b.ts - a.ts)
            .min();
        match gap {
            Some(secs) => Timeframe::ALL
                .into_iter()
                .find(|tf| tf.seconds() == secs)
                .ok_or_else(|| {
                    FeedError::Malformed(format!(
                        "{}: rows are {secs} s apart, which is not a supported timeframe (1m 5m 15m 1h 4h 1d)",
                        self.path
                    ))
                }),
            None => Ok(timeframe_from_file_name(path).unwrap_or(Timeframe::M1)),
        }
    }

    fn candle(&self, row: &Row) -> Result<Candle, FeedError> {
        let open_time = DateTime::<Utc>::from_timestamp(row.ts, 0)
            .ok_or_else(|| self.err(row.line, format!("timestamp {} is out of range", row.ts)))?;
        Ok(Candle {
            symbol: self.symbol.clone(),
            timeframe: self.timeframe,
            open_time,
            open: row.open,
            high: row.high,
            low: row.low,
            close: row.close,
            volume: row.volume,
        })
    }

    /// The next candle of this file, `None` at its end.
    fn next_candle(&mut self) -> Result<Option<Candle>, FeedError> {
        let row = match self.ahead.pop_front() {
            Some(row) => row,
            None => match self.read_row()? {
                Some(row) => row,
                None => return Ok(None),
            },
        };
        self.candle(&row).map(Some)
    }
}

/// Kraken's export files carry the interval in minutes: `XBTUSDT_60.csv`.
fn timeframe_from_file_name(path: &Path) -> Option<Timeframe> {
    let stem = path.file_stem()?.to_str()?;
    let (_, minutes) = stem.rsplit_once('_')?;
    let minutes: i64 = minutes.parse().ok()?;
    Timeframe::ALL.into_iter().find(|tf| tf.seconds() == minutes * 60)
}

/// Reads a whole CSV file of one symbol (used by `triplegain analyze`).
///
/// # Errors
/// [`FeedError::Source`] when the file cannot be opened, [`FeedError::Malformed`] naming the file
/// and line of the first bad or out-of-order row.
pub fn load_candles(path: &Path, symbol: &Symbol) -> Result<Vec<Candle>, FeedError> {
    let mut src = CsvSource::open(path, symbol.clone())?;
    let mut out = Vec::new();
    while let Some(c) = src.next_candle()? {
        out.push(c);
    }
    Ok(out)
}

const QUOTES: [&str; 12] = [
    "USDT", "USDC", "ZUSD", "ZEUR", "ZGBP", "XXBT", "USD", "EUR", "GBP", "XBT", "BTC", "ETH",
];

/// Tells the symbol from a file name: `BTC_USDT.csv`, `btc-usdt.csv`, `XBTUSDT_1.csv`,
/// `XRPXBT_60.csv`, `XXBTZUSD.csv` (Kraken names map to ours: XBT → BTC).
pub fn symbol_from_file_name(path: &Path) -> Option<Symbol> {
    let stem = path.file_stem()?.to_str()?.trim().to_ascii_uppercase();
    // Drop a Kraken interval suffix such as `_1` or `_1440`.
    let stem = match stem.rsplit_once('_') {
        Some((head, tail)) if !tail.is_empty() && tail.chars().all(|c| c.is_ascii_digit()) => head.to_owned(),
        _ => stem,
    };
    let (base, quote) = if let Some((b, q)) = stem.split_once(['_', '-', '=', ' ']) {
        (b.to_owned(), q.to_owned())
    } else {
        let quote = QUOTES.iter().find(|q| stem.len() > q.len() && stem.ends_with(*q))?;
        (stem[..stem.len() - quote.len()].to_owned(), (*quote).to_owned())
    };
    Symbol::parse(&format!(
        "{}/{}",
        kraken_asset_to_common(&base),
        kraken_asset_to_common(&quote)
    ))
    .ok()
}

/// Parses a replay command-line argument: `SYMBOL=FILE` (e.g. `BTC/USDT=data/btc.csv`) or just
/// `FILE`, whose symbol comes from [`symbol_from_file_name`].
///
/// # Errors
/// [`FeedError::Source`] when no symbol can be told.
pub fn parse_replay_arg(arg: &str) -> Result<(Symbol, PathBuf), FeedError> {
    if let Some((sym, file)) = arg.split_once('=') {
        if let Ok(symbol) = Symbol::parse(sym) {
            return Ok((symbol, PathBuf::from(file)));
        }
    }
    let path = PathBuf::from(arg);
    symbol_from_file_name(&path).map(|s| (s, path)).ok_or_else(|| {
        FeedError::Source(format!(
            "cannot tell the symbol of {arg:?}; write SYMBOL=FILE, e.g. BTC/USDT=data/btc_usdt.csv"
        ))
    })
}

/// Replays CSV files (one per symbol) merged in time order: each `next()` yields every symbol's
/// candle for the next timestamp present in any file, then [`FeedItem::End`].
pub struct ReplayFeed {
    sources: Vec<CsvSource>,
    heads: Vec<Option<Candle>>,
}

impl ReplayFeed {
    /// Opens every file, detects its format and timeframe and validates its first rows.
    ///
    /// # Errors
    /// [`FeedError::Source`] for a missing file or a symbol given twice, [`FeedError::Malformed`]
    /// for a bad header or row.
    pub fn open(files: Vec<(Symbol, PathBuf)>) -> Result<Self, FeedError> {
        let mut sources: Vec<CsvSource> = Vec::with_capacity(files.len());
        for (symbol, path) in files {
            if sources.iter().any(|s| s.symbol == symbol) {
                return Err(FeedError::Source(format!(
                    "{symbol} is given more than one replay file"
                )));
            }
            sources.push(CsvSource::open(&path, symbol)?);
        }
        if sources.is_empty() {
            return Err(FeedError::Source("no replay files given".into()));
        }
        let heads = sources.iter().map(|_| None).collect();
        Ok(Self { sources, heads })
    }

    /// Each symbol with the timeframe detected for its file.
    pub fn timeframes(&self) -> Vec<(Symbol, Timeframe)> {
        self.sources.iter().map(|s| (s.symbol.clone(), s.timeframe)).collect()
    }

    /// The next group of candles sharing the earliest pending timestamp.
    ///
    /// # Errors
    /// The first malformed or out-of-order row of any file.
    pub fn next_group(&mut self) -> Result<Option<Vec<Candle>>, FeedError> {
        for (src, head) in self.sources.iter_mut().zip(self.heads.iter_mut()) {
            if head.is_none() {
                *head = src.next_candle()?;
            }
        }
        let Some(t) = self.heads.iter().flatten().map(|c| c.open_time).min() else {
            return Ok(None);
        };
        let group = self
            .heads
            .iter_mut()
            .filter(|h| h.as_ref().is_some_and(|c| c.open_time == t))
            .filter_map(Option::take)
            .collect();
        Ok(Some(group))
    }
}

impl MarketFeed for ReplayFeed {
    fn symbols(&self) -> Vec<Symbol> {
        self.sources.iter().map(|s| s.symbol.clone()).collect()
    }

    fn next(&mut self) -> BoxFuture<'_, Result<FeedItem, FeedError>> {
        Box::pin(async move {
            Ok(match self.next_group()? {
                Some(group) => FeedItem::Candles(group),
                None => FeedItem::End,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(s: &str) -> Option<Symbol> {
        Symbol::parse(s).ok()
    }

    #[test]
    fn symbols_from_file_names() {
        let cases = [
            ("data/BTC_USDT.csv", "BTC/USDT"),
            ("xrp-usdt.csv", "XRP/USDT"),
            ("XBTUSDT_1.csv", "BTC/USDT"),
            ("XRPUSDT_60.csv", "XRP/USDT"),
            ("XRPXBT_1440.csv", "XRP/BTC"),
            ("XXRPXXBT.csv", "XRP/BTC"),
            ("XXBTZUSD_5.csv", "BTC/USD"),
        ];
        for (file, want) in cases {
            assert_eq!(symbol_from_file_name(Path::new(file)), sym(want), "{file}");
        }
        assert_eq!(symbol_from_file_name(Path::new("prices.csv")), None);
    }

    #[test]
    fn replay_args() {
        let (s, p) = parse_replay_arg("XRP/BTC=/tmp/a=b.csv").expect("symbol=file");
        assert_eq!((s.as_str(), p), ("XRP/BTC", PathBuf::from("/tmp/a=b.csv")));
        let (s, _) = parse_replay_arg("/data/XBTUSDT_1.csv").expect("inferred");
        assert_eq!(s.as_str(), "BTC/USDT");
        assert!(parse_replay_arg("/data/prices.csv").is_err());
    }

    #[test]
    fn timeframe_suffix() {
        assert_eq!(
            timeframe_from_file_name(Path::new("XBTUSDT_240.csv")),
            Some(Timeframe::H4)
        );
        assert_eq!(timeframe_from_file_name(Path::new("XBTUSDT_30.csv")), None);
    }
}
