//! kill -9 at random points of 20 manual trades: the real binary on a fresh PostgreSQL database,
//! killed (SIGKILL) a seeded random few milliseconds into some `POST /api/v1/trades`, restarted,
//! and the same request retried with its `Idempotency-Key`. Afterwards no key is stuck pending,
//! every key's trade has exactly one entry order in the store (none lost, none duplicated), and
//! every open position is protected by a working stop.

use rand::{Rng, SeedableRng};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "kill-test-admin-token-0123456789";
const TRADES: usize = 20;
const SEED: u64 = 14;

fn admin_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn db_url(name: &str) -> String {
    let base = admin_url();
    match base.rfind('/') {
        Some(i) => format!("{}/{name}", &base[..i]),
        None => format!("{base}/{name}"),
    }
}

async fn admin(sql: &str) {
    let (client, conn) = tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client.batch_execute(sql).await.unwrap();
}

/// Starts the server on `db` and returns it with its base URL.
fn start(db: &str) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_triplegain"))
        .args(["serve", "--bind", "127.0.0.1:0"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("KRAKEN_API_KEY")
        .env_remove("KRAKEN_API_SECRET")
        .env_remove("TRIPLEGAIN_ENV")
        .env("DATABASE_URL", db_url(db))
        .env("TRIPLEGAIN_API_TOKEN", TOKEN)
        .env("TRIPLEGAIN__LOGGING__FORMAT", "json")
        .env("RUST_LOG", "info")
        // Room for 20 positions without cooldowns, and no strategy trades beside the manual ones.
        .env("TRIPLEGAIN__RISK__POST_TRADE_COOLDOWN_MIN", "0")
        .env("TRIPLEGAIN__EXECUTION__POSITION_LIMITS__MAX_PER_SYMBOL", "100")
        .env("TRIPLEGAIN__EXECUTION__POSITION_LIMITS__MAX_TOTAL", "100")
        .env("TRIPLEGAIN__ORCHESTRATION__TASKS__TRADING_DECISION__ENABLED", "false")
        .env("TRIPLEGAIN__API__RATE_LIMIT__CONTROL_PER_MINUTE", "0")
        .env("TRIPLEGAIN__API__RATE_LIMIT__READS_PER_MINUTE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<u64>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if v["fields"]["message"] == "TripleGain listening" {
                if let Some(p) = v["fields"]["port"].as_u64() {
                    let _ = tx.send(p);
                }
            }
        }
    });
    let port = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("server reported its port");
    (child, format!("http://127.0.0.1:{port}"))
}

/// The risk engine's market price of BTC/USDT (from a validation's metrics), once it has one and
/// an equity.
async fn market_price(c: &reqwest::Client, base: &str) -> rust_decimal::Decimal {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = c
            .post(format!("{base}/api/v1/trades/validate"))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"symbol": "BTC/USDT", "side": "buy", "size_usd": "50", "order_type": "market"}))
            .send()
            .await;
        if let Ok(r) = r {
            let v: serde_json::Value = r.json().await.unwrap_or_default();
            if let Some(p) = v["verdict"]["metrics"]["market_price"].as_str() {
                return p.parse().unwrap();
            }
        }
        assert!(Instant::now() < deadline, "no market price from the risk engine");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn body_for(price: rust_decimal::Decimal) -> serde_json::Value {
    use rust_decimal::Decimal;
    let stop = (price * Decimal::new(98, 2)).round_dp(1);
    let tp = (price * Decimal::new(104, 2)).round_dp(1);
    serde_json::json!({"symbol": "BTC/USDT", "side": "buy", "size_usd": "50", "order_type": "market",
        "stop_loss": stop.to_string(), "take_profit": tp.to_string(), "note": "kill test"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_twenty_manual_trades_loses_and_duplicates_nothing() {
    let db = format!("kill_{}", uuid::Uuid::new_v4().simple());
    admin(&format!("CREATE DATABASE \"{db}\"")).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(SEED);
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let (mut child, mut base) = start(&db);
    let mut kills = 0;
    let mut keys = Vec::new();
    for i in 0..TRADES {
        let key = format!("kill-test-{i}");
        keys.push(key.clone());
        let price = market_price(&c, &base).await;
        let body = body_for(price);
        let kill_after = rng.gen_bool(0.4).then(|| Duration::from_millis(rng.gen_range(0..40)));
        if let Some(delay) = kill_after {
            // Send, and kill -9 the server `delay` into the request.
            let req = c
                .post(format!("{base}/api/v1/trades"))
                .bearer_auth(TOKEN)
                .header("Idempotency-Key", &key)
                .json(&body)
                .send();
            let sent = tokio::spawn(req);
            tokio::time::sleep(delay).await;
            child.kill().unwrap();
            let _ = child.wait();
            let _ = sent.await;
            kills += 1;
            let (c2, b2) = start(&db);
            child = c2;
            base = b2;
        }
        // The request (again, after a kill) until it has a final answer.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let r = c
                .post(format!("{base}/api/v1/trades"))
                .bearer_auth(TOKEN)
                .header("Idempotency-Key", &key)
                .json(&body)
                .send()
                .await;
            if let Ok(r) = r {
                let status = r.status().as_u16();
                let v: serde_json::Value = r.json().await.unwrap_or_default();
                if status == 200 {
                    break;
                }
                assert!(
                    status == 503 || status == 409 || status == 502,
                    "trade {i}: unexpected {status}: {v}"
                );
            }
            assert!(Instant::now() < deadline, "trade {i} never answered");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert!(kills >= 5, "the seed kills several requests ({kills})");
    // One more kill -9 and restart, then everything must be consistent.
    child.kill().unwrap();
    let _ = child.wait();
    let (mut child, base) = start(&db);

    let (client, conn) = tokio_postgres::connect(&db_url(&db), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let stuck: i64 = client
        .query_one("SELECT count(*) FROM idempotency_keys WHERE status = 0", &[])
        .await
        .unwrap()
        .get(0);
    let _ = &base;
    let mut failures = Vec::new();
    if stuck != 0 {
        failures.push(format!("{stuck} idempotency keys stuck pending"));
    }
    for key in &keys {
        let row = client
            .query_one(
                "SELECT status, correlation_id, response FROM idempotency_keys WHERE key = $1",
                &[&format!("trades:{key}")],
            )
            .await
            .unwrap();
        let status: i32 = row.get(0);
        let response: serde_json::Value = row.get(2);
        let cid = response["correlation_id"].as_str().unwrap_or_default().to_owned();
        let entries: i64 = client
            .query_one(
                "SELECT count(*) FROM orders WHERE purpose = 'entry' AND correlation_id::text = $1",
                &[&cid],
            )
            .await
            .unwrap()
            .get(0);
        if status != 200 || entries != 1 {
            failures.push(format!("{key}: status {status}, {entries} entry orders for {cid}"));
        }
    }
    // Every key's trade is one entry; no entry without a key's trade.
    let all_entries: i64 = client
        .query_one("SELECT count(*) FROM orders WHERE purpose = 'entry'", &[])
        .await
        .unwrap()
        .get(0);
    if all_entries != TRADES as i64 {
        failures.push(format!("{all_entries} entry orders for {TRADES} trades"));
    }
    // Every open position gets a working stop.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let unprotected: i64 = client
            .query_one(
                "SELECT count(*) FROM positions p WHERE p.status = 'open' AND NOT EXISTS ( \
                 SELECT 1 FROM orders o WHERE o.id = p.stop_loss_order_id AND o.status IN ('open', 'pending'))",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let open: i64 = client
            .query_one("SELECT count(*) FROM positions WHERE status = 'open'", &[])
            .await
            .unwrap()
            .get(0);
        if unprotected == 0 && open > 0 {
            break;
        }
        if Instant::now() > deadline {
            failures.push(format!("{unprotected} of {open} open positions without a working stop"));
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    child.kill().unwrap();
    let _ = child.wait();
    drop(client);
    admin(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)")).await;
    assert!(failures.is_empty(), "after {kills} kills: {failures:#?}");
}
