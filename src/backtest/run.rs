//! `triplegain backtest`: the full actor system (agents, coordinator, risk engine, paper exchange,
//! execution manager, rebalancer) driven by replayed candle files on the business clock.
//!
//! The run owns the feed loop: groups of candles move the business clock and are delivered to
//! the market data actor with `send().await` (back-pressure: the feed never runs ahead of what
//! the pipeline has taken). Candles go in large batches while nothing is due and nothing is
//! live, one minute at a time while orders or positions are open, and the whole pipeline is
//! pinged stage by stage (settled) whenever a scheduled task is due or a batch set off work, so
//! what a batch triggers is processed before the clock moves on (see [`run`]). At the end,
//! in-flight work is settled, the positions still open are closed one by one in a fixed order
//! at the last prices, and the report is computed from the stored fills (round trips per
//! position), an hourly equity curve valued on the paper exchange, the risk alerts by type, the
//! regime in force when each trade opened and the hodl bags. `rebalances` counts the filled
//! orders that belong to no position (the rebalancer's).
//!
//! Determinism: business time comes only from the candles, the paper exchange is seeded, the
//! batching depends only on the data and the actors' state, and the order of work is fixed by
//! the round trips. The actors' wall-clock timers (schedule evaluation, order polls, position
//! snapshots, the rebalancer's tick) are switched off for the run; candles and business-clock
//! ticks drive that work instead. Models are never called: rule-based decisions by default, or
//! the answers of a recorded run (`--llm-replay`).

use super::report::{EquityPoint, FinalAllocation, Report, ReportInput, Timing};
use crate::analysis::ModelSource;
use crate::llm::chain::ReplayBook;
use crate::market::driver::batch_close_time;
use crate::market::{parse_replay_arg, ReplayFeed};
use crate::settings::{MarketSource, Settings};
use crate::startup::{build_system_with, System};
use actix::{Actor, Recipient};
use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use triplegain_actors::coordinator::NextDue;
use triplegain_actors::domain::{Candle, Symbol};
use triplegain_actors::execution::api::{ClosePosition, GetOrders, GetPositions, PositionView};
use triplegain_actors::execution::manager::{GetActivity, PollNow, QuietPrefix};
use triplegain_actors::execution::paper::PaperExchange;
use triplegain_actors::market::CandleBatch;
use triplegain_actors::messages::Ping;
use triplegain_actors::portfolio::{GetAllocation, GetHodl, NextBatchDue};
use triplegain_actors::risk::GetVerdictCounts;

mod collector;
mod trades;
use collector::{Collected, Collector, Flush};
use trades::ExitClassifier;
pub use trades::{holding_trades, round_trips, round_trips_with, write_trades_csv};

/// How long a ping round trip may take before the run gives up waiting for that actor.
const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// Settling rounds after the feed ends with no change in orders and positions.
const STABLE_ROUNDS: usize = 3;
/// Most settling rounds after the feed ends.
const MAX_SETTLE_ROUNDS: usize = 50;
/// Settle rounds waiting for the execution manager's requests in flight.
const MAX_IN_FLIGHT_ROUNDS: usize = 1000;
/// Most decision records and model answers a backtest keeps in memory.
const BACKTEST_MAX_RECORDS: usize = 5_000;
/// Most candles in one [`CandleBatch`].
const MAX_BATCH: usize = 4096;

/// What to run.
#[derive(Debug, Clone)]
pub struct BacktestOptions {
    /// `SYMBOL=FILE` or FILE (symbol from the file name).
    pub candles: Vec<String>,
    /// Only candles opening at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Only candles opening before this time.
    pub to: Option<DateTime<Utc>>,
    /// Seed of the paper exchange (slippage, partial fills).
    pub seed: u64,
    /// Answer every model call from this record (`llm.record_path` of a live or paper run);
    /// without it the agents use no model at all (rule-based decisions).
    pub llm_replay: Option<PathBuf>,
    /// While orders or positions are live, hand the pipeline one business minute at a time even
    /// when nothing can happen in the minutes that follow (slower; the report must not change).
    pub minute_by_minute: bool,
}

/// The outcome of a run: the report plus the inputs it was computed from.
#[derive(Debug, Clone)]
pub struct BacktestOutcome {
    pub report: Report,
    pub input: ReportInput,
}

/// Parses `--from`/`--to`: RFC 3339 or a date (`2025-01-31` = its midnight UTC).
///
/// # Errors
/// A message naming the value.
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| format!("{s:?} is neither RFC 3339 nor YYYY-MM-DD"))
}

/// Forces the settings a backtest runs on: paper mode, in-memory stores, no feed of the system's
/// own (the run delivers the candles), the files' symbols, the given seed.
fn backtest_settings(mut settings: Settings, symbols: &[Symbol], seed: u64) -> Settings {
    settings.app.mode = triplegain_actors::domain::TradingMode::Paper;
    settings.database.url = None;
    // The report reads fills, positions and hodl bags, not the decision log: keep only the
    // recent part of it, so memory stays flat over a long run.
    settings.database.memory_max_records = settings.database.memory_max_records.min(BACKTEST_MAX_RECORDS);
    settings.market.source = MarketSource::External;
    settings.market.replay_files = Vec::new();
    settings.market.symbols = symbols.iter().map(|s| s.as_str().to_owned()).collect();
    settings.execution.paper.seed = seed;
    // The coordinator trades the files' symbols; its schedules follow the feed's business-clock
    // ticks only (a wall-clock evaluation would depend on the machine's speed), and technical
    // analysis runs when a task that reads it is due: it keeps no state between runs, so its
    // dependents see the same inputs as with a run every minute.
    settings.orchestration.symbols = settings.market.symbols.clone();
    settings.orchestration.evaluate_every_seconds = 0;
    settings.orchestration.tasks.ta_analysis.on_demand = true;
    // Order polls, position snapshots and exchange syncs on the wall clock would land at
    // points that depend on the machine's speed: candles drive the polls instead.
    let far = 365 * 86_400;
    settings.execution.tracking.paper_poll_interval_ms = far * 1000;
    settings.execution.tracking.poll_interval_ms = far * 1000;
    settings.execution.tracking.snapshot_interval_secs = far;
    settings.execution.tracking.sync_interval_secs = far;
    // The protection watchdog runs on every candle (business time) instead.
    settings.execution.protection.check_interval_ms = far * 1000;
    // The paper account ends with the run: saving it would only cost time.
    settings.execution.tracking.persist_paper = false;
    // Nor the coordinator's state (task clocks, statistics).
    settings.ephemeral = true;
    // Nothing is recorded: a backtest calls no model.
    settings.llm.record_path = String::new();
    settings
}

/// The pipeline's actors, pinged in the order work flows through them.
struct Pipeline {
    /// Every stage: market data, coordinator, agents, coordinator again, risk, execution,
    /// rebalancer.
    all: Vec<Recipient<Ping>>,
    /// The subscribers of the per-candle topics (candles, snapshots, ticks).
    feed_subscribers: Vec<Recipient<Ping>>,
}

impl Pipeline {
    fn new(system: &System, agent_names: &[&'static str]) -> anyhow::Result<Self> {
        let registry = &system.state.registry;
        let get = |name: &str| {
            registry
                .ping_recipient(name)
                .with_context(|| format!("actor {name} is not running"))
        };
        let mut all = vec![get("market_data")?, get("coordinator")?];
        for name in agent_names {
            all.push(get(name)?);
        }
        for name in [
            "coordinator",
            "risk_engine",
            "execution_manager",
            "portfolio_rebalancer",
        ] {
            all.push(get(name)?);
        }
        let feed_subscribers = [
            "execution_manager",
            "portfolio_rebalancer",
            "risk_engine",
            "coordinator",
        ]
        .into_iter()
        .map(get)
        .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self { all, feed_subscribers })
    }

    /// Pings every stage in order, twice, so that what a batch triggered (ticks → schedules →
    /// agents → signals → risk → orders) is handled before the clock moves on.
    async fn settle(&self) {
        within_timeout(async {
            for _ in 0..2 {
                for p in &self.all {
                    let _ = p.send(Ping).await;
                }
                tokio::task::yield_now().await;
            }
        })
        .await;
    }

    /// Waits until the per-candle topics' subscribers have handled a delivered batch.
    async fn sync_feed(&self) {
        // The pings only wait (they change nothing), so they go out together.
        within_timeout(async {
            futures::future::join_all(self.feed_subscribers.iter().map(|p| p.send(Ping))).await;
        })
        .await;
    }
}

/// Runs a round of pings, giving up (with a warning) when an actor does not answer within
/// [`PING_TIMEOUT`]. One timer per round, not one per ping: the rounds run after every batch.
async fn within_timeout(round: impl std::future::Future<Output = ()>) {
    if actix::clock::timeout(PING_TIMEOUT, round).await.is_err() {
        tracing::warn!("an actor did not answer a ping within {PING_TIMEOUT:?}");
    }
}

/// Events published on the topics a candle can set off work on (signals, alerts, execution,
/// portfolio, analysis, system): when this changes between two batches, the pipeline settles.
fn cascade_count(system: &System) -> u64 {
    let b = &system.state.bus;
    b.ta_signals.published()
        + b.regime_updates.published()
        + b.sentiment_updates.published()
        + b.trading_signals.published()
        + b.risk_alerts.published()
        + b.execution_events.published()
        + b.portfolio_updates.published()
        + b.holdings_reports.published()
        + b.system_events.published()
}

/// Orders and positions as a comparable fingerprint, to tell when in-flight work is done.
async fn book_fingerprint(system: &System) -> String {
    let orders = system
        .state
        .execution
        .send(GetOrders::default())
        .await
        .ok()
        .and_then(Result::ok)
        .map(|o| serde_json::to_string(&o).unwrap_or_default())
        .unwrap_or_default();
    let positions = system
        .state
        .execution
        .send(GetPositions::default())
        .await
        .ok()
        .and_then(Result::ok)
        .map(|p| serde_json::to_string(&p).unwrap_or_default())
        .unwrap_or_default();
    format!("{orders}|{positions}")
}

/// Settles until the book stays the same for a few rounds.
async fn settle_book(system: &System, pipeline: &Pipeline) {
    let mut last = String::new();
    let mut stable = 0;
    for _ in 0..MAX_SETTLE_ROUNDS {
        pipeline.settle().await;
        let now = book_fingerprint(system).await;
        if now == last {
            stable += 1;
            if stable >= STABLE_ROUNDS {
                return;
            }
        } else {
            stable = 0;
            last = now;
        }
    }
}

/// Account value in `quote` on the paper exchange at business time `at`; exposure is what is
/// not held as `quote` cash; the baseline's value at the same prices when it is fixed.
fn sample(paper: &PaperExchange, quote: &str, at: DateTime<Utc>, baseline: Option<&BaselineBook>) -> EquityPoint {
    let equity = paper.equity_in(quote).total;
    let cash: Decimal = paper.available_balances().get(quote).copied().unwrap_or_default()
        + paper.reserved_balances().get(quote).copied().unwrap_or_default();
    EquityPoint {
        at,
        equity: equity.normalize(),
        exposure_usd: (equity - cash).max(Decimal::ZERO).normalize(),
        baseline: baseline.map(|b| b.value(paper)),
    }
}

/// The buy-and-hold baseline: the start capital bought at the target allocation at the first
/// prices (taker fee paid), then held.
struct BaselineBook {
    cash: Decimal,
    units: Vec<(Symbol, Decimal)>,
}

impl BaselineBook {
    /// `None` until every symbol has a price (its first close).
    fn fix(
        first_prices: &BTreeMap<Symbol, Decimal>,
        symbols: &[Symbol],
        capital: Decimal,
        targets: &triplegain_actors::portfolio::rebalance::TargetAllocation,
        taker_fee_pct: Decimal,
    ) -> Option<Self> {
        let mut cash = capital;
        let mut units = Vec::new();
        for s in symbols {
            let price = first_prices.get(s).copied().filter(|p| *p > Decimal::ZERO)?;
            let usd = capital * targets.of(s.base()) / Decimal::ONE_HUNDRED;
            cash -= usd;
            units.push((
                s.clone(),
                usd * (Decimal::ONE - taker_fee_pct / Decimal::ONE_HUNDRED) / price,
            ));
        }
        Some(Self { cash, units })
    }

    fn value(&self, paper: &PaperExchange) -> Decimal {
        let held: Decimal = self
            .units
            .iter()
            .map(|(s, u)| *u * paper.last_price(s).unwrap_or_default())
            .sum();
        (self.cash + held).round_dp(8).normalize()
    }
}

/// The candle groups of the run (one business minute each), with look-ahead.
struct Groups<'a> {
    feed: ReplayFeed,
    in_range: Box<dyn Fn(&Candle) -> bool + 'a>,
    /// Groups read ahead or handed back, in time order.
    ahead: std::collections::VecDeque<(DateTime<Utc>, Vec<Candle>)>,
}

impl Groups<'_> {
    fn fill(&mut self) -> anyhow::Result<()> {
        if !self.ahead.is_empty() {
            return Ok(());
        }
        while let Some(mut group) = self.feed.next_group().map_err(|e| anyhow::anyhow!("{e}"))? {
            group.retain(|c| (self.in_range)(c));
            if let Some(close) = batch_close_time(&group) {
                self.ahead.push_back((close, group));
                break;
            }
        }
        Ok(())
    }

    /// The close time of the next group.
    fn peek(&mut self) -> anyhow::Result<Option<DateTime<Utc>>> {
        self.fill()?;
        Ok(self.ahead.front().map(|(t, _)| *t))
    }

    fn take(&mut self) -> anyhow::Result<Option<(DateTime<Utc>, Vec<Candle>)>> {
        self.fill()?;
        Ok(self.ahead.pop_front())
    }

    /// Hands groups back, to be taken again first (in the given order).
    fn give_back(&mut self, groups: impl DoubleEndedIterator<Item = (DateTime<Utc>, Vec<Candle>)>) {
        for g in groups.rev() {
            self.ahead.push_front(g);
        }
    }
}

/// When the pipeline must next settle: the next scheduled coordinator task or rebalance batch
/// (`settle_at`), and the due time of the next rebalance batch (`alone_at`). Coordinator tasks
/// start on the business tick that follows a whole batch, so a batch may end with the minute that
/// reaches them; a due rebalance batch starts on the first candle its due time has passed, so
/// the minute that reaches it goes alone (the orders it places meet only later prices).
#[derive(Debug, Clone, Copy, Default)]
struct Boundaries {
    settle_at: Option<DateTime<Utc>>,
    alone_at: Option<DateTime<Utc>>,
}

async fn next_boundary(system: &System) -> anyhow::Result<Boundaries> {
    let task = system
        .state
        .coordinator
        .send(NextDue)
        .await
        .map_err(|e| anyhow::anyhow!("coordinator not reachable: {e}"))?;
    let batch = system
        .state
        .portfolio
        .send(NextBatchDue)
        .await
        .map_err(|e| anyhow::anyhow!("portfolio rebalancer not reachable: {e}"))?;
    Ok(Boundaries {
        settle_at: task.into_iter().chain(batch).min(),
        alone_at: batch,
    })
}

/// Lets the pipeline settle until the execution manager has nothing in flight (a placement, a
/// protective order, a cancel, a poll): the next minute then meets the account as a real exchange
/// would after those requests, whatever the machine's speed.
///
/// `rebalancer`: wait for the rebalancer's batches and hodl purchases too (they start only at a
/// boundary or from a cascade, so a plain live minute need not ask). Returns the manager's
/// activity when nothing was left in flight (whether orders or positions are live).
async fn settle_in_flight(
    system: &System,
    pipeline: &Pipeline,
    rebalancer: bool,
) -> anyhow::Result<triplegain_actors::execution::manager::Activity> {
    let mut last = None;
    for _ in 0..MAX_IN_FLIGHT_ROUNDS {
        let a = system
            .state
            .execution
            .send(GetActivity)
            .await
            .map_err(|e| anyhow::anyhow!("execution manager not reachable: {e}"))?;
        let batches = if rebalancer && a.in_flight == 0 {
            system
                .state
                .portfolio
                .send(triplegain_actors::portfolio::actor::RebalancerInFlight)
                .await
                .map_err(|e| anyhow::anyhow!("portfolio rebalancer not reachable: {e}"))?
        } else {
            0
        };
        if a.in_flight == 0 && batches == 0 {
            return Ok(a);
        }
        last = Some(a);
        pipeline.settle().await;
    }
    tracing::warn!("the execution manager still had requests in flight after {MAX_IN_FLIGHT_ROUNDS} rounds");
    last.ok_or_else(|| anyhow::anyhow!("no activity read"))
}

/// Whether orders or positions are live: then every business minute goes to the paper
/// exchange on its own.
async fn trading_live(system: &System) -> anyhow::Result<bool> {
    let a = system
        .state
        .execution
        .send(GetActivity)
        .await
        .map_err(|e| anyhow::anyhow!("execution manager not reachable: {e}"))?;
    Ok(!a.idle())
}

/// How many of `candles`, delivered in order, would change nothing on the paper exchange (no
/// fill, trigger or cancel) and nothing in the execution manager (no stop breached, no trailing
/// stop moved, nothing in flight): the candles that can go to the pipeline in one batch.
async fn quiet(system: &System, paper: &PaperExchange, candles: &[Candle]) -> anyhow::Result<usize> {
    let on_exchange = candles
        .iter()
        .position(|c| paper.candle_would_act(c))
        .unwrap_or(candles.len());
    if on_exchange == 0 {
        return Ok(0);
    }
    let prices = candles[..on_exchange]
        .iter()
        .map(|c| (c.symbol.clone(), c.close))
        .collect();
    system
        .state
        .execution
        .send(QuietPrefix(prices))
        .await
        .map_err(|e| anyhow::anyhow!("execution manager not reachable: {e}"))
}

/// Fails the run when the agents asked the model record for an answer it does not hold.
fn check_replay(book: Option<&ReplayBook>) -> anyhow::Result<()> {
    let Some(book) = book else { return Ok(()) };
    let misses = book.misses();
    if misses.is_empty() {
        return Ok(());
    }
    let mut keys: Vec<String> = misses.iter().map(ToString::to_string).collect();
    keys.dedup();
    anyhow::bail!(
        "--llm-replay {}: no recorded answer for {} (agent/model/prompt hash): {}",
        book.path().display(),
        if keys.len() == 1 { "this key" } else { "these keys" },
        keys.join(", ")
    )
}

/// Runs the backtest. `progress` is called with the candles delivered so far.
///
/// The feed loop hands the market data actor as many candles per [`CandleBatch`] as it can
/// without changing what the pipeline sees:
/// - up to the next time a coordinator task or a rebalance batch is due, and the whole pipeline
///   settles before the clock moves on: the minute that reaches a task ends its batch, the minute
///   that reaches a rebalance batch goes alone (see [`Boundaries`]);
/// - while orders or positions are live, only minutes in which nothing can happen on the paper
///   exchange (no fill, trigger or cancel) or to a position (no stop breached, no trailing stop
///   moved) go together, judged on the same rules the exchange and the execution manager apply;
///   a minute that could set something off goes alone, so fills, stops and trailing stops meet
///   every price at its own time (`minute_by_minute` sends every live minute alone);
/// - never across an hour, so the hourly equity sample sees that hour's last prices;
/// - at most [`MAX_BATCH`] candles.
///
/// After each batch the per-candle subscribers are synchronised; when the batch set off work
/// (a signal, an alert, an execution or portfolio event) the whole pipeline settles.
///
/// # Errors
/// Unreadable or malformed candle files (naming file and line), unusable settings, an answer
/// missing from the `--llm-replay` record (naming its key).
pub async fn run(
    settings: Settings,
    opts: &BacktestOptions,
    mut progress: impl FnMut(u64),
) -> anyhow::Result<BacktestOutcome> {
    let started = Instant::now();
    let files = opts
        .candles
        .iter()
        .map(|a| parse_replay_arg(a).map_err(|e| anyhow::anyhow!("--candles {a}: {e}")))
        .collect::<anyhow::Result<Vec<(Symbol, PathBuf)>>>()?;
    let feed = ReplayFeed::open(files).map_err(|e| anyhow::anyhow!("{e}"))?;
    let symbols: Vec<Symbol> = feed.timeframes().into_iter().map(|(s, _)| s).collect();
    let tfs = feed.timeframes();
    if tfs.windows(2).any(|w| w[0].1 != w[1].1) {
        anyhow::bail!("every candle file must have the same timeframe ({tfs:?})");
    }
    let (from, to) = (opts.from, opts.to);
    let mut groups = Groups {
        feed,
        in_range: Box::new(move |c: &Candle| {
            from.is_none_or(|f| c.open_time >= f) && to.is_none_or(|t| c.open_time < t)
        }),
        ahead: std::collections::VecDeque::new(),
    };
    let book = match &opts.llm_replay {
        Some(path) => {
            Some(ReplayBook::load_jsonl(path).map_err(|e| anyhow::anyhow!("--llm-replay {}: {e}", path.display()))?)
        }
        None => None,
    };

    // The first group inside the range fixes the business clock's start.
    let start = groups.peek()?;

    let settings = backtest_settings(settings, &symbols, opts.seed);
    let models = match &book {
        Some(b) => ModelSource::Replay(b.clone()),
        None => ModelSource::RuleBased,
    };
    let system = build_system_with(&settings, start, models)
        .await
        .context("starting the actor system")?;
    let clock = system
        .feed_clock
        .clone()
        .context("the backtest needs a business clock driven by the feed")?;

    let collected = Arc::new(Mutex::new(Collected::default()));
    let collector = Collector(collected.clone()).start();
    system
        .state
        .bus
        .risk_alerts
        .subscribe_reliable("backtest", collector.clone().recipient());
    system
        .state
        .bus
        .regime_updates
        .subscribe_reliable("backtest", collector.clone().recipient());
    system
        .state
        .bus
        .trading_signals
        .subscribe_reliable("backtest", collector.clone().recipient());
    let agent_names: Vec<&'static str> = system.state.agents.keys().map(|a| a.as_str()).collect();
    let pipeline = Pipeline::new(&system, &agent_names)?;
    let paper = system
        .state
        .paper
        .clone()
        .context("the backtest runs on the paper exchange")?;
    let quote = symbols.first().map_or("USDT", |s| s.quote()).to_owned();
    let initial = paper.equity_in(&quote).total.normalize();
    let targets = settings.portfolio.target_allocation.clone();
    let taker_fee_pct = settings.execution.paper.taker_fee_pct;
    let mut baseline: Option<BaselineBook> = None;
    let mut first_prices: BTreeMap<Symbol, Decimal> = BTreeMap::new();
    // One equity sample per business hour (the last state of each hour) and one at the end.
    let mut equity: Vec<EquityPoint> = Vec::new();
    let hour_of = |t: DateTime<Utc>| t.timestamp().div_euclid(3600);
    let mut now: Option<DateTime<Utc>> = None;

    // Let the actors start (and the coordinator's run-on-start tasks find nothing to read).
    pipeline.settle().await;
    let mut boundary = next_boundary(&system).await?;
    let mut live = trading_live(&system).await?;
    let mut cascades = cascade_count(&system);
    let mut delivered: u64 = 0;
    let mut batch: Vec<Candle> = Vec::new();
    while let Some((close, group)) = groups.take()? {
        if let Some(prev) = now {
            if hour_of(prev) != hour_of(close) {
                equity.push(sample(&paper, &quote, prev, baseline.as_ref()));
            }
        }
        batch.clear();
        batch.extend(group);
        let mut last = close;
        let reaches = |t: DateTime<Utc>, b: Option<DateTime<Utc>>| b.is_some_and(|b| t >= b);
        if !reaches(close, boundary.settle_at)
            && (!live || (!opts.minute_by_minute && quiet(&system, &paper, &batch).await? == batch.len()))
        {
            // Following minutes up to the one that reaches the next due task, which ends the
            // batch (the task sees the market as of its close); the minute that reaches a due
            // rebalance batch is left for a batch of its own.
            let mut more = Vec::new();
            let mut size = batch.len();
            while let Some(next) = groups.peek()? {
                if hour_of(next) != hour_of(close) || size >= MAX_BATCH || reaches(next, boundary.alone_at) {
                    break;
                }
                if let Some((t, g)) = groups.take()? {
                    size += g.len();
                    more.push((t, g));
                }
                if reaches(next, boundary.settle_at) {
                    break;
                }
            }
            if live {
                // While orders or positions are live, only minutes in which nothing can happen
                // on the exchange or to a position go together; the first that could goes alone.
                let candles: Vec<Candle> = more.iter().flat_map(|(_, g)| g.iter().cloned()).collect();
                let mut n = quiet(&system, &paper, &candles).await?;
                let split = more
                    .iter()
                    .position(|(_, g)| {
                        let fits = g.len() <= n;
                        n = n.saturating_sub(g.len());
                        !fits
                    })
                    .unwrap_or(more.len());
                groups.give_back(more.drain(split..));
            }
            for (t, g) in more {
                batch.extend(g);
                last = t;
            }
        }
        let at_boundary = reaches(last, boundary.settle_at);
        now = Some(last);
        clock.set(last);
        let n = batch.len() as u64;
        if baseline.is_none() {
            for c in &batch {
                first_prices.entry(c.symbol.clone()).or_insert(c.close);
            }
            baseline = BaselineBook::fix(&first_prices, &symbols, initial, &targets, taker_fee_pct);
        }
        match system.state.market.send(CandleBatch(std::mem::take(&mut batch))).await {
            Ok(Ok(_)) => delivered += n,
            Ok(Err(e)) => anyhow::bail!("market data refused a batch: {e}"),
            Err(e) => anyhow::bail!("market data not reachable: {e}"),
        }
        // The feed's subscribers (the execution manager among them) have handled the batch; while
        // orders or positions are live, the manager's requests it set off are done too.
        pipeline.sync_feed().await;
        let activity = if live {
            Some(settle_in_flight(&system, &pipeline, false).await?)
        } else {
            None
        };
        let c = cascade_count(&system);
        if at_boundary || c != cascades {
            // Settle until nothing new is set off and nothing is in flight.
            loop {
                pipeline.settle().await;
                settle_in_flight(&system, &pipeline, true).await?;
                let after = cascade_count(&system);
                if after == cascades {
                    break;
                }
                cascades = after;
            }
            check_replay(book.as_ref())?;
            boundary = next_boundary(&system).await?;
            live = trading_live(&system).await?;
        } else if let Some(a) = activity {
            live = !a.idle();
        }
        cascades = cascade_count(&system);
        progress(delivered);
    }

    // Let in-flight work finish, then close what is still open at the last prices so every
    // position ends as a trade, and let that finish too.
    settle_book(&system, &pipeline).await;
    check_replay(book.as_ref())?;
    // One at a time in a fixed order, so the paper exchange's seeded slippage draws come in
    // the same order on every run.
    let mut open: Vec<PositionView> = system
        .state
        .execution
        .send(GetPositions::default())
        .await
        .map_err(|e| anyhow::anyhow!("execution manager not reachable: {e}"))?
        .map_err(|e| anyhow::anyhow!("listing positions: {e}"))?
        .into_iter()
        .filter(|p| p.closed_at.is_none() && !p.size.is_zero())
        .collect();
    open.sort_by(|a, b| {
        (a.symbol.as_str(), a.opened_at, a.entry_price, a.size).cmp(&(
            b.symbol.as_str(),
            b.opened_at,
            b.entry_price,
            b.size,
        ))
    });
    let mut end_orders = std::collections::HashSet::new();
    for p in open {
        let close = ClosePosition {
            position_id: p.id,
            fraction: Decimal::ONE,
            reason: "end of backtest".to_owned(),
            correlation_id: p.correlation_id,
        };
        match system.state.execution.send(close).await {
            Ok(Ok(r)) => end_orders.extend(r.orders.iter().map(|o| o.id)),
            Ok(Err(e)) => tracing::warn!(error = %e, position = %p.id, "closing a position at the end failed"),
            Err(e) => anyhow::bail!("execution manager not reachable: {e}"),
        }
        pipeline.settle().await;
    }
    pipeline.settle().await;
    // No candle follows the last one: the closing orders fill at the last prices.
    if let Some(t) = now {
        for s in &symbols {
            if let Some(px) = paper.last_price(s) {
                paper.on_price(s, px, t);
            }
        }
    }
    let _ = system.state.execution.send(PollNow).await;
    settle_book(&system, &pipeline).await;

    let fills = system
        .state
        .stores
        .orders
        .list_trades(None, usize::MAX)
        .await
        .map_err(|e| anyhow::anyhow!("reading trades: {e}"))?;
    let orders = system
        .state
        .stores
        .orders
        .list_orders(None, false, usize::MAX)
        .await
        .map_err(|e| anyhow::anyhow!("reading orders: {e}"))?;
    let positions = system
        .state
        .stores
        .orders
        .list_positions(None, None, usize::MAX)
        .await
        .map_err(|e| anyhow::anyhow!("reading positions: {e}"))?;
    let exits = ExitClassifier::new(&orders, positions, end_orders);
    let mut trades = round_trips_with(&fills, &|pid, last| exits.classify(pid, last));
    let mut holdings = holding_trades(&fills, &|id| exits.purpose_of(id));
    if let Some(t) = now {
        equity.push(sample(&paper, &quote, t, baseline.as_ref()));
    }
    let last_prices: BTreeMap<String, Decimal> = symbols
        .iter()
        .filter_map(|s| Some((s.as_str().to_owned(), paper.last_price(s)?.normalize())))
        .collect();
    // The rebalancer's plans and batches, and the allocation it ends with.
    let records = system
        .state
        .stores
        .portfolio
        .recent_rebalances(u32::MAX)
        .await
        .map_err(|e| anyhow::anyhow!("reading the rebalance history: {e}"))?;
    let mut rebalance_batches: BTreeMap<String, u64> = BTreeMap::new();
    let mut rebalance_plans = 0;
    for r in records.iter().filter(|r| r.status != "no_action") {
        *rebalance_batches.entry(r.status.clone()).or_default() += 1;
        if r.batch_index == 0 {
            rebalance_plans += 1;
        }
    }
    let threshold = settings.portfolio.rebalancing.threshold_pct;
    let final_allocation = match system.state.portfolio.send(GetAllocation).await {
        Ok(Ok(a)) => Some(FinalAllocation {
            btc_pct: a.btc_pct,
            xrp_pct: a.xrp_pct,
            usdt_pct: a.usdt_pct,
            max_deviation_pct: a.max_deviation_pct.round_dp(4).normalize(),
            threshold_pct: threshold.normalize(),
            within_threshold: a.max_deviation_pct < threshold,
        }),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "no final allocation");
            None
        }
        Err(e) => anyhow::bail!("portfolio rebalancer not reachable: {e}"),
    };
    let risk_verdicts = system
        .state
        .risk
        .send(GetVerdictCounts)
        .await
        .map_err(|e| anyhow::anyhow!("risk engine not reachable: {e}"))?
        .map_err(|e| anyhow::anyhow!("reading the risk verdicts: {e}"))?;
    // USD put into each hodl bag over the run (bought, or earmarked and still pending).
    let hodl = system
        .state
        .portfolio
        .send(GetHodl)
        .await
        .map_err(|e| anyhow::anyhow!("portfolio rebalancer not reachable: {e}"))?
        .map_err(|e| anyhow::anyhow!("reading the hodl bags: {e}"))?;
    let hodl_allocations: BTreeMap<String, Decimal> = hodl
        .bags
        .iter()
        .map(|b| (b.asset.clone(), (b.cost_basis_usd + b.pending_usd).normalize()))
        .collect();
    // Drain the collector's mailbox before reading it.
    let _ = collector.send(Flush).await;
    let (risk_alerts, risk_alert_examples, decisions) = match collected.lock() {
        Ok(c) => {
            for t in &mut trades {
                if let Some(r) = c.regime_at(&t.symbol, t.opened_at) {
                    t.regime = r;
                }
            }
            for h in &mut holdings {
                if let Some(r) = c.regime_at(&h.symbol, h.at) {
                    h.regime = r;
                }
            }
            (c.alerts.clone(), c.alert_examples.clone(), c.decisions.clone())
        }
        Err(_) => anyhow::bail!("bus collector failed"),
    };
    let input = ReportInput {
        initial_equity: initial,
        candles_processed: delivered,
        trades,
        equity,
        risk_verdicts,
        risk_alerts,
        risk_alert_examples,
        decisions,
        holdings,
        rebalance_batches,
        rebalance_plans,
        final_allocation,
        last_prices,
        hodl_allocations,
    };
    let timing = Timing::new(started.elapsed(), delivered);
    let report = Report::compute(&input, Some(timing));
    let _ = system.state.registry.drain_all(Duration::from_secs(5)).await;
    Ok(BacktestOutcome { report, input })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
mod tests;
