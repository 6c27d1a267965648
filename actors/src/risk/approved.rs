//! Proof of approval: a value only the risk rules can produce. The execution manager takes nothing
//! else ([`crate::execution::api::ExecuteTrade`] holds a [`RiskApproved`]), so no caller reaches
//! the exchange without the risk engine's verdict.
//!
//! A `RiskApproved` is made by the rules of this module only: by the [`RiskEngine`] answering
//! [`ApproveTrade`] (its own state, market pricing, verdict counts and trail), or by [`approve`]
//! on a given state (the pure path: backtests, tools, tests). Its fields are private and it has no
//! public constructor, so this does not compile:
//!
//! ```compile_fail
//! use triplegain_actors::domain::OrderType;
//! use triplegain_actors::execution::api::ExecuteTrade;
//! use triplegain_actors::risk::{RiskApproved, RiskVerdict, TradeProposal};
//!
//! fn forge(proposal: TradeProposal, verdict: RiskVerdict) -> ExecuteTrade {
//!     ExecuteTrade {
//!         // error: `RiskApproved` has private fields and no public constructor.
//!         trade: RiskApproved { value: proposal, verdict },
//!         order_type: OrderType::Limit,
//!         limit_price: None,
//!         volume: None,
//!         note: None,
//!     }
//! }
//! ```
//!
//! while this, through the rules, does:
//!
//! ```
//! use triplegain_actors::execution::api::ExecuteTrade;
//! use triplegain_actors::risk::{approve, RiskLimits, RiskState, TradeProposal};
//!
//! fn execute(proposal: TradeProposal, state: &RiskState, limits: &RiskLimits) -> Option<ExecuteTrade> {
//!     let trade = approve(proposal, state, limits, chrono::Utc::now()).ok()?;
//!     Some(ExecuteTrade::limit(trade))
//! }
//! ```

use super::engine::RiskEngine;
use super::rules::validate;
use super::types::RiskState;
use super::types::{RiskLimits, RiskVerdict, TradeProposal};
use crate::supervision::ActorError;
use actix::Message;
use chrono::{DateTime, Utc};

/// `T` as the risk engine approved it (possibly modified), with the verdict that approved it.
#[derive(Debug, Clone)]
pub struct RiskApproved<T> {
    value: T,
    verdict: RiskVerdict,
}

impl<T> RiskApproved<T> {
    /// What was approved (the proposal as it may be executed).
    pub fn value(&self) -> &T {
        &self.value
    }

    pub fn verdict(&self) -> &RiskVerdict {
        &self.verdict
    }

    pub fn into_verdict(self) -> RiskVerdict {
        self.verdict
    }
}

#[cfg(any(test, feature = "testing"))]
impl RiskApproved<TradeProposal> {
    /// An approval made without running the rules, for tests of the execution path that are not
    /// about risk. Exists only with the `testing` feature, which the server build never enables.
    pub fn for_tests(proposal: TradeProposal) -> Self {
        let verdict = RiskVerdict {
            status: super::types::VerdictStatus::Approved,
            rejections: Vec::new(),
            reason: None,
            warnings: Vec::new(),
            modifications: Vec::new(),
            proposal: proposal.clone(),
            metrics: super::types::VerdictMetrics::default(),
            validation_ms: 0.0,
        };
        Self {
            value: proposal,
            verdict,
        }
    }
}

/// The judgement of a given verdict, for fake risk engines in tests. Exists only with the
/// `testing` feature.
#[cfg(any(test, feature = "testing"))]
pub fn judgement_for_tests(verdict: RiskVerdict) -> Judgement {
    judged(verdict)
}

/// A proposal the risk engine refused (rejected, or trading halted), with the verdict saying why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("refused by the risk engine: {}", .verdict.reason.as_deref().unwrap_or("no reason given"))]
pub struct RiskRefused {
    verdict: Box<RiskVerdict>,
}

impl RiskRefused {
    pub fn verdict(&self) -> &RiskVerdict {
        &self.verdict
    }

    pub fn into_verdict(self) -> RiskVerdict {
        *self.verdict
    }
}

/// The answer of the rules: approved (the proposal to execute) or refused.
pub type Judgement = Result<RiskApproved<TradeProposal>, RiskRefused>;

/// The verdict of a judgement, either way.
pub fn verdict_of(j: &Judgement) -> &RiskVerdict {
    match j {
        Ok(a) => a.verdict(),
        Err(r) => r.verdict(),
    }
}

/// Turns a verdict of the rules into a judgement. Private to `risk/`: a verdict read from JSON or
/// built by hand never becomes an approval.
pub(super) fn judged(verdict: RiskVerdict) -> Judgement {
    if verdict.is_approved() {
        Ok(RiskApproved {
            value: verdict.proposal.clone(),
            verdict,
        })
    } else {
        Err(RiskRefused {
            verdict: Box::new(verdict),
        })
    }
}

/// Validates `proposal` against a given risk state and limits (the pure rules, no market pricing).
pub fn approve(proposal: TradeProposal, state: &RiskState, limits: &RiskLimits, now: DateTime<Utc>) -> Judgement {
    judged(validate(&proposal, state, limits, now))
}

/// Validate a proposal against the engine's own state and, when approved, get the approval that
/// [`crate::execution::api::ExecuteTrade`] requires. Counted and traced like [`super::ValidateTrade`].
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Judgement, ActorError>")]
pub struct ApproveTrade(pub TradeProposal);

impl actix::Handler<ApproveTrade> for RiskEngine {
    type Result = Result<Judgement, ActorError>;
    fn handle(&mut self, msg: ApproveTrade, ctx: &mut actix::Context<Self>) -> Self::Result {
        self.validate_now(&msg.0, ctx).map(judged)
    }
}
