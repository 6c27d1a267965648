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
use crate::domain::Regime;
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
            if stop <= Decimal::ZERO || !p.side.position().stop_protects(p.entry_price, stop) {
                return bad(format!(
                    "stop_loss {stop} is on the wrong side of entry {} for a {}",
                    p.entry_price, p.side
                ));
            }
        }
        if let Some(tp) = p.take_profit {
            if tp <= Decimal::ZERO || !p.side.position().take_profit_wins(p.entry_price, tp) {
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
mod tests;
