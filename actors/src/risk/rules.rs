//! The pure validation pipeline (reference §3.2, with the defects corrected):
//! halt → cooldown → input checks → equity known → stop-loss → reward:risk → confidence →
//! size and risk per trade → consecutive-loss halving → volatility spike → leverage caps →
//! minimum size → exposure → correlation → margin. Exposure, correlation and margin see the
//! proposal after every reduction (size and leverage only ever go down). The first rejection
//! ends the pipeline. Exposure, risk and correlation count the notional (`size_usd × leverage`);
//! margin counts the committed `size_usd`. A reduce-only proposal never adds exposure: it passes
//! a halt and skips the entry checks, keeping only the input checks and the leverage cap.

use super::types::{
    default_strictness, strictness_adjustment, ProposalSource, RejectionCode, RiskLimits, RiskState, RiskVerdict,
    TradeProposal, VerdictMetrics, VerdictStatus,
};
use crate::domain::{Regime, Side};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::time::Instant;

/// Why the pipeline stopped.
struct Stop {
    status: VerdictStatus,
    code: RejectionCode,
    reason: String,
}

fn reject(code: RejectionCode, reason: impl Into<String>) -> Stop {
    Stop {
        status: VerdictStatus::Rejected,
        code,
        reason: reason.into(),
    }
}

struct Run<'a> {
    state: &'a RiskState,
    limits: &'a RiskLimits,
    now: DateTime<Utc>,
    p: TradeProposal,
    warnings: Vec<String>,
    modifications: Vec<String>,
    metrics: VerdictMetrics,
}

/// Validates `proposal` against the engine's own state and limits at business time `now`.
pub fn validate(proposal: &TradeProposal, state: &RiskState, limits: &RiskLimits, now: DateTime<Utc>) -> RiskVerdict {
    let started = Instant::now();
    let mut run = Run {
        state,
        limits,
        now,
        p: proposal.clone(),
        warnings: Vec::new(),
        modifications: Vec::new(),
        metrics: VerdictMetrics::default(),
    };
    let outcome = run.pipeline();
    let modified = run.p.size_usd != proposal.size_usd || run.p.leverage != proposal.leverage;
    let (status, rejections, reason, final_proposal) = match outcome {
        Ok(()) if modified => (VerdictStatus::Modified, Vec::new(), None, run.p),
        Ok(()) => (VerdictStatus::Approved, Vec::new(), None, run.p),
        // A refused proposal is returned as submitted.
        Err(stop) => (stop.status, vec![stop.code], Some(stop.reason), proposal.clone()),
    };
    RiskVerdict {
        status,
        rejections,
        reason,
        warnings: run.warnings,
        modifications: if status.is_approved() {
            run.modifications
        } else {
            Vec::new()
        },
        proposal: final_proposal,
        metrics: run.metrics,
        validation_ms: started.elapsed().as_secs_f64() * 1000.0,
    }
}

/// Confidence a proposal needs: regime base, raised after losses, adjusted by strictness (§3.3).
pub fn required_confidence(regime: Regime, strictness_adj: f64, consecutive_losses: u32, limits: &RiskLimits) -> f64 {
    let loss_adj = if consecutive_losses >= limits.consecutive_losses_breaker {
        limits.confidence_after_5_losses
    } else if consecutive_losses >= limits.consecutive_losses_warning {
        limits.confidence_after_3_losses
    } else {
        0.0
    };
    let base = limits.regime_confidence.base(regime);
    ((base + loss_adj).min(1.0) + strictness_adj).clamp(0.0, 1.0)
}

/// The leverage allowed now: global, regime, drawdown and loss-streak caps (the smallest wins).
pub fn leverage_cap(regime: Regime, state: &RiskState, limits: &RiskLimits) -> u32 {
    let mut cap = limits.max_leverage.min(limits.regime_leverage.cap(regime));
    if let Some(dd) = limits.drawdown_leverage_cap(state.drawdown_pct) {
        cap = cap.min(dd);
    }
    if state.consecutive_losses >= limits.consecutive_losses_breaker {
        cap = cap.min(limits.leverage_after_5_losses);
    } else if state.consecutive_losses >= limits.consecutive_losses_warning {
        cap = cap.min(limits.leverage_after_3_losses);
    }
    cap.max(1)
}

fn pct(part: Decimal, whole: Decimal) -> Decimal {
    part / whole * Decimal::ONE_HUNDRED
}

impl Run<'_> {
    fn pipeline(&mut self) -> Result<(), Stop> {
        self.check_halt()?;
        if self.p.reduce_only {
            return self.risk_reducing();
        }
        self.check_cooldown()?;
        self.check_inputs()?;
        let equity = self.state.positive_equity().ok_or_else(|| {
            reject(
                RejectionCode::EquityUnavailable,
                "no positive equity known yet; waiting for a portfolio update",
            )
        })?;
        self.check_stop_loss()?;
        self.check_reward_risk()?;
        self.check_confidence()?;
        self.size_and_risk(equity)?;
        self.loss_streak_reduction();
        self.volatility_reduction();
        self.cap_leverage();
        self.check_min_size()?;
        self.check_exposure(equity)?;
        self.check_correlation(equity)?;
        self.check_margin()
    }

    /// 1. Halt: the flag, or any breaker condition holding right now (defence in depth).
    fn check_halt(&mut self) -> Result<(), Stop> {
        let breaches = self.state.breaches(self.limits);
        if !self.state.halted && self.state.external_halt.is_none() && breaches.is_empty() {
            return Ok(());
        }
        if self.p.reduce_only {
            self.warnings
                .push("trading_halted: risk-reducing order allowed while halted".to_owned());
            return Ok(());
        }
        let halt_reason = self.state.halt_reason.as_ref().or(self.state.external_halt.as_ref());
        let reason = match (halt_reason, breaches.first()) {
            (Some(r), _) => r.clone(),
            (None, Some((_, detail))) => format!("circuit breaker: {detail}"),
            (None, None) => "trading halted".to_owned(),
        };
        Err(Stop {
            status: VerdictStatus::Halted,
            code: RejectionCode::TradingHalted,
            reason,
        })
    }

    /// A reduce-only order never adds exposure: it skips the entry checks but keeps the input
    /// and leverage checks.
    fn risk_reducing(&mut self) -> Result<(), Stop> {
        self.check_inputs()?;
        self.cap_leverage();
        Ok(())
    }

    /// 2. Cooldown.
    fn check_cooldown(&self) -> Result<(), Stop> {
        match self.state.cooldown_until {
            Some(until) if self.now < until => Err(reject(
                RejectionCode::CooldownActive,
                format!(
                    "in cooldown until {} ({})",
                    until.to_rfc3339(),
                    self.state.cooldown_reason.as_deref().unwrap_or("cooldown")
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Input sanity (lesson 25): positive size and price, stop and take-profit on the right side,
    /// leverage ≥ 1, confidence in [0, 1].
    fn check_inputs(&self) -> Result<(), Stop> {
        let p = &self.p;
        let bad = |why: String| Err(reject(RejectionCode::InvalidProposal, why));
        if p.size_usd <= Decimal::ZERO {
            return bad(format!("size_usd must be positive, got {}", p.size_usd));
        }
        if p.entry_price <= Decimal::ZERO {
            return bad(format!("entry_price must be positive, got {}", p.entry_price));
        }
        if p.leverage < 1 {
            return bad("leverage must be at least 1".to_owned());
        }
        if !(0.0..=1.0).contains(&p.confidence) {
            return bad(format!("confidence must be within [0, 1], got {}", p.confidence));
        }
        if let Some(stop) = p.stop_loss {
            let wrong_side = match p.side {
                Side::Buy => stop >= p.entry_price,
                Side::Sell => stop <= p.entry_price,
            };
            if stop <= Decimal::ZERO || wrong_side {
                return bad(format!(
                    "stop_loss {stop} is on the wrong side of entry {} for a {}",
                    p.entry_price, p.side
                ));
            }
        }
        if let Some(tp) = p.take_profit {
            let wrong_side = match p.side {
                Side::Buy => tp <= p.entry_price,
                Side::Sell => tp >= p.entry_price,
            };
            if tp <= Decimal::ZERO || wrong_side {
                return bad(format!(
                    "take_profit {tp} is on the wrong side of entry {} for a {}",
                    p.entry_price, p.side
                ));
            }
        }
        Ok(())
    }

    fn stop_required(&self) -> bool {
        match self.p.source {
            ProposalSource::Rebalance | ProposalSource::Hodl if self.p.leverage == 1 => false,
            ProposalSource::Manual => self.limits.manual_trades_require_stop,
            _ => self.limits.stop_loss_required,
        }
    }

    /// 3. Stop-loss present (unless exempt) and between the minimum and maximum distance.
    fn check_stop_loss(&mut self) -> Result<(), Stop> {
        let Some(distance) = self.p.stop_distance_pct() else {
            if self.stop_required() {
                return Err(reject(RejectionCode::StopLossRequired, "a stop-loss is required"));
            }
            self.warnings
                .push("no_stop_loss: spot order without a stop-loss".to_owned());
            return Ok(());
        };
        if distance < self.limits.min_stop_distance_pct {
            return Err(reject(
                RejectionCode::StopLossTooTight,
                format!(
                    "stop distance {:.3}% < {}%",
                    distance, self.limits.min_stop_distance_pct
                ),
            ));
        }
        if distance > self.limits.max_stop_distance_pct {
            return Err(reject(
                RejectionCode::StopLossTooWide,
                format!(
                    "stop distance {:.3}% > {}%",
                    distance, self.limits.max_stop_distance_pct
                ),
            ));
        }
        Ok(())
    }

    /// 4. Reward:risk when both a take-profit and a stop exist.
    fn check_reward_risk(&self) -> Result<(), Stop> {
        let (Some(stop), Some(tp)) = (self.p.stop_loss, self.p.take_profit) else {
            return Ok(());
        };
        let risk = (self.p.entry_price - stop).abs();
        let reward = (tp - self.p.entry_price).abs();
        if risk.is_zero() {
            return Ok(());
        }
        let rr = reward / risk;
        if rr < self.limits.min_reward_risk {
            return Err(reject(
                RejectionCode::RewardRiskTooLow,
                format!("reward:risk {:.2} < {}", rr, self.limits.min_reward_risk),
            ));
        }
        Ok(())
    }

    /// Step 5: the confidence floor by regime, loss streak and entry strictness. Rebalances
    /// are not signals and carry no confidence floor.
    fn check_confidence(&mut self) -> Result<(), Stop> {
        if self.p.source.is_holding() {
            return Ok(());
        }
        let strictness = self
            .state
            .regimes
            .get(self.p.symbol.as_str())
            .filter(|r| r.regime == self.p.regime)
            .map_or_else(|| default_strictness(self.p.regime), |r| r.entry_strictness);
        let required = required_confidence(
            self.p.regime,
            strictness_adjustment(strictness),
            self.state.consecutive_losses,
            self.limits,
        );
        self.metrics.required_confidence = Some(required);
        // A small tolerance keeps 0.55 + 0.05 from failing 0.60 on float rounding.
        if self.p.confidence + 1e-9 < required {
            return Err(reject(
                RejectionCode::ConfidenceTooLow,
                format!(
                    "confidence {:.2} < {:.2} required (regime={}, losses={}, strictness={})",
                    self.p.confidence, required, self.p.regime, self.state.consecutive_losses, strictness
                ),
            ));
        }
        Ok(())
    }

    fn shrink(&mut self, to: Decimal, why: String) {
        // Cents, rounded down so a cut never lands above its limit.
        let to = to.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::ToZero);
        if to < self.p.size_usd {
            self.modifications
                .push(format!("size_usd {} -> {}: {}", self.p.size_usd, to, why));
            self.p.size_usd = to;
        }
    }

    /// 6. Size ≤ max position % of equity; loss at the stop ≤ max risk % of equity.
    fn size_and_risk(&mut self, equity: Decimal) -> Result<(), Stop> {
        let max_size = equity * self.limits.max_position_pct / Decimal::ONE_HUNDRED;
        if self.p.size_usd > max_size {
            let why = format!(
                "{}: max {}% of equity",
                RejectionCode::PositionTooLarge,
                self.limits.max_position_pct
            );
            self.shrink(max_size, why);
        }
        if let Some(stop_pct) = self.p.stop_distance_pct().filter(|d| !d.is_zero()) {
            let lev = Decimal::from(self.p.leverage);
            let max_risk = equity * self.limits.max_risk_per_trade_pct / Decimal::ONE_HUNDRED;
            let risk = self.p.size_usd * lev * stop_pct / Decimal::ONE_HUNDRED;
            if risk > max_risk {
                let allowed = max_risk * Decimal::ONE_HUNDRED / (stop_pct * lev);
                let why = format!(
                    "{}: loss at stop {:.2} > {}% of equity ({:.2})",
                    RejectionCode::RiskPerTradeExceeded,
                    risk,
                    self.limits.max_risk_per_trade_pct,
                    max_risk
                );
                self.shrink(allowed, why);
            }
        }
        Ok(())
    }

    /// 7. Halve the size after the consecutive-loss breaker count.
    fn loss_streak_reduction(&mut self) {
        let losses = self.state.consecutive_losses;
        if losses >= self.limits.consecutive_losses_breaker {
            let keep = Decimal::ONE - self.limits.consecutive_loss_size_reduction_pct / Decimal::ONE_HUNDRED;
            let why = format!("consecutive_losses: {losses} losses in a row");
            self.shrink(self.p.size_usd * keep, why);
        }
    }

    /// 8. Reduce the size while the symbol's volatility spikes.
    fn volatility_reduction(&mut self) {
        if self.state.volatility_spike(self.p.symbol.as_str()) {
            let keep = Decimal::ONE - self.limits.volatility_size_reduction_pct / Decimal::ONE_HUNDRED;
            self.warnings
                .push(format!("volatility_spike: {} ATR spike active", self.p.symbol));
            self.shrink(self.p.size_usd * keep, "volatility_spike: ATR spike active".to_owned());
        }
    }

    /// 9. Leverage caps.
    fn cap_leverage(&mut self) {
        let cap = leverage_cap(self.p.regime, self.state, self.limits);
        self.metrics.leverage_cap = Some(cap);
        if self.p.leverage > cap {
            self.modifications.push(format!(
                "leverage {} -> {}: {} (global {}, regime {} {}, drawdown {:.2}%, losses {})",
                self.p.leverage,
                cap,
                RejectionCode::LeverageExceeded,
                self.limits.max_leverage,
                self.p.regime,
                self.limits.regime_leverage.cap(self.p.regime),
                self.state.drawdown_pct,
                self.state.consecutive_losses
            ));
            self.p.leverage = cap;
        }
    }

    fn check_min_size(&self) -> Result<(), Stop> {
        if self.p.size_usd < self.limits.min_position_usd {
            return Err(reject(
                RejectionCode::PositionTooSmall,
                format!(
                    "size {} after reductions is below the minimum {}",
                    self.p.size_usd, self.limits.min_position_usd
                ),
            ));
        }
        Ok(())
    }

    /// 10. Total exposure after the trade (notional, so leverage counts).
    fn check_exposure(&mut self, equity: Decimal) -> Result<(), Stop> {
        let current = self.state.total_exposure_pct();
        let added = pct(self.p.notional_usd(), equity);
        let after = current + added;
        self.metrics.exposure_after_pct = Some(after.round_dp(4));
        if let Some(stop_pct) = self.p.stop_distance_pct() {
            self.metrics.risk_per_trade_pct =
                Some((pct(self.p.notional_usd(), equity) * stop_pct / Decimal::ONE_HUNDRED).round_dp(4));
        }
        if after > self.limits.max_total_exposure_pct {
            return Err(reject(
                RejectionCode::ExposureExceeded,
                format!(
                    "exposure {:.2}% + ${} × {} = {:.2}% of equity > {}%",
                    current, self.p.size_usd, self.p.leverage, after, self.limits.max_total_exposure_pct
                ),
            ));
        }
        if after > self.limits.exposure_warning_pct {
            self.warnings
                .push(format!("high_exposure: {:.2}% of equity after the trade", after));
        }
        Ok(())
    }

    /// 11. Correlation-weighted exposure (reference §3.5, per-symbol exposure as a share of equity).
    fn check_correlation(&mut self, equity: Decimal) -> Result<(), Stop> {
        let sym = self.p.symbol.as_str();
        let existing: Decimal = self
            .state
            .exposure_by_symbol
            .keys()
            .map(|other| {
                (
                    self.limits.correlation(sym, other),
                    self.state.symbol_exposure_pct(other),
                )
            })
            .filter(|(corr, _)| *corr > self.limits.correlation_threshold)
            .map(|(corr, exp)| exp * corr)
            .sum();
        let total = existing + pct(self.p.notional_usd(), equity);
        self.metrics.correlated_exposure_pct = Some(total.round_dp(4));
        let limit = self.limits.max_correlated_exposure_pct;
        if total > limit {
            return Err(reject(
                RejectionCode::CorrelationExceeded,
                format!("correlated exposure {:.2}% > {}%", total, limit),
            ));
        }
        if total > limit * self.limits.correlation_warning_ratio {
            self.warnings
                .push(format!("high_correlation: correlated exposure {:.2}% of equity", total));
        }
        Ok(())
    }

    /// 12. The committed capital must fit the available margin.
    fn check_margin(&mut self) -> Result<(), Stop> {
        let need = self.p.size_usd;
        self.metrics.margin_required_usd = Some(need);
        let have = self.state.available_margin_usd;
        if need > have {
            return Err(reject(
                RejectionCode::InsufficientMargin,
                format!("need ${need}, have ${have}"),
            ));
        }
        Ok(())
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
    use crate::domain::{CorrelationId, EntryStrictness, Symbol};
    use crate::risk::types::{RegimeInfo, VolatilityInfo};
    use chrono::{Duration, TimeZone};
    use rust_decimal_macros::dec;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
    }

    fn sym(s: &str) -> Symbol {
        Symbol::parse(s).unwrap()
    }

    /// Equity 10 000, no exposure, all of it available as margin.
    fn state() -> RiskState {
        RiskState {
            equity_usd: Some(dec!(10000)),
            peak_equity_usd: dec!(10000),
            available_margin_usd: dec!(10000),
            daily_start_equity: Some(dec!(10000)),
            weekly_start_equity: Some(dec!(10000)),
            ..RiskState::default()
        }
    }

    /// BTC/USDT buy $1 000 at 45 000, stop 2 % (44 100), take-profit 4 % (46 800), 1×, trending bull.
    fn proposal() -> TradeProposal {
        TradeProposal {
            symbol: sym("BTC/USDT"),
            side: Side::Buy,
            size_usd: dec!(1000),
            entry_price: dec!(45000),
            stop_loss: Some(dec!(44100)),
            take_profit: Some(dec!(46800)),
            leverage: 1,
            confidence: 0.8,
            regime: Regime::TrendingBull,
            source: ProposalSource::Agent,
            correlation_id: CorrelationId::new(),
            reduce_only: false,
        }
    }

    type Edit<T> = fn(&mut T);

    struct Case {
        name: &'static str,
        p: Edit<TradeProposal>,
        s: Edit<RiskState>,
        status: VerdictStatus,
        code: Option<RejectionCode>,
        size: Option<Decimal>,
        leverage: Option<u32>,
    }

    const fn case(
        name: &'static str,
        p: Edit<TradeProposal>,
        s: Edit<RiskState>,
        status: VerdictStatus,
        code: Option<RejectionCode>,
    ) -> Case {
        Case {
            name,
            p,
            s,
            status,
            code,
            size: None,
            leverage: None,
        }
    }

    fn none<T>(_: &mut T) {}

    use RejectionCode as C;
    use VerdictStatus::*;

    #[test]
    fn pipeline_table() {
        let cases = vec![
            case("baseline approved", none, none, Approved, None),
            // ---- 1. halt comes first, before every other check
            case(
                "halted rejects before a missing stop",
                |p| p.stop_loss = None,
                |s| {
                    s.halted = true;
                    s.halt_reason = Some("circuit breaker: daily_loss".into());
                },
                Halted,
                Some(C::TradingHalted),
            ),
            case(
                "breaker condition halts even without the flag",
                none,
                |s| s.daily_pnl = dec!(-500),
                Halted,
                Some(C::TradingHalted),
            ),
            case(
                "halted before cooldown",
                none,
                |s| {
                    s.halted = true;
                    s.cooldown_until = Some(now() + Duration::minutes(5));
                },
                Halted,
                Some(C::TradingHalted),
            ),
            // ---- 2. cooldown
            case(
                "cooldown rejects before a missing stop",
                |p| p.stop_loss = None,
                |s| s.cooldown_until = Some(now() + Duration::minutes(1)),
                Rejected,
                Some(C::CooldownActive),
            ),
            case(
                "expired cooldown passes",
                none,
                |s| s.cooldown_until = Some(now()),
                Approved,
                None,
            ),
            // ---- input checks
            case(
                "zero size",
                |p| p.size_usd = dec!(0),
                none,
                Rejected,
                Some(C::InvalidProposal),
            ),
            case(
                "zero entry",
                |p| p.entry_price = dec!(0),
                none,
                Rejected,
                Some(C::InvalidProposal),
            ),
            case(
                "zero leverage",
                |p| p.leverage = 0,
                none,
                Rejected,
                Some(C::InvalidProposal),
            ),
            case(
                "confidence above 1",
                |p| p.confidence = 1.5,
                none,
                Rejected,
                Some(C::InvalidProposal),
            ),
            case(
                "buy stop above entry",
                |p| p.stop_loss = Some(dec!(45500)),
                none,
                Rejected,
                Some(C::InvalidProposal),
            ),
            case(
                "sell take-profit above entry",
                |p| {
                    p.side = Side::Sell;
                    p.stop_loss = Some(dec!(45900));
                    p.take_profit = Some(dec!(46000));
                },
                none,
                Rejected,
                Some(C::InvalidProposal),
            ),
            case(
                "sell with stop above and target below is fine",
                |p| {
                    p.side = Side::Sell;
                    p.stop_loss = Some(dec!(45900));
                    p.take_profit = Some(dec!(43200));
                },
                none,
                Approved,
                None,
            ),
            case(
                "no equity known",
                none,
                |s| s.equity_usd = None,
                Rejected,
                Some(C::EquityUnavailable),
            ),
            case(
                "negative equity",
                none,
                |s| s.equity_usd = Some(dec!(-100)),
                Rejected,
                Some(C::EquityUnavailable),
            ),
            // ---- 3. stop-loss
            case(
                "missing stop",
                |p| p.stop_loss = None,
                none,
                Rejected,
                Some(C::StopLossRequired),
            ),
            case(
                "rebalance spot without stop is exempt",
                |p| {
                    p.source = ProposalSource::Rebalance;
                    p.stop_loss = None;
                    p.take_profit = None;
                },
                none,
                Approved,
                None,
            ),
            case(
                "rebalance with leverage needs a stop",
                |p| {
                    p.source = ProposalSource::Rebalance;
                    p.stop_loss = None;
                    p.leverage = 2;
                },
                none,
                Rejected,
                Some(C::StopLossRequired),
            ),
            case(
                "manual without stop follows the flag (required by default)",
                |p| {
                    p.source = ProposalSource::Manual;
                    p.stop_loss = None;
                },
                none,
                Rejected,
                Some(C::StopLossRequired),
            ),
            case(
                "stop 0.4 % is too tight",
                |p| p.stop_loss = Some(dec!(44820)),
                none,
                Rejected,
                Some(C::StopLossTooTight),
            ),
            case(
                "stop exactly 0.5 % passes",
                |p| p.stop_loss = Some(dec!(44775)),
                none,
                Approved,
                None,
            ),
            case(
                "stop exactly 5 % passes",
                |p| {
                    p.stop_loss = Some(dec!(42750));
                    p.take_profit = Some(dec!(48375));
                },
                none,
                Approved,
                None,
            ),
            case(
                "stop 5.1 % is too wide",
                |p| {
                    p.stop_loss = Some(dec!(42705));
                    p.take_profit = Some(dec!(50000));
                },
                none,
                Rejected,
                Some(C::StopLossTooWide),
            ),
            case(
                "too tight stop is named before a poor reward:risk",
                |p| {
                    p.stop_loss = Some(dec!(44900));
                    p.take_profit = Some(dec!(45010));
                },
                none,
                Rejected,
                Some(C::StopLossTooTight),
            ),
            // ---- 4. reward:risk (stop 900 away)
            case(
                "reward:risk 1.4 rejects",
                |p| p.take_profit = Some(dec!(46260)),
                none,
                Rejected,
                Some(C::RewardRiskTooLow),
            ),
            case(
                "reward:risk exactly 1.5 passes",
                |p| p.take_profit = Some(dec!(46350)),
                none,
                Approved,
                None,
            ),
            case(
                "no take-profit skips reward:risk",
                |p| p.take_profit = None,
                none,
                Approved,
                None,
            ),
            // ---- 5. confidence
            case(
                "trending 0.54 < 0.55",
                |p| p.confidence = 0.54,
                none,
                Rejected,
                Some(C::ConfidenceTooLow),
            ),
            case("trending 0.55 passes", |p| p.confidence = 0.55, none, Approved, None),
            case(
                "ranging needs 0.60 + strict 0.05",
                |p| {
                    p.regime = Regime::Ranging;
                    p.confidence = 0.64;
                },
                none,
                Rejected,
                Some(C::ConfidenceTooLow),
            ),
            case(
                "choppy needs 0.85",
                |p| {
                    p.regime = Regime::Choppy;
                    p.confidence = 0.84;
                },
                none,
                Rejected,
                Some(C::ConfidenceTooLow),
            ),
            case(
                "3 losses raise the floor by 0.10",
                |p| p.confidence = 0.64,
                |s| s.consecutive_losses = 3,
                Rejected,
                Some(C::ConfidenceTooLow),
            ),
            case(
                "5 losses raise the floor by 0.20",
                |p| p.confidence = 0.74,
                |s| s.consecutive_losses = 5,
                Rejected,
                Some(C::ConfidenceTooLow),
            ),
            case(
                "relaxed strictness from the regime update lowers the floor",
                |p| p.confidence = 0.50,
                |s| {
                    s.regimes.insert(
                        "BTC/USDT".into(),
                        RegimeInfo {
                            regime: Regime::TrendingBull,
                            entry_strictness: EntryStrictness::Relaxed,
                            at: now(),
                        },
                    );
                },
                Approved,
                None,
            ),
            case(
                "confidence rejects before size is reduced",
                |p| {
                    p.confidence = 0.3;
                    p.size_usd = dec!(3000);
                },
                none,
                Rejected,
                Some(C::ConfidenceTooLow),
            ),
            case(
                "rebalance has no confidence floor",
                |p| {
                    p.source = ProposalSource::Rebalance;
                    p.confidence = 0.1;
                },
                none,
                Approved,
                None,
            ),
            // ---- 6. size and risk
            Case {
                size: Some(dec!(2000)),
                ..case(
                    "size 30 % is cut to 20 %",
                    |p| p.size_usd = dec!(3000),
                    none,
                    Modified,
                    None,
                )
            },
            Case {
                // 2 000 × 3 × 5 % = 300 (3 %) → 200 / (5 % × 3) = 1 333.33
                size: Some(dec!(1333.33)),
                ..case(
                    "risk 3 % of equity is shrunk to 2 %",
                    |p| {
                        p.size_usd = dec!(2000);
                        p.leverage = 3;
                        p.stop_loss = Some(dec!(42750));
                        p.take_profit = Some(dec!(49500));
                    },
                    none,
                    Modified,
                    None,
                )
            },
            // ---- 7. consecutive-loss halving (and its leverage cap)
            Case {
                size: Some(dec!(500)),
                leverage: Some(1),
                ..case(
                    "5 losses halve the size",
                    |p| p.leverage = 3,
                    |s| s.consecutive_losses = 5,
                    Modified,
                    None,
                )
            },
            Case {
                size: Some(dec!(1000)),
                ..case(
                    "size halving after the cap",
                    |p| p.size_usd = dec!(5000),
                    |s| s.consecutive_losses = 5,
                    Modified,
                    None,
                )
            },
            // ---- 8. volatility spike
            Case {
                size: Some(dec!(500)),
                ..case(
                    "spike on the symbol halves the size",
                    none,
                    |s| {
                        s.volatility.insert(
                            "BTC/USDT".into(),
                            VolatilityInfo {
                                spike_active: true,
                                ..Default::default()
                            },
                        );
                    },
                    Modified,
                    None,
                )
            },
            case(
                "spike on another symbol changes nothing",
                none,
                |s| {
                    s.volatility.insert(
                        "XRP/USDT".into(),
                        VolatilityInfo {
                            spike_active: true,
                            ..Default::default()
                        },
                    );
                },
                Approved,
                None,
            ),
            // ---- 9. leverage caps
            case(
                "5× in trending bull is allowed ($700 × 5 = 35 %)",
                |p| {
                    p.leverage = 5;
                    p.size_usd = dec!(700);
                },
                none,
                Approved,
                None,
            ),
            case(
                "correlation counts the notional: a lone $1 000 at 5× is 50 % > 40 %",
                |p| p.leverage = 5,
                none,
                Rejected,
                Some(C::CorrelationExceeded),
            ),
            Case {
                leverage: Some(5),
                ..case(
                    "global cap 5",
                    |p| {
                        p.leverage = 8;
                        p.size_usd = dec!(500);
                    },
                    none,
                    Modified,
                    None,
                )
            },
            Case {
                leverage: Some(2),
                ..case(
                    "ranging caps at 2",
                    |p| {
                        p.regime = Regime::Ranging;
                        p.leverage = 4;
                    },
                    none,
                    Modified,
                    None,
                )
            },
            Case {
                leverage: Some(3),
                ..case(
                    "drawdown 5 % caps at 3",
                    |p| p.leverage = 5,
                    |s| s.drawdown_pct = dec!(5),
                    Modified,
                    None,
                )
            },
            Case {
                leverage: Some(2),
                ..case(
                    "drawdown 12 % caps at 2",
                    |p| p.leverage = 5,
                    |s| s.drawdown_pct = dec!(12),
                    Modified,
                    None,
                )
            },
            Case {
                leverage: Some(1),
                ..case(
                    "drawdown 16 % caps at 1",
                    |p| p.leverage = 5,
                    |s| s.drawdown_pct = dec!(16),
                    Modified,
                    None,
                )
            },
            Case {
                leverage: Some(2),
                ..case(
                    "3 losses cap at 2",
                    |p| {
                        p.leverage = 5;
                        p.confidence = 0.9;
                    },
                    |s| s.consecutive_losses = 3,
                    Modified,
                    None,
                )
            },
            // ---- 10. exposure (notional: size × leverage)
            case(
                "exposure 70 % + 10 % = 80 % passes",
                none,
                |s| {
                    s.open_exposure_usd = dec!(7000);
                    s.exposure_by_symbol.insert("ETH/USDT".into(), dec!(7000));
                },
                Approved,
                None,
            ),
            case(
                "exposure 71 % + 10 % rejects",
                none,
                |s| {
                    s.open_exposure_usd = dec!(7100);
                    s.exposure_by_symbol.insert("ETH/USDT".into(), dec!(7100));
                },
                Rejected,
                Some(C::ExposureExceeded),
            ),
            case(
                "leverage counts: $1 000 at 5× adds 50 %",
                |p| p.leverage = 5,
                |s| {
                    s.open_exposure_usd = dec!(3100);
                    s.exposure_by_symbol.insert("ETH/USDT".into(), dec!(3100));
                },
                Rejected,
                Some(C::ExposureExceeded),
            ),
            Case {
                size: Some(dec!(2000)),
                ..case(
                    "exposure is checked after the size cut (60 % + 20 %, not + 30 %)",
                    |p| p.size_usd = dec!(3000),
                    |s| {
                        s.open_exposure_usd = dec!(6000);
                        s.exposure_by_symbol.insert("ETH/USDT".into(), dec!(6000));
                    },
                    Modified,
                    None,
                )
            },
            Case {
                leverage: Some(2),
                ..case(
                    "exposure is checked after the leverage cut",
                    |p| {
                        p.regime = Regime::Ranging;
                        p.confidence = 0.9;
                        p.leverage = 4;
                    },
                    |s| {
                        s.open_exposure_usd = dec!(6000);
                        s.exposure_by_symbol.insert("ETH/USDT".into(), dec!(6000));
                    },
                    Modified,
                    None,
                )
            },
            // ---- 11. correlation (§3.5 examples)
            case(
                "BTC 30 % then XRP/USDT $2 000: 22.5 + 20 = 42.5 > 40",
                |p| {
                    p.symbol = sym("XRP/USDT");
                    p.size_usd = dec!(2000);
                    p.entry_price = dec!(2.00);
                    p.stop_loss = Some(dec!(1.96));
                    p.take_profit = Some(dec!(2.08));
                },
                |s| {
                    s.open_exposure_usd = dec!(3000);
                    s.exposure_by_symbol.insert("BTC/USDT".into(), dec!(3000));
                },
                Rejected,
                Some(C::CorrelationExceeded),
            ),
            case(
                "uncorrelated exposure does not count",
                |p| p.size_usd = dec!(2000),
                |s| {
                    s.open_exposure_usd = dec!(3000);
                    s.exposure_by_symbol.insert("ETH/USDT".into(), dec!(3000));
                },
                Approved,
                None,
            ),
            // ---- 12. margin
            case(
                "margin short",
                none,
                |s| s.available_margin_usd = dec!(999),
                Rejected,
                Some(C::InsufficientMargin),
            ),
            Case {
                size: Some(dec!(2000)),
                ..case(
                    "margin is checked after the size cut",
                    |p| p.size_usd = dec!(3000),
                    |s| s.available_margin_usd = dec!(2000),
                    Modified,
                    None,
                )
            },
            // ---- minimum size
            case(
                "reductions below the minimum reject",
                |p| p.size_usd = dec!(15),
                |s| s.consecutive_losses = 5,
                Rejected,
                Some(C::PositionTooSmall),
            ),
            // ---- reduce-only orders
            case(
                "reduce-only passes a halt",
                |p| {
                    p.reduce_only = true;
                    p.stop_loss = None;
                },
                |s| s.halted = true,
                Approved,
                None,
            ),
            Case {
                leverage: Some(1),
                ..case(
                    "reduce-only still gets the leverage cap",
                    |p| {
                        p.reduce_only = true;
                        p.regime = Regime::Choppy;
                        p.leverage = 3;
                    },
                    none,
                    Modified,
                    None,
                )
            },
        ];

        for c in cases {
            let mut p = proposal();
            (c.p)(&mut p);
            let mut s = state();
            (c.s)(&mut s);
            let v = validate(&p, &s, &RiskLimits::default(), now());
            assert_eq!(v.status, c.status, "{}: {v:?}", c.name);
            assert_eq!(v.rejections.first().copied(), c.code, "{}: {v:?}", c.name);
            assert!(
                v.rejections.len() <= 1,
                "{}: the first rejection ends the pipeline",
                c.name
            );
            if let Some(size) = c.size {
                assert_eq!(v.proposal.size_usd, size, "{}: size", c.name);
            }
            if let Some(lev) = c.leverage {
                assert_eq!(v.proposal.leverage, lev, "{}: leverage", c.name);
            }
            match v.status {
                Modified => assert!(!v.modifications.is_empty(), "{}: modifications must say why", c.name),
                Approved => {
                    assert!(v.modifications.is_empty(), "{}", c.name);
                    assert_eq!(v.proposal, p, "{}: approved proposal unchanged", c.name);
                }
                Rejected | Halted => {
                    assert!(v.reason.is_some(), "{}: a rejection carries a reason", c.name);
                    assert_eq!(v.proposal, p, "{}: refused proposal returned as submitted", c.name);
                }
            }
        }
    }

    #[test]
    fn modifications_name_their_reason() {
        let mut p = proposal();
        p.size_usd = dec!(3000);
        p.leverage = 4;
        p.regime = Regime::Ranging;
        p.confidence = 0.9;
        let v = validate(&p, &state(), &RiskLimits::default(), now());
        assert_eq!(v.status, Modified, "{v:?}");
        assert!(v
            .modifications
            .iter()
            .any(|m| m.starts_with("size_usd 3000 -> 2000") && m.contains("position_too_large")));
        assert!(v
            .modifications
            .iter()
            .any(|m| m.starts_with("leverage 4 -> 2") && m.contains("leverage_exceeded")));
        // 2 000 × 2 = 40 % of equity after both cuts.
        assert_eq!(v.metrics.exposure_after_pct, Some(dec!(40)));
    }

    #[test]
    fn correlation_within_a_raised_limit_is_approved() {
        // §3.5 second example: BTC 15 %, XRP $500, limit 50 → 11.25 + 5 = 16.25.
        let mut p = proposal();
        p.symbol = sym("XRP/USDT");
        p.size_usd = dec!(500);
        p.entry_price = dec!(2.00);
        p.stop_loss = Some(dec!(1.96));
        p.take_profit = Some(dec!(2.08));
        let mut s = state();
        s.open_exposure_usd = dec!(1500);
        s.exposure_by_symbol.insert("BTC/USDT".into(), dec!(1500));
        let limits = RiskLimits {
            max_correlated_exposure_pct: dec!(50),
            ..RiskLimits::default()
        };
        let v = validate(&p, &s, &limits, now());
        assert_eq!(v.status, Approved, "{v:?}");
        assert_eq!(v.metrics.correlated_exposure_pct, Some(dec!(16.25)));
    }

    #[test]
    fn high_correlation_warns_above_80_percent_of_the_limit() {
        let mut p = proposal();
        p.symbol = sym("XRP/USDT");
        p.size_usd = dec!(1000);
        p.entry_price = dec!(2.00);
        p.stop_loss = Some(dec!(1.96));
        p.take_profit = Some(dec!(2.08));
        let mut s = state();
        s.open_exposure_usd = dec!(3000);
        s.exposure_by_symbol.insert("BTC/USDT".into(), dec!(3000));
        let v = validate(&p, &s, &RiskLimits::default(), now()); // 22.5 + 10 = 32.5
        assert_eq!(v.status, Approved);
        assert!(
            v.warnings.iter().any(|w| w.starts_with("high_correlation")),
            "{:?}",
            v.warnings
        );
    }

    #[test]
    fn manual_trades_without_stop_allowed_when_configured() {
        let mut p = proposal();
        p.source = ProposalSource::Manual;
        p.stop_loss = None;
        let limits = RiskLimits {
            manual_trades_require_stop: false,
            ..RiskLimits::default()
        };
        let v = validate(&p, &state(), &limits, now());
        assert_eq!(v.status, Approved, "{v:?}");
        // Agents still need one under the same limits.
        p.source = ProposalSource::Agent;
        assert_eq!(
            validate(&p, &state(), &limits, now()).rejections,
            vec![C::StopLossRequired]
        );
    }

    #[test]
    fn required_confidence_table() {
        let l = RiskLimits::default();
        let cases = [
            (Regime::TrendingBull, EntryStrictness::Normal, 0, 0.55),
            (Regime::TrendingBear, EntryStrictness::Normal, 3, 0.65),
            (Regime::Ranging, EntryStrictness::Strict, 0, 0.65),
            (Regime::VolatileBull, EntryStrictness::Strict, 5, 0.90),
            (Regime::Choppy, EntryStrictness::VeryStrict, 5, 1.0),
            (Regime::Unknown, EntryStrictness::Normal, 0, 0.70),
            (Regime::BreakoutPotential, EntryStrictness::Relaxed, 0, 0.55),
        ];
        for (regime, strictness, losses, want) in cases {
            let got = required_confidence(regime, strictness_adjustment(strictness), losses, &l);
            assert!(
                (got - want).abs() < 1e-9,
                "{regime} {strictness} {losses}: {got} != {want}"
            );
        }
    }

    #[test]
    fn leverage_cap_table() {
        let l = RiskLimits::default();
        let cases: [(Regime, Decimal, u32, u32); 8] = [
            (Regime::TrendingBull, dec!(0), 0, 5),
            (Regime::TrendingBear, dec!(0), 0, 3),
            (Regime::Choppy, dec!(0), 0, 1),
            (Regime::Unknown, dec!(0), 0, 1),
            (Regime::TrendingBull, dec!(4.99), 0, 5),
            (Regime::TrendingBull, dec!(10), 0, 2),
            (Regime::TrendingBull, dec!(0), 3, 2),
            (Regime::TrendingBull, dec!(0), 5, 1),
        ];
        for (regime, dd, losses, want) in cases {
            let s = RiskState {
                drawdown_pct: dd,
                consecutive_losses: losses,
                ..state()
            };
            assert_eq!(leverage_cap(regime, &s, &l), want, "{regime} dd={dd} losses={losses}");
        }
    }

    #[test]
    fn verdict_serialises_with_snake_case_codes() {
        let mut p = proposal();
        p.stop_loss = None;
        let v = validate(&p, &state(), &RiskLimits::default(), now());
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["status"], "rejected");
        assert_eq!(json["rejections"][0], "stop_loss_required");
        assert_eq!(json["proposal"]["size_usd"], "1000");
        let back: RiskVerdict = serde_json::from_value(json).unwrap();
        assert_eq!(back.rejections, vec![C::StopLossRequired]);
    }

    #[test]
    fn limits_deserialise_with_reference_defaults() {
        let l: RiskLimits = serde_json::from_str(r#"{"max_leverage": 3}"#).unwrap();
        assert_eq!(l.max_leverage, 3);
        assert_eq!(l.max_position_pct, dec!(20));
        assert_eq!(l.max_risk_per_trade_pct, dec!(2));
        assert_eq!(l.max_total_exposure_pct, dec!(80));
        assert_eq!(l.max_correlated_exposure_pct, dec!(40));
        assert_eq!(l.daily_loss_pct, dec!(5));
        assert_eq!(l.weekly_loss_pct, dec!(10));
        assert_eq!(l.max_drawdown_pct, dec!(20));
        assert_eq!(l.correlation("XRP/BTC", "XRP/USDT"), dec!(0.85));
        assert_eq!(l.correlation("ETH/USDT", "XRP/USDT"), dec!(0));
    }

    /// Prints validation latency; run with `--ignored --nocapture` (debug builds are slower).
    #[test]
    #[ignore = "timing report, not a check"]
    fn latency_report() {
        let mut s = state();
        s.open_exposure_usd = dec!(3000);
        s.exposure_by_symbol.insert("BTC/USDT".into(), dec!(1500));
        s.exposure_by_symbol.insert("XRP/USDT".into(), dec!(1500));
        let (p, l) = (proposal(), RiskLimits::default());
        let mut micros: Vec<f64> = (0..10_000)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(validate(&p, &s, &l, now()));
                t.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        micros.sort_by(f64::total_cmp);
        println!("validate p50 {:.2} µs, p99 {:.2} µs", micros[5_000], micros[9_900]);
    }
}
