//! Backtest: the full actor system on replayed candles, and the report computed from a run's
//! trades and equity curve.

pub mod report;
pub mod run;

pub use report::{EquityPoint, Report, ReportInput, Timing, TradeRecord};
pub use run::{parse_time, run, BacktestOptions, BacktestOutcome};

/// A progress bar on stderr counting delivered candles, when stderr is a terminal; `None`
/// otherwise (pipes, files, tests stay silent). The total is the files' rows.
pub fn progress_bar(candles: &[String]) -> Option<indicatif::ProgressBar> {
    use std::io::{BufRead, IsTerminal};
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let total: u64 = candles
        .iter()
        .filter_map(|a| crate::market::parse_replay_arg(a).ok())
        .filter_map(|(_, path)| std::fs::File::open(path).ok())
        .map(|f| std::io::BufReader::new(f).lines().count().saturating_sub(1) as u64)
        .sum();
    let bar = indicatif::ProgressBar::new(total);
    let style = indicatif::ProgressStyle::with_template(
        "{elapsed_precise} [{bar:40}] {human_pos}/{human_len} candles ({per_sec}, eta {eta})",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(5));
    Some(bar)
}
