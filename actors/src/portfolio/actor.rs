//! The PortfolioRebalancer actor: allocation checks (hourly from the coordinator or forced),
//! rebalance plans executed through the risk engine and the execution manager, DCA batches
//! persisted and executed when due on the business clock (also after a restart), and the hodl
//! bags fed from realised profits.
//!
//! Rebalance trades and hodl purchases change holdings, not positions: they go through the risk
//! engine and `ExecuteTrade` with `ProposalSource::Rebalance` or `ProposalSource::Hodl`
//! (leverage 1), and the execution manager places them as plain spot orders: no position, no
//! stop, not counted toward the position limits, never force-closed.
//!
//! Hodl purchases are real market buys; a bag is credited only when the execution manager
//! accepted the order. Until then the money stays pending. USDT is earmarked at once: the profit
//! already sits in the account as USDT.
//!
//! The risk engine sizes every trade against the equity it learns from the execution manager's
//! portfolio valuations. Until the first valuation (with positive equity) has arrived, no batch
//! is executed: a plan made before it keeps its first batch pending and runs it when the
//! valuation comes, instead of failing with `equity_unavailable`.

use super::hodl::{self, HodlConfig, HodlLedger, HodlView};
use super::rebalance::{
    self, Allocation, ExecutionStrategy, ExecutionType, PortfolioConfig, Prices, RebalanceAction, RebalanceBatch,
    RebalancePlan, RebalanceTrade, TradeAction,
};
use super::store::{HodlTransaction, HodlTxKind, PortfolioStore, RebalanceRecord};
use crate::bus::Topic;
use crate::clock::SharedClock;
use crate::domain::{CorrelationId, OrderType, Regime, Side, Symbol};
use crate::execution::api::{ExecuteTrade, ExecutionResult};
use crate::messages::{EventMeta, HoldingsReport};
use crate::ports::Exchange;
use crate::risk::{ApproveTrade, ProposalSource, TradeProposal};
use crate::supervision::{ActorError, SupervisedActor, SupervisionHandle};
use actix::prelude::*;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

mod handlers;

/// Where prices come from when no candle has been seen yet (e.g. the paper exchange's last price).
pub trait PriceSource: Send + Sync + 'static {
    fn price(&self, symbol: &Symbol) -> Option<Decimal>;
}

impl<F: Fn(&Symbol) -> Option<Decimal> + Send + Sync + 'static> PriceSource for F {
    fn price(&self, symbol: &Symbol) -> Option<Decimal> {
        self(symbol)
    }
}

/// What a strategy advisor (e.g. a DeepSeek model) may change in a plan: only how it executes,
/// never the amounts or sides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrategyAdvice {
    /// Execute everything now instead of in DCA batches.
    pub immediate: bool,
    pub execution_type: Option<ExecutionType>,
    pub reasoning: String,
}

/// Chooses the execution strategy of a rebalance; any error keeps the deterministic plan.
pub trait StrategyAdvisor: Send + Sync + 'static {
    fn advise(&self, plan: &RebalancePlan) -> BoxFuture<'static, Result<StrategyAdvice, String>>;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", content = "message", rename_all = "snake_case")]
pub enum PortfolioError {
    #[error("a rebalance check is already running")]
    Busy,
    #[error("no price for {0}")]
    NoPrice(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Actor(#[from] ActorError),
}

/// Check the allocation and rebalance when the deviation reaches the threshold (or `force`).
#[derive(Debug, Clone, Copy, Message, Serialize, Deserialize)]
#[rtype(result = "Result<RebalancePlan, PortfolioError>")]
pub struct CheckPortfolio {
    pub force: bool,
}

/// Execute the batches that are due on the business clock.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct RebalanceTick;

/// Connects the execution manager after start.
#[derive(Clone, Message)]
#[rtype(result = "()")]
pub struct ConnectExecution(pub Recipient<ExecuteTrade>);

/// The current allocation (no plan, nothing executed).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<Allocation, PortfolioError>")]
pub struct GetAllocation;

/// The hodl bags with pending amounts and valuation.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<HodlView, PortfolioError>")]
pub struct GetHodl;

/// Hodl allocations and purchases, newest first.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Vec<HodlTransaction>, PortfolioError>")]
pub struct GetHodlHistory {
    pub asset: Option<String>,
    pub limit: u32,
}

/// Everything the rebalancer needs.
#[derive(Clone)]
pub struct PortfolioRebalancerConfig {
    pub portfolio: PortfolioConfig,
    pub hodl: HodlConfig,
    pub exchange: Arc<dyn Exchange>,
    pub store: Arc<dyn PortfolioStore>,
    pub risk: Recipient<ApproveTrade>,
    pub execution: Option<Recipient<ExecuteTrade>>,
    /// Where the holdings reports go (`holdings_reports`).
    pub updates: Topic<HoldingsReport>,
    pub clock: SharedClock,
    pub prices: Option<Arc<dyn PriceSource>>,
    pub advisor: Option<Arc<dyn StrategyAdvisor>>,
    /// Wall-clock period of the due-batch check.
    pub tick_interval: Duration,
}

/// A later batch waiting for its time.
#[derive(Debug, Clone, PartialEq)]
struct PendingBatch {
    record_id: Uuid,
    plan_id: Uuid,
    batch: RebalanceBatch,
}

pub struct PortfolioRebalancer {
    sup: SupervisionHandle,
    cfg: PortfolioRebalancerConfig,
    execution: Option<Recipient<ExecuteTrade>>,
    prices: BTreeMap<String, Decimal>,
    /// When each symbol's last candle closed (business time).
    price_at: BTreeMap<String, DateTime<Utc>>,
    pending: Vec<PendingBatch>,
    ledger: HodlLedger,
    purchasing: BTreeSet<String>,
    busy: bool,
    /// Batches executing in the background.
    batches_in_flight: usize,
    /// The open trading positions' share of the balances (from the execution manager's
    /// valuation): not the rebalancer's to rebalance.
    position_footprint: BTreeMap<String, Decimal>,
    loaded: bool,
    /// A portfolio valuation with positive equity has been seen (the risk engine can size trades).
    valued: bool,
}

const SOURCE: &str = "portfolio_rebalancer";
/// A candle older than this is no price to trade on (the risk engine's default
/// `risk.max_price_age_secs`).
const MAX_CANDLE_AGE_SECS: i64 = 120;

impl PortfolioRebalancer {
    pub fn new(sup: SupervisionHandle, cfg: PortfolioRebalancerConfig) -> Self {
        Self {
            sup,
            execution: cfg.execution.clone(),
            cfg,
            prices: BTreeMap::new(),
            price_at: BTreeMap::new(),
            pending: Vec::new(),
            ledger: HodlLedger::default(),
            purchasing: BTreeSet::new(),
            busy: false,
            batches_in_flight: 0,
            position_footprint: BTreeMap::new(),
            loaded: false,
            valued: false,
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.cfg.clock.now()
    }

    fn price_of(&self, asset: &str) -> Option<Decimal> {
        if asset == "USDT" {
            return Some(Decimal::ONE);
        }
        let sym = format!("{asset}/USDT");
        self.prices.get(&sym).copied().or_else(|| {
            let s = Symbol::parse(&sym).ok()?;
            self.cfg.prices.as_ref()?.price(&s)
        })
    }

    fn current_prices(&self) -> Result<Prices, PortfolioError> {
        let btc = self
            .price_of("BTC")
            .filter(|p| *p > Decimal::ZERO)
            .ok_or_else(|| PortfolioError::NoPrice("BTC/USDT".into()))?;
        let xrp = self
            .price_of("XRP")
            .filter(|p| *p > Decimal::ZERO)
            .ok_or_else(|| PortfolioError::NoPrice("XRP/USDT".into()))?;
        Ok(Prices { btc, xrp })
    }

    /// A symbol whose last candle is too old to trade on, if any.
    fn stale_price(&self) -> Option<String> {
        let now = self.now();
        self.price_at
            .iter()
            .find(|(_, at)| now.signed_duration_since(**at) > chrono::Duration::seconds(MAX_CANDLE_AGE_SECS))
            .map(|(s, _)| s.clone())
    }

    /// What the allocation leaves out of the balances: the hodl bags (when configured) and the
    /// open trading positions' footprint.
    fn hodl_excluded(&self) -> BTreeMap<String, Decimal> {
        let mut out = if self.cfg.portfolio.exclude_hodl_bags {
            self.ledger.balances()
        } else {
            BTreeMap::new()
        };
        for (asset, amount) in &self.position_footprint {
            *out.entry(asset.clone()).or_default() += *amount;
        }
        out
    }

    /// Loads bags, today's allocated total and the pending batches.
    fn load(&mut self, ctx: &mut Context<Self>) {
        let store = self.cfg.store.clone();
        let now = self.now();
        let day_start = now
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .map(|d| d.and_utc())
            .unwrap_or(now);
        let fut = async move {
            let bags = store.load_hodl_bags().await?;
            let today = store.hodl_allocated_since(day_start).await?;
            let pending = store.pending_rebalances().await?;
            Ok::<_, crate::ports::StoreError>((bags, today, pending))
        };
        ctx.wait(fut.into_actor(self).map(move |res, act, _| match res {
            Ok((bags, today, pending)) => {
                act.ledger = HodlLedger::new(bags, today, now);
                act.pending = pending.into_iter().filter_map(pending_from_record).collect();
                act.loaded = true;
                tracing::info!(
                    bags = act.ledger.bags.len(),
                    pending_batches = act.pending.len(),
                    "portfolio state loaded"
                );
            }
            Err(e) => tracing::error!(error = %e, "portfolio state not loaded; rebalancing and hodl stay off"),
        }));
    }

    /// Reports the holdings the plan was made on (informational: valuations come from the
    /// execution manager alone).
    fn publish_update(&mut self, alloc: &Allocation, balances: &BTreeMap<String, Decimal>, cid: CorrelationId) {
        let p = alloc.prices;
        let value = |a: &str| balances.get(a).copied().unwrap_or_default() * p.of(a).unwrap_or_default();
        let value_by_symbol: BTreeMap<String, Decimal> = [("BTC/USDT", value("BTC")), ("XRP/USDT", value("XRP"))]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        self.cfg.updates.publish(HoldingsReport {
            meta: EventMeta::caused_by(SOURCE, self.now(), cid),
            value_usd: value("BTC") + value("XRP") + value("USDT"),
            value_by_symbol,
            balances: balances.clone(),
            allocation_pct: alloc.pct_map(),
        });
    }

    /// Starts executing one batch in the background; the record is marked `executing` first so a
    /// restart never executes it twice.
    /// `first`: batch 0 of a new plan; the check stays busy until it finished.
    fn spawn_batch(
        &mut self,
        ctx: &mut Context<Self>,
        record_id: Uuid,
        plan_id: Uuid,
        batch: RebalanceBatch,
        first: bool,
    ) {
        let prices = self.current_prices();
        let store = self.cfg.store.clone();
        let risk = self.cfg.risk.clone();
        let exec = self.execution.clone();
        let clock = self.cfg.clock.clone();
        let fut = async move {
            let started = clock.now();
            if let Err(e) = store
                .finish_rebalance(
                    record_id,
                    "executing".into(),
                    started,
                    serde_json::json!({"started_at": started}),
                )
                .await
            {
                tracing::error!(error = %e, batch = batch.index, "batch not marked executing; not executed");
                return;
            }
            let (status, results) = match prices {
                Ok(prices) => run_batch(&risk, exec.as_ref(), &batch, prices, plan_id).await,
                Err(e) => ("failed".to_owned(), serde_json::json!({"error": e.to_string()})),
            };
            if status == "executed" {
                tracing::info!(%plan_id, batch = batch.index, status = %status, "rebalance batch finished");
            } else {
                let reason = failure_reasons(&results);
                tracing::warn!(%plan_id, batch = batch.index, status = %status, reason = %reason, "rebalance batch not fully executed");
            }
            if let Err(e) = store.finish_rebalance(record_id, status, clock.now(), results).await {
                tracing::error!(error = %e, "rebalance batch outcome not stored");
            }
        };
        self.batches_in_flight += 1;
        ctx.spawn(fut.into_actor(self).map(move |(), act, _| {
            act.batches_in_flight = act.batches_in_flight.saturating_sub(1);
            if first {
                act.busy = false;
            }
        }));
    }

    fn due_batches(&mut self, ctx: &mut Context<Self>) {
        if !self.valued {
            // The risk engine has no equity yet: due batches wait for the first valuation.
            return;
        }
        let now = self.now();
        if let Some(symbol) = self.stale_price() {
            // The risk engine refuses a trade on a stale price (the warm-up history before the
            // feed is live): due batches wait for the next candle instead of failing.
            tracing::debug!(%symbol, "rebalance batches wait for a fresh candle");
            return;
        }
        let (due, keep): (Vec<PendingBatch>, Vec<PendingBatch>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|b| b.batch.due_at <= now);
        self.pending = keep;
        for b in due {
            tracing::info!(plan_id = %b.plan_id, batch = b.batch.index, "rebalance batch due");
            self.spawn_batch(ctx, b.record_id, b.plan_id, b.batch, false);
        }
    }

    /// Applies a realised profit to the hodl ledger, persists it, then buys what is due.
    fn on_profit(&mut self, ctx: &mut Context<Self>, profit: Decimal, source: Option<Uuid>) {
        let now = self.now();
        let alloc = match self.ledger.allocate(&self.cfg.hodl, profit, now) {
            Ok(a) => a,
            Err(e) => {
                tracing::info!(%profit, reason = %e, "no hodl allocation");
                return;
            }
        };
        let mut txs = Vec::new();
        for (asset, usd) in alloc.parts() {
            if usd.is_zero() {
                continue;
            }
            txs.push(tx(asset, HodlTxKind::Allocation, usd, None, None, source, now));
            if asset == "USDT" {
                txs.push(tx(
                    asset,
                    HodlTxKind::Purchase,
                    usd,
                    Some(usd),
                    Some(Decimal::ONE),
                    source,
                    now,
                ));
            }
        }
        tracing::info!(%profit, total = %alloc.total_usd, "hodl allocation");
        let bags = self.ledger.bags.values().cloned().collect();
        let store = self.cfg.store.clone();
        ctx.spawn(
            async move {
                if let Err(e) = store.record_hodl(bags, txs).await {
                    tracing::error!(error = %e, "hodl allocation not stored");
                }
            }
            .into_actor(self),
        );
        self.buy_due(ctx);
    }

    fn buy_due(&mut self, ctx: &mut Context<Self>) {
        for (asset, pending_usd) in self.ledger.due_purchases(&self.cfg.hodl) {
            if self.purchasing.contains(&asset) {
                continue;
            }
            let Some(price) = self.price_of(&asset).filter(|p| *p > Decimal::ZERO) else {
                tracing::warn!(asset = %asset, "no price: hodl purchase deferred");
                continue;
            };
            let amount = hodl::purchase_amount(&asset, pending_usd, price);
            let Some(exec) = self.execution.clone() else {
                tracing::warn!(asset = %asset, "execution not connected: hodl purchase deferred");
                continue;
            };
            if amount.is_zero() {
                continue;
            }
            let Ok(symbol) = Symbol::parse(&format!("{asset}/USDT")) else {
                continue;
            };
            self.purchasing.insert(asset.clone());
            let risk = self.cfg.risk.clone();
            let mut proposal = proposal(symbol, Side::Buy, pending_usd, price, false, CorrelationId::new());
            proposal.source = ProposalSource::Hodl;
            let fut = async move {
                let approved = risk
                    .send(ApproveTrade(proposal))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?
                    .map_err(|refused| format!("risk: {}", refused.verdict().reason.clone().unwrap_or_default()))?;
                let req = ExecuteTrade {
                    trade: approved,
                    order_type: OrderType::Market,
                    limit_price: Some(price),
                    volume: Some(amount),
                    note: Some("hodl purchase".into()),
                };
                exec.send(req)
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())
            };
            ctx.spawn(fut.into_actor(self).map(move |res, act, _| {
                act.purchasing.remove(&asset);
                match res {
                    Ok(_) => {
                        let now = act.now();
                        act.ledger.apply_purchase(&asset, pending_usd, amount, now);
                        tracing::info!(asset = %asset, %amount, %price, "hodl purchase");
                        let rec = tx(
                            &asset,
                            HodlTxKind::Purchase,
                            pending_usd,
                            Some(amount),
                            Some(price),
                            None,
                            now,
                        );
                        let bags = act.ledger.bags.values().cloned().collect();
                        let store = act.cfg.store.clone();
                        actix::spawn(async move {
                            if let Err(e) = store.record_hodl(bags, vec![rec]).await {
                                tracing::error!(error = %e, "hodl purchase not stored");
                            }
                        });
                    }
                    Err(e) => tracing::warn!(asset = %asset, error = %e, "hodl purchase failed; amount stays pending"),
                }
            }));
        }
    }
}

fn tx(
    asset: &str,
    kind: HodlTxKind,
    usd: Decimal,
    amount: Option<Decimal>,
    price: Option<Decimal>,
    source: Option<Uuid>,
    at: DateTime<Utc>,
) -> HodlTransaction {
    HodlTransaction {
        id: Uuid::new_v4(),
        asset: asset.to_owned(),
        kind,
        amount_usd: usd,
        amount_asset: amount,
        price,
        source_trade_id: source,
        at,
    }
}

fn proposal(
    symbol: Symbol,
    side: Side,
    size_usd: Decimal,
    price: Decimal,
    reduce_only: bool,
    cid: CorrelationId,
) -> TradeProposal {
    TradeProposal {
        symbol,
        side,
        size_usd,
        entry_price: price,
        stop_loss: None,
        take_profit: None,
        leverage: 1,
        confidence: 0.8,
        regime: Regime::Unknown,
        source: ProposalSource::Rebalance,
        correlation_id: cid,
        reduce_only,
    }
}

/// The reasons of the trades of a batch that were not executed (rule codes or errors), for the log.
fn failure_reasons(results: &serde_json::Value) -> String {
    let trades = results.get("trades").and_then(|t| t.as_array());
    let mut out: Vec<String> = trades
        .into_iter()
        .flatten()
        .filter(|t| t.get("status").and_then(|s| s.as_str()) != Some("executed"))
        .map(|t| {
            format!(
                "{} {}: {}",
                t.get("symbol").and_then(|v| v.as_str()).unwrap_or("?"),
                t.get("status").and_then(|v| v.as_str()).unwrap_or("?"),
                t.get("reason").and_then(|v| v.as_str()).unwrap_or("no reason given")
            )
        })
        .collect();
    if let Some(e) = results.get("error").and_then(|e| e.as_str()) {
        out.push(e.to_owned());
    }
    out.join("; ")
}

fn pending_from_record(r: RebalanceRecord) -> Option<PendingBatch> {
    let plan_id = r
        .plan
        .get("plan_id")
        .and_then(|v| v.as_str())
        .and_then(|s| Uuid::parse_str(s).ok())?;
    let batch: RebalanceBatch = serde_json::from_value(r.plan.get("batch")?.clone())
        .map_err(|e| tracing::error!(error = %e, id = %r.id, "stored batch unreadable"))
        .ok()?;
    Some(PendingBatch {
        record_id: r.id,
        plan_id,
        batch,
    })
}

/// Risk-checks and executes the trades of one batch in order (sells first). Returns the batch
/// status (`executed`, `partial`, `failed`) and the per-trade outcomes.
async fn run_batch(
    risk: &Recipient<ApproveTrade>,
    exec: Option<&Recipient<ExecuteTrade>>,
    batch: &RebalanceBatch,
    prices: Prices,
    plan_id: Uuid,
) -> (String, serde_json::Value) {
    let mut results = Vec::new();
    let mut ok = 0usize;
    let cid = CorrelationId(plan_id);
    for t in &batch.trades {
        let outcome = run_trade(risk, exec, t, prices, cid, batch.index).await;
        if outcome.get("status").and_then(|s| s.as_str()) == Some("executed") {
            ok += 1;
        }
        results.push(outcome);
    }
    let status = if ok == batch.trades.len() {
        "executed"
    } else if ok == 0 {
        "failed"
    } else {
        "partial"
    };
    (status.to_owned(), serde_json::json!({ "trades": results }))
}

async fn run_trade(
    risk: &Recipient<ApproveTrade>,
    exec: Option<&Recipient<ExecuteTrade>>,
    t: &RebalanceTrade,
    prices: Prices,
    cid: CorrelationId,
    batch_index: u32,
) -> serde_json::Value {
    let fail = |status: &str, why: String| serde_json::json!({"symbol": t.symbol, "action": t.action, "amount_usd": t.amount_usd, "status": status, "reason": why});
    let Ok(symbol) = Symbol::parse(&t.symbol) else {
        return fail("failed", format!("unknown symbol {}", t.symbol));
    };
    let Some(price) = prices.of(symbol.base()) else {
        return fail("failed", format!("no price for {}", t.symbol));
    };
    let (side, reduce_only) = match t.action {
        TradeAction::Buy => (Side::Buy, false),
        // A spot sell of holdings only reduces exposure.
        TradeAction::Sell => (Side::Sell, true),
    };
    let p = proposal(symbol, side, t.amount_usd, price, reduce_only, cid);
    let judgement = match risk.send(ApproveTrade(p)).await {
        Ok(Ok(j)) => j,
        Ok(Err(e)) => return fail("failed", format!("risk engine: {e}")),
        Err(e) => return fail("failed", format!("risk engine unavailable: {e}")),
    };
    let approved = match judgement {
        Ok(approved) => approved,
        Err(refused) => {
            let verdict = refused.verdict();
            return fail(
                "rejected",
                format!(
                    "{:?}: {}",
                    verdict.rejections,
                    verdict.reason.clone().unwrap_or_default()
                ),
            );
        }
    };
    let Some(exec) = exec else {
        return fail("failed", "execution manager not connected".into());
    };
    let size = approved.value().size_usd;
    let req = ExecuteTrade {
        trade: approved,
        order_type: match t.execution_type {
            ExecutionType::Limit => OrderType::Limit,
            ExecutionType::Market => OrderType::Market,
        },
        limit_price: Some(price),
        volume: None,
        note: Some(format!("rebalance batch {batch_index}")),
    };
    match exec.send(req).await {
        Ok(Ok(ExecutionResult { orders, .. })) => serde_json::json!({
            "symbol": t.symbol, "action": t.action, "amount_usd": t.amount_usd, "executed_usd": size,
            "status": "executed", "order_ids": orders.iter().map(|o| o.id).collect::<Vec<_>>(),
        }),
        Ok(Err(e)) => fail("failed", e.to_string()),
        Err(e) => fail("failed", format!("execution unavailable: {e}")),
    }
}

fn records_for(plan: &RebalancePlan) -> Vec<RebalanceRecord> {
    let count = u32::try_from(plan.batches.len()).unwrap_or(u32::MAX).max(1);
    let strategy = plan.execution_strategy.as_str().to_owned();
    let mut out = Vec::new();
    let first_status = if plan.action == RebalanceAction::NoAction {
        "no_action"
    } else {
        "pending"
    };
    out.push(RebalanceRecord {
        id: plan.id,
        status: first_status.into(),
        execution_strategy: strategy.clone(),
        plan: serde_json::to_value(plan).unwrap_or_default(),
        batch_index: 0,
        batch_count: count,
        due_at: Some(plan.timestamp),
        executed_at: None,
        created_at: plan.timestamp,
    });
    for b in plan.batches.iter().skip(1) {
        out.push(RebalanceRecord {
            id: Uuid::new_v4(),
            status: "pending".into(),
            execution_strategy: strategy.clone(),
            plan: serde_json::json!({ "plan_id": plan.id, "batch": b }),
            batch_index: b.index,
            batch_count: count,
            due_at: Some(b.due_at),
            executed_at: None,
            created_at: plan.timestamp,
        });
    }
    out
}

/// Applies advice: only the execution type and immediate-vs-batched may change.
fn apply_advice(plan: &mut RebalancePlan, advice: StrategyAdvice, cfg: &PortfolioConfig) {
    if let Some(et) = advice.execution_type {
        for t in &mut plan.rebalance_trades {
            t.execution_type = et;
        }
    }
    if advice.immediate {
        plan.execution_strategy = ExecutionStrategy::Immediate;
        plan.batches = vec![RebalanceBatch {
            index: 0,
            due_at: plan.timestamp,
            trades: plan.rebalance_trades.clone(),
        }];
    } else {
        let (s, b) = rebalance::batch_trades(&plan.rebalance_trades, cfg, plan.timestamp);
        plan.execution_strategy = s;
        plan.batches = b;
    }
    plan.reasoning = format!("{} Strategy: {}", plan.reasoning, advice.reasoning);
}

impl Actor for PortfolioRebalancer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.sup.on_started() {
            self.load(ctx);
            ctx.run_interval(self.cfg.tick_interval, |_, ctx| ctx.notify(RebalanceTick));
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.sup.on_stopped();
    }
}

impl actix::Supervised for PortfolioRebalancer {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.sup.on_restarting();
        // Volatile state goes; `started()` reloads bags and pending batches from the store.
        self.pending.clear();
        self.ledger = HodlLedger::default();
        self.purchasing.clear();
        self.busy = false;
        self.loaded = false;
    }
}

impl SupervisedActor for PortfolioRebalancer {
    fn supervision(&self) -> &SupervisionHandle {
        &self.sup
    }
}

crate::supervised_basics!(PortfolioRebalancer);

/// The earliest business time at which a pending rebalance batch is due; `None` without any.
/// A feed that runs ahead of the wall clock (a backtest) hands over candles up to this time.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Option<chrono::DateTime<chrono::Utc>>")]
pub struct NextBatchDue;

/// Checks and batches under way (a backtest settles until none is left).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "usize")]
pub struct RebalancerInFlight;
