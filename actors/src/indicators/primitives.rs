//! Streaming building blocks. Every `push` is O(1) (amortised O(1) for the rolling
//! extremes): fixed-size ring buffers, compensated running sums and Wilder/EMA recursions.
//! Nothing re-walks history.
//!
//! The recursions follow TA-Lib's C implementation step by step (seeding, operation order and
//! warm-up length with the default unstable period of 0), so the values equal TA-Lib's to
//! rounding error. Where TA-Lib has an arbitrary convention for a degenerate window we use a
//! neutral value instead, and say so on the type:
//! * TA-Lib tests "zero" with an absolute epsilon of 1e-8, which breaks on low-priced pairs
//!   (XRP/BTC trades around 1e-5); we test exact zero.
//! * A completely flat RSI window gives 50 (TA-Lib: 0); a flat stochastic window gives 50
//!   (TA-Lib: 0), as the reference definition says.

use std::collections::VecDeque;

/// Neumaier-compensated running sum: adding and removing values for ever keeps the result
/// within a few ulps of the exact sum, so windowed sums do not drift.
#[derive(Debug, Clone, Copy, Default)]
pub struct CompensatedSum {
    sum: f64,
    compensation: f64,
}

impl CompensatedSum {
    pub fn add(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.compensation += (self.sum - t) + x;
        } else {
            self.compensation += (x - t) + self.sum;
        }
        self.sum = t;
    }

    pub fn value(&self) -> f64 {
        self.sum + self.compensation
    }
}

/// Fixed-capacity ring buffer of the last `capacity` values.
#[derive(Debug, Clone)]
pub struct Ring {
    buf: Vec<f64>,
    head: usize,
    len: usize,
}

impl Ring {
    pub fn new(capacity: usize) -> Self {
        Self {
            buf: vec![0.0; capacity.max(1)],
            head: 0,
            len: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.len == self.buf.len()
    }

    /// Appends `x`; returns the value that fell out when the buffer was full.
    pub fn push(&mut self, x: f64) -> Option<f64> {
        let cap = self.buf.len();
        let slot = (self.head + self.len) % cap;
        if self.len == cap {
            let old = self.buf.get_mut(self.head).map(|v| std::mem::replace(v, x));
            self.head = (self.head + 1) % cap;
            old
        } else {
            if let Some(v) = self.buf.get_mut(slot) {
                *v = x;
            }
            self.len += 1;
            None
        }
    }

    /// The oldest value held.
    pub fn oldest(&self) -> Option<f64> {
        if self.len == 0 {
            None
        } else {
            self.buf.get(self.head).copied()
        }
    }
}

/// Rolling maximum or minimum over the last `period` values (monotonic deque).
#[derive(Debug, Clone)]
pub struct RollingExtreme {
    period: u64,
    max: bool,
    seq: u64,
    deque: VecDeque<(u64, f64)>,
}

impl RollingExtreme {
    pub fn max(period: usize) -> Self {
        Self {
            period: period.max(1) as u64,
            max: true,
            seq: 0,
            deque: VecDeque::with_capacity(period + 1),
        }
    }

    pub fn min(period: usize) -> Self {
        Self {
            period: period.max(1) as u64,
            max: false,
            seq: 0,
            deque: VecDeque::with_capacity(period + 1),
        }
    }

    /// Adds `x`; returns the extreme of the window once `period` values were seen.
    pub fn push(&mut self, x: f64) -> Option<f64> {
        let i = self.seq;
        self.seq += 1;
        while let Some(&(_, back)) = self.deque.back() {
            let dominated = if self.max { back <= x } else { back >= x };
            if dominated {
                self.deque.pop_back();
            } else {
                break;
            }
        }
        self.deque.push_back((i, x));
        while let Some(&(j, _)) = self.deque.front() {
            if j + self.period <= i {
                self.deque.pop_front();
            } else {
                break;
            }
        }
        if self.seq >= self.period {
            self.deque.front().map(|&(_, v)| v)
        } else {
            None
        }
    }
}

/// Simple moving average (TA-Lib `SMA`).
#[derive(Debug, Clone)]
pub struct Sma {
    ring: Ring,
    sum: CompensatedSum,
}

impl Sma {
    pub fn new(period: usize) -> Self {
        Self {
            ring: Ring::new(period),
            sum: CompensatedSum::default(),
        }
    }

    pub fn push(&mut self, x: f64) -> Option<f64> {
        if let Some(old) = self.ring.push(x) {
            self.sum.add(-old);
        }
        self.sum.add(x);
        self.value()
    }

    pub fn value(&self) -> Option<f64> {
        self.ring
            .is_full()
            .then(|| self.sum.value() / self.ring.capacity() as f64)
    }
}

/// Exponential moving average seeded with the SMA of its first `period` inputs, α = 2/(p+1)
/// (TA-Lib `EMA`, default compatibility).
#[derive(Debug, Clone)]
pub struct Ema {
    period: usize,
    k: f64,
    seen: usize,
    seed: f64,
    value: Option<f64>,
}

impl Ema {
    pub fn new(period: usize) -> Self {
        let period = period.max(1);
        Self {
            period,
            k: 2.0 / (period as f64 + 1.0),
            seen: 0,
            seed: 0.0,
            value: None,
        }
    }

    pub fn push(&mut self, x: f64) -> Option<f64> {
        match self.value {
            Some(prev) => self.value = Some(((x - prev) * self.k) + prev),
            None => {
                self.seen += 1;
                self.seed += x;
                if self.seen == self.period {
                    self.value = Some(self.seed / self.period as f64);
                }
            }
        }
        self.value
    }

    pub fn value(&self) -> Option<f64> {
        self.value
    }
}

/// Wilder RSI exactly as TA-Lib `RSI` (first value at index `period`).
#[derive(Debug, Clone)]
pub struct Rsi {
    period: usize,
    prev: Option<f64>,
    deltas: usize,
    gain: f64,
    loss: f64,
    value: Option<f64>,
}

impl Rsi {
    pub fn new(period: usize) -> Self {
        Self {
            period: period.max(1),
            prev: None,
            deltas: 0,
            gain: 0.0,
            loss: 0.0,
            value: None,
        }
    }

    pub fn push(&mut self, close: f64) -> Option<f64> {
        let prev = self.prev.replace(close)?;
        let delta = close - prev;
        let p = self.period as f64;
        self.deltas += 1;
        if self.deltas <= self.period {
            if delta < 0.0 {
                self.loss -= delta;
            } else {
                self.gain += delta;
            }
            if self.deltas < self.period {
                return None;
            }
            self.loss /= p;
            self.gain /= p;
        } else {
            self.loss *= p - 1.0;
            self.gain *= p - 1.0;
            if delta < 0.0 {
                self.loss -= delta;
            } else {
                self.gain += delta;
            }
            self.loss /= p;
            self.gain /= p;
        }
        let total = self.gain + self.loss;
        self.value = Some(if total == 0.0 {
            50.0
        } else {
            100.0 * (self.gain / total)
        });
        self.value
    }

    pub fn value(&self) -> Option<f64> {
        self.value
    }
}

/// True range with the previous close (`None` for the first candle, as in TA-Lib `TRANGE`).
pub fn true_range(high: f64, low: f64, prev_close: f64) -> f64 {
    let mut tr = high - low;
    let up = (high - prev_close).abs();
    if up > tr {
        tr = up;
    }
    let down = (low - prev_close).abs();
    if down > tr {
        tr = down;
    }
    tr
}

/// Wilder ATR exactly as TA-Lib `ATR`: the first value (index `period`) is the mean of the
/// true ranges of candles 1..=period, then `(atr·(p−1) + tr)/p`.
#[derive(Debug, Clone)]
pub struct Atr {
    period: usize,
    prev_close: Option<f64>,
    seen: usize,
    seed: f64,
    value: Option<f64>,
}

impl Atr {
    pub fn new(period: usize) -> Self {
        Self {
            period: period.max(1),
            prev_close: None,
            seen: 0,
            seed: 0.0,
            value: None,
        }
    }

    pub fn push(&mut self, high: f64, low: f64, close: f64) -> Option<f64> {
        let prev_close = self.prev_close.replace(close)?;
        let tr = true_range(high, low, prev_close);
        let p = self.period as f64;
        match self.value {
            Some(mut atr) => {
                atr *= p - 1.0;
                atr += tr;
                atr /= p;
                self.value = Some(atr);
            }
            None => {
                self.seen += 1;
                self.seed += tr;
                if self.seen == self.period {
                    self.value = Some(self.seed / p);
                }
            }
        }
        self.value
    }

    pub fn value(&self) -> Option<f64> {
        self.value
    }
}

/// ADX exactly as TA-Lib `ADX`: Wilder sums of +DM/−DM/TR started over candles 1..p−1,
/// DX averaged over candles p..2p−1 (first ADX at index 2p−1), then Wilder smoothing.
#[derive(Debug, Clone)]
pub struct Adx {
    period: usize,
    prev: Option<(f64, f64, f64)>,
    index: usize,
    plus_dm: f64,
    minus_dm: f64,
    tr: f64,
    sum_dx: f64,
    value: Option<f64>,
}

impl Adx {
    pub fn new(period: usize) -> Self {
        Self {
            period: period.max(1),
            prev: None,
            index: 0,
            plus_dm: 0.0,
            minus_dm: 0.0,
            tr: 0.0,
            sum_dx: 0.0,
            value: None,
        }
    }

    pub fn push(&mut self, high: f64, low: f64, close: f64) -> Option<f64> {
        let (prev_high, prev_low, prev_close) = self.prev.replace((high, low, close))?;
        self.index += 1;
        let i = self.index;
        let p = self.period;
        let pf = p as f64;
        let diff_p = high - prev_high;
        let diff_m = prev_low - low;
        let tr = true_range(high, low, prev_close);
        if i < p {
            if diff_m > 0.0 && diff_p < diff_m {
                self.minus_dm += diff_m;
            } else if diff_p > 0.0 && diff_p > diff_m {
                self.plus_dm += diff_p;
            }
            self.tr += tr;
            return None;
        }
        self.minus_dm -= self.minus_dm / pf;
        self.plus_dm -= self.plus_dm / pf;
        if diff_m > 0.0 && diff_p < diff_m {
            self.minus_dm += diff_m;
        } else if diff_p > 0.0 && diff_p > diff_m {
            self.plus_dm += diff_p;
        }
        self.tr = self.tr - (self.tr / pf) + tr;
        let dx = self.dx();
        if i < 2 * p {
            if let Some(dx) = dx {
                self.sum_dx += dx;
            }
            if i == 2 * p - 1 {
                self.value = Some(self.sum_dx / pf);
            }
        } else if let (Some(dx), Some(adx)) = (dx, self.value) {
            self.value = Some(((adx * (pf - 1.0)) + dx) / pf);
        }
        self.value
    }

    fn dx(&self) -> Option<f64> {
        if self.tr == 0.0 {
            return None;
        }
        let minus_di = 100.0 * (self.minus_dm / self.tr);
        let plus_di = 100.0 * (self.plus_dm / self.tr);
        let sum = minus_di + plus_di;
        (sum != 0.0).then(|| 100.0 * ((minus_di - plus_di).abs() / sum))
    }

    pub fn value(&self) -> Option<f64> {
        self.value
    }
}

/// MACD exactly as TA-Lib `MACD`: the fast EMA is seeded so that it starts on the same
/// candle as the slow one (SMA of the `fast` closes ending at index `slow−1`), the signal is
/// an EMA of the line, and all three outputs start at index `slow + signal − 2`.
#[derive(Debug, Clone)]
pub struct Macd {
    fast: Ema,
    slow: Ema,
    signal: Ema,
    skip_fast: usize,
    seen: usize,
}

/// One MACD output: (line, signal, histogram).
pub type MacdTriple = (f64, f64, f64);

impl Macd {
    pub fn new(fast: usize, slow: usize, signal: usize) -> Self {
        let (fast, slow) = if slow < fast { (slow, fast) } else { (fast, slow) };
        Self {
            fast: Ema::new(fast),
            slow: Ema::new(slow),
            signal: Ema::new(signal),
            skip_fast: slow.saturating_sub(fast),
            seen: 0,
        }
    }

    pub fn push(&mut self, close: f64) -> Option<MacdTriple> {
        self.seen += 1;
        let slow = self.slow.push(close);
        let fast = if self.seen > self.skip_fast {
            self.fast.push(close)
        } else {
            None
        };
        let (Some(fast), Some(slow)) = (fast, slow) else {
            return None;
        };
        let line = fast - slow;
        let signal = self.signal.push(line)?;
        Some((line, signal, line - signal))
    }
}

/// Bollinger bands (TA-Lib `BBANDS`, SMA middle, population σ computed as
/// `sqrt(E[x²] − mean²)` like TA-Lib).
#[derive(Debug, Clone)]
pub struct Bollinger {
    ring: Ring,
    sum: CompensatedSum,
    sum_sq: CompensatedSum,
    k: f64,
}

/// One Bollinger output: (upper, middle, lower).
pub type Bands = (f64, f64, f64);

impl Bollinger {
    pub fn new(period: usize, k: f64) -> Self {
        Self {
            ring: Ring::new(period),
            sum: CompensatedSum::default(),
            sum_sq: CompensatedSum::default(),
            k,
        }
    }

    pub fn push(&mut self, x: f64) -> Option<Bands> {
        if let Some(old) = self.ring.push(x) {
            self.sum.add(-old);
            self.sum_sq.add(-(old * old));
        }
        self.sum.add(x);
        self.sum_sq.add(x * x);
        if !self.ring.is_full() {
            return None;
        }
        let p = self.ring.capacity() as f64;
        let mean = self.sum.value() / p;
        let var = self.sum_sq.value() / p - mean * mean;
        let sd = if var > 0.0 { var.sqrt() } else { 0.0 };
        let dev = self.k * sd;
        Some((mean + dev, mean, mean - dev))
    }
}

/// Stochastic RSI as the reference defines it: raw = 100·(RSI − min)/(max − min) over the
/// stochastic window (50 when flat), K = SMA_k(raw), D = SMA_d(K). Equals TA-Lib `STOCH`
/// applied to TA-Lib `RSI`; K also equals TA-Lib `STOCHRSI`'s fast D. Both are emitted from
/// the candle on which D is available.
#[derive(Debug, Clone)]
pub struct StochRsi {
    rsi: Rsi,
    hi: RollingExtreme,
    lo: RollingExtreme,
    k: Sma,
    d: Sma,
}

impl StochRsi {
    pub fn new(rsi_period: usize, stoch_period: usize, k_period: usize, d_period: usize) -> Self {
        Self {
            rsi: Rsi::new(rsi_period),
            hi: RollingExtreme::max(stoch_period),
            lo: RollingExtreme::min(stoch_period),
            k: Sma::new(k_period),
            d: Sma::new(d_period),
        }
    }

    pub fn push(&mut self, close: f64) -> Option<(f64, f64)> {
        let rsi = self.rsi.push(close)?;
        let hi = self.hi.push(rsi);
        let lo = self.lo.push(rsi);
        let (Some(hi), Some(lo)) = (hi, lo) else {
            return None;
        };
        let raw = if hi > lo {
            (rsi - lo) / ((hi - lo) / 100.0)
        } else {
            50.0
        };
        let k = self.k.push(raw)?;
        let d = self.d.push(k)?;
        Some((k, d))
    }
}

/// Rate of change in percent (TA-Lib `ROC`): `((c / c[−p]) − 1)·100`, 0 when `c[−p]` is 0.
#[derive(Debug, Clone)]
pub struct Roc {
    ring: Ring,
}

impl Roc {
    pub fn new(period: usize) -> Self {
        Self {
            ring: Ring::new(period + 1),
        }
    }

    pub fn push(&mut self, close: f64) -> Option<f64> {
        self.ring.push(close);
        if !self.ring.is_full() {
            return None;
        }
        let past = self.ring.oldest()?;
        Some(if past != 0.0 {
            ((close / past) - 1.0) * 100.0
        } else {
            0.0
        })
    }
}

/// On-balance volume as TA-Lib `OBV`: starts at the first candle's volume.
#[derive(Debug, Clone, Default)]
pub struct Obv {
    state: Option<(f64, f64)>,
}

impl Obv {
    pub fn push(&mut self, close: f64, volume: f64) -> f64 {
        let obv = match self.state {
            None => volume,
            Some((prev_close, obv)) if close > prev_close => obv + volume,
            Some((prev_close, obv)) if close < prev_close => obv - volume,
            Some((_, obv)) => obv,
        };
        self.state = Some((close, obv));
        obv
    }
}

/// Choppiness index: `100·log10(ΣTR_p / (HH_p − LL_p)) / log10(p)` over the last `p`
/// candles, each true range taken against the previous close (first value at index `p`).
/// `None` when the window has no range (HH = LL).
#[derive(Debug, Clone)]
pub struct Choppiness {
    period: usize,
    prev_close: Option<f64>,
    tr: Ring,
    tr_sum: CompensatedSum,
    hh: RollingExtreme,
    ll: RollingExtreme,
}

impl Choppiness {
    pub fn new(period: usize) -> Self {
        let period = period.max(2);
        Self {
            period,
            prev_close: None,
            tr: Ring::new(period),
            tr_sum: CompensatedSum::default(),
            hh: RollingExtreme::max(period),
            ll: RollingExtreme::min(period),
        }
    }

    pub fn push(&mut self, high: f64, low: f64, close: f64) -> Option<f64> {
        let hh = self.hh.push(high);
        let ll = self.ll.push(low);
        let prev_close = self.prev_close.replace(close)?;
        let tr = true_range(high, low, prev_close);
        if let Some(old) = self.tr.push(tr) {
            self.tr_sum.add(-old);
        }
        self.tr_sum.add(tr);
        let (Some(hh), Some(ll)) = (hh, ll) else {
            return None;
        };
        if !self.tr.is_full() || hh <= ll {
            return None;
        }
        let ratio = self.tr_sum.value() / (hh - ll);
        Some(100.0 * ratio.log10() / (self.period as f64).log10())
    }
}

/// Supertrend per the reference: bands `(H+L)/2 ± mult·ATR(p)`; on the first candle with an
/// ATR the direction is +1 (value = lower band) if close > hl2, else −1 (upper band); then a
/// close above the previous value is an up trend with value `max(lower, prev)` (or `lower`
/// after a flip), otherwise a down trend with value `min(upper, prev)` (or `upper`).
#[derive(Debug, Clone)]
pub struct Supertrend {
    atr: Atr,
    mult: f64,
    state: Option<(f64, i8)>,
}

impl Supertrend {
    pub fn new(period: usize, mult: f64) -> Self {
        Self {
            atr: Atr::new(period),
            mult,
            state: None,
        }
    }

    pub fn push(&mut self, high: f64, low: f64, close: f64) -> Option<(f64, i8)> {
        let atr = self.atr.push(high, low, close)?;
        let hl2 = (high + low) / 2.0;
        let upper = hl2 + self.mult * atr;
        let lower = hl2 - self.mult * atr;
        let next = match self.state {
            None if close > hl2 => (lower, 1),
            None => (upper, -1),
            Some((prev, dir)) if close > prev => (if dir == 1 { lower.max(prev) } else { lower }, 1),
            Some((prev, dir)) => (if dir == -1 { upper.min(prev) } else { upper }, -1),
        };
        self.state = Some(next);
        Some(next)
    }
}

/// Volume-weighted average price of the typical price `(H+L+C)/3`, cumulative since the
/// anchor. Carries the previous value forward while the anchored volume is 0.
#[derive(Debug, Clone, Default)]
pub struct Vwap {
    anchor: Option<i64>,
    pv: f64,
    volume: f64,
    value: Option<f64>,
}

impl Vwap {
    /// `anchor` identifies the session (e.g. the UTC day number); a new value resets the sums.
    pub fn push(&mut self, anchor: i64, high: f64, low: f64, close: f64, volume: f64) -> Option<f64> {
        if self.anchor != Some(anchor) {
            self.anchor = Some(anchor);
            self.pv = 0.0;
            self.volume = 0.0;
        }
        let volume = if volume.is_finite() { volume } else { 0.0 };
        let typical = (high + low + close) / 3.0;
        let typical = if typical.is_finite() { typical } else { close };
        self.pv += typical * volume;
        self.volume += volume;
        if self.volume > 0.0 {
            self.value = Some(self.pv / self.volume);
        }
        self.value
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]
mod tests {
    use super::*;

    #[test]
    fn ring_returns_evicted_values_in_order() {
        let mut r = Ring::new(3);
        assert_eq!(r.push(1.0), None);
        assert_eq!(r.push(2.0), None);
        assert_eq!(r.push(3.0), None);
        assert!(r.is_full());
        assert_eq!(r.oldest(), Some(1.0));
        assert_eq!(r.push(4.0), Some(1.0));
        assert_eq!(r.push(5.0), Some(2.0));
        assert_eq!(r.oldest(), Some(3.0));
    }

    #[test]
    fn rolling_extremes_match_a_window_scan() {
        let xs = [
            3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0, 5.0, 8.0, 9.0, 7.0, 9.0, 3.0,
        ];
        let mut hi = RollingExtreme::max(4);
        let mut lo = RollingExtreme::min(4);
        for (i, &x) in xs.iter().enumerate() {
            let h = hi.push(x);
            let l = lo.push(x);
            if i < 3 {
                assert_eq!((h, l), (None, None));
            } else {
                let w = &xs[i - 3..=i];
                assert_eq!(h, Some(w.iter().cloned().fold(f64::MIN, f64::max)), "max at {i}");
                assert_eq!(l, Some(w.iter().cloned().fold(f64::MAX, f64::min)), "min at {i}");
            }
        }
    }

    #[test]
    fn compensated_sum_does_not_drift_over_a_million_updates() {
        let mut s = Sma::new(20);
        let mut last = None;
        for i in 0..1_000_000u32 {
            let x = 60_000.0 + f64::from(i % 97) * 0.1 + 1e-3 * f64::from(i % 7);
            last = s.push(x);
        }
        let exact: f64 = (1_000_000u32 - 20..1_000_000)
            .map(|i| 60_000.0 + f64::from(i % 97) * 0.1 + 1e-3 * f64::from(i % 7))
            .sum::<f64>()
            / 20.0;
        let got = last.unwrap();
        assert!(((got - exact) / exact).abs() < 1e-14, "{got} vs {exact}");
    }

    #[test]
    fn flat_windows_are_neutral_not_zero() {
        let mut rsi = Rsi::new(3);
        let mut st = StochRsi::new(3, 3, 1, 1);
        let mut out = None;
        for _ in 0..10 {
            let r = rsi.push(5.0);
            assert!(r.is_none() || r == Some(50.0));
            out = st.push(5.0);
        }
        assert_eq!(rsi.value(), Some(50.0));
        assert_eq!(out, Some((50.0, 50.0)));
    }

    #[test]
    fn vwap_resets_per_session_and_carries_through_zero_volume() {
        let mut v = Vwap::default();
        assert_eq!(v.push(0, 10.0, 10.0, 10.0, 0.0), None);
        assert_eq!(v.push(0, 12.0, 12.0, 12.0, 1.0), Some(12.0));
        assert_eq!(v.push(0, 9.0, 9.0, 9.0, 3.0), Some((12.0 + 27.0) / 4.0));
        // New session with zero volume keeps the previous value until volume arrives.
        assert_eq!(v.push(1, 20.0, 20.0, 20.0, 0.0), Some((12.0 + 27.0) / 4.0));
        assert_eq!(v.push(1, 21.0, 21.0, 21.0, 2.0), Some(21.0));
    }

    #[test]
    fn obv_follows_close_direction() {
        let mut o = Obv::default();
        assert_eq!(o.push(10.0, 5.0), 5.0);
        assert_eq!(o.push(11.0, 2.0), 7.0);
        assert_eq!(o.push(11.0, 9.0), 7.0);
        assert_eq!(o.push(10.0, 3.0), 4.0);
    }
}
