//! The PortfolioRebalancer's message handlers: connection, candles, execution events and
//! valuations, the rebalance tick, the hodl and allocation reads and the portfolio check.

use super::{
    apply_advice, records_for, CheckPortfolio, ConnectExecution, GetAllocation, GetHodl, GetHodlHistory, NextBatchDue,
    PendingBatch, PortfolioError, PortfolioRebalancer, RebalanceTick, RebalancerInFlight,
};
use crate::domain::CorrelationId;
use crate::messages::{CandleClosed, ExecutionEvent, ExecutionEventType, PortfolioUpdate};
use crate::portfolio::hodl::{self, HodlView};
use crate::portfolio::rebalance::{self, Allocation, ExecutionStrategy, RebalanceAction, RebalancePlan};
use crate::portfolio::store::HodlTransaction;
use crate::supervision::{guarded, Drain};
use actix::prelude::*;
use rust_decimal::Decimal;
use uuid::Uuid;

impl Handler<Drain> for PortfolioRebalancer {
    type Result = ();
    fn handle(&mut self, _: Drain, _: &mut Context<Self>) {
        // Every change is written when it happens; pending batches live in the store.
    }
}

impl Handler<ConnectExecution> for PortfolioRebalancer {
    type Result = ();
    fn handle(&mut self, msg: ConnectExecution, ctx: &mut Context<Self>) {
        let _ = guarded(self, ctx, |act, _| {
            act.execution = Some(msg.0);
            act.cfg.execution = act.execution.clone();
        });
    }
}

impl Handler<CandleClosed> for PortfolioRebalancer {
    type Result = ();
    fn handle(&mut self, msg: CandleClosed, ctx: &mut Context<Self>) {
        let _ = guarded(self, ctx, |act, ctx| {
            if msg.candle.close > Decimal::ZERO {
                act.prices.insert(msg.candle.symbol.to_string(), msg.candle.close);
                let end = msg.candle.open_time + chrono::Duration::seconds(msg.candle.timeframe.seconds());
                let at = act.price_at.entry(msg.candle.symbol.to_string()).or_insert(end);
                *at = (*at).max(end);
            }
            // Candles carry business time: a replay reaches due batches without waiting for the tick.
            if act.loaded && act.pending.iter().any(|b| b.batch.due_at <= act.now()) {
                act.due_batches(ctx);
            }
        });
    }
}

impl Handler<ExecutionEvent> for PortfolioRebalancer {
    type Result = ();
    fn handle(&mut self, msg: ExecutionEvent, ctx: &mut Context<Self>) {
        let _ = guarded(self, ctx, |act, ctx| {
            if let Some(p) = msg.fill_price.filter(|p| *p > Decimal::ZERO) {
                act.prices.insert(msg.symbol.to_string(), p);
            }
            if msg.event_type != ExecutionEventType::PositionClosed || !act.loaded {
                return;
            }
            if let Some(pnl) = msg.realized_pnl.filter(|p| *p > Decimal::ZERO) {
                let source = msg.position_id.as_deref().and_then(|s| Uuid::parse_str(s).ok());
                act.on_profit(ctx, pnl, source);
            }
        });
    }
}

/// The execution manager's valuations: the first with positive equity lets batches run (the
/// risk engine sizes them against that equity).
impl Handler<PortfolioUpdate> for PortfolioRebalancer {
    type Result = ();
    fn handle(&mut self, msg: PortfolioUpdate, ctx: &mut Context<Self>) {
        let _ = guarded(self, ctx, |act, ctx| {
            if msg.equity_usd <= Decimal::ZERO {
                return;
            }
            act.position_footprint = msg.position_footprint;
            if act.valued {
                return;
            }
            act.valued = true;
            tracing::info!(equity = %msg.equity_usd, "first portfolio valuation: rebalance batches may run");
            if act.loaded {
                act.due_batches(ctx);
            }
        });
    }
}

impl Handler<RebalanceTick> for PortfolioRebalancer {
    type Result = ();
    fn handle(&mut self, _: RebalanceTick, ctx: &mut Context<Self>) {
        let _ = guarded(self, ctx, |act, ctx| {
            if act.loaded {
                act.due_batches(ctx);
                act.buy_due(ctx);
            }
        });
    }
}

impl Handler<RebalancerInFlight> for PortfolioRebalancer {
    type Result = usize;
    fn handle(&mut self, _: RebalancerInFlight, ctx: &mut Context<Self>) -> usize {
        guarded(self, ctx, |act, _| {
            act.batches_in_flight + act.purchasing.len() + usize::from(act.busy)
        })
        .unwrap_or(usize::MAX)
    }
}

impl Handler<NextBatchDue> for PortfolioRebalancer {
    type Result = Option<chrono::DateTime<chrono::Utc>>;
    fn handle(&mut self, _: NextBatchDue, ctx: &mut Context<Self>) -> Self::Result {
        guarded(self, ctx, |act, _| act.pending.iter().map(|b| b.batch.due_at).min())
            .ok()
            .flatten()
    }
}

impl Handler<GetHodl> for PortfolioRebalancer {
    type Result = Result<HodlView, PortfolioError>;
    fn handle(&mut self, _: GetHodl, ctx: &mut Context<Self>) -> Self::Result {
        guarded(self, ctx, |act, _| {
            hodl::view(&act.ledger, &act.cfg.hodl, |a| act.price_of(a), act.now())
        })
        .map_err(Into::into)
    }
}

impl Handler<GetHodlHistory> for PortfolioRebalancer {
    type Result = ResponseFuture<Result<Vec<HodlTransaction>, PortfolioError>>;
    fn handle(&mut self, msg: GetHodlHistory, ctx: &mut Context<Self>) -> Self::Result {
        let store = guarded(self, ctx, |act, _| act.cfg.store.clone());
        Box::pin(async move {
            store?
                .hodl_transactions(msg.asset, msg.limit)
                .await
                .map_err(|e| PortfolioError::Unavailable(e.to_string()))
        })
    }
}

impl Handler<GetAllocation> for PortfolioRebalancer {
    type Result = ResponseActFuture<Self, Result<Allocation, PortfolioError>>;
    fn handle(&mut self, _: GetAllocation, ctx: &mut Context<Self>) -> Self::Result {
        let pre = guarded(self, ctx, |act, _| {
            Ok::<_, PortfolioError>((act.current_prices()?, act.cfg.exchange.balances(), act.hodl_excluded()))
        });
        let (prices, balances, hodl) = match pre.map_err(PortfolioError::from).and_then(|r| r) {
            Ok(v) => v,
            Err(e) => return Box::pin(actix::fut::ready(Err(e))),
        };
        Box::pin(balances.into_actor(self).map(move |res, act, _| {
            let balances = res.map_err(|e| PortfolioError::Unavailable(e.to_string()))?;
            Ok(rebalance::allocation(
                &balances,
                &hodl,
                prices,
                &act.cfg.portfolio.target_allocation,
            ))
        }))
    }
}

impl Handler<CheckPortfolio> for PortfolioRebalancer {
    type Result = ResponseActFuture<Self, Result<RebalancePlan, PortfolioError>>;
    fn handle(&mut self, msg: CheckPortfolio, ctx: &mut Context<Self>) -> Self::Result {
        let pre = guarded(self, ctx, |act, _| {
            if !act.loaded {
                return Err(PortfolioError::Unavailable("portfolio state not loaded".into()));
            }
            if act.busy {
                return Err(PortfolioError::Busy);
            }
            if !act.cfg.portfolio.rebalancing.enabled && !msg.force {
                return Err(PortfolioError::Unavailable("rebalancing is disabled".into()));
            }
            let prices = act.current_prices()?;
            act.busy = true;
            let pending: Vec<Uuid> = act.pending.iter().map(|b| b.record_id).collect();
            Ok((prices, act.cfg.exchange.balances(), act.hodl_excluded(), pending))
        });
        let (prices, balances, hodl, pending) = match pre.map_err(PortfolioError::from).and_then(|r| r) {
            Ok(v) => v,
            Err(e) => return Box::pin(actix::fut::ready(Err(e))),
        };
        let store = self.cfg.store.clone();
        let advisor = self
            .cfg
            .advisor
            .clone()
            .filter(|_| self.cfg.portfolio.use_model_strategy);
        let cfg = self.cfg.portfolio.clone();
        let now = self.now();
        let fut = async move {
            let balances = balances.await.map_err(|e| PortfolioError::Unavailable(e.to_string()))?;
            let alloc = rebalance::allocation(&balances, &hodl, prices, &cfg.target_allocation);
            let mut plan = rebalance::plan(alloc, &cfg, msg.force, now);
            let mut superseded = Vec::new();
            if plan.action == RebalanceAction::Rebalance && !pending.is_empty() {
                if msg.force {
                    // A forced plan starts from the balances as they are now: older batches go.
                    for id in &pending {
                        store
                            .finish_rebalance(
                                *id,
                                "superseded".into(),
                                now,
                                serde_json::json!({"superseded_by": plan.id}),
                            )
                            .await
                            .map_err(|e| PortfolioError::Unavailable(e.to_string()))?;
                    }
                    superseded = pending;
                } else {
                    // An hourly check never stacks a second plan on a running DCA plan.
                    plan.action = RebalanceAction::NoAction;
                    plan.reasoning = format!(
                        "{} — a DCA plan is in progress ({} batches pending); not re-planned",
                        plan.reasoning,
                        pending.len()
                    );
                    plan.rebalance_trades.clear();
                    plan.batches.clear();
                    plan.execution_strategy = ExecutionStrategy::None;
                }
            }
            if plan.action == RebalanceAction::Rebalance {
                if let Some(advisor) = advisor {
                    match advisor.advise(&plan).await {
                        Ok(advice) => apply_advice(&mut plan, advice, &cfg),
                        Err(e) => {
                            tracing::warn!(error = %e, "strategy model failed; deterministic plan used");
                            plan.used_fallback_strategy = true;
                        }
                    }
                }
            }
            let records = records_for(&plan);
            let ids: Vec<Uuid> = records.iter().map(|r| r.id).collect();
            for rec in records {
                store
                    .insert_rebalance(rec)
                    .await
                    .map_err(|e| PortfolioError::Unavailable(e.to_string()))?;
            }
            Ok::<_, PortfolioError>((plan, balances, ids, superseded))
        };
        Box::pin(fut.into_actor(self).map(|res, act, ctx| {
            let (plan, balances, records, superseded) = match res {
                Ok(v) => v,
                Err(e) => {
                    act.busy = false;
                    return Err(e);
                }
            };
            act.pending.retain(|b| !superseded.contains(&b.record_id));
            let cid = CorrelationId(plan.id);
            act.publish_update(&plan.current_allocation, &balances, cid);
            tracing::info!(
                plan_id = %plan.id,
                action = ?plan.action,
                max_deviation = %plan.current_allocation.max_deviation_pct.round_dp(2),
                trades = plan.rebalance_trades.len(),
                strategy = plan.execution_strategy.as_str(),
                "portfolio checked"
            );
            if plan.action == RebalanceAction::Rebalance && !plan.batches.is_empty() {
                for (i, b) in plan.batches.iter().enumerate() {
                    let Some(id) = records.get(i).copied() else { continue };
                    let stale = act.stale_price();
                    if i == 0 && act.valued && stale.is_none() {
                        act.spawn_batch(ctx, id, plan.id, b.clone(), true);
                    } else {
                        if i == 0 {
                            match &stale {
                                Some(symbol) if act.valued => tracing::info!(plan_id = %plan.id, %symbol,
                                    "the last price is stale (warm-up history): the first batch waits for a fresh candle"),
                                _ => tracing::info!(plan_id = %plan.id,
                                    "no portfolio valuation yet: the first batch waits for it"),
                            }
                            act.busy = false;
                        }
                        act.pending.push(PendingBatch {
                            record_id: id,
                            plan_id: plan.id,
                            batch: b.clone(),
                        });
                    }
                }
            } else {
                act.busy = false;
            }
            Ok(plan)
        }))
    }
}

/// The coordinator's hourly `portfolio_check` task: an unforced check.
impl Handler<crate::coordinator::RunPortfolioCheck> for PortfolioRebalancer {
    type Result = ResponseFuture<Result<(), String>>;
    fn handle(&mut self, _msg: crate::coordinator::RunPortfolioCheck, ctx: &mut Context<Self>) -> Self::Result {
        let addr = ctx.address();
        Box::pin(async move {
            match addr.send(CheckPortfolio { force: false }).await {
                Ok(Ok(_)) | Ok(Err(PortfolioError::Busy)) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(format!("portfolio rebalancer unavailable: {e}")),
            }
        })
    }
}
