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
