//! `triplegain backtest`: the full actor system on generated 1-minute candle files for two
//! symbols. The report has the documented keys and counts every row; two runs give the same
//! report apart from `timing`; the net P&L is the sum of the recorded trades net of fees; a
//! malformed file fails naming file and line.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code")]

use rust_decimal::Decimal;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::str::FromStr;

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_triplegain"));
    cmd.arg("--config")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("config"))
        .env_remove("DATABASE_URL");
    cmd
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tg-backtest-{name}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One day of 1-minute candles for BTC/USDT and XRP/USDT from the seeded simulated market.
fn generate(dir: &Path) -> (PathBuf, PathBuf, usize) {
    let out = bin()
        .args(["bench", "--seed", "7", "--days", "1", "--generate"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let btc = dir.join("btc_usdt.csv");
    let xrp = dir.join("xrp_usdt.csv");
    let rows = [&btc, &xrp]
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap().lines().count() - 1)
        .sum();
    (btc, xrp, rows)
}

fn backtest(dir: &Path, files: &[&Path], tag: &str) -> (Output, PathBuf, PathBuf) {
    backtest_with(dir, files, tag, &[])
}

fn backtest_with(dir: &Path, files: &[&Path], tag: &str, extra: &[&str]) -> (Output, PathBuf, PathBuf) {
    let report = dir.join(format!("report-{tag}.json"));
    let trades = dir.join(format!("trades-{tag}.csv"));
    let mut cmd = bin();
    cmd.arg("backtest");
    for f in files {
        cmd.arg("--candles").arg(f);
    }
    cmd.args(["--seed", "11", "--out"])
        .arg(&report)
        .arg("--trades-csv")
        .arg(&trades)
        .arg("--equity-csv")
        .arg(dir.join(format!("equity-{tag}.csv")))
        .args(extra);
    (cmd.output().unwrap(), report, trades)
}

fn dec(v: &Value) -> Decimal {
    Decimal::from_str(v.as_str().unwrap_or_else(|| panic!("decimal string, got {v}"))).unwrap()
}

#[test]
fn backtest_reports_every_candle_and_is_reproducible() {
    let dir = temp_dir("run");
    let (btc, xrp, rows) = generate(&dir);

    let (out, report_path, trades_path) = backtest(&dir, &[&btc, &xrp], "a");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("candles/s"), "human summary on stderr: {stderr}");
    let text_a = std::fs::read_to_string(&report_path).unwrap();
    let report: Value = serde_json::from_str(&text_a).unwrap();
    for key in [
        "period",
        "candles_processed",
        "trades",
        "win_rate",
        "gross_pnl",
        "net_pnl",
        "fees",
        "max_drawdown",
        "sharpe",
        "sortino",
        "exposure",
        "by_regime",
        "by_symbol",
        "risk_verdicts",
        "risk_alerts",
        "decisions",
        "rebalances",
        "rebalance",
        "hodl",
        "hodl_allocations",
        "baseline",
        "cagr_pct",
        "profit_factor",
        "expectancy",
        "avg_holding_hours",
        "exit_reasons",
        "monthly_returns",
        "by_source",
        "warnings",
        "timing",
    ] {
        assert!(report.get(key).is_some(), "report key {key} missing: {text_a}");
    }
    assert_eq!(report["candles_processed"].as_u64().unwrap() as usize, rows);
    assert!(report["timing"]["candles_per_sec"].as_f64().unwrap() > 0.0);

    // Net P&L = the strategy round trips net of fees; rebalance trades are rows of their own
    // (source `rebalance`) and no round trips; every position is closed at the end, the
    // rebalancer's holdings are not: the change of equity is the round trips' net P&L plus what
    // the holdings' trades earned at the last prices.
    let csv = std::fs::read_to_string(&trades_path).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (source_col, fees_col, net_col) = (col("source"), col("fees"), col("net_pnl"));
    let (mut fees, mut net, mut n, mut rebalance_rows, mut rebalance_fees) =
        (Decimal::ZERO, Decimal::ZERO, 0u64, 0u64, Decimal::ZERO);
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells.len(), header.len(), "{line}");
        match cells[source_col] {
            "strategy" | "manual" => {
                fees += Decimal::from_str(cells[fees_col]).unwrap();
                net += Decimal::from_str(cells[net_col]).unwrap();
                n += 1;
            }
            "rebalance" => {
                rebalance_rows += 1;
                rebalance_fees += Decimal::from_str(cells[fees_col]).unwrap();
                assert_eq!(cells[net_col], "", "a rebalance trade is no round trip: {line}");
            }
            "hodl" => {}
            other => panic!("unknown source {other}: {line}"),
        }
    }
    assert!(rebalance_rows > 0, "the generated day rebalances: {text_a}");
    assert_eq!(report["rebalance"]["orders"].as_u64().unwrap(), rebalance_rows);
    assert_eq!(report["rebalances"].as_u64().unwrap(), rebalance_rows);
    assert_eq!(dec(&report["rebalance"]["fees"]), rebalance_fees);
    assert!(rebalance_fees > Decimal::ZERO, "paper fills pay fees");
    assert_eq!(report["trades"].as_u64().unwrap(), n);
    assert_eq!(dec(&report["net_pnl"]), net);
    assert_eq!(dec(&report["fees"]), fees);
    assert!(
        report["rebalance"]["batches"]["executed"].as_u64().unwrap() > 0,
        "{text_a}"
    );
    let equity_change = dec(&report["final_equity"]) - dec(&report["initial_equity"]);
    let holdings = dec(&report["rebalance"]["mark_to_market_pnl"]) + dec(&report["hodl"]["mark_to_market_pnl"]);
    assert!(
        (equity_change - (net + holdings)).abs() < Decimal::new(1, 4),
        "equity change {equity_change} = round trips {net} + holdings' trades {holdings}"
    );
    assert!(report["baseline"]["final_equity"].is_string(), "{text_a}");
    assert!(
        report["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("fewer than 30")),
        "one day of returns: {text_a}"
    );

    // The same inputs and seed: the same report, byte for byte, apart from `timing`.
    let (out, report_b, _) = backtest(&dir, &[&btc, &xrp], "b");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let strip = |text: &str| {
        let mut v: Value = serde_json::from_str(text).unwrap();
        v.as_object_mut().unwrap().remove("timing");
        serde_json::to_string_pretty(&v).unwrap()
    };
    let text_b = std::fs::read_to_string(&report_b).unwrap();
    assert_eq!(strip(&text_a), strip(&text_b));
    let _ = std::fs::remove_dir_all(&dir);
}

/// While positions are open the run batches the minutes in which nothing can fill, trigger or
/// move a stop; handing over every minute alone must give the very same report and trades.
#[test]
fn batching_quiet_minutes_changes_nothing() {
    let dir = temp_dir("quiet");
    let (btc, xrp, _) = generate(&dir);
    let (out, batched, trades_batched) = backtest(&dir, &[&btc, &xrp], "batched");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (out, single, trades_single) = backtest_with(&dir, &[&btc, &xrp], "single", &["--minute-by-minute"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let strip = |path: &Path| {
        let mut v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        v.as_object_mut().unwrap().remove("timing");
        v
    };
    let (a, b) = (strip(&batched), strip(&single));
    assert!(
        a["rebalance"]["orders"].as_u64().unwrap() > 0,
        "the day rebalances, so orders were live: {a}"
    );
    assert_eq!(a, b);
    assert_eq!(
        std::fs::read_to_string(&trades_batched).unwrap(),
        std::fs::read_to_string(&trades_single).unwrap()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn from_and_to_limit_the_candles() {
    let dir = temp_dir("range");
    let (btc, _, _) = generate(&dir);
    // The generated day starts at 2025-01-01T00:00Z: two hours of it.
    let out = bin()
        .arg("backtest")
        .arg("--candles")
        .arg(&btc)
        .args(["--from", "2025-01-01T01:00:00Z", "--to", "2025-01-01T03:00:00Z"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["candles_processed"], 120);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn malformed_candle_file_fails_with_file_and_line() {
    let dir = temp_dir("bad");
    let file = dir.join("BTC_USDT.csv");
    std::fs::write(
        &file,
        "timestamp,open,high,low,close,volume\n\
         1735689600,100,101,99,100.5,1\n\
         1735689660,100.5,101,99,100.2,1\n\
         1735689720,100.2,101,99,100.1,1\n\
         1735689780,100.1,abc,99,100.3,1\n",
    )
    .unwrap();
    let (out, _, _) = backtest(&dir, &[&file], "bad");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:5", file.display())),
        "names file and line: {stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The 64 hex digits following `prefix` in `text`.
fn hash_after(text: &str, prefix: &str) -> String {
    let at = text.find(prefix).unwrap_or_else(|| panic!("{prefix:?} not in {text}")) + prefix.len();
    let hash: String = text[at..].chars().take_while(char::is_ascii_hexdigit).collect();
    assert_eq!(hash.len(), 64, "a SHA-256 prompt hash after {prefix:?}: {text}");
    hash
}

fn recorded_answer(model: &str, hash: &str, text: &str) -> String {
    serde_json::json!({
        "key": { "agent": "trading_decision", "model": model, "prompt_hash": hash },
        "outcome": { "Ok": {
            "provider": "openai", "model": model, "text": text,
            "input_tokens": 900, "output_tokens": 60, "latency_ms": 1200, "cost_usd": "0.012"
        } }
    })
    .to_string()
}

#[test]
fn llm_replay_answers_from_the_record_and_fails_naming_a_missing_key() {
    let dir = temp_dir("replay");
    let (btc, _, _) = generate(&dir);
    let record = dir.join("answers.jsonl");
    // The record holds gpt-4-turbo answers of the decision agent, none for this run's prompt (and
    // none of the sentiment models: sentiment runs without a model, as in the recorded run).
    std::fs::write(&record, recorded_answer("gpt-4-turbo", &"0".repeat(64), "{}") + "\n").unwrap();
    // One hour and a minute: the decision task runs at the start (00:01, no hourly candle yet,
    // so no model call) and an hour later (01:01), after the first hourly candle closed.
    let run = || {
        bin()
            .arg("backtest")
            .arg("--candles")
            .arg(&btc)
            .args(["--to", "2025-01-01T01:01:00Z", "--llm-replay"])
            .arg(&record)
            .output()
            .unwrap()
    };
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "a missing answer fails the run: {stderr}");
    assert!(
        stderr.contains(&record.display().to_string()),
        "names the record: {stderr}"
    );
    let hash = hash_after(&stderr, "trading_decision/gpt-4-turbo/");
    assert_ne!(hash, "0".repeat(64));
    assert!(
        !stderr.contains("trading_decision/claude"),
        "only models the record holds are asked: {stderr}"
    );

    // With the answer recorded under that key, the run replays it.
    let hold = r#"{"action": "HOLD", "confidence": 0.4, "reasoning": "recorded answer"}"#;
    let mut text = std::fs::read_to_string(&record).unwrap();
    text.push_str(&(recorded_answer("gpt-4-turbo", &hash, hold) + "\n"));
    std::fs::write(&record, text).unwrap();
    let out = run();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["candles_processed"], 61);
    let _ = std::fs::remove_dir_all(&dir);
}

mod back_pressure {
    use actix::prelude::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;
    use triplegain::market::driver::{drive_feed, FeedClock};
    use triplegain::market::ReplayFeed;
    use triplegain_actors::domain::Symbol;
    use triplegain_actors::market::CandleBatch;
    use triplegain_actors::ports::{FeedError, FeedItem, MarketFeed};

    /// Counts the candles the feed has read from its file.
    struct Counting {
        inner: ReplayFeed,
        read: Arc<AtomicU64>,
    }

    impl MarketFeed for Counting {
        fn symbols(&self) -> Vec<Symbol> {
            self.inner.symbols()
        }
        fn next(&mut self) -> futures::future::BoxFuture<'_, Result<FeedItem, FeedError>> {
            Box::pin(async move {
                let item = self.inner.next().await;
                if let Ok(FeedItem::Candles(c)) = &item {
                    self.read.fetch_add(c.len() as u64, Ordering::SeqCst);
                }
                item
            })
        }
    }

    /// A consumer that takes 2 ms per batch, with a mailbox of 4.
    struct Slow {
        consumed: Arc<AtomicU64>,
        read: Arc<AtomicU64>,
        most_ahead: Arc<AtomicU64>,
    }

    impl Actor for Slow {
        type Context = Context<Self>;
        fn started(&mut self, ctx: &mut Self::Context) {
            ctx.set_mailbox_capacity(4);
        }
    }

    impl Handler<CandleBatch> for Slow {
        type Result = ResponseActFuture<Self, Result<usize, triplegain_actors::supervision::ActorError>>;
        fn handle(&mut self, msg: CandleBatch, _: &mut Self::Context) -> Self::Result {
            let n = msg.0.len() as u64;
            let ahead = self
                .read
                .load(Ordering::SeqCst)
                .saturating_sub(self.consumed.load(Ordering::SeqCst));
            self.most_ahead.fetch_max(ahead, Ordering::SeqCst);
            Box::pin(
                async move {
                    actix::clock::sleep(Duration::from_millis(2)).await;
                }
                .into_actor(self)
                .map(move |(), act, _| {
                    act.consumed.fetch_add(n, Ordering::SeqCst);
                    Ok(n as usize)
                }),
            )
        }
    }

    #[actix::test]
    async fn a_slow_consumer_slows_the_feed_instead_of_queueing() {
        let dir = super::temp_dir("pressure");
        let (btc, _, rows) = super::generate(&dir);
        let read = Arc::new(AtomicU64::new(0));
        let consumed = Arc::new(AtomicU64::new(0));
        let most_ahead = Arc::new(AtomicU64::new(0));
        let slow = Slow {
            consumed: consumed.clone(),
            read: read.clone(),
            most_ahead: most_ahead.clone(),
        }
        .start();
        let feed = Counting {
            inner: ReplayFeed::open(vec![(Symbol::parse("BTC/USDT").unwrap(), btc)]).unwrap(),
            read: read.clone(),
        };
        let started = std::time::Instant::now();
        // 300 one-minute candles: the feed would read them in well under a millisecond.
        let watch = {
            let (read, consumed) = (read.clone(), consumed.clone());
            actix::spawn(async move {
                let mut most = 0;
                while consumed.load(Ordering::SeqCst) < 300 {
                    most = most.max(
                        read.load(Ordering::SeqCst)
                            .saturating_sub(consumed.load(Ordering::SeqCst)),
                    );
                    actix::clock::sleep(Duration::from_micros(200)).await;
                }
                most
            })
        };
        let driver = actix::spawn(drive_feed(
            Box::new(feed),
            slow.recipient(),
            FeedClock::Wall,
            Vec::new(),
            Duration::from_millis(10),
        ));
        let most_seen = watch.await.unwrap();
        driver.abort();
        let elapsed = started.elapsed();
        // Each batch is one candle (one symbol, one minute); at most the mailbox (4), the batch
        // being handled and the one the feed holds while it waits are ahead of the consumer.
        let bound = 4 + 1 + 1 + 1;
        assert!(rows >= 1440);
        assert!(
            most_ahead.load(Ordering::SeqCst) <= bound && most_seen <= bound,
            "the feed ran {} / {most_seen} candles ahead of the slow consumer",
            most_ahead.load(Ordering::SeqCst)
        );
        assert!(
            elapsed >= Duration::from_millis(2 * 300),
            "the feed waited for the consumer: {elapsed:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
