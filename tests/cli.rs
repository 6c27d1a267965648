//! The binary itself: check-config, and `serve` in paper mode without database or keys.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_triplegain"));
    c.env_remove("DATABASE_URL")
        .env_remove("KRAKEN_API_KEY")
        .env_remove("KRAKEN_API_SECRET")
        .env_remove("TRIPLEGAIN_ENV")
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn temp_config(extra: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tg-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/config")).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
    let mut local = std::fs::read_to_string(dir.join("local.yaml")).unwrap();
    local.push_str(extra);
    std::fs::write(dir.join("local.yaml"), local).unwrap();
    dir
}

#[test]
fn check_config_prints_redacted_yaml() {
    let out = bin()
        .args(["check-config"])
        .env("KRAKEN_API_SECRET", "very-secret-kraken-value")
        .env("TRIPLEGAIN_API_TOKEN", "admin-token-from-env-123")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let yaml = String::from_utf8(out.stdout).unwrap();
    assert!(yaml.contains("mode: paper"));
    assert!(!yaml.contains("very-secret-kraken-value"));
    assert!(!yaml.contains("admin-token-from-env-123"));
    assert!(yaml.contains("[REDACTED]"));
}

#[test]
fn check_config_exits_2_naming_file_and_key() {
    let dir = temp_config("server:\n  bnid: 127.0.0.1:9\n");
    let out = bin().args(["check-config", "--config"]).arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("local.yaml"), "{err}");
    assert!(err.contains("bnid"), "{err}");

    let dir = temp_config("supervision:\n  max_restarts: many\n");
    let out = bin().args(["check-config", "--config"]).arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_restarts"), "{err}");
}

#[test]
fn live_mode_without_database_refuses_to_start() {
    let out = bin()
        .args(["serve"])
        .env("TRIPLEGAIN__APP__MODE", "live")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("DATABASE_URL"));
}

#[test]
fn paper_server_without_database_serves_restarts_actors_and_stops_on_sigterm() {
    let mut child = bin()
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("TRIPLEGAIN__LOGGING__FORMAT", "json")
        .env("TRIPLEGAIN_API_TOKEN", "admin-token-for-cli-test")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut port = None;
    let mut saw_memory_warning = false;
    while Instant::now() < deadline && port.is_none() {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("in-memory store"))
            {
                saw_memory_warning = true;
            }
            if v["fields"]["message"] == "TripleGain listening" {
                port = v["fields"]["port"].as_u64();
            }
        }
    }
    let port = port.expect("server reported its port");
    assert!(saw_memory_warning, "paper mode without a database warns at start");
    let base = format!("http://127.0.0.1:{port}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = reqwest::Client::new();
        assert_eq!(c.get(format!("{base}/healthz")).send().await.unwrap().status(), 200);
        assert_eq!(c.get(format!("{base}/readyz")).send().await.unwrap().status(), 200);
        let r = c
            .post(format!("{base}/api/v1/actors/coordinator/crash"))
            .bearer_auth("admin-token-for-cli-test")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let actors: serde_json::Value = c
            .get(format!("{base}/api/v1/actors"))
            .bearer_auth("admin-token-for-cli-test")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let coord = actors["actors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == "coordinator")
            .unwrap()
            .clone();
        assert_eq!(coord["restarts"], 1);
        assert_eq!(c.get(format!("{base}/readyz")).send().await.unwrap().status(), 200);
    });

    // SIGTERM: graceful exit 0 within 10 s.
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "did not exit within 10 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
}

// ---- issue 17: configuration that cannot silently go wrong, first run, broken pipes ----------

/// A copy of the shipped config changed by `f`.
fn config_with(f: impl FnOnce(&std::path::Path)) -> std::path::PathBuf {
    let dir = temp_config("");
    f(&dir);
    dir
}

#[test]
fn each_silent_config_mistake_exits_2_naming_the_file_or_key() {
    let append = |file: &'static str, text: &'static str| {
        move |d: &std::path::Path| {
            let mut body = std::fs::read_to_string(d.join(file)).unwrap();
            body.push_str(text);
            std::fs::write(d.join(file), body).unwrap();
        }
    };
    let cases: Vec<(&str, std::path::PathBuf, &str)> = vec![
        (
            "a misnamed domain file",
            config_with(|d| std::fs::rename(d.join("risk.yaml"), d.join("risk.yml")).unwrap()),
            "risk.yml",
        ),
        (
            "a missing domain file",
            config_with(|d| std::fs::remove_file(d.join("hodl.yaml")).unwrap()),
            "hodl.yaml",
        ),
        (
            "an unknown file",
            config_with(|d| std::fs::write(d.join("strategy.yaml"), "x: 1\n").unwrap()),
            "strategy.yaml",
        ),
        (
            "an unknown key in a domain file",
            config_with(append("risk.yaml", "  max_leverage_extra_check: 1\n")),
            "max_leverage_extra_check",
        ),
        (
            "max_leverage 50",
            config_with(append("local.yaml", "risk:\n  max_leverage: 50\n")),
            "risk.max_leverage: must be between 1 and 5, got 50",
        ),
        (
            "max_position_pct 200",
            config_with(append("local.yaml", "risk:\n  max_position_pct: 200\n")),
            "risk.max_position_pct: must be between 0 and 100, got 200",
        ),
        (
            "an interval of 0",
            config_with(append("local.yaml", "market:\n  poll_interval_secs: 0\n")),
            "market.poll_interval_secs: must be greater than 0",
        ),
        (
            "a misspelt enum value",
            config_with(append("local.yaml", "market:\n  source: simulate\n")),
            "market.source: unknown variant `simulate`, expected one of `simulated`, `kraken`, `kraken_ws`, `replay`, `external`",
        ),
        (
            "a bad role",
            config_with(append(
                "local.yaml",
                "api:\n  tokens:\n    - {name: x, token: xxxxxxxxxxxxxxxxxxxx, role: boss}\n",
            )),
            "api.tokens[0].role: unknown variant `boss`",
        ),
    ];
    for (what, dir, want) in cases {
        let out = bin().args(["check-config", "--config"]).arg(&dir).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {err}");
        assert!(err.contains(want), "{what}: expected {want:?} in {err}");
        assert!(!err.contains("String(\""), "{what}: {err}");
        // `serve` refuses the same configuration at start.
        let out = bin()
            .args(["serve", "--bind", "127.0.0.1:0", "--config"])
            .arg(&dir)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "serve with {what}");
        let _ = std::fs::remove_dir_all(&dir);
    }
    // An environment override is checked the same way.
    let out = bin()
        .args(["check-config"])
        .env("TRIPLEGAIN__RISK__MAX_LEVERAGE", "9")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("risk.max_leverage"));
}

#[test]
fn check_config_into_a_closed_pipe_ends_quietly() {
    let mut child = bin()
        .args(["check-config"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before the output is written (`| head -0`).
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(!err.contains("Broken pipe"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
}

/// Starts `serve` without any token; returns the child, its port and what it printed on stderr.
fn serve_without_tokens(token_file: &std::path::Path) -> (std::process::Child, u16, String) {
    let mut child = bin()
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env_remove("TRIPLEGAIN_API_TOKEN")
        .env("TRIPLEGAIN__API__ADMIN_TOKEN_FILE", token_file)
        .env("TRIPLEGAIN__LOGGING__FORMAT", "json")
        .env("TRIPLEGAIN__LLM__RECORD_PATH", "")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (etx, erx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = etx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut port = None;
    while Instant::now() < deadline && port.is_none() {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if v["fields"]["message"] == "TripleGain listening" {
                port = v["fields"]["port"].as_u64().and_then(|p| u16::try_from(p).ok());
            }
        }
    }
    let port = port.expect("server reported its port");
    std::thread::sleep(Duration::from_millis(200));
    let printed: Vec<String> = erx.try_iter().collect();
    (child, port, printed.join("\n"))
}

fn stop(mut child: std::process::Child) {
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let _ = child.wait();
}

#[test]
fn first_run_prints_an_admin_token_once_and_the_next_start_uses_it_again() {
    let dir = std::env::temp_dir().join(format!("tg-first-{}", uuid::Uuid::new_v4().simple()));
    let file = dir.join("admin-token");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let session = |port: u16, token: &str| {
        rt.block_on(async {
            reqwest::Client::new()
                .get(format!("http://127.0.0.1:{port}/api/v1/session"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };

    let (child, port, printed) = serve_without_tokens(&file);
    let token = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert!(printed.contains("First run"), "{printed}");
    assert!(printed.contains(&token), "the token is printed: {printed}");
    assert!(
        printed.contains("Authorization: Bearer"),
        "with how to use it: {printed}"
    );
    assert_eq!(session(port, &token), 200);
    stop(child);

    let (child, port, printed) = serve_without_tokens(&file);
    assert!(!printed.contains(&token), "printed only once: {printed}");
    assert_eq!(session(port, &token), 200, "the same token works after a restart");
    stop(child);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn logs_written_to_a_pipe_carry_no_colour_codes_and_no_per_tick_analysis_lines() {
    let mut child = bin()
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("TRIPLEGAIN_API_TOKEN", "admin-token-for-cli-test")
        .env("TRIPLEGAIN__LOGGING__FORMAT", "pretty")
        .env("TRIPLEGAIN__LLM__RECORD_PATH", "")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The warm-up replays 72 simulated hours of candles: every agent runs many times over.
    let mut lines = Vec::new();
    let end = Instant::now() + Duration::from_secs(8);
    while Instant::now() < end {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            lines.push(l);
        }
    }
    stop(child);
    assert!(lines.iter().any(|l| l.contains("TripleGain listening")), "{lines:?}");
    assert!(!lines.iter().any(|l| l.contains('\u{1b}')), "ANSI codes in a piped log");
    for routine in ["analysis published", "regime published", "sentiment published"] {
        assert!(!lines.iter().any(|l| l.contains(routine)), "{routine} at info");
    }
}
