//! The shell's exchange and store I/O: loading, status polls, placements, cancels, the exchange
//! sync and balances. Each runs in a spawned future and hands its answer to the core.

use super::OrderExecutionManager;
use crate::domain::CorrelationId;
use crate::execution::api::{ExecuteTrade, ExecutionError, ExecutionResult, OrderView};
use crate::execution::core::{Loaded, MovePlan, Op, PlaceOutcome, Protect, TradePlan};
use crate::ports::{OrderRecord, OrderRef, OrderRequest};
use crate::supervision::guarded;
use actix::prelude::*;
use rust_decimal::Decimal;
use std::time::Duration;
use uuid::Uuid;

pub(super) type ExecResult = Result<ExecutionResult, ExecutionError>;

pub(super) fn fail<A: Actor, T: 'static>(e: ExecutionError) -> ResponseActFuture<A, Result<T, ExecutionError>> {
    Box::pin(fut::ready(Err(e)))
}

impl OrderExecutionManager {
    // -------------------------------------------------------------- loading and polling

    pub(super) fn load(&mut self, ctx: &mut Context<Self>) {
        let flush = self.writer.acked(Op::Flush);
        let exchange = self.deps.exchange.clone();
        let store = self.deps.orders.clone();
        let fut = async move {
            let _ = flush.await;
            let pairs = exchange.pairs().await;
            let orders = store.load_active_orders().await;
            let positions = store.load_open_positions().await;
            (pairs, orders, positions)
        };
        ctx.spawn(fut.into_actor(self).map(|(pairs, orders, positions), act, ctx| {
            let _ = guarded(act, ctx, |act, ctx| {
                let loaded = act.core.on_loaded(pairs, orders, positions);
                act.run_effects(ctx);
                match loaded {
                    Loaded::Ready => act.poll(ctx),
                    Loaded::Retry => {
                        ctx.run_later(Duration::from_secs(5), |act, ctx| act.load(ctx));
                    }
                    Loaded::Ignored => {}
                }
            });
        }));
    }

    pub(super) fn poll(&mut self, ctx: &mut Context<Self>) {
        let plan = self.core.poll_plan();
        self.run_effects(ctx);
        let Some(plan) = plan else { return };
        let exchange = self.deps.exchange.clone();
        let ask = |list: &[(Uuid, OrderRef)]| {
            let refs: Vec<OrderRef> = list.iter().map(|(_, r)| r.clone()).collect();
            let ids: Vec<Uuid> = list.iter().map(|(id, _)| *id).collect();
            let exchange = exchange.clone();
            let fut = async move {
                if refs.is_empty() {
                    None
                } else {
                    Some(exchange.query_orders(refs).await)
                }
            };
            (ids, fut)
        };
        let (known_ids, known_fut) = ask(&plan.known);
        let (unknown_ids, unknown_fut) = ask(&plan.unknown);
        // Independent: a failed search leaves the batch by exchange id alone, and vice versa.
        let fut = async move { futures::join!(known_fut, unknown_fut) };
        ctx.spawn(fut.into_actor(self).map(move |(k, u), act, ctx| {
            let _ = guarded(act, ctx, |act, ctx| {
                if let Some(k) = k {
                    act.core.on_polled(known_ids, k, "order status poll");
                }
                if let Some(u) = u {
                    act.core.on_polled(unknown_ids, u, "search by client id");
                }
                act.core.poll_done();
                act.run_effects(ctx);
            });
        }));
    }

    pub(super) fn check_protection(&mut self, ctx: &mut Context<Self>) {
        self.core.check_protection(tokio::time::Instant::now());
        self.run_effects(ctx);
    }

    // -------------------------------------------------------------- placing

    /// Tracks a new order, then sends it (see [`Self::send_tracked`]).
    fn submit(&mut self, rec: OrderRecord) -> ResponseActFuture<Self, Result<OrderView, ExecutionError>> {
        self.core.track(&rec);
        self.send_tracked(rec)
    }

    /// Records a tracked order as `pending`, waits until the store has it, then sends it (retrying
    /// only what the exchange answered as retryable) and hands the answer to the core.
    pub(super) fn send_tracked(
        &mut self,
        rec: OrderRecord,
    ) -> ResponseActFuture<Self, Result<OrderView, ExecutionError>> {
        let id = rec.view.id;
        let stored = self.writer.acked(Op::Order(Box::new(rec.clone())));
        self.writer.send(Op::Status(self.core.placement_status(&rec)));
        let req = OrderRequest {
            client_order_id: rec.view.client_order_id.clone(),
            symbol: rec.view.symbol.clone(),
            side: rec.view.side,
            order_type: rec.view.order_type,
            volume: rec.view.volume,
            price: rec.view.price,
            price2: rec.price2,
            leverage: (rec.leverage > 1).then_some(rec.leverage),
            reduce_only: rec.reduce_only,
            post_only: false,
            validate: false,
        };
        let exchange = self.deps.exchange.clone();
        let retries = self.core.cfg().max_retry_count;
        let delay = Duration::from_millis(self.core.cfg().retry_delay_ms);
        let fut = async move {
            stored.await?;
            let mut attempt = 0;
            loop {
                match exchange.place_order(req.clone()).await {
                    Err(e) if e.is_retryable() && attempt < retries => {
                        attempt += 1;
                        tracing::warn!(error = %e, attempt, "order placement retryable; retrying");
                        actix::clock::sleep(delay).await;
                    }
                    other => return Ok(other),
                }
            }
        };
        Box::pin(fut.into_actor(self).map(move |res: PlaceOutcome, act, ctx| {
            guarded(act, ctx, |act, ctx| {
                let out = act.core.on_placed(id, res);
                act.run_effects(ctx);
                out
            })
            .unwrap_or_else(|e| Err(ExecutionError::Unavailable(e.to_string())))
        }))
    }

    pub(super) fn execute(
        &mut self,
        msg: ExecuteTrade,
        ctx: &mut Context<Self>,
    ) -> ResponseActFuture<Self, ExecResult> {
        let plan = self.core.plan_trade(&msg);
        self.run_effects(ctx);
        match plan {
            Err(e) => fail(e),
            Ok(TradePlan::Close {
                pid,
                fraction,
                reason,
                correlation_id,
            }) => self.close(pid, fraction, reason, correlation_id, ctx),
            Ok(TradePlan::Order(rec)) => {
                let correlation_id = rec.view.correlation_id;
                let position_id = rec.view.position_id;
                Box::pin(self.submit(*rec).map(move |res, _, _| {
                    res.map(|view| ExecutionResult {
                        correlation_id,
                        orders: vec![view],
                        position_id,
                    })
                }))
            }
        }
    }

    pub(super) fn close(
        &mut self,
        pid: Uuid,
        fraction: Decimal,
        reason: String,
        correlation_id: CorrelationId,
        ctx: &mut Context<Self>,
    ) -> ResponseActFuture<Self, ExecResult> {
        let rec = self.core.plan_close(pid, fraction, &reason, correlation_id);
        self.run_effects(ctx);
        match rec {
            Err(e) => fail(e),
            Ok(rec) => Box::pin(self.submit(rec).map(move |res, _, _| {
                res.map(|view| ExecutionResult {
                    correlation_id,
                    orders: vec![view],
                    position_id: Some(pid),
                })
            })),
        }
    }

    /// Moves one protective order to `target` (see [`crate::execution::core::ExecutionCore::plan_move`]).
    pub(super) fn move_protection(
        &mut self,
        pid: Uuid,
        kind: Protect,
        target: Decimal,
        ctx: &mut Context<Self>,
    ) -> ResponseActFuture<Self, Result<(), ExecutionError>> {
        let plan = self.core.plan_move(pid, kind, target);
        self.run_effects(ctx);
        match plan {
            Err(e) => fail(e),
            Ok(MovePlan::Stored) => Box::pin(fut::ready(Ok(()))),
            Ok(MovePlan::Place { rec, replaces }) => {
                let new_id = rec.view.id;
                Box::pin(self.submit(*rec).map(move |res, act, ctx| {
                    let out = act.core.moved(pid, kind, target, new_id, replaces, res);
                    act.run_effects(ctx);
                    out
                }))
            }
        }
    }

    // -------------------------------------------------------------- cancels

    /// One cancel attempt, then a query of the order; the core decides whether to retry.
    pub(super) fn send_cancel(&mut self, id: Uuid, target: OrderRef, ctx: &mut Context<Self>) {
        let exchange = self.deps.exchange.clone();
        let fut = async move {
            let cancelled = exchange.cancel_order(target.clone()).await;
            let seen = exchange.query_orders(vec![target]).await;
            (cancelled, seen)
        };
        ctx.spawn(fut.into_actor(self).map(move |(cancelled, seen), act, ctx| {
            let _ = guarded(act, ctx, |act, ctx| {
                act.core.on_cancel_result(id, cancelled, seen);
                act.run_effects(ctx);
            });
        }));
    }

    // -------------------------------------------------------------- exchange sync and balances

    /// Every 30 s: orders on the exchange that carry our client ids but that we do not track, open
    /// ones and (every 10th sync, or while an order's outcome is unknown) recently closed ones,
    /// each looked up in the store and handed to the core.
    pub(super) fn sync_with_exchange(&mut self, ctx: &mut Context<Self>) {
        let Some(with_closed) = self.core.sync_plan() else {
            return;
        };
        let exchange = self.deps.exchange.clone();
        let fut = async move {
            let open = exchange.open_orders().await;
            let closed = if with_closed {
                Some(exchange.closed_orders().await)
            } else {
                None
            };
            (open, closed)
        };
        ctx.spawn(fut.into_actor(self).map(|(open, closed), act, ctx| {
            let _ = guarded(act, ctx, |act, ctx| {
                let mut candidates = Vec::new();
                match open {
                    Ok(v) => candidates.extend(v.into_iter().map(|o| (o, true))),
                    Err(e) => tracing::warn!(error = %e, "open orders unavailable; sync skipped"),
                }
                match closed {
                    Some(Ok(v)) => candidates.extend(
                        v.into_iter()
                            .filter(|o| !act.core.synced_closed.contains(&o.exchange_order_id))
                            .map(|o| (o, false)),
                    ),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "closed orders unavailable; sync of closed orders skipped")
                    }
                    None => {}
                }
                for (o, open) in candidates {
                    if !act.core.untracked(&o) {
                        continue;
                    }
                    let Some(cid) = o.client_order_id.clone() else { continue };
                    let store = act.deps.orders.clone();
                    let lookup = async move { store.find_order_by_client_id(cid).await };
                    ctx.spawn(lookup.into_actor(act).map(move |stored, act, ctx| {
                        let _ = guarded(act, ctx, |act, ctx| {
                            act.core.on_untracked(o, open, stored);
                            act.run_effects(ctx);
                        });
                    }));
                }
            });
        }));
    }

    pub(super) fn refresh_portfolio(&mut self, ctx: &mut Context<Self>) {
        if self.core.drained {
            return;
        }
        let exchange = self.deps.exchange.clone();
        let fut = async move { exchange.balances().await };
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| {
            let _ = guarded(act, ctx, |act, ctx| match res {
                Ok(b) => {
                    act.core.valuation(b);
                    act.run_effects(ctx);
                }
                Err(e) => tracing::warn!(error = %e, "balances unavailable; portfolio not valued"),
            });
        }));
    }
}
