//! TripleGain benchmark suite: bus throughput next to a raw tokio mpsc channel, indicator updates, risk
//! validation latency, and the synthetic candle generator used by the backtest benchmark.
//!
//! # Bus method
//! Every scenario moves the same event type ([`CandleClosed`], cloned from one template by the
//! producer) from a producer thread to consumers running on a single-threaded runtime:
//! - `topic_1sub`: the real [`Topic`] publishing with `try_send` to one supervised actix actor
//!   (started with [`start_supervised`], handler body inside [`guarded`]);
//! - `topic_chain5`: the same, then actor 1 → 2 → … → 5, each hop re-publishing on its own
//!   [`Topic`] to the next actor; the fifth actor counts;
//! - `mpsc_1sub` / `mpsc_chain5`: a bounded `tokio::sync::mpsc` channel (and a chain of five
//!   tasks forwarding with `send().await`) carrying the same event.
//!
//! The producer is paced by a bounded window: it never has more than `window` events in flight
//! (published but not yet counted by the last consumer). Every mailbox has a capacity above the
//! window, so `try_send` never finds a full mailbox; each run asserts zero drops and that the
//! consumer counted exactly the events published. The mpsc producer uses `try_send` on a channel of
//! capacity `window` and spins on `Full`, the same pacing. Throughput is events counted by the last
//! consumer divided by the wall time from the first publish to the last count.

use actix::prelude::*;
use anyhow::{anyhow, bail, Context as _};
use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::BTreeMap;
use std::hint::black_box;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
pub mod pipeline;

use triplegain_actors::bus::Topic;
use triplegain_actors::clock::SystemClock;
use triplegain_actors::domain::{Candle, CorrelationId, Regime, Side, Symbol, Timeframe};
use triplegain_actors::indicators::IndicatorEngine;
use triplegain_actors::messages::{CandleClosed, EventMeta, Ping};
use triplegain_actors::risk::{self, ProposalSource, RiskLimits, RiskState, TradeProposal};
use triplegain_actors::supervision::{
    guarded, start_supervised, Drain, Registry, RestartPolicy, SupervisedActor, SupervisionHandle,
};

/// Hops in the chain scenarios.
pub const CHAIN_HOPS: usize = 5;

/// One throughput measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub scenario: String,
    pub events: u64,
    pub seconds: f64,
    pub events_per_sec: f64,
    /// Deliveries the bus dropped (always 0 for a valid run).
    pub dropped: u64,
}

impl Throughput {
    fn new(scenario: &str, events: u64, elapsed: Duration, dropped: u64) -> Self {
        let seconds = elapsed.as_secs_f64();
        Self {
            scenario: scenario.to_owned(),
            events,
            seconds,
            events_per_sec: if seconds > 0.0 { events as f64 / seconds } else { 0.0 },
            dropped,
        }
    }
}

/// The event every bus scenario carries.
pub fn sample_event() -> anyhow::Result<CandleClosed> {
    let t = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .context("fixed time")?;
    Ok(CandleClosed {
        meta: EventMeta::new("bench", t),
        candle: Candle {
            symbol: Symbol::parse("BTC/USDT")?,
            timeframe: Timeframe::M1,
            open_time: t,
            open: Decimal::new(950_000, 1),
            high: Decimal::new(951_000, 1),
            low: Decimal::new(949_000, 1),
            close: Decimal::new(950_500, 1),
            volume: Decimal::new(12, 1),
        },
    })
}

fn wait_until(mut done: impl FnMut() -> bool) {
    let mut spins = 0u32;
    while !done() {
        spins += 1;
        if spins < 64 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

fn registry() -> Registry {
    Registry::new(RestartPolicy::default(), Topic::new(), Arc::new(SystemClock))
}

/// What a bench actor does with an event.
enum Next {
    /// Count it; stop the system after `target` events.
    Count { processed: Arc<AtomicU64>, target: u64 },
    /// Re-publish it on the next hop's topic.
    Forward(Topic<CandleClosed>),
}

struct BenchActor {
    sup: SupervisionHandle,
    next: Next,
}

impl Actor for BenchActor {
    type Context = Context<Self>;
    fn started(&mut self, _: &mut Context<Self>) {
        self.sup.on_started();
    }
}

impl actix::Supervised for BenchActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.sup.on_restarting();
    }
}

impl SupervisedActor for BenchActor {
    fn supervision(&self) -> &SupervisionHandle {
        &self.sup
    }
}

impl Handler<Ping> for BenchActor {
    type Result = Result<(), triplegain_actors::supervision::ActorError>;
    fn handle(&mut self, _: Ping, ctx: &mut Context<Self>) -> Self::Result {
        guarded(self, ctx, |_, _| ())
    }
}

impl Handler<Drain> for BenchActor {
    type Result = ();
    fn handle(&mut self, _: Drain, _: &mut Context<Self>) {}
}

impl Handler<CandleClosed> for BenchActor {
    type Result = ();
    fn handle(&mut self, msg: CandleClosed, ctx: &mut Context<Self>) {
        let _ = guarded(self, ctx, |act, _| match &act.next {
            Next::Count { processed, target } => {
                black_box(&msg);
                let n = processed.fetch_add(1, Ordering::Release) + 1;
                if n == *target {
                    System::current().stop();
                }
            }
            Next::Forward(topic) => {
                topic.publish(msg);
            }
        });
    }
}

/// Publishes `events` on the real bus to a chain of `hops` supervised actors (1 = one subscriber).
///
/// # Errors
/// When the actor system cannot start, a delivery was dropped or the count does not match.
pub fn topic_run(events: u64, window: u64, hops: usize) -> anyhow::Result<Throughput> {
    if hops == 0 || window == 0 {
        bail!("hops and window must be positive");
    }
    let capacity = usize::try_from(window)?.saturating_add(16);
    let processed = Arc::new(AtomicU64::new(0));
    let (tx, rx) = std::sync::mpsc::channel::<Vec<Topic<CandleClosed>>>();
    let counter = Arc::clone(&processed);
    let consumer = std::thread::spawn(move || -> anyhow::Result<()> {
        let sys = System::new();
        sys.block_on(async move {
            let registry = registry();
            let topics: Vec<Topic<CandleClosed>> = (0..hops).map(|_| Topic::new()).collect();
            for (i, topic) in topics.iter().enumerate() {
                let next = match topics.get(i + 1) {
                    Some(t) => Next::Forward(t.clone()),
                    None => Next::Count {
                        processed: Arc::clone(&counter),
                        target: events,
                    },
                };
                let name = format!("bench-hop-{}", i + 1);
                let addr = start_supervised(&registry, &name, false, capacity, move |sup| BenchActor { sup, next });
                topic.subscribe(&name, addr.recipient());
            }
            tx.send(topics).map_err(|_| anyhow!("producer went away"))
        })?;
        if events > 0 {
            sys.run()?;
        }
        Ok(())
    });
    let topics = rx.recv().map_err(|_| anyhow!("consumer failed to start"))?;
    let first = topics.first().cloned().context("no topic")?;
    let template = sample_event()?;
    let start = Instant::now();
    for i in 0..events {
        wait_until(|| i - processed.load(Ordering::Acquire) < window);
        first.publish(template.clone());
    }
    wait_until(|| processed.load(Ordering::Acquire) >= events);
    let elapsed = start.elapsed();
    consumer.join().map_err(|_| anyhow!("consumer thread panicked"))??;
    let dropped: u64 = topics.iter().flat_map(Topic::stats).map(|s| s.dropped).sum();
    let delivered: u64 = topics.iter().flat_map(Topic::stats).map(|s| s.delivered).sum();
    let counted = processed.load(Ordering::Acquire);
    if dropped > 0 || counted != events || delivered != events * hops as u64 {
        bail!("bus run lost events: counted {counted} of {events}, delivered {delivered}, dropped {dropped}");
    }
    let name = if hops == 1 {
        "topic_1sub".to_owned()
    } else {
        format!("topic_chain{hops}")
    };
    Ok(Throughput::new(&name, events, elapsed, dropped))
}

/// The same workload on raw bounded `tokio::sync::mpsc` channels: one consumer task, or a chain of
/// `hops` tasks forwarding with `send().await`, on a single-threaded runtime.
///
/// # Errors
/// When the runtime cannot start or the count does not match.
pub fn mpsc_run(events: u64, window: u64, hops: usize) -> anyhow::Result<Throughput> {
    if hops == 0 || window == 0 {
        bail!("hops and window must be positive");
    }
    let capacity = usize::try_from(window)?;
    let processed = Arc::new(AtomicU64::new(0));
    let (first_tx, first_rx) = tokio::sync::mpsc::channel::<CandleClosed>(capacity);
    let counter = Arc::clone(&processed);
    let consumer = std::thread::spawn(move || -> anyhow::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread().build()?;
        rt.block_on(async move {
            let mut rx = first_rx;
            let mut tasks = Vec::new();
            for _ in 1..hops {
                let (tx, next_rx) = tokio::sync::mpsc::channel::<CandleClosed>(capacity);
                let mut hop_rx = std::mem::replace(&mut rx, next_rx);
                tasks.push(tokio::spawn(async move {
                    while let Some(ev) = hop_rx.recv().await {
                        if tx.send(ev).await.is_err() {
                            break;
                        }
                    }
                }));
            }
            while let Some(ev) = rx.recv().await {
                black_box(&ev);
                counter.fetch_add(1, Ordering::Release);
            }
            for t in tasks {
                let _ = t.await;
            }
        });
        Ok(())
    });
    let template = sample_event()?;
    let start = Instant::now();
    for _ in 0..events {
        let mut ev = template.clone();
        loop {
            match first_tx.try_send(ev) {
                Ok(()) => break,
                Err(tokio::sync::mpsc::error::TrySendError::Full(back)) => {
                    ev = back;
                    std::hint::spin_loop();
                    std::thread::yield_now();
                }
                Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => bail!("mpsc consumer went away"),
            }
        }
    }
    wait_until(|| processed.load(Ordering::Acquire) >= events);
    let elapsed = start.elapsed();
    drop(first_tx);
    consumer.join().map_err(|_| anyhow!("consumer thread panicked"))??;
    let counted = processed.load(Ordering::Acquire);
    if counted != events {
        bail!("mpsc run counted {counted} of {events}");
    }
    let name = if hops == 1 {
        "mpsc_1sub".to_owned()
    } else {
        format!("mpsc_chain{hops}")
    };
    Ok(Throughput::new(&name, events, elapsed, 0))
}

/// Median of every scenario over `repeats` interleaved runs.
#[derive(Debug, Clone, Serialize)]
pub struct BusReport {
    pub events_per_run: u64,
    pub window: u64,
    pub repeats: usize,
    /// Scenario → median events/s.
    pub median_events_per_sec: BTreeMap<String, f64>,
    /// Scenario → fastest run's events/s (least disturbed by other load on the machine).
    pub best_events_per_sec: BTreeMap<String, f64>,
    /// Every run, in order.
    pub runs: Vec<Throughput>,
    /// Topic throughput ÷ mpsc throughput (1.0 = as fast as the raw channel), from the medians.
    pub ratio_1sub: f64,
    pub ratio_chain5: f64,
    /// The same ratios from the fastest runs.
    pub best_ratio_1sub: f64,
    pub best_ratio_chain5: f64,
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => 0.0,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

/// Runs the four bus scenarios `repeats` times, interleaved, in this process.
///
/// # Errors
/// The first failing run.
pub fn bus_suite(events: u64, window: u64, repeats: usize) -> anyhow::Result<BusReport> {
    let mut runs = Vec::new();
    for _ in 0..repeats.max(1) {
        runs.push(mpsc_run(events, window, 1)?);
        runs.push(topic_run(events, window, 1)?);
        runs.push(mpsc_run(events, window, CHAIN_HOPS)?);
        runs.push(topic_run(events, window, CHAIN_HOPS)?);
    }
    let mut by: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for r in &runs {
        by.entry(r.scenario.clone()).or_default().push(r.events_per_sec);
    }
    let best: BTreeMap<String, f64> = by
        .iter()
        .map(|(k, v)| (k.clone(), v.iter().copied().fold(0.0, f64::max)))
        .collect();
    let medians: BTreeMap<String, f64> = by.into_iter().map(|(k, v)| (k, median(v))).collect();
    let get = |k: &str| medians.get(k).copied().unwrap_or(0.0);
    let top = |k: &str| best.get(k).copied().unwrap_or(0.0);
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let chain_topic = format!("topic_chain{CHAIN_HOPS}");
    let chain_mpsc = format!("mpsc_chain{CHAIN_HOPS}");
    Ok(BusReport {
        events_per_run: events,
        window,
        repeats: repeats.max(1),
        ratio_1sub: ratio(get("topic_1sub"), get("mpsc_1sub")),
        ratio_chain5: ratio(get(&chain_topic), get(&chain_mpsc)),
        best_ratio_1sub: ratio(top("topic_1sub"), top("mpsc_1sub")),
        best_ratio_chain5: ratio(top(&chain_topic), top(&chain_mpsc)),
        median_events_per_sec: medians,
        best_events_per_sec: best,
        runs,
    })
}

/// The bus table: scenario, median and best events/s, each with its ratio against the raw channel.
pub fn bus_table(r: &BusReport) -> String {
    let chain_topic = format!("topic_chain{CHAIN_HOPS}");
    let chain_mpsc = format!("mpsc_chain{CHAIN_HOPS}");
    let mut out = format!(
        "bus throughput: {} events per run, window {}, {} interleaved runs per scenario\n{:<14} {:>14} {:>9} {:>14} {:>9}\n",
        r.events_per_run, r.window, r.repeats, "scenario", "median ev/s", "vs mpsc", "best ev/s", "vs mpsc"
    );
    for (name, base) in [
        ("mpsc_1sub", "mpsc_1sub"),
        ("topic_1sub", "mpsc_1sub"),
        (chain_mpsc.as_str(), chain_mpsc.as_str()),
        (chain_topic.as_str(), chain_mpsc.as_str()),
    ] {
        let cell = |m: &BTreeMap<String, f64>| {
            let v = m.get(name).copied().unwrap_or(0.0);
            let b = m.get(base).copied().unwrap_or(0.0);
            (v, if b > 0.0 { v / b } else { 0.0 })
        };
        let (med, med_ratio) = cell(&r.median_events_per_sec);
        let (best, best_ratio) = cell(&r.best_events_per_sec);
        out.push_str(&format!(
            "{name:<14} {med:>14.0} {med_ratio:>8.2}x {best:>14.0} {best_ratio:>8.2}x\n"
        ));
    }
    out
}

pub use triplegain::market::generate::{
    candle_file_name, generate_candles, generated_start, write_candle_files, GENERATED_SYMBOLS,
};

/// Indicator updates per second: one [`IndicatorEngine`] per symbol, `update` over every candle.
pub fn indicator_run(series: &[(Symbol, Vec<Candle>)]) -> Throughput {
    let total: usize = series.iter().map(|(_, v)| v.len()).sum();
    let start = Instant::now();
    for (_, candles) in series {
        let mut engine = IndicatorEngine::new();
        for c in candles {
            black_box(engine.update(black_box(c)));
        }
    }
    Throughput::new("indicator_update", total as u64, start.elapsed(), 0)
}

/// The batch alternative to incremental updates: for each of the first `samples` candles after the
/// warm-up window, every indicator is recomputed from scratch over the last `window` candles (what a
/// non-incremental library does on each new candle). Reported as latest-candle results per second.
pub fn indicator_batch_run(series: &[(Symbol, Vec<Candle>)], window: usize, samples: usize) -> Throughput {
    let start = Instant::now();
    let mut done = 0u64;
    for (_, candles) in series {
        for end in (window..candles.len()).take(samples) {
            let mut engine = IndicatorEngine::new();
            for c in &candles[end - window..end] {
                black_box(engine.update(black_box(c)));
            }
            done += 1;
        }
    }
    Throughput::new("indicator_batch_recompute", done, start.elapsed(), 0)
}

/// Latency distribution of one operation, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub operation: String,
    pub samples: usize,
    pub p50_us: f64,
    pub p99_us: f64,
    pub mean_us: f64,
    pub max_us: f64,
    /// What the measured call returned (e.g. the verdict status), to show the full path ran.
    pub outcome: String,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A proposal that passes every check (BTC/USDT long, 2 % stop, 2:1 reward) and the state it is
/// validated against (10 000 USD equity, one open ETH position), so the whole pipeline runs.
pub fn representative_proposal() -> anyhow::Result<(TradeProposal, RiskState, RiskLimits, DateTime<Utc>)> {
    let now = Utc
        .with_ymd_and_hms(2026, 1, 5, 12, 0, 0)
        .single()
        .context("fixed time")?;
    let proposal = TradeProposal {
        symbol: Symbol::parse("BTC/USDT")?,
        side: Side::Buy,
        size_usd: Decimal::from(1_000),
        entry_price: Decimal::from(95_000),
        stop_loss: Some(Decimal::from(93_100)),
        take_profit: Some(Decimal::from(98_800)),
        leverage: 2,
        confidence: 0.8,
        regime: Regime::TrendingBull,
        source: ProposalSource::Agent,
        correlation_id: CorrelationId::new(),
        reduce_only: false,
    };
    let equity = Decimal::from(10_000);
    let state = RiskState {
        equity_usd: Some(equity),
        peak_equity_usd: equity,
        open_exposure_usd: Decimal::from(1_500),
        exposure_by_symbol: BTreeMap::from([("XRP/USDT".to_owned(), Decimal::from(1_500))]),
        available_margin_usd: Decimal::from(8_000),
        portfolio_updated_at: Some(now),
        daily_period_start: Some(now),
        daily_start_equity: Some(equity),
        weekly_period_start: Some(now),
        weekly_start_equity: Some(equity),
        updated_at: Some(now),
        ..RiskState::default()
    };
    Ok((proposal, state, RiskLimits::default(), now))
}

/// Latency of [`risk::validate`] on [`representative_proposal`], each call timed on its own.
///
/// # Errors
/// When the fixture cannot be built.
pub fn risk_run(samples: usize) -> anyhow::Result<Latency> {
    let (proposal, state, limits, now) = representative_proposal()?;
    let outcome = risk::validate(&proposal, &state, &limits, now);
    let status = serde_json::to_value(outcome.status)?.as_str().unwrap_or("?").to_owned();
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        black_box(risk::validate(black_box(&proposal), &state, &limits, now));
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(f64::total_cmp);
    let mean = if times.is_empty() {
        0.0
    } else {
        times.iter().sum::<f64>() / times.len() as f64
    };
    let reasons = outcome
        .rejections
        .iter()
        .map(|c| c.as_str())
        .collect::<Vec<_>>()
        .join(",");
    Ok(Latency {
        operation: "risk_validate".to_owned(),
        samples,
        p50_us: percentile(&times, 0.50),
        p99_us: percentile(&times, 0.99),
        mean_us: mean,
        max_us: times.last().copied().unwrap_or(0.0),
        outcome: if reasons.is_empty() {
            status
        } else {
            format!("{status} ({reasons})")
        },
    })
}

/// Everything one `triplegain bench` run measured.
#[derive(Debug, Clone, Serialize)]
pub struct SuiteReport {
    pub machine: Machine,
    pub bus: Option<BusReport>,
    pub indicators: Option<Throughput>,
    pub risk: Option<Latency>,
    /// Signal → order request through coordinator, risk engine and execution manager.
    pub pipeline: Option<Latency>,
}

/// The machine the numbers come from.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory: String,
    pub build: String,
}

impl Machine {
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .map(|r| r.trim_start_matches([' ', '\t', ':']).to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:").map(|r| r.trim().to_owned()))
            .unwrap_or_else(|| "unknown".to_owned());
        Self {
            cpus: std::thread::available_parallelism().map_or(0, usize::from),
            cpu_model,
            memory,
            build: if cfg!(debug_assertions) { "debug" } else { "release" }.to_owned(),
        }
    }
}

/// Options of `triplegain bench`.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    pub events: u64,
    pub window: u64,
    pub repeats: usize,
    pub bus: bool,
    pub indicators: bool,
    pub risk: bool,
    pub risk_samples: usize,
    /// Signal → order request latency through the actors to the paper exchange.
    pub pipeline: bool,
    pub pipeline_samples: usize,
    pub seed: u64,
    pub days: u32,
    /// Candles for the indicator benchmark, one series per symbol; generated in memory (`seed`,
    /// `days`) when `None`.
    pub series: Option<Vec<(Symbol, Vec<Candle>)>>,
}

/// Runs the selected parts, printing a table per part to stdout as it goes.
///
/// # Errors
/// The first failing part.
pub fn run_suite(opts: &SuiteOptions) -> anyhow::Result<SuiteReport> {
    let machine = Machine::detect();
    println!(
        "machine: {} x {}, {} memory, {} build",
        machine.cpus, machine.cpu_model, machine.memory, machine.build
    );
    let bus = if opts.bus {
        let r = bus_suite(opts.events, opts.window, opts.repeats)?;
        print!("{}", bus_table(&r));
        Some(r)
    } else {
        None
    };
    let indicators = if opts.indicators {
        let series = match &opts.series {
            Some(series) => series.clone(),
            None => generate_candles(opts.seed, opts.days),
        };
        let t = indicator_run(&series);
        println!(
            "indicator updates: {} candles in {:.3} s = {:.0} updates/s",
            t.events, t.seconds, t.events_per_sec
        );
        let b = indicator_batch_run(&series, 250, 2000);
        println!(
            "batch recompute (250-candle window per new candle): {} candles in {:.3} s = {:.0} candles/s ({:.0}x slower)",
            b.events,
            b.seconds,
            b.events_per_sec,
            t.events_per_sec / b.events_per_sec.max(f64::MIN_POSITIVE)
        );
        Some(t)
    } else {
        None
    };
    let risk = if opts.risk {
        let l = risk_run(opts.risk_samples)?;
        println!(
            "risk validation ({} samples, verdict {}): p50 {:.2} us, p99 {:.2} us, mean {:.2} us, max {:.2} us",
            l.samples, l.outcome, l.p50_us, l.p99_us, l.mean_us, l.max_us
        );
        Some(l)
    } else {
        None
    };
    let pipeline = if opts.pipeline {
        let l = pipeline::pipeline_run(opts.pipeline_samples, (opts.pipeline_samples / 10).max(10))?;
        println!(
            "signal -> order request ({} samples, {}): p50 {:.2} us, p99 {:.2} us, mean {:.2} us, max {:.2} us",
            l.samples, l.outcome, l.p50_us, l.p99_us, l.mean_us, l.max_us
        );
        Some(l)
    } else {
        None
    };
    Ok(SuiteReport {
        machine,
        bus,
        indicators,
        risk,
        pipeline,
    })
}

/// Loads candle files (`SYMBOL=FILE` or FILE, symbol from the file name) with the server's replay
/// parser, so the suite reads exactly what `triplegain backtest` and the replay feed read.
///
/// # Errors
/// A file that cannot be read, or its first malformed row (file and line).
pub fn load_series(files: &[std::path::PathBuf]) -> anyhow::Result<Vec<(Symbol, Vec<Candle>)>> {
    files
        .iter()
        .map(|f| {
            let (symbol, path) = triplegain::market::replay::parse_replay_arg(&f.to_string_lossy())?;
            let candles = triplegain::market::replay::load_candles(&path, &symbol)?;
            Ok((symbol, candles))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_and_mpsc_runs_count_every_event_without_drops() {
        for hops in [1, CHAIN_HOPS] {
            let t = topic_run(5_000, 64, hops).unwrap();
            assert_eq!((t.events, t.dropped), (5_000, 0));
            assert!(t.events_per_sec > 0.0);
            let m = mpsc_run(5_000, 64, hops).unwrap();
            assert_eq!(m.events, 5_000);
        }
        assert_eq!(topic_run(10, 4, CHAIN_HOPS).unwrap().scenario, "topic_chain5");
    }

    #[test]
    fn bus_suite_reports_ratios_against_the_raw_channel() {
        let r = bus_suite(2_000, 32, 1).unwrap();
        assert_eq!(r.runs.len(), 4);
        assert!(r.ratio_1sub > 0.0 && r.ratio_chain5 > 0.0);
        let table = bus_table(&r);
        assert!(table.contains("topic_1sub") && table.contains("mpsc_chain5"), "{table}");
    }

    #[test]
    fn the_risk_fixture_runs_the_whole_pipeline_to_an_approval() {
        let l = risk_run(50).unwrap();
        assert!(l.outcome == "approved" || l.outcome == "modified", "{}", l.outcome);
        assert!(l.p50_us <= l.p99_us && l.p99_us <= l.max_us);
    }

    #[test]
    fn generated_files_hold_a_header_and_one_row_per_minute() {
        let dir = std::env::temp_dir().join(format!("tg-gen-{}", uuid::Uuid::new_v4()));
        let files = write_candle_files(&dir, 7, 1).unwrap();
        let names: Vec<String> = files.iter().map(|(s, _, n)| format!("{s}:{n}")).collect();
        assert_eq!(names, ["BTC/USDT:1440", "XRP/USDT:1440"]);
        let text = std::fs::read_to_string(&files[0].1).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "timestamp,open,high,low,close,volume");
        assert_eq!(lines.len(), 1441);
        let first = &generate_candles(7, 1)[0].1[0];
        assert!(lines[1].starts_with(&format!("{},{},", generated_start().timestamp(), first.open)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_signal_reaches_the_paper_exchange_through_the_actors() {
        let l = pipeline::pipeline_run(30, 5).unwrap();
        assert_eq!(l.samples, 30);
        assert!(l.p50_us > 0.0 && l.p50_us <= l.p99_us && l.p99_us <= l.max_us);
        // 35 entries, each 5 % of 10 000 USD at 50 000 (× the consensus multiplier).
        assert!(l.outcome.starts_with("35 order requests"), "{}", l.outcome);
    }

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let xs: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&xs, 0.5), 50.0);
        assert_eq!(percentile(&xs, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
