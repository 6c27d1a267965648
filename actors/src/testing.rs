//! Test helpers shared by the test suites of this crate and of the server: a probe actor for
//! supervision, and approvals made without the risk rules ([`RiskApproved::for_tests`]). Only
//! with the `testing` feature (or this crate's own unit tests); the server build never has it.

pub use crate::risk::{judgement_for_tests, RiskApproved};

use crate::domain::Symbol;
use crate::ports::PairInfo;
use crate::supervision::{guarded, ActorError, Drain, SupervisedActor, SupervisionHandle};
use actix::prelude::*;
use rust_decimal::Decimal;

/// BTC/USDT as Kraken lists it: tick 0.1, 8 lot decimals, minimum 0.00005 BTC and 0.5 USDT,
/// leverage up to 5 both ways.
pub fn btc_usdt_pair() -> PairInfo {
    PairInfo {
        symbol: Symbol::parse("BTC/USDT").unwrap_or_else(|_| unreachable!("a valid symbol")),
        exchange_name: "XBTUSDT".into(),
        tick_size: Decimal::new(1, 1),
        price_decimals: 1,
        lot_decimals: 8,
        ordermin: Decimal::new(5, 5),
        costmin: Decimal::new(5, 1),
        max_leverage_buy: 5,
        max_leverage_sell: 5,
    }
}

/// A supervised actor that only answers pings; used to test supervision.
pub struct Probe {
    sup: SupervisionHandle,
    pub generation: u32,
}

impl Probe {
    pub fn new(sup: SupervisionHandle) -> Self {
        Self { sup, generation: 0 }
    }
}

impl Actor for Probe {
    type Context = Context<Self>;
    fn started(&mut self, _: &mut Context<Self>) {
        self.sup.on_started();
    }
}

impl actix::Supervised for Probe {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.generation += 1;
        self.sup.on_restarting();
    }
}

impl SupervisedActor for Probe {
    fn supervision(&self) -> &SupervisionHandle {
        &self.sup
    }
}

crate::supervised_basics!(Probe);

impl Handler<Drain> for Probe {
    type Result = ();
    fn handle(&mut self, _: Drain, _: &mut Context<Self>) {}
}

/// Echo for supervision tests: answers with the actor's generation (restarts survived).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<u32, ActorError>")]
pub struct Generation;

impl Handler<Generation> for Probe {
    type Result = Result<u32, ActorError>;
    fn handle(&mut self, _: Generation, ctx: &mut Context<Self>) -> Self::Result {
        guarded(self, ctx, |act, _| act.generation)
    }
}
