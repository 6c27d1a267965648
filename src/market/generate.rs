//! The candle generator: days of 1-minute candles for BTC/USDT and XRP/USDT from the seeded
//! simulated market, written as the header CSV files the replay feed and `triplegain backtest`
//! read (`triplegain bench --generate DIR`).

use anyhow::Context as _;
use chrono::{DateTime, TimeZone, Utc};
use std::path::{Path, PathBuf};
use triplegain_actors::domain::{Candle, Symbol};
use triplegain_actors::market::simulated::SimulatedMarket;

/// Symbols the generator writes (the simulated market's XRP/BTC cross is left out).
pub const GENERATED_SYMBOLS: [&str; 2] = ["BTC/USDT", "XRP/USDT"];

/// First candle of the generated year.
pub fn generated_start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).single().unwrap_or_default()
}

/// `days` of 1-minute candles for [`GENERATED_SYMBOLS`] from the seeded [`SimulatedMarket`], one
/// vector per symbol.
pub fn generate_candles(seed: u64, days: u32) -> Vec<(Symbol, Vec<Candle>)> {
    let mut market = SimulatedMarket::new(seed, generated_start());
    let minutes = usize::try_from(days).unwrap_or(0) * 1440;
    let mut out: Vec<(Symbol, Vec<Candle>)> = GENERATED_SYMBOLS
        .iter()
        .filter_map(|s| Symbol::parse(s).ok())
        .map(|s| (s, Vec::with_capacity(minutes)))
        .collect();
    for _ in 0..minutes {
        for candle in market.step() {
            if let Some((_, v)) = out.iter_mut().find(|(s, _)| *s == candle.symbol) {
                v.push(candle);
            }
        }
    }
    out
}

/// File name the generator uses for `symbol` (the replay feed reads the symbol back from it).
pub fn candle_file_name(symbol: &Symbol) -> String {
    format!("{}.csv", symbol.as_str().replace('/', "_").to_ascii_lowercase())
}

/// Writes `days` of generated candles as header CSV files (`timestamp,open,high,low,close,volume`,
/// unix seconds) into `dir`; returns the files written.
///
/// # Errors
/// When `dir` cannot be created or a file cannot be written.
pub fn write_candle_files(dir: &Path, seed: u64, days: u32) -> anyhow::Result<Vec<(Symbol, PathBuf, usize)>> {
    use std::io::Write as _;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    for (symbol, candles) in generate_candles(seed, days) {
        let path = dir.join(candle_file_name(&symbol));
        let file = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut w = std::io::BufWriter::new(file);
        writeln!(w, "timestamp,open,high,low,close,volume")?;
        for c in &candles {
            writeln!(
                w,
                "{},{},{},{},{},{}",
                c.open_time.timestamp(),
                c.open,
                c.high,
                c.low,
                c.close,
                c.volume
            )?;
        }
        w.flush()?;
        written.push((symbol, path, candles.len()));
    }
    Ok(written)
}
