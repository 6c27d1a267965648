//! The manager's messages and their handlers: trade, close, modify and cancel requests, the reads
//! of orders and positions, prices and candles, and the shell's own controls (flush, drain, poll).

use super::io::{fail, ExecResult};
use super::OrderExecutionManager;
use crate::domain::{PositionStatus, Symbol};
use crate::execution::api::{
    CancelOrder, CloseAllPositions, ClosePosition, ExecuteTrade, ExecutionError, ExecutionResult, GetOrders,
    GetPositions, ModifyPosition, OrderView, PositionView,
};
use crate::execution::core::{position_pnl, Op};
use crate::messages::CandleClosed;
use crate::ports::{ExchangeError, OrderRef};
use crate::supervision::{guarded, Drain};
use actix::prelude::*;
use rust_decimal::Decimal;

/// Answered once every store write the manager queued before it is done (the paper exchange's
/// save before them included): the store then shows what the manager knew when it was sent.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct FlushWrites;

impl Handler<FlushWrites> for OrderExecutionManager {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _: FlushWrites, _: &mut Context<Self>) -> Self::Result {
        let flush = self.writer.acked(Op::Flush);
        Box::pin(
            async move {
                if let Err(e) = flush.await {
                    tracing::warn!(error = %e, "execution writes not flushed");
                }
            }
            .into_actor(self),
        )
    }
}

impl Handler<Drain> for OrderExecutionManager {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _: Drain, _: &mut Context<Self>) -> Self::Result {
        // From here on the manager neither polls, places nor cancels: the process is stopping, and the
        // next one reconciles from the store and the exchange.
        self.core.drained = true;
        self.core.ready = false;
        self.writer.send(Op::SavePaper);
        let flush = self.writer.acked(Op::FlushAll);
        Box::pin(
            async move {
                if let Err(e) = flush.await {
                    tracing::error!(error = %e, "execution state not flushed at shutdown");
                }
            }
            .into_actor(self),
        )
    }
}

impl Handler<CandleClosed> for OrderExecutionManager {
    type Result = ();
    fn handle(&mut self, msg: CandleClosed, ctx: &mut Context<Self>) {
        let _ = guarded(self, ctx, |act, ctx| {
            // An older candle than the last one seen for the symbol never overwrites its price.
            let end = msg.candle.open_time + chrono::Duration::seconds(msg.candle.timeframe.seconds());
            if act.price_at.get(&msg.candle.symbol).is_some_and(|last| end < *last) {
                return;
            }
            act.price_at.insert(msg.candle.symbol.clone(), end);
            act.core.set_price(msg.candle.symbol.clone(), msg.candle.close);
            // Only the finest timeframe of a symbol moves the paper exchange: the coarser candles repeat the
            // same trades.
            let finest = act
                .feed_timeframe
                .entry(msg.candle.symbol.clone())
                .or_insert(msg.candle.timeframe);
            if msg.candle.timeframe < *finest {
                *finest = msg.candle.timeframe;
            }
            if act.deps.feed_paper && msg.candle.timeframe == *finest {
                if let Some(paper) = &act.deps.paper {
                    paper.on_candle(&msg.candle);
                }
            }
            act.core.on_prices();
            act.run_effects(ctx);
            if act.deps.paper.is_some() {
                act.poll(ctx);
            }
            // The watchdog on business time too: a replay's minutes pass faster than its timer.
            act.check_protection(ctx);
        });
    }
}

/// How many of these last prices, applied in order, would leave the manager's orders and
/// positions exactly as they are (no stop breached, no trailing stop moved, nothing in flight).
/// A backtest hands the candles of such prices to the pipeline in one batch.
#[derive(Debug, Clone, Message)]
#[rtype(result = "usize")]
pub struct QuietPrefix(pub Vec<(Symbol, Decimal)>);

impl Handler<QuietPrefix> for OrderExecutionManager {
    type Result = usize;
    fn handle(&mut self, msg: QuietPrefix, ctx: &mut Context<Self>) -> usize {
        guarded(self, ctx, |act, _| act.core.quiet_prefix(&msg.0)).unwrap_or(0)
    }
}

/// Asks for an immediate status poll (paper mode after a price update, tests).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct PollNow;

impl Handler<PollNow> for OrderExecutionManager {
    type Result = ();
    fn handle(&mut self, _: PollNow, ctx: &mut Context<Self>) {
        let _ = guarded(self, ctx, |act, ctx| act.poll(ctx));
    }
}

/// Runs the exchange sync (untracked open and recently closed orders with our client ids) now
/// (tests, operators).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct SyncNow;

impl Handler<SyncNow> for OrderExecutionManager {
    type Result = ();
    fn handle(&mut self, _: SyncNow, ctx: &mut Context<Self>) {
        let _ = guarded(self, ctx, |act, ctx| act.sync_with_exchange(ctx));
    }
}

/// A last-price update (paper mode, tests): recorded for sizing, valuation and trailing stops.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct PriceUpdate {
    pub symbol: Symbol,
    pub price: Decimal,
}

impl Handler<PriceUpdate> for OrderExecutionManager {
    type Result = ();
    fn handle(&mut self, msg: PriceUpdate, ctx: &mut Context<Self>) {
        let _ = guarded(self, ctx, |act, ctx| {
            act.core.set_price(msg.symbol, msg.price);
            act.core.on_prices();
            act.run_effects(ctx);
            act.poll(ctx);
        });
    }
}

/// Runs the snapshot / trailing-stop / valuation pass now.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct SnapshotNow;

impl Handler<SnapshotNow> for OrderExecutionManager {
    type Result = ();
    fn handle(&mut self, _: SnapshotNow, ctx: &mut Context<Self>) {
        let _ = guarded(self, ctx, |act, ctx| {
            act.core.on_tick();
            act.run_effects(ctx);
        });
    }
}

/// How much the manager is tracking: orders not final yet and positions not closed. A feed that
/// runs ahead of the wall clock (a backtest) hands over candles one minute at a time while any
/// is tracked, so fills, stops and trailing stops see every price at its own business time.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Activity")]
pub struct GetActivity;

/// The answer to [`GetActivity`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, MessageResponse)]
pub struct Activity {
    pub orders: usize,
    pub positions: usize,
    /// Exchange requests and store writes under way (placements, protective orders, cancels, a
    /// poll): a backtest lets the pipeline settle until none is left.
    pub in_flight: usize,
}

impl Activity {
    pub fn idle(&self) -> bool {
        self.orders == 0 && self.positions == 0
    }
}

impl Handler<GetActivity> for OrderExecutionManager {
    type Result = Activity;
    fn handle(&mut self, _: GetActivity, ctx: &mut Context<Self>) -> Activity {
        guarded(self, ctx, |act, _| {
            let core = &act.core;
            Activity {
                orders: core.orders.len() + core.placing.len(),
                positions: core.positions.len(),
                in_flight: core.placing.len()
                    + core.protect_inflight.len()
                    + core.cancel_inflight.len()
                    + usize::from(core.polling),
            }
        })
        .unwrap_or(Activity {
            orders: usize::MAX,
            positions: usize::MAX,
            in_flight: usize::MAX,
        })
    }
}

/// Whether the manager has loaded its state and reconciled with the exchange.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "bool")]
pub struct IsReady;

impl Handler<IsReady> for OrderExecutionManager {
    type Result = bool;
    fn handle(&mut self, _: IsReady, ctx: &mut Context<Self>) -> bool {
        guarded(self, ctx, |act, _| act.core.ready && act.core.reconciled).unwrap_or(false)
    }
}

impl Handler<ExecuteTrade> for OrderExecutionManager {
    type Result = ResponseActFuture<Self, ExecResult>;
    fn handle(&mut self, msg: ExecuteTrade, ctx: &mut Context<Self>) -> Self::Result {
        guarded(self, ctx, |act, ctx| act.execute(msg, ctx))
            .unwrap_or_else(|e| fail(ExecutionError::Unavailable(e.to_string())))
    }
}

impl Handler<ClosePosition> for OrderExecutionManager {
    type Result = ResponseActFuture<Self, ExecResult>;
    fn handle(&mut self, msg: ClosePosition, ctx: &mut Context<Self>) -> Self::Result {
        guarded(self, ctx, |act, ctx| {
            act.close(msg.position_id, msg.fraction, msg.reason, msg.correlation_id, ctx)
        })
        .unwrap_or_else(|e| fail(ExecutionError::Unavailable(e.to_string())))
    }
}

impl Handler<CloseAllPositions> for OrderExecutionManager {
    type Result = ResponseActFuture<Self, Result<Vec<ExecutionResult>, ExecutionError>>;
    fn handle(&mut self, msg: CloseAllPositions, ctx: &mut Context<Self>) -> Self::Result {
        let res = guarded(self, ctx, |act, ctx| {
            let ids = act.core.open_position_ids();
            let futs: Vec<_> = ids
                .into_iter()
                .map(|(id, cid)| act.close(id, Decimal::ONE, msg.reason.clone(), cid, ctx))
                .collect();
            futs
        });
        match res {
            Err(e) => fail(ExecutionError::Unavailable(e.to_string())),
            Ok(futs) => {
                let mut all: ResponseActFuture<Self, Vec<ExecResult>> = Box::pin(fut::ready(Vec::new()));
                for f in futs {
                    all = Box::pin(all.then(move |mut acc, _, _| {
                        f.map(move |r, _, _| {
                            acc.push(r);
                            acc
                        })
                    }));
                }
                Box::pin(all.map(|results, _, _| {
                    let mut ok = Vec::new();
                    let mut errors = Vec::new();
                    for r in results {
                        match r {
                            Ok(v) => ok.push(v),
                            Err(e) => errors.push(e.to_string()),
                        }
                    }
                    if ok.is_empty() && !errors.is_empty() {
                        Err(ExecutionError::Unavailable(errors.join("; ")))
                    } else {
                        Ok(ok)
                    }
                }))
            }
        }
    }
}

impl Handler<ModifyPosition> for OrderExecutionManager {
    type Result = ResponseActFuture<Self, Result<PositionView, ExecutionError>>;
    fn handle(&mut self, msg: ModifyPosition, ctx: &mut Context<Self>) -> Self::Result {
        let steps = match guarded(self, ctx, |act, _| act.core.plan_modify(&msg)) {
            Err(e) => return fail(ExecutionError::Unavailable(e.to_string())),
            Ok(Err(e)) => return fail(e),
            Ok(Ok(steps)) => steps,
        };
        let pid = msg.position_id;
        let mut chain: ResponseActFuture<Self, Result<(), ExecutionError>> = Box::pin(fut::ready(Ok(())));
        for (kind, target) in steps {
            chain = Box::pin(chain.then(move |prev, act, ctx| {
                if let Err(e) = prev {
                    return fail(e);
                }
                act.move_protection(pid, kind, target, ctx)
            }));
        }
        Box::pin(chain.map(move |res, act, _| {
            res?;
            act.core
                .positions
                .get(&pid)
                .cloned()
                .ok_or_else(|| ExecutionError::Invalid(format!("position {pid} closed meanwhile")))
        }))
    }
}

impl Handler<CancelOrder> for OrderExecutionManager {
    type Result = ResponseActFuture<Self, Result<OrderView, ExecutionError>>;
    fn handle(&mut self, msg: CancelOrder, ctx: &mut Context<Self>) -> Self::Result {
        let res = guarded(self, ctx, |act, ctx| {
            let rec = act.core.begin_cancel(msg.order_id, &msg.reason);
            act.run_effects(ctx);
            rec
        });
        let rec = match res {
            Err(e) => return fail(ExecutionError::Unavailable(e.to_string())),
            Ok(Err(e)) => return fail(e),
            Ok(Ok(rec)) => rec,
        };
        let exchange = self.deps.exchange.clone();
        let cid = rec.view.client_order_id.clone();
        let id = rec.view.id;
        let fut = async move {
            let cancelled = exchange.cancel_order(OrderRef::Client(cid.clone())).await;
            let seen = exchange.query_orders(vec![OrderRef::Client(cid)]).await;
            (cancelled, seen)
        };
        Box::pin(fut.into_actor(self).map(move |(cancelled, seen), act, ctx| {
            let _ = guarded(act, ctx, |act, ctx| {
                if let Ok(orders) = &seen {
                    for ex in orders {
                        act.core.apply_update(id, ex);
                    }
                }
                if act.core.orders.contains_key(&id) {
                    // Not shown closed yet (or the cancel failed): kept at until it is.
                    act.core.request_cancel(id);
                }
                act.run_effects(ctx);
            });
            let view = seen.ok().and_then(|v| v.into_iter().next()).map(|ex| {
                let mut v = rec.view.clone();
                v.status = ex.status;
                v.filled_volume = ex.filled_volume;
                v.avg_fill_price = ex.avg_fill_price;
                v.fee = ex.fee;
                v
            });
            match (cancelled, view) {
                (Ok(()), Some(v)) => Ok(v),
                (Ok(()), None) => Ok(rec.view),
                (Err(e), _) => Err(match e {
                    ExchangeError::Rejected(m) | ExchangeError::Invalid(m) => ExecutionError::Rejected(m),
                    ExchangeError::Unknown(m) => ExecutionError::Unknown(m),
                    other => ExecutionError::Unavailable(other.to_string()),
                }),
            }
        }))
    }
}

impl Handler<GetOrders> for OrderExecutionManager {
    type Result = ResponseFuture<Result<Vec<OrderView>, ExecutionError>>;
    fn handle(&mut self, msg: GetOrders, _: &mut Context<Self>) -> Self::Result {
        let flush = self.writer.acked(Op::Flush);
        let store = self.deps.orders.clone();
        Box::pin(async move {
            let _ = flush.await;
            let list = store
                .list_orders(msg.symbol, msg.open_only, 1000)
                .await
                .map_err(|e| ExecutionError::Unavailable(e.to_string()))?;
            Ok(list
                .into_iter()
                .map(|r| r.view)
                .filter(|v| msg.correlation_id.is_none_or(|c| v.correlation_id == c))
                .collect())
        })
    }
}

impl Handler<GetPositions> for OrderExecutionManager {
    type Result = ResponseActFuture<Self, Result<Vec<PositionView>, ExecutionError>>;
    fn handle(&mut self, msg: GetPositions, _: &mut Context<Self>) -> Self::Result {
        let flush = self.writer.acked(Op::Flush);
        let store = self.deps.orders.clone();
        let fut = async move {
            let _ = flush.await;
            store
                .list_positions(msg.symbol, msg.status, 1000)
                .await
                .map_err(|e| ExecutionError::Unavailable(e.to_string()))
        };
        Box::pin(fut.into_actor(self).map(|res, act, _| {
            res.map(|list| {
                list.into_iter()
                    .map(|mut p| {
                        if matches!(p.status, PositionStatus::Open | PositionStatus::Closing) {
                            if let Some(&px) = act.core.prices.get(&p.symbol) {
                                p.unrealized_pnl = Some(position_pnl(p.side, p.entry_price, px, p.size, p.leverage).0);
                            }
                        }
                        p
                    })
                    .collect()
            })
        }))
    }
}
