//! Pure transitions of [`RiskState`]: portfolio updates, trade results, period
//! roll-over, breakers, cooldowns and resets. The engine calls these and publishes
//! what they report; nothing here does I/O.

use super::types::{Breaker, DrawdownBasis, RegimeInfo, RiskLimits, RiskState, TradeResult};
use crate::domain::{CorrelationId, EntryStrictness, Regime, Symbol};
use chrono::{DateTime, Datelike, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Something that happened to the state and deserves an alert.
#[derive(Debug, Clone, PartialEq)]
pub enum RiskEvent {
    /// A circuit breaker tripped (it was not tripped before).
    BreakerTripped { breaker: Breaker, detail: String },
    /// The consecutive-loss breaker tripped.
    ConsecutiveLosses { losses: u32, cooldown_min: i64 },
    /// A volatility spike started on a symbol.
    VolatilitySpike { symbol: String, ratio: f64 },
}

/// How much a transition changed: the engine saves only what a restart must find.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// Nothing changed.
    Unchanged,
    /// Only observations the next messages restate changed (an ATR sample, the time of an
    /// unchanged regime): kept in memory and written with the next save.
    Observed,
    /// Something a restart must find (P&L, breakers, cooldowns, a new regime or strictness,
    /// the start or end of a volatility spike): saved at once.
    Durable,
}

/// What an ATR observation did.
#[derive(Debug, Clone, PartialEq)]
pub struct AtrOutcome {
    pub change: Change,
    /// A spike that started (its cooldown is set).
    pub events: Vec<RiskEvent>,
}

impl AtrOutcome {
    fn unchanged() -> Self {
        Self {
            change: Change::Unchanged,
            events: Vec::new(),
        }
    }
}

/// What a manual reset clears.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetScope {
    /// The active cooldown and the consecutive-loss count.
    Cooldown,
    /// The drawdown breaker (admin only); the peak is rebased to the current equity.
    Drawdown,
    /// Every breaker, the halt, the cooldown and the loss streak; daily and weekly P&L restart
    /// from zero (admin only).
    All,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ResetError {
    #[error("an admin must reset {0}")]
    AdminRequired(String),
}

const MAX_RESULTS: usize = 50;
const MAX_SEEN_EVENTS: usize = 256;

/// Whether `a` and `b` fall in the same ISO week.
fn same_iso_week(a: DateTime<Utc>, b: DateTime<Utc>) -> bool {
    let (wa, wb) = (a.iso_week(), b.iso_week());
    wa.year() == wb.year() && wa.week() == wb.week()
}

fn pct_of(part: Decimal, whole: Decimal) -> Option<Decimal> {
    (whole > Decimal::ZERO).then(|| part / whole * Decimal::ONE_HUNDRED)
}

impl RiskState {
    /// Remembers an event id; returns `false` when it was seen before (a redelivery).
    pub fn first_sighting(&mut self, id: Uuid) -> bool {
        if self.seen_events.contains(&id) {
            return false;
        }
        self.seen_events.push_back(id);
        while self.seen_events.len() > MAX_SEEN_EVENTS {
            self.seen_events.pop_front();
        }
        true
    }

    /// Starts a new UTC day / ISO week when `now` is in a new period: the period P&L restarts
    /// and its breaker clears; the halt lifts only when no breaker remains. The first call only
    /// records the period starts. Returns whether anything changed.
    pub fn roll_periods(&mut self, now: DateTime<Utc>) -> bool {
        let mut changed = false;
        match self.daily_period_start {
            Some(start) if start.date_naive() == now.date_naive() => {}
            Some(_) => {
                self.daily_pnl = Decimal::ZERO;
                self.trades_today = 0;
                self.daily_start_equity = self.equity_usd;
                self.daily_period_start = Some(now);
                self.clear_breaker(Breaker::DailyLoss);
                changed = true;
            }
            None => {
                self.daily_period_start = Some(now);
                self.daily_start_equity = self.daily_start_equity.or(self.equity_usd);
                changed = true;
            }
        }
        match self.weekly_period_start {
            Some(start) if same_iso_week(start, now) => {}
            Some(_) => {
                self.weekly_pnl = Decimal::ZERO;
                self.weekly_start_equity = self.equity_usd;
                self.weekly_period_start = Some(now);
                self.clear_breaker(Breaker::WeeklyLoss);
                changed = true;
            }
            None => {
                self.weekly_period_start = Some(now);
                self.weekly_start_equity = self.weekly_start_equity.or(self.equity_usd);
                changed = true;
            }
        }
        if changed {
            self.updated_at = Some(now);
        }
        changed
    }

    fn clear_breaker(&mut self, b: Breaker) {
        if self.breakers.remove(&b) {
            self.refresh_halt();
        }
    }

    fn refresh_halt(&mut self) {
        if let Some(hold) = &self.hold_reason {
            self.halted = true;
            self.halt_reason = Some(hold.clone());
        } else if self.breakers.is_empty() {
            self.halted = false;
            self.halt_reason = None;
        } else {
            self.halted = true;
            let names: Vec<&str> = self.breakers.iter().map(|b| b.as_str()).collect();
            self.halt_reason = Some(format!("circuit breaker: {}", names.join(", ")));
        }
    }

    /// Daily loss as a positive percent of the equity the day started with (0 when in profit).
    pub fn daily_loss_pct(&self) -> Decimal {
        let base = self.daily_start_equity.or(self.equity_usd).unwrap_or(Decimal::ZERO);
        loss_pct(self.daily_pnl, base)
    }

    /// Weekly loss as a positive percent of the equity the week started with (0 when in profit).
    pub fn weekly_loss_pct(&self) -> Decimal {
        let base = self.weekly_start_equity.or(self.equity_usd).unwrap_or(Decimal::ZERO);
        loss_pct(self.weekly_pnl, base)
    }

    /// The breakers whose condition holds right now.
    pub fn breaches(&self, limits: &RiskLimits) -> Vec<(Breaker, String)> {
        let mut out = Vec::new();
        let daily = self.daily_loss_pct();
        if daily >= limits.daily_loss_pct {
            out.push((
                Breaker::DailyLoss,
                format!("daily loss {:.2}% ≥ {}%", daily, limits.daily_loss_pct),
            ));
        }
        let weekly = self.weekly_loss_pct();
        if weekly >= limits.weekly_loss_pct {
            out.push((
                Breaker::WeeklyLoss,
                format!("weekly loss {:.2}% ≥ {}%", weekly, limits.weekly_loss_pct),
            ));
        }
        if self.drawdown_pct >= limits.max_drawdown_pct {
            out.push((
                Breaker::MaxDrawdown,
                format!("drawdown {:.2}% ≥ {}%", self.drawdown_pct, limits.max_drawdown_pct),
            ));
        }
        out
    }

    /// Trips every breaker whose condition holds and was not tripped yet; reports the new ones.
    pub fn evaluate_breakers(&mut self, limits: &RiskLimits) -> Vec<RiskEvent> {
        let mut events = Vec::new();
        for (breaker, detail) in self.breaches(limits) {
            if self.breakers.insert(breaker) {
                events.push(RiskEvent::BreakerTripped { breaker, detail });
            }
        }
        if !events.is_empty() {
            self.refresh_halt();
        }
        events
    }

    /// Applies a portfolio update (the only source of equity, peak, drawdown and exposure).
    pub fn apply_portfolio(
        &mut self,
        equity: Decimal,
        peak: Decimal,
        open_exposure_usd: Decimal,
        exposure_by_symbol: std::collections::BTreeMap<String, Decimal>,
        now: DateTime<Utc>,
        limits: &RiskLimits,
    ) -> Vec<RiskEvent> {
        self.equity_usd = Some(equity);
        self.daily_start_equity.get_or_insert(equity);
        self.weekly_start_equity.get_or_insert(equity);
        self.trading_base_usd.get_or_insert(equity);
        let reported_peak = if self.peak_rebased { Decimal::ZERO } else { peak };
        self.peak_equity_usd = self.peak_equity_usd.max(reported_peak).max(equity);
        self.account_drawdown_pct = drawdown_pct(equity, self.peak_equity_usd);
        self.update_drawdown(limits);
        self.open_exposure_usd = open_exposure_usd.max(Decimal::ZERO);
        self.exposure_by_symbol = exposure_by_symbol;
        self.available_margin_usd = (equity - self.open_exposure_usd).max(Decimal::ZERO);
        self.portfolio_updated_at = Some(now);
        self.updated_at = Some(now);
        self.evaluate_breakers(limits)
    }

    /// Records a closed trade: period P&L, win/loss streaks and loss cooldowns (reference §3.6).
    pub fn record_trade(
        &mut self,
        symbol: &Symbol,
        realized_pnl: Decimal,
        correlation_id: CorrelationId,
        now: DateTime<Utc>,
        limits: &RiskLimits,
    ) -> Vec<RiskEvent> {
        self.daily_pnl += realized_pnl;
        self.weekly_pnl += realized_pnl;
        self.trading_pnl_usd += realized_pnl;
        self.trading_peak_pnl_usd = self.trading_peak_pnl_usd.max(self.trading_pnl_usd);
        self.update_drawdown(limits);
        self.trades_today += 1;
        self.last_results.push_back(TradeResult {
            symbol: symbol.clone(),
            realized_pnl,
            at: now,
            correlation_id,
        });
        while self.last_results.len() > MAX_RESULTS {
            self.last_results.pop_front();
        }
        let mut events = Vec::new();
        if realized_pnl > Decimal::ZERO {
            self.consecutive_wins += 1;
            self.consecutive_losses = 0;
        } else if realized_pnl < Decimal::ZERO {
            self.consecutive_losses += 1;
            self.consecutive_wins = 0;
            let losses = self.consecutive_losses;
            let (minutes, why) = if losses >= limits.consecutive_losses_breaker {
                (
                    limits.consecutive_loss_5_cooldown_min,
                    format!("{losses} consecutive losses"),
                )
            } else if losses >= limits.consecutive_losses_warning {
                (
                    limits.consecutive_loss_3_cooldown_min,
                    format!("{losses} consecutive losses"),
                )
            } else {
                (limits.post_loss_cooldown_min, "post-loss cooldown".to_owned())
            };
            self.start_cooldown(now, minutes, why);
            if losses == limits.consecutive_losses_breaker {
                events.push(RiskEvent::ConsecutiveLosses {
                    losses,
                    cooldown_min: minutes,
                });
            }
        }
        self.updated_at = Some(now);
        events.extend(self.evaluate_breakers(limits));
        events
    }

    /// A position was opened: the post-trade cooldown starts.
    pub fn position_opened(&mut self, now: DateTime<Utc>, limits: &RiskLimits) {
        self.start_cooldown(now, limits.post_trade_cooldown_min, "post-trade cooldown".to_owned());
        self.updated_at = Some(now);
    }

    /// Starts (or extends, never shortens) the cooldown.
    pub fn start_cooldown(&mut self, now: DateTime<Utc>, minutes: i64, reason: String) {
        if minutes <= 0 {
            return;
        }
        let until = now + Duration::minutes(minutes);
        if self.cooldown_until.is_none_or(|u| until > u) {
            self.cooldown_until = Some(until);
            self.cooldown_reason = Some(reason);
        }
    }

    pub fn in_cooldown(&self, now: DateTime<Utc>) -> bool {
        self.cooldown_until.is_some_and(|u| now < u)
    }

    /// Records the latest regime of a symbol. Only a new regime or strictness is
    /// [`Change::Durable`]: the validation reads nothing else, and the time of a repeated regime
    /// is restated by the next update.
    pub fn update_regime(
        &mut self,
        symbol: &Symbol,
        regime: Regime,
        entry_strictness: EntryStrictness,
        now: DateTime<Utc>,
    ) -> Change {
        self.updated_at = Some(now);
        if let Some(info) = self.regimes.get_mut(symbol.as_str()) {
            if info.regime == regime && info.entry_strictness == entry_strictness {
                info.at = now;
                return Change::Observed;
            }
        }
        self.regimes.insert(
            symbol.to_string(),
            RegimeInfo {
                regime,
                entry_strictness,
                at: now,
            },
        );
        Change::Durable
    }

    /// Adds the ATR of a symbol's primary-timeframe candle that opened at `candle_at`. The window
    /// holds one sample per candle: snapshots are published with every delivered batch (every
    /// minute live, any size in a backtest) but their hourly ATR changes only with a new candle,
    /// so a snapshot of a candle already sampled changes nothing, neither the samples nor the
    /// spike, which was judged when the candle was new (judging it again would compare the ATR
    /// with an average that already holds it). `candle_at` `None` (events written before
    /// snapshots carried it) samples every call.
    ///
    /// A spike is an ATR above `volatility_spike_multiplier` times the average of the previous
    /// samples; its start sets the volatility cooldown. The start and the end of a spike are
    /// [`Change::Durable`] (the validation reads the flag), a sample alone is [`Change::Observed`].
    pub fn record_atr(
        &mut self,
        symbol: &str,
        atr: f64,
        candle_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        limits: &RiskLimits,
    ) -> AtrOutcome {
        if !atr.is_finite() || atr < 0.0 {
            return AtrOutcome::unchanged();
        }
        let v = self.volatility.entry(symbol.to_owned()).or_default();
        if let (Some(at), Some(last)) = (candle_at, v.sampled_at) {
            if last > now {
                // Samples from a later time than the clock's (a stored state meets a replay of
                // older data): they are not this market's recent past; start the window again.
                v.samples.clear();
            } else if at <= last {
                return AtrOutcome::unchanged();
            }
        }
        let avg = if v.samples.is_empty() {
            0.0
        } else {
            v.samples.iter().sum::<f64>() / v.samples.len() as f64
        };
        v.current_atr = atr;
        v.avg_atr = avg;
        v.sampled_at = candle_at;
        v.samples.push_back(atr);
        while v.samples.len() > limits.volatility_window.max(1) {
            v.samples.pop_front();
        }
        let spike = avg > 0.0 && atr > limits.volatility_spike_multiplier * avg;
        let started = spike && !v.spike_active;
        let change = if spike == v.spike_active {
            Change::Observed
        } else {
            Change::Durable
        };
        v.spike_active = spike;
        self.updated_at = Some(now);
        let mut events = Vec::new();
        if started {
            self.start_cooldown(
                now,
                limits.volatility_spike_cooldown_min,
                format!("volatility spike on {symbol}"),
            );
            events.push(RiskEvent::VolatilitySpike {
                symbol: symbol.to_owned(),
                ratio: atr / avg,
            });
        }
        AtrOutcome { change, events }
    }

    pub fn volatility_spike(&self, symbol: &str) -> bool {
        self.volatility.get(symbol).is_some_and(|v| v.spike_active)
    }

    /// A manual reset. The drawdown breaker and a full reset need an admin.
    ///
    /// # Errors
    /// [`ResetError::AdminRequired`] when `admin` is false for an admin-only scope.
    pub fn reset(&mut self, scope: ResetScope, admin: bool, now: DateTime<Utc>) -> Result<(), ResetError> {
        match scope {
            ResetScope::Cooldown => {
                self.cooldown_until = None;
                self.cooldown_reason = None;
                self.consecutive_losses = 0;
            }
            ResetScope::Drawdown => {
                if !admin {
                    return Err(ResetError::AdminRequired("the drawdown breaker".to_owned()));
                }
                self.rebase_peak();
                self.clear_breaker(Breaker::MaxDrawdown);
            }
            ResetScope::All => {
                if !admin {
                    return Err(ResetError::AdminRequired("every breaker".to_owned()));
                }
                self.rebase_peak();
                self.daily_pnl = Decimal::ZERO;
                self.weekly_pnl = Decimal::ZERO;
                self.daily_start_equity = self.equity_usd;
                self.weekly_start_equity = self.equity_usd;
                self.breakers.clear();
                self.cooldown_until = None;
                self.cooldown_reason = None;
                self.consecutive_losses = 0;
                self.hold_reason = None;
                self.refresh_halt();
            }
        }
        self.updated_at = Some(now);
        Ok(())
    }

    /// Drawdown is measured from the current equity from now on.
    fn rebase_peak(&mut self) {
        if let Some(eq) = self.equity_usd {
            self.peak_equity_usd = eq.max(Decimal::ZERO);
            self.peak_rebased = true;
            self.drawdown_pct = Decimal::ZERO;
            self.account_drawdown_pct = Decimal::ZERO;
            self.trading_base_usd = Some(eq);
            self.trading_pnl_usd = Decimal::ZERO;
            self.trading_peak_pnl_usd = Decimal::ZERO;
        }
    }

    /// The trading book's drawdown: the base equity plus realised P&L, against its peak.
    pub fn trading_drawdown_pct(&self) -> Decimal {
        match self.trading_base_usd {
            Some(base) => drawdown_pct(base + self.trading_pnl_usd, base + self.trading_peak_pnl_usd),
            None => Decimal::ZERO,
        }
    }

    /// Sets `drawdown_pct` (and its worst) from the configured basis.
    fn update_drawdown(&mut self, limits: &RiskLimits) {
        self.drawdown_pct = match limits.drawdown_basis {
            DrawdownBasis::Trading => self.trading_drawdown_pct(),
            DrawdownBasis::Account => self.account_drawdown_pct,
        };
        self.max_drawdown_pct = self.max_drawdown_pct.max(self.drawdown_pct);
    }

    /// Halts trading for a reason outside the breakers (e.g. the state could not be loaded).
    /// Only a full admin reset lifts it.
    pub fn halt(&mut self, reason: String) {
        self.hold_reason = Some(reason);
        self.refresh_halt();
    }

    /// Equity when known and positive.
    pub fn positive_equity(&self) -> Option<Decimal> {
        self.equity_usd.filter(|e| *e > Decimal::ZERO)
    }

    /// Exposure of a symbol in percent of equity.
    pub fn symbol_exposure_pct(&self, symbol: &str) -> Decimal {
        let usd = self.exposure_by_symbol.get(symbol).copied().unwrap_or(Decimal::ZERO);
        self.positive_equity()
            .and_then(|e| pct_of(usd, e))
            .unwrap_or(Decimal::ZERO)
    }

    /// Total open exposure in percent of equity.
    pub fn total_exposure_pct(&self) -> Decimal {
        self.positive_equity()
            .and_then(|e| pct_of(self.open_exposure_usd, e))
            .unwrap_or(Decimal::ZERO)
    }
}

fn loss_pct(pnl: Decimal, base: Decimal) -> Decimal {
    if pnl >= Decimal::ZERO {
        return Decimal::ZERO;
    }
    if base <= Decimal::ZERO {
        // Any loss without positive equity behind it is a total loss.
        return Decimal::ONE_HUNDRED;
    }
    -pnl / base * Decimal::ONE_HUNDRED
}

/// Drawdown in percent of the peak; above 100 when equity is negative.
pub fn drawdown_pct(equity: Decimal, peak: Decimal) -> Decimal {
    if peak <= Decimal::ZERO || equity >= peak {
        return Decimal::ZERO;
    }
    (peak - equity) / peak * Decimal::ONE_HUNDRED
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
    use chrono::TimeZone;
    use rust_decimal_macros::dec;
    use std::collections::BTreeMap;

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
    }

    fn btc() -> Symbol {
        Symbol::parse("BTC/USDT").unwrap()
    }

    /// A state that saw one portfolio update (equity 10 000) on Wednesday 2026-11-25 10:00.
    fn funded(limits: &RiskLimits) -> RiskState {
        let mut s = RiskState::default();
        let t = at(2026, 11, 25, 10);
        s.roll_periods(t);
        s.apply_portfolio(dec!(10000), dec!(10000), dec!(0), BTreeMap::new(), t, limits);
        s
    }

    fn loss(s: &mut RiskState, pnl: Decimal, t: DateTime<Utc>, l: &RiskLimits) -> Vec<RiskEvent> {
        s.roll_periods(t);
        s.record_trade(&btc(), pnl, CorrelationId::new(), t, l)
    }

    #[test]
    fn daily_loss_breaker_trips_at_5_percent_and_clears_at_utc_midnight() {
        let l = RiskLimits::default();
        let mut s = funded(&l);
        assert!(loss(&mut s, dec!(-499), at(2026, 11, 25, 11), &l).is_empty());
        assert!(!s.halted);
        let events = loss(&mut s, dec!(-1), at(2026, 11, 25, 12), &l);
        assert!(
            matches!(
                &events[..],
                [RiskEvent::BreakerTripped {
                    breaker: Breaker::DailyLoss,
                    ..
                }]
            ),
            "{events:?}"
        );
        assert!(s.halted);
        assert_eq!(s.halt_reason.as_deref(), Some("circuit breaker: daily_loss"));
        // Still the same UTC day at 23:00: no reset.
        assert!(!s.roll_periods(at(2026, 11, 25, 23)));
        assert!(s.halted);
        // First event after midnight resets the day; the week keeps its loss.
        assert!(s.roll_periods(at(2026, 11, 26, 0)));
        assert!(!s.halted, "{s:?}");
        assert_eq!(s.daily_pnl, dec!(0));
        assert_eq!(s.trades_today, 0);
        assert_eq!(s.weekly_pnl, dec!(-500));
    }

    #[test]
    fn weekly_breaker_resets_on_the_first_event_of_a_new_iso_week_on_any_weekday() {
        let l = RiskLimits::default();
        let mut s = funded(&l);
        loss(&mut s, dec!(-450), at(2026, 11, 25, 11), &l); // Wed, week 48
        loss(&mut s, dec!(-450), at(2026, 11, 26, 11), &l); // Thu
        let events = loss(&mut s, dec!(-150), at(2026, 11, 28, 11), &l); // Sat: -1050 = 10.5 %
        assert!(events.iter().any(|e| matches!(
            e,
            RiskEvent::BreakerTripped {
                breaker: Breaker::WeeklyLoss,
                ..
            }
        )));
        assert!(s.halted);
        // Sunday is still ISO week 48.
        s.roll_periods(at(2026, 11, 29, 23));
        assert!(s.breakers.contains(&Breaker::WeeklyLoss));
        // Nothing happens on Monday; the first event is on Wednesday of week 49.
        assert!(s.roll_periods(at(2026, 12, 2, 9)));
        assert_eq!(s.weekly_pnl, dec!(0));
        assert!(!s.halted);
    }

    #[test]
    fn iso_week_spans_the_year_boundary() {
        // 2026-12-31 (Thu) and 2027-01-01 (Fri) are both in ISO week 53 of 2026.
        assert!(same_iso_week(at(2026, 12, 31, 0), at(2027, 1, 1, 0)));
        assert!(!same_iso_week(at(2027, 1, 3, 23), at(2027, 1, 4, 0)));
    }

    #[test]
    fn drawdown_breaker_needs_an_admin_and_rebases_the_peak() {
        let l = RiskLimits {
            drawdown_basis: DrawdownBasis::Account,
            ..RiskLimits::default()
        };
        let mut s = funded(&l);
        let t = at(2026, 11, 25, 12);
        let events = s.apply_portfolio(dec!(7900), dec!(10000), dec!(0), BTreeMap::new(), t, &l);
        assert!(matches!(
            &events[..],
            [RiskEvent::BreakerTripped {
                breaker: Breaker::MaxDrawdown,
                ..
            }]
        ));
        assert_eq!(s.drawdown_pct, dec!(21));
        assert!(s.halted);
        // Period roll-overs do not clear it.
        s.roll_periods(at(2026, 12, 10, 0));
        assert!(s.halted);
        assert_eq!(
            s.reset(ResetScope::Drawdown, false, t),
            Err(ResetError::AdminRequired("the drawdown breaker".into()))
        );
        assert_eq!(
            s.reset(ResetScope::All, false, t),
            Err(ResetError::AdminRequired("every breaker".into()))
        );
        assert!(s.halted);
        s.reset(ResetScope::Drawdown, true, t).unwrap();
        assert!(!s.halted);
        // The portfolio still reports the old peak; the breaker does not trip again at once.
        let events = s.apply_portfolio(dec!(7900), dec!(10000), dec!(0), BTreeMap::new(), t, &l);
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(s.drawdown_pct, dec!(0));
        // A fresh 20 % fall from the new peak trips it again.
        let events = s.apply_portfolio(dec!(6320), dec!(10000), dec!(0), BTreeMap::new(), t, &l);
        assert!(matches!(
            &events[..],
            [RiskEvent::BreakerTripped {
                breaker: Breaker::MaxDrawdown,
                ..
            }]
        ));
    }

    #[test]
    fn holdings_falling_with_the_market_do_not_trip_the_trading_drawdown() {
        let l = RiskLimits::default();
        assert_eq!(l.drawdown_basis, DrawdownBasis::Trading);
        let mut s = funded(&l);
        let t = at(2026, 11, 25, 12);
        // The market takes the holdings 25 % down: no trade lost anything.
        let events = s.apply_portfolio(dec!(7500), dec!(10000), dec!(0), BTreeMap::new(), t, &l);
        assert!(events.is_empty(), "{events:?}");
        assert!(!s.halted);
        assert_eq!(s.account_drawdown_pct, dec!(25));
        assert_eq!(s.drawdown_pct, dec!(0));
        assert_eq!(crate::risk::leverage_cap(Regime::TrendingBull, &s, &l), 5);
    }

    #[test]
    fn realised_losses_trip_the_trading_drawdown_from_its_own_peak() {
        let l = RiskLimits {
            // Only the drawdown breaker is under test here.
            daily_loss_pct: dec!(100),
            weekly_loss_pct: dec!(100),
            ..RiskLimits::default()
        };
        let mut s = funded(&l);
        let t = at(2026, 11, 25, 12);
        // +1 000, then the holdings halve (ignored), then -2 300 from the 11 000 peak.
        assert!(s
            .record_trade(&btc(), dec!(1000), CorrelationId::new(), t, &l)
            .is_empty());
        s.apply_portfolio(dec!(5500), dec!(11000), dec!(0), BTreeMap::new(), t, &l);
        assert_eq!(s.account_drawdown_pct, dec!(50));
        assert_eq!(s.drawdown_pct, dec!(0));
        let events = s.record_trade(&btc(), dec!(-1200), CorrelationId::new(), t, &l);
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(s.drawdown_pct, dec!(1200) / dec!(11000) * dec!(100));
        let events = s.record_trade(&btc(), dec!(-1100), CorrelationId::new(), t, &l);
        assert!(
            events.iter().any(|e| matches!(
                e,
                RiskEvent::BreakerTripped {
                    breaker: Breaker::MaxDrawdown,
                    ..
                }
            )),
            "{events:?}"
        );
        assert!(s.halted);
        assert_eq!(s.max_drawdown_pct, dec!(2300) / dec!(11000) * dec!(100));
        // An admin reset rebases the trading book at the current equity.
        s.reset(ResetScope::Drawdown, true, t).unwrap();
        assert!(!s.halted);
        assert_eq!((s.trading_base_usd, s.trading_pnl_usd), (Some(dec!(5500)), dec!(0)));
        assert_eq!(s.trading_drawdown_pct(), dec!(0));
    }

    #[test]
    fn drawdown_exceeds_100_percent_with_negative_equity() {
        assert_eq!(drawdown_pct(dec!(-1000), dec!(10000)), dec!(110));
        assert_eq!(drawdown_pct(dec!(12000), dec!(10000)), dec!(0));
        assert_eq!(drawdown_pct(dec!(-5), dec!(0)), dec!(0));
    }

    #[test]
    fn cooldowns_follow_the_loss_streak() {
        let l = RiskLimits::default();
        let mut s = funded(&l);
        let t = at(2026, 11, 25, 12);
        // (pnl, expected cooldown minutes from t, expected alert)
        let steps: [(Decimal, Option<i64>, bool); 6] = [
            (dec!(-10), Some(10), false),
            (dec!(-10), Some(10), false),
            (dec!(-10), Some(30), false),
            (dec!(-10), Some(30), false),
            (dec!(-10), Some(60), true),
            (dec!(-10), Some(60), false),
        ];
        for (i, (pnl, minutes, alert)) in steps.into_iter().enumerate() {
            s.cooldown_until = None;
            let events = s.record_trade(&btc(), pnl, CorrelationId::new(), t, &l);
            assert_eq!(
                s.cooldown_until,
                minutes.map(|m| t + Duration::minutes(m)),
                "loss {}",
                i + 1
            );
            let alerted = events.iter().any(|e| matches!(e, RiskEvent::ConsecutiveLosses { .. }));
            assert_eq!(alerted, alert, "loss {}", i + 1);
        }
        assert_eq!(s.consecutive_losses, 6);
        // A win ends the streak and adds no cooldown.
        s.cooldown_until = None;
        s.record_trade(&btc(), dec!(25), CorrelationId::new(), t, &l);
        assert_eq!((s.consecutive_losses, s.consecutive_wins), (0, 1));
        assert_eq!(s.cooldown_until, None);
        assert_eq!(s.trades_today, 7);
    }

    #[test]
    fn cooldown_is_never_shortened() {
        let l = RiskLimits::default();
        let mut s = RiskState::default();
        let t = at(2026, 11, 25, 12);
        s.start_cooldown(t, 60, "long".into());
        s.position_opened(t, &l);
        assert_eq!(s.cooldown_until, Some(t + Duration::minutes(60)));
        assert_eq!(s.cooldown_reason.as_deref(), Some("long"));
        assert!(s.in_cooldown(t + Duration::minutes(59)));
        assert!(!s.in_cooldown(t + Duration::minutes(60)));
    }

    #[test]
    fn post_trade_cooldown_after_opening() {
        let l = RiskLimits::default();
        let mut s = RiskState::default();
        let t = at(2026, 11, 25, 12);
        s.position_opened(t, &l);
        assert_eq!(s.cooldown_until, Some(t + Duration::minutes(5)));
    }

    /// The ATR of the BTC candle that opened `hour` hours after 2026-11-25 00:00 (`hour` < 48),
    /// seen on 2026-11-27 at 00:00.
    fn atr(s: &mut RiskState, value: f64, hour: i64, l: &RiskLimits) -> AtrOutcome {
        let candle = at(2026, 11, 25, 0) + Duration::hours(hour);
        s.record_atr("BTC/USDT", value, Some(candle), at(2026, 11, 27, 0), l)
    }

    #[test]
    fn volatility_spike_starts_on_transition_and_clears() {
        let l = RiskLimits::default();
        let mut s = RiskState::default();
        let t = at(2026, 11, 27, 0);
        for hour in 0..5 {
            let out = atr(&mut s, 100.0, hour, &l);
            assert_eq!((out.change, out.events), (Change::Observed, vec![]));
        }
        // Exactly 3× is not a spike.
        assert!(atr(&mut s, 300.0, 5, &l).events.is_empty());
        assert!(!s.volatility_spike("BTC/USDT"));
        let out = atr(&mut s, 500.0, 6, &l);
        assert!(
            matches!(&out.events[..], [RiskEvent::VolatilitySpike { .. }]),
            "{out:?}"
        );
        assert_eq!(out.change, Change::Durable);
        assert!(s.volatility_spike("BTC/USDT"));
        assert_eq!(s.cooldown_until, Some(t + Duration::minutes(15)));
        // Still spiking: no new event, nothing durable.
        let out = atr(&mut s, 900.0, 7, &l);
        assert_eq!((out.change, out.events), (Change::Observed, vec![]));
        // The end of the spike is durable: the validation reads the flag.
        assert_eq!(atr(&mut s, 100.0, 8, &l).change, Change::Durable);
        assert!(!s.volatility_spike("BTC/USDT"));
        assert!(!s.volatility_spike("XRP/USDT"));
    }

    #[test]
    fn the_atr_window_takes_one_sample_per_primary_candle() {
        let l = RiskLimits::default();
        let mut s = RiskState::default();
        atr(&mut s, 100.0, 0, &l);
        // Sixty snapshots of the next candle (one a minute live, or one per backtest batch).
        assert_eq!(atr(&mut s, 110.0, 1, &l).change, Change::Observed);
        for _ in 0..59 {
            let out = atr(&mut s, 110.0, 1, &l);
            assert_eq!((out.change, out.events), (Change::Unchanged, vec![]));
        }
        let v = &s.volatility["BTC/USDT"];
        assert_eq!(v.samples, [100.0, 110.0]);
        assert_eq!(v.avg_atr, 100.0, "the average of the samples before the newest");
        assert_eq!(v.sampled_at, Some(at(2026, 11, 25, 1)));
        // An older candle adds nothing either.
        assert_eq!(atr(&mut s, 500.0, 0, &l).change, Change::Unchanged);
        // The window holds `volatility_window` candles, however many snapshots came with them.
        for hour in 2..40 {
            for _ in 0..3 {
                atr(&mut s, hour as f64, hour, &l);
            }
        }
        let v = &s.volatility["BTC/USDT"];
        assert_eq!(v.samples.len(), l.volatility_window);
        assert_eq!(v.samples.front(), Some(&20.0));
    }

    #[test]
    fn atr_without_a_candle_time_samples_every_snapshot_and_samples_from_the_future_restart_the_window() {
        let l = RiskLimits::default();
        let mut s = RiskState::default();
        let t = at(2026, 11, 25, 12);
        for _ in 0..3 {
            s.record_atr("BTC/USDT", 100.0, None, t, &l);
        }
        assert_eq!(s.volatility["BTC/USDT"].samples.len(), 3);

        // A stored state sampled up to 18:00 meets a clock at 12:00 (a replay of older data).
        let mut s = RiskState::default();
        s.record_atr("BTC/USDT", 100.0, Some(at(2026, 11, 25, 18)), at(2026, 11, 25, 19), &l);
        let out = s.record_atr("BTC/USDT", 50.0, Some(at(2026, 11, 25, 10)), t, &l);
        assert_eq!(out.change, Change::Observed);
        assert_eq!(s.volatility["BTC/USDT"].samples, [50.0]);
    }

    #[test]
    fn only_a_new_regime_or_strictness_is_durable() {
        let mut s = RiskState::default();
        let (t1, t2) = (at(2026, 11, 25, 12), at(2026, 11, 25, 13));
        let strict = EntryStrictness::Strict;
        assert_eq!(s.update_regime(&btc(), Regime::Ranging, strict, t1), Change::Durable);
        assert_eq!(s.update_regime(&btc(), Regime::Ranging, strict, t2), Change::Observed);
        assert_eq!(s.regimes["BTC/USDT"].at, t2);
        assert_eq!(
            s.update_regime(&btc(), Regime::Ranging, EntryStrictness::Normal, t2),
            Change::Durable
        );
        assert_eq!(
            s.update_regime(&btc(), Regime::TrendingBull, EntryStrictness::Normal, t2),
            Change::Durable
        );
    }

    #[test]
    fn redelivered_events_are_recognised() {
        let mut s = RiskState::default();
        let id = Uuid::new_v4();
        assert!(s.first_sighting(id));
        assert!(!s.first_sighting(id));
    }

    #[test]
    fn exposure_percentages_are_of_equity() {
        let l = RiskLimits::default();
        let mut s = RiskState::default();
        let by_symbol = BTreeMap::from([("BTC/USDT".to_owned(), dec!(3000)), ("XRP/USDT".to_owned(), dec!(1000))]);
        s.apply_portfolio(
            dec!(10000),
            dec!(10000),
            dec!(4000),
            by_symbol,
            at(2026, 11, 25, 12),
            &l,
        );
        assert_eq!(s.symbol_exposure_pct("BTC/USDT"), dec!(30));
        assert_eq!(s.total_exposure_pct(), dec!(40));
        assert_eq!(s.available_margin_usd, dec!(6000));
    }

    #[test]
    fn full_admin_reset_lifts_a_hold() {
        let mut s = RiskState::default();
        let t = at(2026, 11, 25, 12);
        s.halt("risk state could not be loaded".into());
        s.reset(ResetScope::Drawdown, true, t).unwrap();
        assert!(s.halted, "only a full reset lifts a hold");
        s.reset(ResetScope::All, true, t).unwrap();
        assert!(!s.halted);
    }

    #[test]
    fn state_round_trips_through_json() {
        let l = RiskLimits::default();
        let mut s = funded(&l);
        loss(&mut s, dec!(-600), at(2026, 11, 25, 12), &l);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["daily_pnl"], "-600");
        assert_eq!(json["breakers"][0], "daily_loss");
        let back: RiskState = serde_json::from_value(json).unwrap();
        assert_eq!(back, s);
    }
}
