//! A seeded, reproducible market for BTC/USDT, XRP/USDT and XRP/BTC.
//!
//! The model works in log prices with a market-wide regime driven by a seeded Markov chain:
//! trending up, trending down, ranging (mean-reverting around the price at regime entry),
//! volatility spikes and quiet periods, each lasting a few hours on average. BTC/USDT and
//! XRP/USDT move with correlated Gaussian shocks (XRP more volatile); XRP/BTC is the cross
//! XRP/USDT ÷ BTC/USDT at every sub-step, so the three pairs never drift apart. Each minute is
//! simulated as [`SUBSTEPS`] sub-steps whose tick-rounded prices give the candle's OHLC.
//!
//! The same seed and start give the same candles, byte for byte (rand 0.8's `StdRng`).

use crate::domain::{Candle, Symbol, Timeframe};
use chrono::{DateTime, Duration, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Sub-steps simulated per minute; their prices make each candle's open, high, low and close.
pub const SUBSTEPS: usize = 6;

/// Per-minute volatility of BTC/USDT log returns in the normal regime (≈ 58 % a year).
const BTC_SIGMA: f64 = 0.0008;
/// Per-minute volatility of XRP/USDT log returns in the normal regime (≈ 94 % a year).
const XRP_SIGMA: f64 = 0.0013;
/// Correlation of the BTC and XRP shocks.
const RHO: f64 = 0.6;
/// XRP's trend drift relative to BTC's.
const XRP_DRIFT_BETA: f64 = 1.3;

/// Price decimals (tick sizes 0.1, 0.00001, 0.00000001).
const BTC_USDT_DP: u32 = 1;
const XRP_USDT_DP: u32 = 5;
const XRP_BTC_DP: u32 = 8;
const VOLUME_DP: u32 = 8;

/// Typical base volume per minute in the normal regime.
const BTC_USDT_VOLUME: f64 = 1.2;
const XRP_USDT_VOLUME: f64 = 25_000.0;
const XRP_BTC_VOLUME: f64 = 4_000.0;

/// Hard bounds on log prices so the model can never produce a non-finite or non-positive price.
const BTC_LN_BOUNDS: (f64, f64) = (6.907_755, 16.118_095); // 1 000 .. 10 000 000
const XRP_LN_BOUNDS: (f64, f64) = (-6.907_755, 6.907_755); // 0.001 .. 1 000

/// The simulated market's own regime (the ground truth the regime detector is trying to find).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimRegime {
    TrendingUp,
    TrendingDown,
    Ranging,
    VolatilitySpike,
    Quiet,
}

struct RegimeParams {
    /// Drift of BTC log price per minute.
    drift: f64,
    /// Multiplier on the base volatility.
    vol: f64,
    /// Pull toward the regime's anchor price per minute (ranging only).
    reversion: f64,
    /// Mean stay in minutes (geometric).
    mean_minutes: f64,
    /// Next-regime weights in the order of `SimRegime::ALL`.
    next: [f64; 5],
}

impl SimRegime {
    pub const ALL: [SimRegime; 5] = [
        Self::TrendingUp,
        Self::TrendingDown,
        Self::Ranging,
        Self::VolatilitySpike,
        Self::Quiet,
    ];

    fn params(self) -> RegimeParams {
        match self {
            Self::TrendingUp => RegimeParams {
                drift: 0.000_05,
                vol: 1.0,
                reversion: 0.0,
                mean_minutes: 360.0,
                next: [0.0, 0.2, 0.4, 0.2, 0.2],
            },
            Self::TrendingDown => RegimeParams {
                drift: -0.000_05,
                vol: 1.2,
                reversion: 0.0,
                mean_minutes: 300.0,
                next: [0.2, 0.0, 0.4, 0.25, 0.15],
            },
            Self::Ranging => RegimeParams {
                drift: 0.0,
                vol: 0.7,
                reversion: 0.02,
                mean_minutes: 480.0,
                next: [0.3, 0.3, 0.0, 0.15, 0.25],
            },
            Self::VolatilitySpike => RegimeParams {
                drift: 0.0,
                vol: 3.0,
                reversion: 0.0,
                mean_minutes: 60.0,
                next: [0.3, 0.3, 0.4, 0.0, 0.0],
            },
            Self::Quiet => RegimeParams {
                drift: 0.0,
                vol: 0.4,
                reversion: 0.005,
                mean_minutes: 240.0,
                next: [0.25, 0.25, 0.3, 0.2, 0.0],
            },
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::TrendingUp => "trending_up",
            Self::TrendingDown => "trending_down",
            Self::Ranging => "ranging",
            Self::VolatilitySpike => "volatility_spike",
            Self::Quiet => "quiet",
        }
    }
}

#[expect(clippy::expect_used, reason = "the three constant symbols are valid BASE/QUOTE text")]
fn known(s: &'static str) -> Symbol {
    Symbol::parse(s).expect("constant symbol")
}

/// Rounds `x` to `dp` decimals, never below one tick (prices stay positive).
fn price(x: f64, dp: u32) -> Decimal {
    let tick = Decimal::new(1, dp);
    Decimal::from_f64(x).map_or(tick, |d| d.round_dp(dp).max(tick))
}

fn volume(x: f64) -> Decimal {
    Decimal::from_f64(x.max(0.0)).map_or(Decimal::ZERO, |d| d.round_dp(VOLUME_DP))
}

/// OHLC of one series over a minute's sub-steps (already tick-rounded).
#[derive(Debug, Clone, Copy)]
struct Ohlc {
    open: Decimal,
    high: Decimal,
    low: Decimal,
    close: Decimal,
}

impl Ohlc {
    fn start(p: Decimal) -> Self {
        Self {
            open: p,
            high: p,
            low: p,
            close: p,
        }
    }

    fn add(&mut self, p: Decimal) {
        self.high = self.high.max(p);
        self.low = self.low.min(p);
        self.close = p;
    }
}

/// The simulated market. Step it minute by minute with [`SimulatedMarket::step`] or catch up to a
/// business time with [`SimulatedMarket::advance_to`].
#[derive(Debug, Clone)]
pub struct SimulatedMarket {
    rng: StdRng,
    next_open: DateTime<Utc>,
    btc_ln: f64,
    xrp_ln: f64,
    regime: SimRegime,
    anchor_btc: f64,
    anchor_xrp: f64,
    regime_changes: u64,
    btc_usdt: Symbol,
    xrp_usdt: Symbol,
    xrp_btc: Symbol,
}

impl SimulatedMarket {
    /// Starts BTC/USDT at 95 000 and XRP/USDT at 2.3; the first candle opens at `start` floored to
    /// the minute.
    pub fn new(seed: u64, start: DateTime<Utc>) -> Self {
        Self::with_prices(seed, start, Decimal::from(95_000), Decimal::new(23, 1))
    }

    /// Like [`SimulatedMarket::new`] with chosen starting prices (non-positive values fall back to
    /// the defaults).
    pub fn with_prices(seed: u64, start: DateTime<Utc>, btc_usdt: Decimal, xrp_usdt: Decimal) -> Self {
        let ln = |d: Decimal, default: f64| d.to_f64().filter(|x| *x > 0.0 && x.is_finite()).unwrap_or(default).ln();
        let btc_ln = ln(btc_usdt, 95_000.0).clamp(BTC_LN_BOUNDS.0, BTC_LN_BOUNDS.1);
        let xrp_ln = ln(xrp_usdt, 2.3).clamp(XRP_LN_BOUNDS.0, XRP_LN_BOUNDS.1);
        let mut rng = StdRng::seed_from_u64(seed);
        let regime = SimRegime::ALL[rng.gen_range(0..SimRegime::ALL.len())];
        let secs = start.timestamp();
        let floored = secs - secs.rem_euclid(60);
        let next_open = DateTime::<Utc>::from_timestamp(floored, 0).unwrap_or(start);
        Self {
            rng,
            next_open,
            btc_ln,
            xrp_ln,
            regime,
            anchor_btc: btc_ln,
            anchor_xrp: xrp_ln,
            regime_changes: 0,
            btc_usdt: known("BTC/USDT"),
            xrp_usdt: known("XRP/USDT"),
            xrp_btc: known("XRP/BTC"),
        }
    }

    /// The simulated symbols, in the order every step returns their candles.
    pub fn symbols(&self) -> Vec<Symbol> {
        vec![self.btc_usdt.clone(), self.xrp_usdt.clone(), self.xrp_btc.clone()]
    }

    /// Open time of the next candle [`SimulatedMarket::step`] will produce.
    pub fn next_open_time(&self) -> DateTime<Utc> {
        self.next_open
    }

    /// The regime the coming minutes are drawn from.
    pub fn regime(&self) -> SimRegime {
        self.regime
    }

    /// How many times the regime has switched so far.
    pub fn regime_changes(&self) -> u64 {
        self.regime_changes
    }

    /// All candles whose minute has closed by `now` (open time + 1 min ≤ `now`), in time order,
    /// three per minute.
    pub fn advance_to(&mut self, now: DateTime<Utc>) -> Vec<Candle> {
        let mut out = Vec::new();
        while self.next_open + Duration::minutes(1) <= now {
            out.extend(self.step());
        }
        out
    }

    fn normal(&mut self) -> f64 {
        // Box-Muller; 1 - gen() lies in (0, 1], so the logarithm is finite.
        let u1: f64 = 1.0 - self.rng.gen::<f64>();
        let u2: f64 = self.rng.gen::<f64>();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    fn maybe_switch_regime(&mut self) {
        let p = self.regime.params();
        if self.rng.gen::<f64>() >= 1.0 / p.mean_minutes {
            return;
        }
        let total: f64 = p.next.iter().sum();
        let mut draw = self.rng.gen::<f64>() * total;
        let mut next = self.regime;
        for (regime, w) in SimRegime::ALL.iter().zip(p.next) {
            if w <= 0.0 {
                continue;
            }
            next = *regime;
            if draw < w {
                break;
            }
            draw -= w;
        }
        if next != self.regime {
            self.regime = next;
            self.regime_changes += 1;
            self.anchor_btc = self.btc_ln;
            self.anchor_xrp = self.xrp_ln;
        }
    }

    fn bounded(x: f64, (lo, hi): (f64, f64)) -> f64 {
        if x < lo {
            lo + (lo - x).min(hi - lo)
        } else if x > hi {
            hi - (x - hi).min(hi - lo)
        } else {
            x
        }
    }

    /// Produces the three candles of the minute at [`SimulatedMarket::next_open_time`]
    /// (BTC/USDT, XRP/USDT, XRP/BTC) and moves to the next minute.
    pub fn step(&mut self) -> Vec<Candle> {
        self.maybe_switch_regime();
        let p = self.regime.params();
        let n = SUBSTEPS as f64;
        let (sig_b, sig_x) = (BTC_SIGMA * p.vol / n.sqrt(), XRP_SIGMA * p.vol / n.sqrt());
        let (drift_b, drift_x) = (p.drift / n, p.drift * XRP_DRIFT_BETA / n);
        let k = p.reversion / n;

        let (b0, x0) = (self.btc_ln, self.xrp_ln);
        let mut btc = Ohlc::start(price(b0.exp(), BTC_USDT_DP));
        let mut xrp = Ohlc::start(price(x0.exp(), XRP_USDT_DP));
        let mut cross = Ohlc::start(price((x0 - b0).exp(), XRP_BTC_DP));
        for _ in 0..SUBSTEPS {
            let z1 = self.normal();
            let z2 = self.normal();
            let zx = RHO * z1 + (1.0 - RHO * RHO).sqrt() * z2;
            let rb = drift_b - k * (self.btc_ln - self.anchor_btc) + sig_b * z1;
            let rx = drift_x - k * (self.xrp_ln - self.anchor_xrp) + sig_x * zx;
            self.btc_ln = Self::bounded(self.btc_ln + rb, BTC_LN_BOUNDS);
            self.xrp_ln = Self::bounded(self.xrp_ln + rx, XRP_LN_BOUNDS);
            btc.add(price(self.btc_ln.exp(), BTC_USDT_DP));
            xrp.add(price(self.xrp_ln.exp(), XRP_USDT_DP));
            cross.add(price((self.xrp_ln - self.btc_ln).exp(), XRP_BTC_DP));
        }

        // Volume grows with the regime's volatility and with the size of the minute's move.
        let move_b = ((self.btc_ln - b0).abs() / BTC_SIGMA).min(20.0);
        let move_x = ((self.xrp_ln - x0).abs() / XRP_SIGMA).min(20.0);
        let mut vol = |base: f64, moved: f64| {
            let noise = (0.5 * self.normal() - 0.125).exp();
            volume(base * p.vol.sqrt() * (0.6 + 0.4 * moved) * noise)
        };
        let v_btc = vol(BTC_USDT_VOLUME, move_b);
        let v_xrp = vol(XRP_USDT_VOLUME, move_x);
        let v_cross = vol(XRP_BTC_VOLUME, move_x.max(move_b));

        let open_time = self.next_open;
        self.next_open += Duration::minutes(1);
        let candle = |symbol: &Symbol, o: Ohlc, v: Decimal| Candle {
            symbol: symbol.clone(),
            timeframe: Timeframe::M1,
            open_time,
            open: o.open,
            high: o.high,
            low: o.low,
            close: o.close,
            volume: v,
        };
        vec![
            candle(&self.btc_usdt, btc, v_btc),
            candle(&self.xrp_usdt, xrp, v_xrp),
            candle(&self.xrp_btc, cross, v_cross),
        ]
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::collections::BTreeSet;

    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    fn run(seed: u64, minutes: usize) -> Vec<Candle> {
        let mut m = SimulatedMarket::new(seed, start());
        (0..minutes).flat_map(|_| m.step()).collect()
    }

    #[test]
    fn same_seed_same_candles_and_different_seed_differs() {
        let a = run(42, 500);
        assert_eq!(a, run(42, 500));
        let b = run(43, 500);
        assert_ne!(a, b);
        assert_ne!(a.last().unwrap().close, b.last().unwrap().close);
    }

    #[test]
    fn candles_are_well_formed_on_ticks_and_minutes() {
        let candles = run(7, 2000);
        assert_eq!(candles.len(), 6000);
        for (i, c) in candles.iter().enumerate() {
            assert_eq!(c.timeframe, Timeframe::M1);
            assert_eq!(c.open_time, start() + Duration::minutes((i / 3) as i64));
            assert!(c.low > Decimal::ZERO, "positive price {c:?}");
            assert!(c.low <= c.open.min(c.close) && c.high >= c.open.max(c.close), "{c:?}");
            assert!(c.volume >= Decimal::ZERO);
            let dp = match c.symbol.as_str() {
                "BTC/USDT" => 1,
                "XRP/USDT" => 5,
                _ => 8,
            };
            for p in [c.open, c.high, c.low, c.close] {
                assert_eq!(p, p.round_dp(dp), "{} on its tick", c.symbol);
            }
        }
        // Each minute opens where the previous one closed.
        for w in candles.chunks(3).collect::<Vec<_>>().windows(2) {
            for (prev, next) in w[0].iter().zip(w[1]) {
                assert_eq!(next.open, prev.close, "{}", next.symbol);
            }
        }
    }

    #[test]
    fn starting_prices_and_per_minute_volatility_are_realistic() {
        let candles = run(11, 1440);
        let first = &candles[0];
        assert!((first.open - Decimal::from(95_000)).abs() < Decimal::from(100));
        assert!((candles[1].open - Decimal::new(23, 1)).abs() < Decimal::new(1, 2));
        let btc: Vec<f64> = candles
            .iter()
            .filter(|c| c.symbol.as_str() == "BTC/USDT")
            .map(|c| c.close.to_f64().unwrap())
            .collect();
        let rets: Vec<f64> = btc.windows(2).map(|w| (w[1] / w[0]).ln()).collect();
        let mean = rets.iter().sum::<f64>() / rets.len() as f64;
        let sd = (rets.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / rets.len() as f64).sqrt();
        assert!((0.0002..0.003).contains(&sd), "per-minute σ {sd}");
    }

    #[test]
    fn cross_rate_matches_the_usdt_pairs() {
        for c in run(5, 3000).chunks(3) {
            let (b, x, xb) = (&c[0], &c[1], &c[2]);
            assert_eq!(xb.symbol.as_str(), "XRP/BTC");
            let implied = x.close.to_f64().unwrap() / b.close.to_f64().unwrap();
            let rel = (xb.close.to_f64().unwrap() / implied - 1.0).abs();
            assert!(rel < 0.002, "XRP/BTC {} vs implied {implied}: {rel}", xb.close);
        }
    }

    #[test]
    fn regimes_change_over_a_simulated_week() {
        let mut m = SimulatedMarket::new(3, start());
        let mut seen = BTreeSet::new();
        for _ in 0..7 * 1440 {
            seen.insert(m.regime());
            m.step();
        }
        assert!(m.regime_changes() >= 10, "{} switches", m.regime_changes());
        assert!(seen.len() >= 4, "{seen:?}");
    }

    #[test]
    fn prices_stay_positive_and_bounded_over_a_long_run() {
        let mut m = SimulatedMarket::new(99, start());
        for _ in 0..30 * 1440 {
            for c in m.step() {
                assert!(c.low > Decimal::ZERO);
            }
        }
    }

    #[test]
    fn advance_to_emits_only_closed_minutes() {
        let mut m = SimulatedMarket::new(1, start() + Duration::seconds(20));
        assert_eq!(m.next_open_time(), start());
        assert!(m.advance_to(start() + Duration::seconds(59)).is_empty());
        let out = m.advance_to(start() + Duration::seconds(180));
        assert_eq!(out.len(), 9);
        assert_eq!(out[8].open_time, start() + Duration::minutes(2));
        assert_eq!(m.next_open_time(), start() + Duration::minutes(3));
    }
}
