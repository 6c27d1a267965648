//! The backtest report, computed from the closed trades (with their fees) and the equity curve
//! sampled per candle or per minute.
//!
//! - P&L: a trade's gross P&L is `(exit − entry) × quantity` for a long (`buy`) and the opposite for
//!   a short (`sell`); its net P&L is gross minus its fees. The report's gross, fees and net are the
//!   sums over the trades; a win is a trade with a positive net P&L.
//! - Max drawdown: the largest fall from a running peak of the equity curve (the peak starts at the
//!   initial equity), in percent of that peak and in USD.
//! - Sharpe and Sortino: on DAILY returns. A day's equity is the last sample of that UTC day; the
//!   first day's return is measured against the initial equity. Risk-free rate 0. Sharpe =
//!   mean / sample standard deviation (n − 1); Sortino = mean / downside deviation
//!   (√(Σ min(r, 0)² / n)). Both are annualised by √365 (crypto trades every day of the year).
//!   Undefined (fewer than two days, or no dispersion) is `null`.
//! - Exposure: share of equity samples with an open position, and the mean and largest open
//!   exposure in percent of equity.
//!
//! Determinism: every map is a `BTreeMap`, money stays `Decimal`, and each float is rounded to six
//! decimals (negative zero folded to zero, non-finite values to `null`), so the same input gives a
//! byte-identical JSON. Wall time and candles/s, the only non-deterministic fields, live under the
//! `timing` key, which [`Report::to_json_deterministic`] leaves out.

use anyhow::{anyhow, bail, Context as _};
use chrono::{DateTime, NaiveDate, Utc};
use plotters::coord::Shift;
use plotters::prelude::*;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use triplegain_actors::domain::Side;

/// Days a year for annualising daily ratios (√365): crypto markets trade every day.
pub const DAYS_PER_YEAR: f64 = 365.0;

/// Basis of the Sharpe and Sortino ratios, stated in the report.
pub const RATIO_BASIS: &str = "daily returns (last equity of each UTC day), risk-free rate 0, annualised by sqrt(365)";

/// Most points drawn in a chart; longer curves are thinned evenly (the last point is kept).
const MAX_PLOT_POINTS: usize = 4_000;

/// One closed trade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TradeRecord {
    pub symbol: String,
    /// `buy` = long, `sell` = short.
    pub side: Side,
    /// Regime when the trade was opened (wire spelling, e.g. `trending_bull`).
    pub regime: String,
    pub opened_at: DateTime<Utc>,
    pub closed_at: DateTime<Utc>,
    pub quantity: Decimal,
    pub entry_price: Decimal,
    pub exit_price: Decimal,
    /// Every fee paid on the trade (entry and exit), in USD.
    pub fees: Decimal,
}

impl TradeRecord {
    /// P&L before fees.
    pub fn gross_pnl(&self) -> Decimal {
        let per_unit = self.exit_price - self.entry_price;
        match self.side {
            Side::Buy => per_unit * self.quantity,
            Side::Sell => -per_unit * self.quantity,
        }
    }

    /// P&L after fees.
    pub fn net_pnl(&self) -> Decimal {
        self.gross_pnl() - self.fees
    }
}

/// One sample of the equity curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EquityPoint {
    pub at: DateTime<Utc>,
    pub equity: Decimal,
    /// Open position notional in USD (0 when flat).
    pub exposure_usd: Decimal,
}

/// Everything a run recorded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportInput {
    pub initial_equity: Decimal,
    pub candles_processed: u64,
    pub trades: Vec<TradeRecord>,
    /// In time order.
    pub equity: Vec<EquityPoint>,
    /// Risk verdicts by code (`approved`, `modified`, or the rejection code).
    pub risk_verdicts: BTreeMap<String, u64>,
    pub rebalances: u64,
    /// USD allocated to each hodl bag over the run.
    pub hodl_allocations: BTreeMap<String, Decimal>,
}

/// Wall-clock figures: the only fields that differ between two runs of the same input.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    pub wall_seconds: f64,
    pub candles_per_sec: f64,
}

impl Timing {
    pub fn new(wall: std::time::Duration, candles: u64) -> Self {
        let wall_seconds = wall.as_secs_f64();
        Self {
            wall_seconds,
            candles_per_sec: if wall_seconds > 0.0 {
                candles as f64 / wall_seconds
            } else {
                0.0
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Period {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub days: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Drawdown {
    /// Percent of the peak it fell from.
    pub pct: Decimal,
    pub usd: Decimal,
    pub peak_at: Option<DateTime<Utc>>,
    pub trough_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Exposure {
    /// Percent of equity samples with an open position.
    pub time_in_market_pct: Option<f64>,
    pub avg_exposure_pct: Option<f64>,
    pub max_exposure_pct: Option<f64>,
}

/// Trades of one regime or one symbol.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Breakdown {
    pub trades: u64,
    pub wins: u64,
    pub win_rate: Option<f64>,
    pub gross_pnl: Decimal,
    pub fees: Decimal,
    pub net_pnl: Decimal,
}

impl Breakdown {
    fn add(&mut self, t: &TradeRecord) {
        self.trades += 1;
        if t.net_pnl() > Decimal::ZERO {
            self.wins += 1;
        }
        self.gross_pnl += t.gross_pnl();
        self.fees += t.fees;
        self.net_pnl += t.net_pnl();
        self.win_rate = ratio(self.wins, self.trades);
    }
}

/// The backtest report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub period: Period,
    pub candles_processed: u64,
    pub initial_equity: Decimal,
    pub final_equity: Decimal,
    pub return_pct: Option<f64>,
    pub trades: u64,
    pub wins: u64,
    pub losses: u64,
    pub win_rate: Option<f64>,
    pub gross_pnl: Decimal,
    pub fees: Decimal,
    pub net_pnl: Decimal,
    pub max_drawdown: Drawdown,
    pub sharpe: Option<f64>,
    pub sortino: Option<f64>,
    pub ratio_basis: String,
    pub daily_returns: usize,
    pub exposure: Exposure,
    pub by_regime: BTreeMap<String, Breakdown>,
    pub by_symbol: BTreeMap<String, Breakdown>,
    pub risk_verdicts: BTreeMap<String, u64>,
    pub rebalances: u64,
    pub hodl_allocations: BTreeMap<String, Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timing: Option<Timing>,
}

/// Rounds to six decimals; negative zero becomes zero and a non-finite value `None`.
fn stable(x: f64) -> Option<f64> {
    x.is_finite().then(|| (x * 1e6).round() / 1e6 + 0.0)
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64).and_then(stable)
}

fn money(d: Decimal) -> Decimal {
    d.normalize()
}

/// Daily simple returns: last equity of each UTC day against the previous day's (the initial
/// equity for the first day).
pub fn daily_returns(initial_equity: Decimal, equity: &[EquityPoint]) -> Vec<f64> {
    let mut closes: BTreeMap<NaiveDate, Decimal> = BTreeMap::new();
    let mut sorted: Vec<&EquityPoint> = equity.iter().collect();
    sorted.sort_by_key(|p| p.at);
    for p in sorted {
        closes.insert(p.at.date_naive(), p.equity);
    }
    let mut prev = initial_equity;
    let mut out = Vec::with_capacity(closes.len());
    for close in closes.into_values() {
        if prev > Decimal::ZERO {
            if let Some(r) = (close / prev - Decimal::ONE).to_f64() {
                out.push(r);
            }
        }
        prev = close;
    }
    out
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Annualised Sharpe ratio of daily returns (sample standard deviation, risk-free 0).
pub fn sharpe(returns: &[f64]) -> Option<f64> {
    if returns.len() < 2 {
        return None;
    }
    let m = mean(returns);
    let var = returns.iter().map(|r| (r - m).powi(2)).sum::<f64>() / (returns.len() - 1) as f64;
    let sd = var.sqrt();
    (sd > 0.0).then(|| m / sd * DAYS_PER_YEAR.sqrt()).and_then(stable)
}

/// Annualised Sortino ratio of daily returns (downside deviation against 0 over all days).
pub fn sortino(returns: &[f64]) -> Option<f64> {
    if returns.len() < 2 {
        return None;
    }
    let m = mean(returns);
    let dd = (returns.iter().map(|r| r.min(0.0).powi(2)).sum::<f64>() / returns.len() as f64).sqrt();
    (dd > 0.0).then(|| m / dd * DAYS_PER_YEAR.sqrt()).and_then(stable)
}

/// Largest fall from a running peak (the peak starts at `initial_equity`).
pub fn max_drawdown(initial_equity: Decimal, equity: &[EquityPoint]) -> Drawdown {
    let mut peak = initial_equity;
    let mut peak_at = None;
    let mut worst = Drawdown {
        pct: Decimal::ZERO,
        usd: Decimal::ZERO,
        peak_at: None,
        trough_at: None,
    };
    for p in equity {
        if p.equity > peak {
            peak = p.equity;
            peak_at = Some(p.at);
        }
        if peak <= Decimal::ZERO {
            continue;
        }
        let fall = peak - p.equity;
        let pct = fall / peak * Decimal::ONE_HUNDRED;
        if pct > worst.pct {
            worst = Drawdown {
                pct,
                usd: fall,
                peak_at: peak_at.or(equity.first().map(|f| f.at)),
                trough_at: Some(p.at),
            };
        }
    }
    worst.pct = worst.pct.round_dp(6).normalize();
    worst.usd = money(worst.usd);
    worst
}

fn exposure(equity: &[EquityPoint]) -> Exposure {
    let n = equity.len() as u64;
    let in_market = equity.iter().filter(|p| p.exposure_usd > Decimal::ZERO).count() as u64;
    let pcts: Vec<f64> = equity
        .iter()
        .filter(|p| p.equity > Decimal::ZERO)
        .filter_map(|p| (p.exposure_usd / p.equity * Decimal::ONE_HUNDRED).to_f64())
        .collect();
    Exposure {
        time_in_market_pct: ratio(in_market, n).and_then(|r| stable(r * 100.0)),
        avg_exposure_pct: (!pcts.is_empty()).then(|| mean(&pcts)).and_then(stable),
        max_exposure_pct: pcts.iter().copied().reduce(f64::max).and_then(stable),
    }
}

impl Report {
    /// Computes the report; `timing` goes under the `timing` key as is.
    pub fn compute(input: &ReportInput, timing: Option<Timing>) -> Self {
        let mut by_regime: BTreeMap<String, Breakdown> = BTreeMap::new();
        let mut by_symbol: BTreeMap<String, Breakdown> = BTreeMap::new();
        let mut all = Breakdown::default();
        for t in &input.trades {
            all.add(t);
            by_regime.entry(t.regime.clone()).or_default().add(t);
            by_symbol.entry(t.symbol.clone()).or_default().add(t);
        }
        for b in by_regime.values_mut().chain(by_symbol.values_mut()) {
            b.gross_pnl = money(b.gross_pnl);
            b.fees = money(b.fees);
            b.net_pnl = money(b.net_pnl);
        }
        let from = input
            .equity
            .iter()
            .map(|p| p.at)
            .chain(input.trades.iter().map(|t| t.opened_at))
            .min();
        let to = input
            .equity
            .iter()
            .map(|p| p.at)
            .chain(input.trades.iter().map(|t| t.closed_at))
            .max();
        let days = from
            .zip(to)
            .and_then(|(f, t)| stable((t - f).num_seconds() as f64 / 86_400.0));
        let final_equity = input.equity.last().map_or(input.initial_equity, |p| p.equity);
        let return_pct = (input.initial_equity > Decimal::ZERO)
            .then(|| ((final_equity - input.initial_equity) / input.initial_equity * Decimal::ONE_HUNDRED).to_f64())
            .flatten()
            .and_then(stable);
        let returns = daily_returns(input.initial_equity, &input.equity);
        Self {
            period: Period { from, to, days },
            candles_processed: input.candles_processed,
            initial_equity: money(input.initial_equity),
            final_equity: money(final_equity),
            return_pct,
            trades: all.trades,
            wins: all.wins,
            losses: all.trades - all.wins,
            win_rate: all.win_rate,
            gross_pnl: money(all.gross_pnl),
            fees: money(all.fees),
            net_pnl: money(all.net_pnl),
            max_drawdown: max_drawdown(input.initial_equity, &input.equity),
            sharpe: sharpe(&returns),
            sortino: sortino(&returns),
            ratio_basis: RATIO_BASIS.to_owned(),
            daily_returns: returns.len(),
            exposure: exposure(&input.equity),
            by_regime,
            by_symbol,
            risk_verdicts: input.risk_verdicts.clone(),
            rebalances: input.rebalances,
            hodl_allocations: input
                .hodl_allocations
                .iter()
                .map(|(k, v)| (k.clone(), money(*v)))
                .collect(),
            timing,
        }
    }

    /// Pretty JSON with a trailing newline, `timing` included when set.
    ///
    /// # Errors
    /// Only if serialisation fails (it does not for this type).
    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self).map(|s| s + "\n")
    }

    /// Pretty JSON without the `timing` key: byte-identical for identical inputs.
    ///
    /// # Errors
    /// Only if serialisation fails (it does not for this type).
    pub fn to_json_deterministic(&self) -> serde_json::Result<String> {
        Self {
            timing: None,
            ..self.clone()
        }
        .to_json()
    }

    /// A few lines for a terminal.
    pub fn summary(&self) -> String {
        let f = |x: Option<f64>, dp: usize| x.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.dp$}"));
        let mut s = format!(
            "period {} .. {} ({} days), {} candles\ntrades {} (win rate {}), gross {} USD, fees {} USD, net {} USD\nequity {} -> {} USD ({} %), max drawdown {} % ({} USD), Sharpe {}, Sortino {}\n",
            self.period.from.map_or_else(|| "-".to_owned(), |t| t.to_rfc3339()),
            self.period.to.map_or_else(|| "-".to_owned(), |t| t.to_rfc3339()),
            f(self.period.days, 2),
            self.candles_processed,
            self.trades,
            f(self.win_rate.map(|w| w * 100.0), 1) + " %",
            self.gross_pnl,
            self.fees,
            self.net_pnl,
            self.initial_equity,
            self.final_equity,
            f(self.return_pct, 2),
            self.max_drawdown.pct.round_dp(2),
            self.max_drawdown.usd.round_dp(2),
            f(self.sharpe, 2),
            f(self.sortino, 2),
        );
        if let Some(t) = self.timing {
            s.push_str(&format!(
                "wall {:.3} s, {:.0} candles/s\n",
                t.wall_seconds, t.candles_per_sec
            ));
        }
        s
    }
}

/// Writes the equity curve as CSV: `timestamp,equity,exposure_usd` (RFC 3339 timestamps).
///
/// # Errors
/// When the file cannot be written.
pub fn write_equity_csv(path: &Path, equity: &[EquityPoint]) -> anyhow::Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = std::io::BufWriter::new(file);
    writeln!(w, "timestamp,equity,exposure_usd")?;
    for p in equity {
        writeln!(
            w,
            "{},{},{}",
            p.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            p.equity,
            p.exposure_usd
        )?;
    }
    w.flush()?;
    Ok(())
}

/// Draws the equity curve to `path`: SVG for `.svg`, PNG for `.png`. Axis text is drawn in the SVG
/// only (the PNG backend is built without a font engine).
///
/// # Errors
/// An unknown extension, an empty curve, or a drawing or file error.
pub fn plot_equity(path: &Path, equity: &[EquityPoint]) -> anyhow::Result<()> {
    if equity.is_empty() {
        bail!("no equity samples to plot");
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let size = (1200, 600);
    match ext.as_str() {
        "svg" => draw(SVGBackend::new(path, size).into_drawing_area(), equity, true),
        "png" => draw(BitMapBackend::new(path, size).into_drawing_area(), equity, false),
        _ => bail!("{}: the chart must end in .svg or .png", path.display()),
    }
}

fn plot_err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing the equity chart: {e}")
}

/// `labels`: draw the caption and axis text (the SVG backend writes text elements itself; the
/// bitmap backend would need a font engine, which is not built).
fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, equity: &[EquityPoint], labels: bool) -> anyhow::Result<()> {
    let start = equity.first().map(|p| p.at).context("empty curve")?;
    let step = equity.len().div_ceil(MAX_PLOT_POINTS).max(1);
    let mut pts: Vec<(f64, f64)> = equity
        .iter()
        .enumerate()
        .filter(|(i, _)| i % step == 0 || *i + 1 == equity.len())
        .map(|(_, p)| {
            let days = (p.at - start).num_seconds() as f64 / 86_400.0;
            (days, p.equity.to_f64().unwrap_or(0.0))
        })
        .collect();
    pts.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
    let x_max = pts.iter().map(|p| p.0).fold(0.0, f64::max).max(1e-6);
    let y_min = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let y_max = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let pad = ((y_max - y_min) * 0.05).max(1.0);
    root.fill(&WHITE).map_err(plot_err)?;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(15);
    if labels {
        builder
            .caption("Equity (USD)", ("sans-serif", 22))
            .x_label_area_size(40)
            .y_label_area_size(80);
    }
    let mut chart = builder
        .build_cartesian_2d(0.0..x_max, (y_min - pad)..(y_max + pad))
        .map_err(plot_err)?;
    let mut mesh = chart.configure_mesh();
    if labels {
        mesh.x_desc("days").y_desc("equity (USD)");
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw().map_err(plot_err)?;
    chart.draw_series(LineSeries::new(pts, &BLUE)).map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use rust_decimal_macros::dec;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, 0, 0, 0).unwrap()
    }

    fn trade(
        symbol: &str,
        side: Side,
        regime: &str,
        qty: Decimal,
        entry: Decimal,
        exit: Decimal,
        fees: Decimal,
    ) -> TradeRecord {
        TradeRecord {
            symbol: symbol.to_owned(),
            side,
            regime: regime.to_owned(),
            opened_at: t0() + Duration::hours(1),
            closed_at: t0() + Duration::hours(5),
            quantity: qty,
            entry_price: entry,
            exit_price: exit,
            fees,
        }
    }

    fn point(minutes: i64, equity: Decimal, exposure: Decimal) -> EquityPoint {
        EquityPoint {
            at: t0() + Duration::minutes(minutes),
            equity,
            exposure_usd: exposure,
        }
    }

    fn input() -> ReportInput {
        ReportInput {
            initial_equity: dec!(10000),
            candles_processed: 2880,
            trades: vec![
                // long BTC +0.1 × 1000 = +100 gross, 3.2 fees
                trade(
                    "BTC/USDT",
                    Side::Buy,
                    "trending_bull",
                    dec!(0.1),
                    dec!(95000),
                    dec!(96000),
                    dec!(3.2),
                ),
                // short XRP: (2.40 − 2.30) × 1000 = +100 gross, 1.5 fees
                trade(
                    "XRP/USDT",
                    Side::Sell,
                    "ranging",
                    dec!(1000),
                    dec!(2.40),
                    dec!(2.30),
                    dec!(1.5),
                ),
                // long BTC −0.05 × 2000 = −100 gross, 2.1 fees
                trade(
                    "BTC/USDT",
                    Side::Buy,
                    "ranging",
                    dec!(0.05),
                    dec!(96000),
                    dec!(94000),
                    dec!(2.1),
                ),
            ],
            equity: vec![
                point(0, dec!(10000), dec!(0)),
                point(60, dec!(10200), dec!(5000)),
                point(1440, dec!(10100), dec!(0)),
                point(2879, dec!(10093.2), dec!(0)),
            ],
            risk_verdicts: BTreeMap::from([("approved".to_owned(), 3), ("position_too_large".to_owned(), 2)]),
            rebalances: 1,
            hodl_allocations: BTreeMap::from([("BTC".to_owned(), dec!(12.5))]),
        }
    }

    #[test]
    fn pnl_is_the_sum_of_the_trades_net_of_fees() {
        let r = Report::compute(&input(), None);
        assert_eq!(r.gross_pnl, dec!(100));
        assert_eq!(r.fees, dec!(6.8));
        assert_eq!(r.net_pnl, dec!(93.2));
        let from_trades: Decimal = input().trades.iter().map(|t| t.gross_pnl() - t.fees).sum();
        assert_eq!(r.net_pnl, from_trades);
        assert_eq!((r.trades, r.wins, r.losses), (3, 2, 1));
        assert_eq!(r.win_rate, Some(0.666667));
        let btc = &r.by_symbol["BTC/USDT"];
        assert_eq!((btc.trades, btc.wins, btc.net_pnl), (2, 1, dec!(-5.3)));
        assert_eq!(r.by_symbol["XRP/USDT"].net_pnl, dec!(98.5));
        assert_eq!(r.by_regime["ranging"].net_pnl, dec!(-3.6));
        assert_eq!(r.by_regime["trending_bull"].net_pnl, dec!(96.8));
        let sum: Decimal = r.by_symbol.values().map(|b| b.net_pnl).sum();
        assert_eq!(sum, r.net_pnl);
        assert_eq!(r.final_equity, dec!(10093.2));
        assert_eq!(r.return_pct, Some(0.932));
        assert_eq!(r.risk_verdicts["position_too_large"], 2);
        assert_eq!((r.rebalances, r.hodl_allocations["BTC"]), (1, dec!(12.5)));
        assert_eq!(r.candles_processed, 2880);
        assert_eq!(r.period.days, Some((2879.0_f64 / 1440.0 * 1e6).round() / 1e6));
        // 1 of 4 samples had a position, of 5000 / 10200 = 49.0196 %.
        assert_eq!(r.exposure.time_in_market_pct, Some(25.0));
        assert_eq!(r.exposure.max_exposure_pct, Some(49.019608));
    }

    #[test]
    fn max_drawdown_is_the_largest_fall_from_a_running_peak() {
        let curve: Vec<EquityPoint> = [100, 120, 90, 130, 117]
            .iter()
            .enumerate()
            .map(|(i, e)| point(i as i64, Decimal::from(*e), dec!(0)))
            .collect();
        let dd = max_drawdown(dec!(100), &curve);
        assert_eq!(dd.pct, dec!(25));
        assert_eq!(dd.usd, dec!(30));
        assert_eq!(dd.peak_at, Some(t0() + Duration::minutes(1)));
        assert_eq!(dd.trough_at, Some(t0() + Duration::minutes(2)));
        // A fall below the initial equity counts from the initial equity.
        let dd = max_drawdown(dec!(100), &[point(0, dec!(80), dec!(0))]);
        assert_eq!((dd.pct, dd.usd), (dec!(20), dec!(20)));
        assert_eq!(max_drawdown(dec!(100), &[point(0, dec!(101), dec!(0))]).pct, dec!(0));
    }

    #[test]
    fn sharpe_and_sortino_use_daily_closes_annualised_by_sqrt_365() {
        // Intraday samples are ignored: only each day's last equity counts.
        // Daily returns +1 %, −1 %, +2 %.
        let curve = vec![
            point(30, dec!(150), dec!(0)),
            point(1439, dec!(101), dec!(0)),
            point(1440 + 700, dec!(50), dec!(0)),
            point(2 * 1440 - 1, dec!(99.99), dec!(0)),
            point(2 * 1440 + 5, dec!(101.9898), dec!(0)),
        ];
        let r = daily_returns(dec!(100), &curve);
        assert_eq!(r.len(), 3);
        for (got, want) in r.iter().zip([0.01, -0.01, 0.02]) {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
        // mean 0.0066667, sample sd 0.0152753 → 0.436436 × √365 = 8.338094 (hand computed).
        let s = sharpe(&r).unwrap();
        assert!((s - 8.338_094).abs() < 1e-5, "sharpe {s}");
        // downside deviation √(0.0001 / 3) = 0.0057735 → 1.154701 × √365 = 22.0605.
        let so = sortino(&r).unwrap();
        assert!((so - 22.060_523).abs() < 1e-5, "sortino {so}");
        assert_eq!(sharpe(&[0.01]), None);
        assert_eq!(sharpe(&[0.01, 0.01]), None);
        assert_eq!(sortino(&[0.01, 0.02]), None);
    }

    #[test]
    fn identical_input_gives_byte_identical_json() {
        let timing = Timing {
            wall_seconds: 1.5,
            candles_per_sec: 1920.0,
        };
        let a = Report::compute(&input(), Some(timing)).to_json().unwrap();
        let b = Report::compute(&input(), Some(timing)).to_json().unwrap();
        assert_eq!(a, b);
        assert!(a.contains("\"timing\": {"), "{a}");
        // Only `timing` differs between runs; without it the text is identical.
        let other = Timing {
            wall_seconds: 9.0,
            candles_per_sec: 320.0,
        };
        let c = Report::compute(&input(), Some(other));
        let plain = Report::compute(&input(), None).to_json().unwrap();
        assert_eq!(c.to_json_deterministic().unwrap(), plain);
        assert!(!plain.contains("timing"));
        // Map keys come out sorted and money as decimal strings.
        let pos_approved = plain.find("\"approved\"").unwrap();
        let pos_too_large = plain.find("\"position_too_large\"").unwrap();
        assert!(pos_approved < pos_too_large);
        assert!(plain.contains("\"net_pnl\": \"93.2\""), "{plain}");
    }

    #[test]
    fn equity_csv_and_charts_are_written() {
        let dir = std::env::temp_dir().join(format!("tg-report-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let curve = input().equity;
        let csv = dir.join("equity.csv");
        write_equity_csv(&csv, &curve).unwrap();
        let text = std::fs::read_to_string(&csv).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "timestamp,equity,exposure_usd");
        assert_eq!(lines[2], "2025-03-01T01:00:00Z,10200,5000");
        assert_eq!(lines.len(), 5);

        let svg = dir.join("equity.svg");
        plot_equity(&svg, &curve).unwrap();
        let body = std::fs::read_to_string(&svg).unwrap();
        assert!(
            body.starts_with("<svg") && body.contains("polyline"),
            "{}",
            &body[..200.min(body.len())]
        );
        assert!(body.contains("Equity (USD)"));

        let png = dir.join("equity.png");
        plot_equity(&png, &curve).unwrap();
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");

        assert!(plot_equity(&dir.join("equity.gif"), &curve).is_err());
        assert!(plot_equity(&svg, &[]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
