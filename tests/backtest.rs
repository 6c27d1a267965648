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
        .arg(dir.join(format!("equity-{tag}.csv")));
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
        "rebalances",
        "hodl_allocations",
        "timing",
    ] {
        assert!(report.get(key).is_some(), "report key {key} missing: {text_a}");
    }
    assert_eq!(report["candles_processed"].as_u64().unwrap() as usize, rows);
    assert!(report["timing"]["candles_per_sec"].as_f64().unwrap() > 0.0);

    // Net P&L = the recorded trades net of fees, and (every position closed at the end) the
    // change of equity.
    let csv = std::fs::read_to_string(&trades_path).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (fees_col, net_col) = (col("fees"), col("net_pnl"));
    let (mut fees, mut net, mut n) = (Decimal::ZERO, Decimal::ZERO, 0u64);
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        fees += Decimal::from_str(cells[fees_col]).unwrap();
        net += Decimal::from_str(cells[net_col]).unwrap();
        n += 1;
    }
    assert!(n > 0, "the generated day trades at least once: {text_a}");
    assert_eq!(report["trades"].as_u64().unwrap(), n);
    assert_eq!(dec(&report["net_pnl"]), net);
    assert_eq!(dec(&report["fees"]), fees);
    assert!(fees > Decimal::ZERO, "paper fills pay fees");
    assert_eq!(
        dec(&report["final_equity"]) - dec(&report["initial_equity"]),
        net,
        "nothing is left open: the equity change is the trades' net P&L"
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
