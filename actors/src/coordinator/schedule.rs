//! Schedules (`config/orchestration.yaml`) and the pure scheduler: which tasks are due on the
//! business clock, with dependencies, no self-overlap and a global concurrency cap.

use super::degradation::DegradationLevel;
use crate::agents::api::AgentName;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The scheduled tasks, in dependency order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskName {
    TaAnalysis,
    RegimeDetection,
    SentimentAnalysis,
    TradingDecision,
    PortfolioCheck,
}

impl TaskName {
    pub const ALL: [TaskName; 5] = [
        Self::TaAnalysis,
        Self::RegimeDetection,
        Self::SentimentAnalysis,
        Self::TradingDecision,
        Self::PortfolioCheck,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::TaAnalysis => "ta_analysis",
            Self::RegimeDetection => "regime_detection",
            Self::SentimentAnalysis => "sentiment_analysis",
            Self::TradingDecision => "trading_decision",
            Self::PortfolioCheck => "portfolio_check",
        }
    }

    /// # Errors
    /// A message listing the task names.
    pub fn parse(s: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|t| t.as_str() == s).ok_or_else(|| {
            format!(
                "unknown task {s:?}; expected ta_analysis, regime_detection, sentiment_analysis, trading_decision or portfolio_check"
            )
        })
    }

    /// The analysis agent a task drives (`portfolio_check` drives the rebalancer).
    pub fn agent(self) -> Option<AgentName> {
        match self {
            Self::TaAnalysis => Some(AgentName::TechnicalAnalysis),
            Self::RegimeDetection => Some(AgentName::RegimeDetection),
            Self::SentimentAnalysis => Some(AgentName::SentimentAnalysis),
            Self::TradingDecision => Some(AgentName::TradingDecision),
            Self::PortfolioCheck => None,
        }
    }

    /// Whether the degradation level lets this task run: REDUCED skips sentiment; EMERGENCY is
    /// risk-only (TA and regime keep the risk engine's inputs fresh; no decisions, no rebalancing).
    pub fn runs_at(self, level: DegradationLevel) -> bool {
        match level {
            DegradationLevel::Normal => true,
            DegradationLevel::Reduced | DegradationLevel::Limited => self != Self::SentimentAnalysis,
            DegradationLevel::Emergency => matches!(self, Self::TaAnalysis | Self::RegimeDetection),
        }
    }
}

impl std::fmt::Display for TaskName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One task's schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskSettings {
    pub enabled: bool,
    pub interval_seconds: u64,
    pub run_on_start: bool,
    pub timeout_seconds: u64,
    pub max_parallel_symbols: usize,
    pub depends_on: Vec<TaskName>,
    /// Run only right before a task that depends on it (its own interval is ignored). For a
    /// task whose output nothing but its dependents reads and that keeps no state between runs
    /// (technical analysis), this gives its dependents the same inputs with far fewer runs; a
    /// backtest uses it for `ta_analysis`.
    pub on_demand: bool,
}

impl Default for TaskSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_seconds: 60,
            run_on_start: false,
            timeout_seconds: 30,
            max_parallel_symbols: 3,
            depends_on: Vec::new(),
            on_demand: false,
        }
    }
}

fn task(interval: u64, run_on_start: bool, timeout: u64, parallel: usize, deps: &[TaskName]) -> TaskSettings {
    TaskSettings {
        enabled: true,
        interval_seconds: interval,
        run_on_start,
        timeout_seconds: timeout,
        max_parallel_symbols: parallel,
        depends_on: deps.to_vec(),
        on_demand: false,
    }
}

/// The five schedules (reference §5.2 values by default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskTable {
    pub ta_analysis: TaskSettings,
    pub regime_detection: TaskSettings,
    pub sentiment_analysis: TaskSettings,
    pub trading_decision: TaskSettings,
    pub portfolio_check: TaskSettings,
}

impl Default for TaskTable {
    fn default() -> Self {
        use TaskName::*;
        Self {
            ta_analysis: task(60, true, 30, 3, &[]),
            regime_detection: task(300, false, 30, 3, &[TaAnalysis]),
            sentiment_analysis: task(1800, false, 60, 2, &[]),
            trading_decision: task(3600, false, 60, 3, &[TaAnalysis, RegimeDetection, SentimentAnalysis]),
            portfolio_check: task(3600, false, 30, 1, &[]),
        }
    }
}

impl TaskTable {
    pub fn get(&self, t: TaskName) -> &TaskSettings {
        match t {
            TaskName::TaAnalysis => &self.ta_analysis,
            TaskName::RegimeDetection => &self.regime_detection,
            TaskName::SentimentAnalysis => &self.sentiment_analysis,
            TaskName::TradingDecision => &self.trading_decision,
            TaskName::PortfolioCheck => &self.portfolio_check,
        }
    }
}

/// Consensus (reference §5.3) and conflict (§5.4) settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignalSettings {
    pub ta_max_age_seconds: i64,
    pub regime_max_age_seconds: i64,
    pub sentiment_max_age_seconds: i64,
    pub high_agreement_threshold: f64,
    pub low_agreement_threshold: f64,
    pub max_confidence_boost: f64,
    pub max_confidence_penalty: f64,
    pub ta_sentiment_conflict: bool,
    pub regime_conflict: bool,
    /// A TA/sentiment disagreement is a conflict when the confidence gap is below this.
    pub invoke_llm_threshold: f64,
    /// The deterministic resolver proceeds through a TA/sentiment conflict at or above this confidence.
    pub proceed_confidence: f64,
    /// Total time the conflict models may take together.
    pub resolution_timeout_ms: u64,
    /// The models asked about a conflict, in order (a provider without a key is skipped).
    pub resolution_models: Vec<ResolutionModel>,
    pub resolution_max_tokens: u32,
    /// Back-off before each retry of an execution request that placed nothing.
    pub execution_retry_delays_ms: Vec<u64>,
    /// A symbol whose execution keeps failing is paused this long.
    pub symbol_pause_minutes: i64,
    /// Longest wait for the risk engine's verdict; past it the signal is dropped and alerted.
    pub risk_timeout_ms: u64,
    /// Longest wait for the execution manager's answer (its store write, the exchange and its
    /// retries); past it the outcome is unknown: alerted, never resent (the manager reconciles it).
    pub execution_timeout_ms: u64,
}

impl Default for SignalSettings {
    fn default() -> Self {
        Self {
            ta_max_age_seconds: 120,
            regime_max_age_seconds: 600,
            sentiment_max_age_seconds: 3600,
            high_agreement_threshold: 0.66,
            low_agreement_threshold: 0.33,
            max_confidence_boost: 0.30,
            max_confidence_penalty: 0.15,
            ta_sentiment_conflict: true,
            regime_conflict: true,
            invoke_llm_threshold: 0.2,
            proceed_confidence: 0.75,
            resolution_timeout_ms: 10_000,
            resolution_models: vec![
                ResolutionModel {
                    provider: "deepseek".into(),
                    model: "deepseek-chat".into(),
                    timeout_ms: 30_000,
                },
                ResolutionModel {
                    provider: "anthropic".into(),
                    model: "claude-3-5-sonnet-20241022".into(),
                    timeout_ms: 60_000,
                },
            ],
            resolution_max_tokens: 500,
            execution_retry_delays_ms: vec![5_000, 10_000, 20_000],
            symbol_pause_minutes: 15,
            risk_timeout_ms: 5_000,
            execution_timeout_ms: 120_000,
        }
    }
}

/// One model of the conflict-resolution chain (a provider of `llm.providers`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolutionModel {
    pub provider: String,
    pub model: String,
    /// This model's own limit; the chain as a whole is bounded by `resolution_timeout_ms`.
    pub timeout_ms: u64,
}

/// `config/orchestration.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrchestrationSettings {
    pub symbols: Vec<String>,
    pub max_concurrent_tasks: usize,
    /// Live fallback: evaluate the schedules every this many seconds of wall time (0 = only on
    /// `EvaluateSchedules` messages from the business clock).
    pub evaluate_every_seconds: u64,
    pub tasks: TaskTable,
    pub signals: SignalSettings,
}

impl Default for OrchestrationSettings {
    fn default() -> Self {
        Self {
            symbols: vec!["BTC/USDT".into(), "XRP/USDT".into(), "XRP/BTC".into()],
            max_concurrent_tasks: 5,
            evaluate_every_seconds: 1,
            tasks: TaskTable::default(),
            signals: SignalSettings::default(),
        }
    }
}

/// The durable state of one task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskState {
    pub enabled: bool,
    /// The business time of the last completed run's start.
    pub last_run: Option<DateTime<Utc>>,
    /// Set while running (the business time it started); found set after a crash → re-run once.
    pub in_flight: Option<DateTime<Utc>>,
    /// Forced to run at the next evaluation (operator request or recovery).
    pub run_now: bool,
    pub runs: u64,
    pub failures: u64,
    pub timeouts: u64,
}

/// The scheduler: task states plus the process start on the business clock.
#[derive(Debug, Clone, PartialEq)]
pub struct Scheduler {
    pub started_at: DateTime<Utc>,
    pub tasks: BTreeMap<TaskName, TaskState>,
}

impl Scheduler {
    pub fn new(settings: &OrchestrationSettings, started_at: DateTime<Utc>) -> Self {
        let tasks = TaskName::ALL
            .into_iter()
            .map(|t| {
                (
                    t,
                    TaskState {
                        enabled: settings.tasks.get(t).enabled,
                        ..TaskState::default()
                    },
                )
            })
            .collect();
        Self { started_at, tasks }
    }

    /// Restores persisted task states; interrupted runs are marked to re-run once. Returns those tasks.
    pub fn restore(&mut self, saved: &BTreeMap<TaskName, TaskState>) -> Vec<TaskName> {
        let mut interrupted = Vec::new();
        for (name, s) in saved {
            let mut s = s.clone();
            if s.in_flight.take().is_some() {
                s.run_now = true;
                interrupted.push(*name);
            }
            self.tasks.insert(*name, s);
        }
        interrupted
    }

    pub fn state(&self, t: TaskName) -> TaskState {
        self.tasks.get(&t).cloned().unwrap_or_default()
    }

    fn state_mut(&mut self, t: TaskName) -> &mut TaskState {
        self.tasks.entry(t).or_default()
    }

    /// When the task is next due by its interval (ignoring dependencies).
    pub fn next_run(&self, t: TaskName, settings: &OrchestrationSettings) -> Option<DateTime<Utc>> {
        let s = self.state(t);
        let cfg = settings.tasks.get(t);
        if !s.enabled {
            return None;
        }
        let interval = Duration::seconds(i64::try_from(cfg.interval_seconds).unwrap_or(i64::MAX / 1000));
        Some(match s.last_run {
            _ if s.run_now => self.started_at,
            None if cfg.run_on_start => self.started_at,
            None => self.started_at + interval,
            Some(last) => last + interval,
        })
    }

    fn dependencies_met(
        &self,
        t: TaskName,
        settings: &OrchestrationSettings,
        level: DegradationLevel,
        picked: &[TaskName],
    ) -> bool {
        let mine = self.state(t).last_run;
        let due_at = self.next_run(t, settings);
        settings.tasks.get(t).depends_on.iter().all(|dep| {
            let d = self.state(*dep);
            // A dependency that is switched off (by config, operator or degradation) is not awaited.
            if !d.enabled || !dep.runs_at(level) {
                return true;
            }
            // A dependency run that started once this task was due has completed: use it, even if
            // the dependency runs again now (a dependency slower than its interval never starves it).
            if d.last_run.zip(due_at).is_some_and(|(dl, due)| dl >= due) {
                return true;
            }
            // A dependency running now, or starting now, finishes first.
            if d.in_flight.is_some() || picked.contains(dep) {
                return false;
            }
            match (d.last_run, mine) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(dl), Some(ml)) => dl >= ml,
            }
        })
    }

    /// Whether `t` is due at `now` by its own interval (or forced), ignoring dependencies.
    fn due_by_interval(
        &self,
        t: TaskName,
        now: DateTime<Utc>,
        settings: &OrchestrationSettings,
        level: DegradationLevel,
    ) -> bool {
        let s = self.state(t);
        s.enabled && s.in_flight.is_none() && t.runs_at(level) && self.next_run(t, settings).is_some_and(|at| now >= at)
    }

    /// An on-demand task is wanted when a task depending on it is due by its interval and it has
    /// not run at `now` yet (or is forced).
    fn wanted_on_demand(
        &self,
        t: TaskName,
        now: DateTime<Utc>,
        settings: &OrchestrationSettings,
        level: DegradationLevel,
    ) -> bool {
        let s = self.state(t);
        if !s.enabled || s.in_flight.is_some() || !t.runs_at(level) {
            return false;
        }
        if s.run_now {
            return true;
        }
        let fresh = s.last_run.is_some_and(|l| l >= now);
        !fresh
            && TaskName::ALL.into_iter().any(|d| {
                settings.tasks.get(d).depends_on.contains(&t)
                    && !settings.tasks.get(d).on_demand
                    && self.due_by_interval(d, now, settings, level)
            })
    }

    /// The earliest business time at which a task becomes due (on-demand tasks run with their
    /// dependents, so they add no time of their own); `None` when nothing is scheduled. A task
    /// in flight or forced makes it "now" (`started_at` at the latest).
    /// Only tasks `runnable` accepts count (those whose agent is connected).
    pub fn next_due(
        &self,
        settings: &OrchestrationSettings,
        level: DegradationLevel,
        runnable: impl Fn(TaskName) -> bool,
    ) -> Option<DateTime<Utc>> {
        TaskName::ALL
            .into_iter()
            .filter(|t| {
                let s = self.state(*t);
                runnable(*t) && s.enabled && t.runs_at(level) && (!settings.tasks.get(*t).on_demand || s.run_now)
            })
            .filter_map(|t| {
                let s = self.state(t);
                match s.in_flight {
                    Some(at) => Some(at),
                    None => self.next_run(t, settings),
                }
            })
            .min()
    }

    /// The tasks to start now, in dependency order, within the global concurrency cap.
    pub fn due(&self, now: DateTime<Utc>, settings: &OrchestrationSettings, level: DegradationLevel) -> Vec<TaskName> {
        let running = self.tasks.values().filter(|s| s.in_flight.is_some()).count();
        let free = settings.max_concurrent_tasks.saturating_sub(running);
        let mut wanted: Vec<TaskName> = Vec::new();
        for t in TaskName::ALL {
            let ready = if settings.tasks.get(t).on_demand {
                self.wanted_on_demand(t, now, settings, level)
            } else {
                self.due_by_interval(t, now, settings, level)
            };
            if ready {
                wanted.push(t);
            }
        }
        let mut picked: Vec<TaskName> = Vec::new();
        for t in &wanted {
            if picked.len() < free && self.dependencies_met(*t, settings, level, &wanted) {
                picked.push(*t);
            }
        }
        picked
    }

    pub fn mark_started(&mut self, t: TaskName, now: DateTime<Utc>) {
        let s = self.state_mut(t);
        s.in_flight = Some(now);
        s.run_now = false;
    }

    /// Completes a run: `last_run` becomes the run's start time, so intervals do not drift.
    pub fn mark_finished(&mut self, t: TaskName, failures: u64, timeouts: u64) {
        let s = self.state_mut(t);
        if let Some(started) = s.in_flight.take() {
            s.last_run = Some(started);
        }
        s.runs += 1;
        s.failures += failures;
        s.timeouts += timeouts;
    }

    pub fn set_enabled(&mut self, t: TaskName, enabled: bool) {
        self.state_mut(t).enabled = enabled;
    }

    pub fn force_run(&mut self, t: TaskName) {
        self.state_mut(t).run_now = true;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::TaskName::*;
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 0, 0, 0).unwrap()
    }

    fn secs(s: i64) -> DateTime<Utc> {
        t0() + Duration::seconds(s)
    }

    /// Runs every due task to completion at each instant; returns what started when.
    fn simulate(level: DegradationLevel, instants: &[i64]) -> Vec<(i64, Vec<TaskName>)> {
        let cfg = OrchestrationSettings::default();
        let mut s = Scheduler::new(&cfg, t0());
        let mut out = Vec::new();
        for at in instants {
            // Dependencies finish first, so re-evaluate until nothing else is due at this instant.
            let mut started = Vec::new();
            loop {
                let due = s.due(secs(*at), &cfg, level);
                if due.is_empty() {
                    break;
                }
                for t in &due {
                    s.mark_started(*t, secs(*at));
                }
                for t in &due {
                    s.mark_finished(*t, 0, 0);
                }
                started.extend(due);
            }
            out.push((*at, started));
        }
        out
    }

    #[test]
    fn schedule_table() {
        let got = simulate(DegradationLevel::Normal, &[0, 30, 60, 299, 300, 1800, 3600]);
        let want: Vec<(i64, Vec<TaskName>)> = vec![
            (0, vec![TaAnalysis]),
            (30, vec![]),
            (60, vec![TaAnalysis]),
            (299, vec![TaAnalysis]),
            // First run one interval after start, and after TA.
            (300, vec![RegimeDetection]),
            // A dependency due at the same instant runs first.
            (1800, vec![TaAnalysis, SentimentAnalysis, RegimeDetection]),
            (
                3600,
                vec![
                    TaAnalysis,
                    SentimentAnalysis,
                    PortfolioCheck,
                    RegimeDetection,
                    TradingDecision,
                ],
            ),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn an_on_demand_task_runs_only_right_before_its_dependents() {
        let mut cfg = OrchestrationSettings::default();
        cfg.tasks.ta_analysis.on_demand = true;
        let mut s = Scheduler::new(&cfg, t0());
        let level = DegradationLevel::Normal;
        let mut got = Vec::new();
        for at in [0, 60, 299, 300, 301, 600, 3600] {
            let mut rounds = Vec::new();
            loop {
                let due = s.due(secs(at), &cfg, level);
                if due.is_empty() {
                    break;
                }
                for t in &due {
                    s.mark_started(*t, secs(at));
                }
                for t in &due {
                    s.mark_finished(*t, 0, 0);
                }
                rounds.push(due);
            }
            got.push((at, rounds, s.next_due(&cfg, level, |_| true)));
        }
        type Instant = (i64, Vec<Vec<TaskName>>, Option<DateTime<Utc>>);
        let want: Vec<Instant> = vec![
            // Not every minute: only when regime detection (or a decision) is due.
            (0, vec![], Some(secs(300))),
            (60, vec![], Some(secs(300))),
            (299, vec![], Some(secs(300))),
            (300, vec![vec![TaAnalysis], vec![RegimeDetection]], Some(secs(600))),
            (301, vec![], Some(secs(600))),
            (600, vec![vec![TaAnalysis], vec![RegimeDetection]], Some(secs(900))),
            (
                3600,
                vec![
                    vec![TaAnalysis, SentimentAnalysis, PortfolioCheck],
                    vec![RegimeDetection],
                    vec![TradingDecision],
                ],
                Some(secs(3900)),
            ),
        ];
        assert_eq!(got, want);
        // Forced, it runs at once; switched off tasks and unconnected agents add no due time.
        s.force_run(TaAnalysis);
        assert_eq!(s.due(secs(3601), &cfg, level), vec![TaAnalysis]);
        assert_eq!(s.next_due(&cfg, level, |_| true), Some(t0()));
        s.mark_started(TaAnalysis, secs(3601));
        s.mark_finished(TaAnalysis, 0, 0);
        assert_eq!(s.next_due(&cfg, level, |t| t != RegimeDetection), Some(secs(5400)));
    }

    #[test]
    fn degradation_changes_what_runs() {
        let cases = [
            (
                DegradationLevel::Normal,
                vec![
                    TaAnalysis,
                    SentimentAnalysis,
                    PortfolioCheck,
                    RegimeDetection,
                    TradingDecision,
                ],
            ),
            (
                DegradationLevel::Reduced,
                vec![TaAnalysis, PortfolioCheck, RegimeDetection, TradingDecision],
            ),
            (
                DegradationLevel::Limited,
                vec![TaAnalysis, PortfolioCheck, RegimeDetection, TradingDecision],
            ),
            (DegradationLevel::Emergency, vec![TaAnalysis, RegimeDetection]),
        ];
        for (level, want) in cases {
            let got = simulate(level, &[3600]);
            assert_eq!(got[0].1, want, "{level:?}");
        }
    }

    #[test]
    fn no_overlap_and_dependency_waits_for_in_flight() {
        let cfg = OrchestrationSettings::default();
        let mut s = Scheduler::new(&cfg, t0());
        assert_eq!(s.due(t0(), &cfg, DegradationLevel::Normal), vec![TaAnalysis]);
        s.mark_started(TaAnalysis, t0());
        // Still running 5 minutes later: neither TA again nor the regime task that depends on it.
        assert!(s.due(secs(300), &cfg, DegradationLevel::Normal).is_empty());
        s.mark_finished(TaAnalysis, 0, 1);
        // TA is due again at 300 s, so the regime task waits for that run.
        assert_eq!(s.due(secs(300), &cfg, DegradationLevel::Normal), vec![TaAnalysis]);
        s.mark_started(TaAnalysis, secs(300));
        s.mark_finished(TaAnalysis, 0, 0);
        assert_eq!(s.due(secs(300), &cfg, DegradationLevel::Normal), vec![RegimeDetection]);
        assert_eq!(s.state(TaAnalysis).timeouts, 1);
    }

    #[test]
    fn a_dependency_slower_than_its_interval_does_not_starve_its_dependent() {
        let cfg = OrchestrationSettings::default();
        let mut s = Scheduler::new(&cfg, t0());
        let n = DegradationLevel::Normal;
        // TA takes 90 s each run, so it is due again every time it finishes.
        for (start, end) in [(0, 90), (90, 180), (180, 270), (270, 360)] {
            assert_eq!(s.due(secs(start), &cfg, n), vec![TaAnalysis], "at {start}");
            s.mark_started(TaAnalysis, secs(start));
            assert!(s.due(secs(end - 1), &cfg, n).is_empty());
            s.mark_finished(TaAnalysis, 0, 0);
        }
        // Due since 300 s: the TA run that started at 270 s (before it was due) is not awaited
        // twice; the one started at 360 s is.
        assert_eq!(s.due(secs(360), &cfg, n), vec![TaAnalysis]);
        s.mark_started(TaAnalysis, secs(360));
        s.mark_finished(TaAnalysis, 0, 0);
        assert_eq!(s.due(secs(450), &cfg, n), vec![TaAnalysis, RegimeDetection]);
    }

    #[test]
    fn global_cap_and_disabled_and_restore() {
        let cfg = OrchestrationSettings {
            max_concurrent_tasks: 2,
            ..OrchestrationSettings::default()
        };
        let mut s = Scheduler::new(&cfg, t0());
        s.force_run(SentimentAnalysis);
        s.force_run(PortfolioCheck);
        assert_eq!(
            s.due(t0(), &cfg, DegradationLevel::Normal),
            vec![TaAnalysis, SentimentAnalysis]
        );
        s.set_enabled(TaAnalysis, false);
        assert_eq!(
            s.due(t0(), &cfg, DegradationLevel::Normal),
            vec![SentimentAnalysis, PortfolioCheck]
        );
        s.mark_started(SentimentAnalysis, t0());
        let mut fresh = Scheduler::new(&cfg, secs(10));
        assert_eq!(fresh.restore(&s.tasks), vec![SentimentAnalysis]);
        assert!(fresh.state(SentimentAnalysis).run_now);
        assert!(!fresh.state(TaAnalysis).enabled);
        assert_eq!(TaskName::parse("trading_decision").unwrap(), TradingDecision);
        assert!(TaskName::parse("trading").is_err());
    }
}
