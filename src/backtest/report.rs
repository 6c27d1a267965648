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
//! - Sources: round trips (`trades`, the P&L figures, `by_regime`, `by_symbol`) are positions,
//!   i.e. `strategy` (and `manual`) trades. Rebalance and hodl trades change holdings and are no
//!   round trips: they are counted and valued under `rebalance` and `hodl`, each with its fees and
//!   its mark-to-market P&L at the last prices, so that
//!   `final_equity − initial_equity = net_pnl + rebalance.mark_to_market_pnl + hodl.mark_to_market_pnl`
//!   (every position is closed at the end).
//! - Per round trip: profit factor = gross profit / gross loss (net of fees, winners against
//!   losers; `null` without a loss), expectancy = mean net P&L per trade, holding time = close −
//!   open, exit reason = what closed it (`stop`, `take_profit`, `trailing`, `signal`,
//!   `end_of_data`).
//! - CAGR: `(final / initial)^(365 / days) − 1` over the period, in percent.
//! - Monthly returns: last equity of each UTC month against the previous month's (the initial
//!   equity for the first), in percent.
//! - Baseline: buy-and-hold of the same start capital at the configured target allocation,
//!   bought at the first prices of the run (taker fee paid) and never traded again; valued on
//!   every equity sample, with its return, CAGR and drawdown.
//! - Warnings: Sharpe and Sortino resting on fewer than [`MIN_RATIO_DAYS`] daily returns.
//!
//! Determinism: every map is a `BTreeMap`, money stays `Decimal`, and each float is rounded to six
//! decimals (negative zero folded to zero, non-finite values to `null`), so the same input gives a
//! byte-identical JSON. Wall time and candles/s, the only non-deterministic fields, live under the
//! `timing` key, which [`Report::to_json_deterministic`] leaves out.

use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use triplegain_actors::domain::Side;

mod chart;
pub use chart::plot_equity;

/// Days a year for annualising daily ratios (√365): crypto markets trade every day.
pub const DAYS_PER_YEAR: f64 = 365.0;

/// Basis of the Sharpe and Sortino ratios, stated in the report.
pub const RATIO_BASIS: &str = "daily returns (last equity of each UTC day), risk-free rate 0, annualised by sqrt(365)";

/// Most points drawn in a chart; longer curves are thinned evenly (the last point is kept).
const MAX_PLOT_POINTS: usize = 4_000;

/// Fewer daily returns than this and the report warns that Sharpe and Sortino mean little.
pub const MIN_RATIO_DAYS: usize = 30;

/// What the baseline is, stated in the report.
pub const BASELINE_BASIS: &str = "buy-and-hold: the start capital bought at the target allocation at the first prices of the run (taker fee paid), never traded again";

/// Who made a trade.
pub mod source {
    pub const STRATEGY: &str = "strategy";
    pub const MANUAL: &str = "manual";
    pub const REBALANCE: &str = "rebalance";
    pub const HODL: &str = "hodl";
}

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
    /// `strategy` or `manual` (see [`source`]).
    #[serde(default = "strategy_source")]
    pub source: String,
    /// `stop`, `take_profit`, `trailing`, `signal` or `end_of_data`.
    #[serde(default)]
    pub exit_reason: String,
}

fn strategy_source() -> String {
    source::STRATEGY.to_owned()
}

/// One rebalance or hodl order's fills: a change of holdings, not a round trip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldingTrade {
    /// `rebalance` or `hodl`.
    pub source: String,
    pub symbol: String,
    pub side: Side,
    /// The order's last fill.
    pub at: DateTime<Utc>,
    /// Regime in force at `at` (wire spelling).
    pub regime: String,
    pub quantity: Decimal,
    /// Volume-weighted fill price.
    pub price: Decimal,
    pub fees: Decimal,
}

impl HoldingTrade {
    /// Quote value of the fills.
    pub fn value(&self) -> Decimal {
        self.quantity * self.price
    }

    /// What the trade added to equity against not trading, valued at `last` (the final price):
    /// a buy gains what the bought units gained since, a sell what selling saved; fees paid.
    pub fn mark_to_market(&self, last: Decimal) -> Decimal {
        let per_unit = last - self.price;
        let signed = match self.side {
            Side::Buy => per_unit * self.quantity,
            Side::Sell => -per_unit * self.quantity,
        };
        signed - self.fees
    }
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
    /// The buy-and-hold baseline's value at the same time (see [`BASELINE_BASIS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Decimal>,
}

/// The allocation of the (non-hodl) holdings at the end of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FinalAllocation {
    pub btc_pct: Decimal,
    pub xrp_pct: Decimal,
    pub usdt_pct: Decimal,
    pub max_deviation_pct: Decimal,
    /// The rebalance threshold (percentage points).
    pub threshold_pct: Decimal,
    pub within_threshold: bool,
}

/// Risk verdicts of a run by status, rejection code and proposal source.
pub type VerdictCounts = triplegain_actors::risk::VerdictCounts;

/// Everything a run recorded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportInput {
    pub initial_equity: Decimal,
    pub candles_processed: u64,
    pub trades: Vec<TradeRecord>,
    /// In time order.
    pub equity: Vec<EquityPoint>,
    /// Risk verdicts by status, rejection code and source.
    #[serde(default)]
    pub risk_verdicts: VerdictCounts,
    /// Risk alerts by type.
    #[serde(default)]
    pub risk_alerts: BTreeMap<String, u64>,
    /// The first message of each alert type (what went wrong, in words).
    #[serde(default)]
    pub risk_alert_examples: BTreeMap<String, String>,
    /// Trading decisions by action (`buy`, `sell`, `hold`, …).
    #[serde(default)]
    pub decisions: BTreeMap<String, u64>,
    /// Rebalance and hodl orders (their fills), in time order.
    #[serde(default)]
    pub holdings: Vec<HoldingTrade>,
    /// Rebalance batches by their final status (`executed`, `failed`, `pending`, …).
    #[serde(default)]
    pub rebalance_batches: BTreeMap<String, u64>,
    /// Rebalance plans made (checks that decided to rebalance).
    #[serde(default)]
    pub rebalance_plans: u64,
    #[serde(default)]
    pub final_allocation: Option<FinalAllocation>,
    /// Last price per symbol (the mark-to-market of holdings).
    #[serde(default)]
    pub last_prices: BTreeMap<String, Decimal>,
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

/// Rebalance or hodl trades: holdings bought and sold, with what they cost and earned.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HoldingSummary {
    /// Orders that filled.
    pub orders: u64,
    pub buys: u64,
    pub sells: u64,
    pub bought_usd: Decimal,
    pub sold_usd: Decimal,
    pub fees: Decimal,
    /// What the trades added to equity against not making them, at the last prices, fees paid.
    pub mark_to_market_pnl: Decimal,
    /// Orders per symbol.
    pub by_symbol: BTreeMap<String, u64>,
}

impl HoldingSummary {
    fn of<'a>(trades: impl Iterator<Item = &'a HoldingTrade>, last: &BTreeMap<String, Decimal>) -> Self {
        let mut s = Self::default();
        for t in trades {
            s.orders += 1;
            match t.side {
                Side::Buy => {
                    s.buys += 1;
                    s.bought_usd += t.value();
                }
                Side::Sell => {
                    s.sells += 1;
                    s.sold_usd += t.value();
                }
            }
            s.fees += t.fees;
            let px = last.get(&t.symbol).copied().unwrap_or(t.price);
            s.mark_to_market_pnl += t.mark_to_market(px);
            *s.by_symbol.entry(t.symbol.clone()).or_default() += 1;
        }
        s.bought_usd = money(s.bought_usd.round_dp(8));
        s.sold_usd = money(s.sold_usd.round_dp(8));
        s.fees = money(s.fees);
        s.mark_to_market_pnl = money(s.mark_to_market_pnl.round_dp(8));
        s
    }
}

/// The rebalancer's part of the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RebalanceReport {
    #[serde(flatten)]
    pub trades: HoldingSummary,
    /// Checks that decided to rebalance.
    pub plans: u64,
    /// Batches by final status.
    pub batches: BTreeMap<String, u64>,
    /// The allocation at the end against the targets.
    pub final_allocation: Option<FinalAllocation>,
}

/// The buy-and-hold baseline (see [`BASELINE_BASIS`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Baseline {
    pub basis: String,
    pub final_equity: Decimal,
    pub return_pct: Option<f64>,
    pub cagr_pct: Option<f64>,
    pub max_drawdown_pct: Decimal,
    /// The run's return minus the baseline's, in percentage points.
    pub excess_return_pct: Option<f64>,
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
    /// Round trips by source (`strategy`, `manual`).
    pub by_source: BTreeMap<String, Breakdown>,
    pub profit_factor: Option<f64>,
    /// Mean net P&L per round trip (USD).
    pub expectancy: Option<Decimal>,
    pub avg_holding_hours: Option<f64>,
    /// Round trips by what closed them.
    pub exit_reasons: BTreeMap<String, u64>,
    pub cagr_pct: Option<f64>,
    /// `YYYY-MM` → return of the month in percent.
    pub monthly_returns: BTreeMap<String, f64>,
    pub baseline: Option<Baseline>,
    /// Trading decisions by action.
    pub decisions: BTreeMap<String, u64>,
    pub risk_verdicts: VerdictCounts,
    /// Risk alerts by type.
    pub risk_alerts: BTreeMap<String, u64>,
    /// The first message of each alert type.
    pub risk_alert_examples: BTreeMap<String, String>,
    /// Rebalance orders that filled (= `rebalance.orders`).
    pub rebalances: u64,
    pub rebalance: RebalanceReport,
    pub hodl: HoldingSummary,
    pub hodl_allocations: BTreeMap<String, Decimal>,
    pub warnings: Vec<String>,
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

/// Compound annual growth in percent over `days`.
pub fn cagr_pct(initial: Decimal, last: Decimal, days: Option<f64>) -> Option<f64> {
    let days = days.filter(|d| *d > 0.0)?;
    if initial <= Decimal::ZERO || last <= Decimal::ZERO {
        return None;
    }
    let growth = (last / initial).to_f64()?;
    stable((growth.powf(DAYS_PER_YEAR / days) - 1.0) * 100.0)
}

/// Return of each UTC month in percent: its last equity against the previous month's (the
/// initial equity for the first).
pub fn monthly_returns(initial_equity: Decimal, equity: &[EquityPoint]) -> BTreeMap<String, f64> {
    let mut closes: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut sorted: Vec<&EquityPoint> = equity.iter().collect();
    sorted.sort_by_key(|p| p.at);
    for p in sorted {
        closes.insert(p.at.format("%Y-%m").to_string(), p.equity);
    }
    let mut prev = initial_equity;
    let mut out = BTreeMap::new();
    for (month, close) in closes {
        if prev > Decimal::ZERO {
            if let Some(r) = ((close / prev - Decimal::ONE) * Decimal::ONE_HUNDRED)
                .to_f64()
                .and_then(stable)
            {
                out.insert(month, r);
            }
        }
        prev = close;
    }
    out
}

/// Gross profit over gross loss of the round trips (net of fees); `None` without a loss.
pub fn profit_factor(trades: &[TradeRecord]) -> Option<f64> {
    let won: Decimal = trades
        .iter()
        .map(TradeRecord::net_pnl)
        .filter(|p| *p > Decimal::ZERO)
        .sum();
    let lost: Decimal = trades
        .iter()
        .map(TradeRecord::net_pnl)
        .filter(|p| *p < Decimal::ZERO)
        .sum();
    if lost.is_zero() {
        return None;
    }
    (won / -lost).to_f64().and_then(stable)
}

fn baseline(input: &ReportInput, days: Option<f64>, run_return: Option<f64>) -> Option<Baseline> {
    let curve: Vec<EquityPoint> = input
        .equity
        .iter()
        .filter_map(|p| {
            p.baseline.map(|b| EquityPoint {
                at: p.at,
                equity: b,
                exposure_usd: Decimal::ZERO,
                baseline: None,
            })
        })
        .collect();
    let last = curve.last()?.equity;
    let initial = input.initial_equity;
    let return_pct = (initial > Decimal::ZERO)
        .then(|| ((last - initial) / initial * Decimal::ONE_HUNDRED).to_f64())
        .flatten()
        .and_then(stable);
    Some(Baseline {
        basis: BASELINE_BASIS.to_owned(),
        final_equity: money(last.round_dp(8)),
        return_pct,
        cagr_pct: cagr_pct(initial, last, days),
        max_drawdown_pct: max_drawdown(initial, &curve).pct,
        excess_return_pct: run_return.zip(return_pct).and_then(|(a, b)| stable(a - b)),
    })
}

impl Report {
    /// Computes the report; `timing` goes under the `timing` key as is.
    pub fn compute(input: &ReportInput, timing: Option<Timing>) -> Self {
        let mut by_regime: BTreeMap<String, Breakdown> = BTreeMap::new();
        let mut by_symbol: BTreeMap<String, Breakdown> = BTreeMap::new();
        let mut by_source: BTreeMap<String, Breakdown> = BTreeMap::new();
        let mut exit_reasons: BTreeMap<String, u64> = BTreeMap::new();
        let mut all = Breakdown::default();
        let mut held_secs: i64 = 0;
        for t in &input.trades {
            all.add(t);
            by_regime.entry(t.regime.clone()).or_default().add(t);
            by_symbol.entry(t.symbol.clone()).or_default().add(t);
            by_source.entry(t.source.clone()).or_default().add(t);
            *exit_reasons.entry(t.exit_reason.clone()).or_default() += 1;
            held_secs += (t.closed_at - t.opened_at).num_seconds();
        }
        for b in by_regime
            .values_mut()
            .chain(by_symbol.values_mut())
            .chain(by_source.values_mut())
        {
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
        let n_trades = input.trades.len() as u64;
        let mut warnings = Vec::new();
        if returns.len() < MIN_RATIO_DAYS {
            warnings.push(format!(
                "sharpe and sortino rest on {} daily returns (fewer than {MIN_RATIO_DAYS}): not meaningful",
                returns.len()
            ));
        }
        let rebalance = HoldingSummary::of(
            input.holdings.iter().filter(|h| h.source == source::REBALANCE),
            &input.last_prices,
        );
        let hodl = HoldingSummary::of(
            input.holdings.iter().filter(|h| h.source == source::HODL),
            &input.last_prices,
        );
        if let Some(a) = input.final_allocation.as_ref().filter(|a| !a.within_threshold) {
            warnings.push(format!(
                "final allocation deviates {} percentage points from the targets (threshold {})",
                a.max_deviation_pct.round_dp(2),
                a.threshold_pct
            ));
        }
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
            by_source,
            profit_factor: profit_factor(&input.trades),
            expectancy: (n_trades > 0).then(|| money((all.net_pnl / Decimal::from(n_trades)).round_dp(8))),
            avg_holding_hours: (n_trades > 0)
                .then(|| held_secs as f64 / 3600.0 / n_trades as f64)
                .and_then(stable),
            exit_reasons,
            cagr_pct: cagr_pct(input.initial_equity, final_equity, days),
            monthly_returns: monthly_returns(input.initial_equity, &input.equity),
            baseline: baseline(input, days, return_pct),
            decisions: input.decisions.clone(),
            risk_verdicts: input.risk_verdicts.clone(),
            risk_alerts: input.risk_alerts.clone(),
            risk_alert_examples: input.risk_alert_examples.clone(),
            rebalances: rebalance.orders,
            rebalance: RebalanceReport {
                trades: rebalance,
                plans: input.rebalance_plans,
                batches: input.rebalance_batches.clone(),
                final_allocation: input.final_allocation.clone(),
            },
            hodl,
            warnings,
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
        s.push_str(&format!(
            "strategy: profit factor {}, expectancy {} USD, avg holding {} h, exits {}, CAGR {} %\n",
            f(self.profit_factor, 2),
            self.expectancy
                .map_or_else(|| "n/a".to_owned(), |e| e.round_dp(2).to_string()),
            f(self.avg_holding_hours, 1),
            counts(&self.exit_reasons),
            f(self.cagr_pct, 2),
        ));
        if let Some(b) = &self.baseline {
            s.push_str(&format!(
                "baseline (buy-and-hold at the targets): {} USD ({} %), max drawdown {} %; run minus baseline {} pp\n",
                b.final_equity.round_dp(2),
                f(b.return_pct, 2),
                b.max_drawdown_pct.round_dp(2),
                f(b.excess_return_pct, 2),
            ));
        }
        let r = &self.rebalance;
        s.push_str(&format!(
            "rebalance: {} plans, batches {}, {} orders ({} buys {} USD, {} sells {} USD), fees {} USD, mark-to-market {} USD; hodl purchases {}\n",
            r.plans,
            counts(&r.batches),
            r.trades.orders,
            r.trades.buys,
            r.trades.bought_usd.round_dp(2),
            r.trades.sells,
            r.trades.sold_usd.round_dp(2),
            r.trades.fees.round_dp(2),
            r.trades.mark_to_market_pnl.round_dp(2),
            self.hodl.orders,
        ));
        if let Some(a) = &r.final_allocation {
            s.push_str(&format!(
                "final allocation BTC {} % / XRP {} % / USDT {} % (max deviation {} pp, threshold {}: {})\n",
                a.btc_pct.round_dp(2),
                a.xrp_pct.round_dp(2),
                a.usdt_pct.round_dp(2),
                a.max_deviation_pct.round_dp(2),
                a.threshold_pct,
                if a.within_threshold { "within" } else { "outside" }
            ));
        }
        s.push_str(&format!(
            "decisions {}; risk verdicts {} (codes {}); alerts {}\n",
            counts(&self.decisions),
            counts(&self.risk_verdicts.by_status),
            counts(&self.risk_verdicts.by_code),
            counts(&self.risk_alerts),
        ));
        for w in &self.warnings {
            s.push_str(&format!("warning: {w}\n"));
        }
        if let Some(t) = self.timing {
            s.push_str(&format!(
                "wall {:.3} s, {:.0} candles/s\n",
                t.wall_seconds, t.candles_per_sec
            ));
        }
        s
    }
}

/// `a 1, b 2` (or `none`).
fn counts(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "none".to_owned();
    }
    m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
}

/// Writes the equity curve as CSV: `timestamp,equity,exposure_usd,baseline` (RFC 3339
/// timestamps; `baseline` empty until the baseline has its first prices).
///
/// # Errors
/// When the file cannot be written.
pub fn write_equity_csv(path: &Path, equity: &[EquityPoint]) -> anyhow::Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = std::io::BufWriter::new(file);
    writeln!(w, "timestamp,equity,exposure_usd,baseline")?;
    for p in equity {
        writeln!(
            w,
            "{},{},{},{}",
            p.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            p.equity,
            p.exposure_usd,
            p.baseline.map(|b| b.to_string()).unwrap_or_default()
        )?;
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests;
