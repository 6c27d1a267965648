//! Command line: `triplegain serve | migrate | check-config | analyze | bench | backtest | tail`.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "triplegain",
    version,
    about = "TripleGain: an actor-based trading system for Kraken"
)]
pub struct Cli {
    /// Directory holding base.yaml and the domain files.
    #[arg(long, global = true, default_value = "config", env = "TRIPLEGAIN_CONFIG_DIR")]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the trading server (paper trading on the simulated market by default).
    Serve {
        /// Address to bind, overriding server.bind.
        #[arg(long)]
        bind: Option<String>,
    },
    /// Apply database migrations (DATABASE_URL) and exit.
    Migrate,
    /// Print indicators, technical analysis and regime for the last candle of a CSV file as JSON.
    Analyze {
        /// CSV file: `timestamp,open,high,low,close,volume` with a header, or Kraken's OHLCVT export.
        #[arg(long)]
        candles: PathBuf,
        /// Symbol (default: told from the file name, e.g. XBTUSDT_60.csv or BTC_USDT.csv).
        #[arg(long)]
        symbol: Option<String>,
        /// Aggregate to this timeframe first (1m 5m 15m 1h 4h 1d); default: the file's own.
        #[arg(long)]
        timeframe: Option<String>,
    },
    /// Print the resolved settings as YAML with secrets redacted; exit 2 on any invalid setting.
    CheckConfig,
    /// Run the benchmark suite (bus vs raw mpsc, indicators, risk validation) or generate candle files.
    Bench(BenchArgs),
    /// Run the full actor system on replayed candle files and print a report as JSON.
    Backtest(BacktestArgs),
    /// Print the live event stream from NATS JetStream (config/export.yaml), one JSON object a line.
    Tail(TailArgs),
    /// Measure the event export (JetStream with acknowledgements, outbox write and relay) beside a
    /// raw async-nats publish loop; needs NATS (config/export.yaml export.url) and DATABASE_URL.
    BenchExport {
        /// Events per measurement.
        #[arg(long, default_value_t = 20_000)]
        events: u64,
    },
}

/// Options of `triplegain tail`.
#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// Only this account (default every account of the stream).
    #[arg(long)]
    pub account: Option<String>,
    /// Only this topic (execution_events, portfolio_updates, risk_alerts, system_events, decisions,
    /// ta_signals, regime_updates, sentiment_updates, trading_signals).
    #[arg(long)]
    pub topic: Option<String>,
    /// Start from the oldest event the stream keeps instead of new ones only.
    #[arg(long)]
    pub from_start: bool,
    /// Exit after this many events.
    #[arg(long)]
    pub count: Option<u64>,
}

/// Options of `triplegain backtest`.
#[derive(Debug, clap::Args)]
pub struct BacktestArgs {
    /// Candle file per symbol: `SYMBOL=FILE` or FILE (symbol told from the file name); repeat.
    #[arg(long = "candles", required = true)]
    pub candles: Vec<String>,
    /// Only candles opening at or after this time (RFC 3339 or YYYY-MM-DD).
    #[arg(long)]
    pub from: Option<String>,
    /// Only candles opening before this time (RFC 3339 or YYYY-MM-DD).
    #[arg(long)]
    pub to: Option<String>,
    /// Seed of the paper exchange.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Write the report JSON to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Write the equity curve as CSV to FILE.
    #[arg(long, value_name = "FILE")]
    pub equity_csv: Option<PathBuf>,
    /// Draw the equity curve to FILE (.png or .svg).
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// Write the round-trip trades as CSV to FILE.
    #[arg(long, value_name = "FILE")]
    pub trades_csv: Option<PathBuf>,
    /// Answer the agents' model calls from FILE, the JSON lines a live or paper run recorded
    /// (`llm.record_path`); the run fails naming the first answer missing. Without it the
    /// agents use no model (rule-based decisions).
    #[arg(long, value_name = "FILE")]
    pub llm_replay: Option<PathBuf>,
    /// While orders or positions are live, hand over every business minute on its own instead of
    /// batching the minutes in which nothing can fill, trigger or move a stop (slower; the report
    /// is the same).
    #[arg(long)]
    pub minute_by_minute: bool,
}

/// Options of `triplegain bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Events per bus run.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Most events in flight (published, not yet counted by the last consumer); every mailbox and
    /// the raw channel hold more than this, so nothing is dropped.
    #[arg(long, default_value_t = 1024)]
    pub window: u64,
    /// Runs per bus scenario (interleaved; the median is reported).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Parts to run, comma separated: bus, indicators, risk, pipeline.
    #[arg(long, value_delimiter = ',', default_value = "bus,indicators,risk,pipeline")]
    pub only: Vec<String>,
    /// Risk validations to time.
    #[arg(long, default_value_t = 100_000)]
    pub risk_samples: usize,
    /// Signals to time through coordinator, risk engine and execution manager.
    #[arg(long, default_value_t = 5_000)]
    pub pipeline_samples: usize,
    /// Seed of the simulated market used for generated candles.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Days of 1-minute candles to generate.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// Candle files (`SYMBOL=FILE` or FILE) for the indicator benchmark; generated in memory if absent.
    #[arg(long = "candles")]
    pub candles: Vec<PathBuf>,
    /// Write generated 1-minute candle files for BTC/USDT and XRP/USDT into DIR and exit.
    #[arg(long, value_name = "DIR")]
    pub generate: Option<PathBuf>,
    /// Also write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}
