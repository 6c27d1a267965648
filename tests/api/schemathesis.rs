//! The OpenAPI document checked by a tool that did not write it: schemathesis generates requests
//! from the document (examples, boundary coverage, fuzzing, stateful sequences over inferred
//! links) with a fixed seed and a bounded number of examples, sends them over real HTTP to the
//! app on a fresh PostgreSQL database holding a protected position, a resting order and fills,
//! and checks every response: no 5xx, the status code documented, the `Content-Type` and the
//! headers documented, the **body valid against the documented response schema**, schema-violating
//! requests refused, authentication enforced, undeclared methods answered 405.
//!
//! One check is off: `positive_data_acceptance` (a schema-valid request must be accepted). The
//! document cannot say that a stop must be 0.5–5 % from the market, that an id must exist or
//! that the coordinator must be running; those refusals are the risk rules working, and the
//! contract tests (`contract.rs`, `money.rs`) hold each of them to its own status and field.
//!
//! Schemathesis comes from `TRIPLEGAIN_SCHEMATHESIS` (its path, or `skip`), else
//! `target/schemathesis/bin/schemathesis`, which this test creates with pip when it is missing
//! (`.ci/run` creates it before the tests).

use crate::execution::{body, buy_and_fill, limit_buy, open_position};
use crate::helpers::{spawn_app_with, ADMIN, OPERATOR};
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;

/// The version the document is checked with (a newer one may add checks; update deliberately).
const VERSION: &str = "4.32.5";
const SEED: &str = "17";
const MAX_EXAMPLES: &str = "12";

fn schemathesis() -> Option<PathBuf> {
    if let Ok(v) = std::env::var("TRIPLEGAIN_SCHEMATHESIS") {
        return (v != "skip").then(|| PathBuf::from(v));
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/schemathesis");
    let bin = root.join("bin/schemathesis");
    if !bin.exists() {
        let venv = Command::new("python3").arg("-m").arg("venv").arg(&root).status();
        assert!(
            venv.is_ok_and(|s| s.success()),
            "python3 -m venv {} failed (set TRIPLEGAIN_SCHEMATHESIS to a schemathesis binary, or to skip)",
            root.display()
        );
        let pip = Command::new(root.join("bin/pip"))
            .args(["install", "--quiet", &format!("schemathesis=={VERSION}")])
            .status();
        assert!(
            pip.is_ok_and(|s| s.success()),
            "pip install schemathesis=={VERSION} failed (set TRIPLEGAIN_SCHEMATHESIS to a schemathesis binary, or to skip)"
        );
    }
    Some(bin)
}

#[actix_web::test]
async fn schemathesis_finds_every_response_as_the_openapi_document_describes_it() {
    let Some(st) = schemathesis() else {
        eprintln!("TRIPLEGAIN_SCHEMATHESIS=skip: the OpenAPI check did not run");
        return;
    };
    let app = spawn_app_with(|s| {
        // Two trades are placed before the run; the cooldown would refuse the second.
        s.risk.post_trade_cooldown_min = 0;
    })
    .await;
    // State worth describing: a protected position (entry and fills), a resting limit order.
    buy_and_fill(&app).await;
    // Every configured pair has a price, so the portfolio can be valued.
    let xrp = triplegain_actors::domain::Symbol::parse("XRP/USDT").unwrap();
    let paper = app.state.paper.as_ref().expect("paper mode");
    paper.on_price(&xrp, rust_decimal::Decimal::new(25, 1), app.state.clock.now());
    let position = open_position(&app).await;
    let mut resting = limit_buy("500");
    resting["price"] = json!("49500");
    resting["stop_loss"] = json!("48500");
    resting["take_profit"] = json!("51500");
    let (s, b) = body(app.post("/api/v1/trades", Some(OPERATOR), Some(resting)).await).await;
    assert_eq!(s, 200, "{b}");

    let report = tempfile::tempdir().expect("temp dir");
    let url = app.url("/api/v1/openapi.json");
    let auth = format!("Authorization: Bearer {ADMIN}");
    let out = tokio::task::spawn_blocking({
        let report = report.path().to_owned();
        move || {
            Command::new(st)
                .args(["run", &url, "-H", &auth])
                .args(["--checks", "all", "--exclude-checks", "positive_data_acceptance"])
                .args(["--seed", SEED, "--max-examples", MAX_EXAMPLES, "--workers", "1"])
                .args(["--request-timeout", "10", "--no-color"])
                .arg("--report-dir")
                .arg(&report)
                .current_dir(&report)
                .output()
        }
    })
    .await
    .expect("join")
    .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found responses the document does not describe:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("passed"), "schemathesis ran no test case:\n{stdout}");
    // The run used the state: the position is still there to be read.
    let (s, _) = body(
        app.get(
            &format!("/api/v1/positions/{}", position["id"].as_str().unwrap()),
            Some(ADMIN),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200);
    app.shutdown().await;
}
