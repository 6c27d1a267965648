//! Command line: `triplegain serve | migrate | check-config`.

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
    /// Print the resolved settings as YAML with secrets redacted; exit 2 on any invalid setting.
    CheckConfig,
}
