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
mod tests;
