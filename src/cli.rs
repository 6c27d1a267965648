//! Command line: `triplegain serve | migrate | analyze | check-config`.

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
}
