//! The asynchronous decision flows the coordinator runs outside its mailbox: a trading signal from
//! consensus to execution, closing the matching position, and the emergency actions. Every step is
//! recorded as a `DecisionRecord` under the chain's correlation id.

use super::degradation::DegradationLevel;
use super::schedule::SignalSettings;
use super::signals::{
    apply_modifications, build_proposal, consensus, detect_conflicts, deterministic_resolution, model_eligible,
    regime_change_conflict, ConflictRequest, ConflictResolution, ConflictResolver, Inputs, Market, ResolutionAction,
};
use crate::agents::api::{AgentName, RunAnalysis};
use crate::bus::Bus;
use crate::clock::SharedClock;
use crate::domain::{CorrelationId, PositionSide, PositionStatus, Priority, Severity, Symbol, TradeAction};
use crate::execution::api::{CloseAllPositions, ClosePosition, ExecuteTrade, ExecutionError, GetPositions};
use crate::messages::{AlertType, EventMeta, RiskAlert, SystemEvent, TradingSignal};
use crate::ports::DecisionRecord;
use crate::risk::{verdict_of, ApproveTrade};
use actix::prelude::*;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Asks the rebalancer to run its portfolio check.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<(), String>")]
pub struct RunPortfolioCheck {
    pub correlation_id: CorrelationId,
}

/// The execution side's handlers.
#[derive(Clone)]
pub struct ExecutionLinks {
    pub execute: Recipient<ExecuteTrade>,
    pub close: Recipient<ClosePosition>,
    pub close_all: Recipient<CloseAllPositions>,
    pub positions: Recipient<GetPositions>,
}

/// Everything the coordinator talks to; connected at wiring time (all optional until then).
#[derive(Clone, Default)]
pub struct CoordinatorLinks {
    pub agents: BTreeMap<AgentName, Recipient<RunAnalysis>>,
    pub portfolio_check: Option<Recipient<RunPortfolioCheck>>,
    pub risk: Option<Recipient<ApproveTrade>>,
    pub execution: Option<ExecutionLinks>,
    /// The model chain for conflicts; absent → the deterministic resolver.
    pub resolver: Option<Arc<dyn ConflictResolver>>,
}

impl CoordinatorLinks {
    /// Takes every link `other` sets; keeps the rest.
    pub fn merge(&mut self, other: CoordinatorLinks) {
        self.agents.extend(other.agents);
        if other.portfolio_check.is_some() {
            self.portfolio_check = other.portfolio_check;
        }
        if other.risk.is_some() {
            self.risk = other.risk;
        }
        if other.execution.is_some() {
            self.execution = other.execution;
        }
        if other.resolver.is_some() {
            self.resolver = other.resolver;
        }
    }
}

/// What one flow needs, cloned out of the actor.
#[derive(Clone)]
pub(crate) struct FlowDeps {
    pub links: CoordinatorLinks,
    pub audit: Option<super::audit::AuditWriter>,
    pub bus: Bus,
    pub clock: SharedClock,
    pub settings: SignalSettings,
}

/// How a signal ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SignalOutcome {
    Dropped,
    Waited {
        conflicts: usize,
    },
    Rejected {
        conflicts: usize,
    },
    Routed {
        conflicts: usize,
    },
    /// Execution kept failing after every retry: the symbol is paused.
    ExecutionFailed {
        conflicts: usize,
        error: String,
    },
    Closed(usize),
}

impl FlowDeps {
    /// Queues a decision record for the ordered writer; never waits for the store.
    pub async fn record(&self, cid: CorrelationId, stage: &str, symbol: Option<&Symbol>, detail: serde_json::Value) {
        let Some(audit) = &self.audit else { return };
        let rec = DecisionRecord {
            correlation_id: cid,
            timestamp: self.clock.now(),
            stage: stage.to_owned(),
            symbol: symbol.map(ToString::to_string),
            detail,
        };
        audit.record(rec);
    }

    /// Waits until the decision records queued so far are written: called once before an order
    /// request goes out, so the trail shows the coordinator's stages before the execution
    /// manager's (which its own writer stores), in causal order.
    pub async fn trail_written(&self) {
        if let Some(audit) = &self.audit {
            audit.flush().await;
        }
    }

    pub fn system_event(&self, event: &str, cid: CorrelationId, priority: Priority, details: serde_json::Value) {
        self.bus.system_events.publish(SystemEvent {
            meta: EventMeta::caused_by("coordinator", self.clock.now(), cid).with_priority(priority),
            event: event.to_owned(),
            details,
        });
    }

    async fn resolve(&self, req: ConflictRequest, level: DegradationLevel) -> ConflictResolution {
        let fallback = |why: Option<String>| {
            let mut r = deterministic_resolution(&req.conflicts, req.adjusted_confidence, level, &self.settings);
            if let Some(why) = why {
                tracing::warn!(cid = %req.signal.meta.correlation_id, why, "conflict resolved by the deterministic rules");
                r.reasoning = format!("{} (fallback: {why})", r.reasoning);
                r.fallback = Some(why);
            }
            r
        };
        let Some(resolver) = self
            .links
            .resolver
            .clone()
            .filter(|_| model_eligible(&req.conflicts, level))
        else {
            return fallback(None);
        };
        let wait = Duration::from_millis(self.settings.resolution_timeout_ms);
        match actix::clock::timeout(wait, resolver.resolve(req.clone())).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => fallback(Some(format!("model failed: {e}"))),
            Err(_) => fallback(Some(format!(
                "model did not answer within {} ms",
                self.settings.resolution_timeout_ms
            ))),
        }
    }

    /// BUY/SELL: consensus → conflicts → resolution → proposal → risk → execution.
    pub async fn process_signal(
        self,
        signal: TradingSignal,
        inputs: Inputs,
        market: Market,
        level: DegradationLevel,
    ) -> SignalOutcome {
        let cid = signal.meta.correlation_id;
        let sym = Some(&signal.symbol);
        self.record(cid, "signal", sym, serde_json::to_value(&signal).unwrap_or_default())
            .await;
        if matches!(signal.action, TradeAction::CloseLong | TradeAction::CloseShort) {
            return SignalOutcome::Closed(self.close_matching(&signal).await);
        }
        let c = consensus(signal.action, signal.confidence, &inputs, &self.settings);
        self.record(cid, "consensus", sym, serde_json::to_value(&c).unwrap_or_default())
            .await;
        let mut conflicts = detect_conflicts(signal.action, &inputs, &self.settings);
        if let Some(regime) = inputs
            .regime
            .as_ref()
            .filter(|r| r.previous_regime.is_some_and(|p| p != r.regime))
        {
            let open = self
                .open_positions(Some(signal.symbol.clone()))
                .await
                .map_or(0, |p| p.len());
            conflicts.extend(regime_change_conflict(regime, open));
        }
        let n = conflicts.len();
        let mut modifications = None;
        if !conflicts.is_empty() {
            self.record(cid, "conflict", sym, serde_json::json!({ "conflicts": conflicts }))
                .await;
            let req = ConflictRequest {
                signal: signal.clone(),
                adjusted_confidence: c.adjusted_confidence,
                conflicts,
            };
            let resolution = self.resolve(req, level).await;
            self.record(
                cid,
                "resolution",
                sym,
                serde_json::to_value(&resolution).unwrap_or_default(),
            )
            .await;
            if !resolution.should_proceed() {
                return SignalOutcome::Waited { conflicts: n };
            }
            if resolution.action == ResolutionAction::Modify {
                modifications = resolution.modifications;
            }
        }
        let mut proposal = match build_proposal(
            &signal,
            c.adjusted_confidence,
            inputs.regime.as_ref(),
            &market,
            self.clock.now(),
        ) {
            Ok(p) => p,
            Err(why) => {
                self.record(cid, "proposal", sym, serde_json::json!({ "error": why }))
                    .await;
                return SignalOutcome::Dropped;
            }
        };
        if let Some(m) = &modifications {
            apply_modifications(&mut proposal, m);
        }
        self.record(
            cid,
            "proposal",
            sym,
            serde_json::to_value(&proposal).unwrap_or_default(),
        )
        .await;
        let Some(risk) = self.links.risk.clone() else {
            self.record(
                cid,
                "risk_verdict",
                sym,
                serde_json::json!({ "error": "risk engine not connected" }),
            )
            .await;
            return SignalOutcome::Dropped;
        };
        let judgement = match risk
            .send(ApproveTrade(proposal))
            .timeout(Duration::from_millis(self.settings.risk_timeout_ms))
            .await
        {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                self.record(cid, "risk_verdict", sym, serde_json::json!({ "error": e.to_string() }))
                    .await;
                return SignalOutcome::Dropped;
            }
            Err(e) => {
                let error = match e {
                    MailboxError::Timeout => format!(
                        "no verdict from the risk engine within {} ms; signal dropped",
                        self.settings.risk_timeout_ms
                    ),
                    other => other.to_string(),
                };
                self.timed_out(cid, &signal.symbol, &error);
                self.record(cid, "risk_verdict", sym, serde_json::json!({ "error": error }))
                    .await;
                return SignalOutcome::Dropped;
            }
        };
        self.record(
            cid,
            "risk_verdict",
            sym,
            serde_json::to_value(verdict_of(&judgement)).unwrap_or_default(),
        )
        .await;
        let approved = match judgement {
            Ok(approved) => approved,
            Err(refused) => {
                let verdict = refused.verdict();
                let codes: Vec<&str> = verdict.rejections.iter().map(|r| r.as_str()).collect();
                self.bus.risk_alerts.publish(RiskAlert {
                    meta: EventMeta::caused_by("coordinator", self.clock.now(), cid).with_priority(Priority::High),
                    alert_type: AlertType::TradeRejected,
                    severity: Severity::Medium,
                    message: format!("{} {} rejected: {}", signal.action, signal.symbol, codes.join(", ")),
                    action_required: None,
                    breach: None,
                    symbol: Some(signal.symbol.clone()),
                });
                return SignalOutcome::Rejected { conflicts: n };
            }
        };
        let Some(exec) = self.links.execution.clone() else {
            self.record(
                cid,
                "execution_requested",
                sym,
                serde_json::json!({ "error": "execution not connected" }),
            )
            .await;
            return SignalOutcome::Dropped;
        };
        let req = ExecuteTrade {
            note: Some(format!("{} signal", signal.action)),
            ..ExecuteTrade::limit(approved)
        };
        self.record(
            cid,
            "execution_requested",
            sym,
            serde_json::to_value(req.proposal()).unwrap_or_default(),
        )
        .await;
        self.trail_written().await;
        let mut delays = self.settings.execution_retry_delays_ms.clone().into_iter();
        let mut attempt = 1u32;
        loop {
            let sent = exec
                .execute
                .send(req.clone())
                .timeout(Duration::from_millis(self.settings.execution_timeout_ms))
                .await;
            let (retryable, detail) = match sent {
                Ok(Ok(r)) => (None, serde_json::json!({ "ok": true, "attempt": attempt, "result": r })),
                // The manager may have sent the order: never resent, reconciled by client id.
                Err(MailboxError::Timeout) => {
                    let error = format!(
                        "no answer from the execution manager within {} ms; the order's outcome is unknown \
                         and the manager reconciles it by client id",
                        self.settings.execution_timeout_ms
                    );
                    self.timed_out(cid, &signal.symbol, &error);
                    let detail = serde_json::json!({ "ok": false, "attempt": attempt, "error": error });
                    self.record(cid, "execution_result", sym, detail).await;
                    return SignalOutcome::ExecutionFailed { conflicts: n, error };
                }
                // Nothing was placed: safe to retry.
                Ok(Err(e @ ExecutionError::Unavailable(_))) => (
                    Some(e.to_string()),
                    serde_json::json!({ "ok": false, "attempt": attempt, "error": e }),
                ),
                Err(e) => (
                    Some(e.to_string()),
                    serde_json::json!({ "ok": false, "attempt": attempt, "error": e.to_string() }),
                ),
                // Refused or unknown outcome (reconciled by client id): never resent.
                Ok(Err(e)) => (None, serde_json::json!({ "ok": false, "attempt": attempt, "error": e })),
            };
            self.record(cid, "execution_result", sym, detail).await;
            let Some(error) = retryable else {
                return SignalOutcome::Routed { conflicts: n };
            };
            match delays.next() {
                Some(ms) => {
                    tracing::warn!(%cid, attempt, error, retry_in_ms = ms, "execution failed; retrying");
                    actix::clock::sleep(Duration::from_millis(ms)).await;
                    attempt += 1;
                }
                None => return SignalOutcome::ExecutionFailed { conflicts: n, error },
            }
        }
    }

    /// A request to the risk engine or the execution manager failed or got no answer in time:
    /// an operator must look.
    fn timed_out(&self, cid: CorrelationId, symbol: &Symbol, error: &str) {
        tracing::error!(%cid, %symbol, error, "risk or execution request unanswered");
        self.bus.risk_alerts.publish(RiskAlert {
            meta: EventMeta::caused_by("coordinator", self.clock.now(), cid).with_priority(Priority::High),
            alert_type: AlertType::ExecutionError,
            severity: Severity::High,
            message: format!("{symbol}: {error}"),
            action_required: None,
            breach: None,
            symbol: Some(symbol.clone()),
        });
    }

    async fn open_positions(&self, symbol: Option<Symbol>) -> Result<Vec<crate::execution::api::PositionView>, String> {
        let exec = self.links.execution.clone().ok_or("execution not connected")?;
        match exec
            .positions
            .send(GetPositions {
                symbol,
                status: Some(PositionStatus::Open),
            })
            .timeout(Duration::from_millis(self.settings.execution_timeout_ms))
            .await
        {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Closes `fraction` of every open position (of `symbol` and `side` when given); returns how many
    /// close requests were accepted.
    pub async fn close_positions(
        &self,
        cid: CorrelationId,
        symbol: Option<Symbol>,
        side: Option<PositionSide>,
        fraction: Decimal,
        reason: &str,
    ) -> usize {
        let positions = match self.open_positions(symbol.clone()).await {
            Ok(p) => p,
            Err(e) => {
                self.record(
                    cid,
                    "execution_requested",
                    symbol.as_ref(),
                    serde_json::json!({ "error": e }),
                )
                .await;
                return 0;
            }
        };
        let Some(exec) = self.links.execution.clone() else {
            return 0;
        };
        let mut closed = 0;
        for p in positions.into_iter().filter(|p| side.is_none_or(|s| p.side == s)) {
            let req = ClosePosition {
                position_id: p.id,
                fraction,
                reason: reason.to_owned(),
                correlation_id: cid,
            };
            self.record(
                cid,
                "execution_requested",
                Some(&p.symbol),
                serde_json::json!({ "close_position": p.id, "fraction": fraction, "reason": reason }),
            )
            .await;
            self.trail_written().await;
            let sent = exec
                .close
                .send(req)
                .timeout(Duration::from_millis(self.settings.execution_timeout_ms))
                .await;
            if matches!(sent, Err(MailboxError::Timeout)) {
                self.timed_out(
                    cid,
                    &p.symbol,
                    "no answer from the execution manager to a close request",
                );
            }
            let result = match sent {
                Ok(Ok(r)) => {
                    closed += 1;
                    serde_json::json!({ "ok": true, "result": r })
                }
                Ok(Err(e)) => serde_json::json!({ "ok": false, "error": e }),
                Err(e) => serde_json::json!({ "ok": false, "error": e.to_string() }),
            };
            self.record(cid, "execution_result", Some(&p.symbol), result).await;
        }
        closed
    }

    /// CLOSE_LONG / CLOSE_SHORT close the matching open position; they never open a new one.
    async fn close_matching(&self, signal: &TradingSignal) -> usize {
        let side = if signal.action == TradeAction::CloseLong {
            PositionSide::Long
        } else {
            PositionSide::Short
        };
        let reason = format!("{} signal", signal.action);
        self.close_positions(
            signal.meta.correlation_id,
            Some(signal.symbol.clone()),
            Some(side),
            Decimal::ONE,
            &reason,
        )
        .await
    }

    /// Closes every position (drawdown breaker); returns whether the request was accepted.
    pub async fn close_all(&self, cid: CorrelationId, reason: &str) -> bool {
        let Some(exec) = self.links.execution.clone() else {
            self.record(
                cid,
                "execution_requested",
                None,
                serde_json::json!({ "error": "execution not connected" }),
            )
            .await;
            return false;
        };
        self.record(
            cid,
            "execution_requested",
            None,
            serde_json::json!({ "close_all_positions": reason }),
        )
        .await;
        self.trail_written().await;
        let (ok, result) = match exec
            .close_all
            .send(CloseAllPositions {
                reason: reason.to_owned(),
            })
            .timeout(Duration::from_millis(self.settings.execution_timeout_ms))
            .await
        {
            Ok(Ok(r)) => (true, serde_json::json!({ "ok": true, "result": r })),
            Ok(Err(e)) => (false, serde_json::json!({ "ok": false, "error": e })),
            Err(e) => (false, serde_json::json!({ "ok": false, "error": e.to_string() })),
        };
        self.record(cid, "execution_result", None, result).await;
        ok
    }
}
