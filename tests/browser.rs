//! The web control panel in headless Chromium: `tests/browser/panel.test.mjs` (playwright-core,
//! the system's Chromium, no browser download) against the real server binary in paper mode on a
//! fresh database. Needs `npm ci` in `tests/browser` and `/usr/bin/chromium` (`.ci/run` installs
//! both); `TRIPLEGAIN_BROWSER_TEST=skip` skips it on a machine without them.

#[allow(dead_code, reason = "the shared harness has helpers this test does not use")]
#[path = "api/helpers.rs"]
mod helpers;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const VIEWER: &str = "viewer-token-for-the-panel-0123";
const ADMIN: &str = "admin-token-for-the-panel-01234";
const CHECK: &str = "check-token-for-the-panel-01234";

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped config plus the test's tokens (the default rate limits stay: the panel must live
/// within them).
fn config_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tg-browser-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(manifest().join("config")).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
    let mut local = std::fs::read_to_string(dir.join("local.yaml")).unwrap();
    local.push_str(&format!(
        "api:\n  tokens:\n    - {{name: panel-admin, token: {ADMIN}, role: admin}}\n    - {{name: panel-viewer, token: {VIEWER}, role: viewer}}\n    - {{name: checker, token: {CHECK}, role: viewer}}\n"
    ));
    std::fs::write(dir.join("local.yaml"), local).unwrap();
    dir
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
    }
}

#[actix_web::test]
async fn the_panel_signs_in_controls_trading_shows_a_trade_and_its_chain_and_hides_controls_from_viewers() {
    if std::env::var("TRIPLEGAIN_BROWSER_TEST").as_deref() == Ok("skip") {
        eprintln!("browser test skipped (TRIPLEGAIN_BROWSER_TEST=skip)");
        return;
    }
    let browser_dir = manifest().join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci` in tests/browser (.ci/run does), or set TRIPLEGAIN_BROWSER_TEST=skip"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: apt-get install -y chromium chromium-driver (.ci/run does), or set TRIPLEGAIN_BROWSER_TEST=skip"
    );

    // Arrange: the real binary, paper mode, simulated market, a fresh database.
    let db = helpers::TestDb::new().await;
    let config = config_dir();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log_path = std::env::temp_dir().join(format!("tg-browser-server-{port}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_triplegain"))
        .args(["serve", "--config"])
        .arg(&config)
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", &db.url)
        .env_remove("TRIPLEGAIN_ENV")
        .env_remove("TRIPLEGAIN_API_TOKEN")
        .env_remove("KRAKEN_API_KEY")
        .env_remove("KRAKEN_API_SECRET")
        .env("TRIPLEGAIN__LLM__RECORD_PATH", "")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .current_dir(std::env::temp_dir())
        .spawn()
        .unwrap();
    let server = Server(child);
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "server not ready; log in {}",
            log_path.display()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Act: the browser test.
    let shot = std::env::var("TRIPLEGAIN_PANEL_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| manifest().join("target/panel.png"));
    let mut node = Command::new("node")
        .arg("panel.test.mjs")
        .current_dir(&browser_dir)
        .env("BASE_URL", &base)
        .env("ADMIN_TOKEN", ADMIN)
        .env("VIEWER_TOKEN", VIEWER)
        .env("CHECK_TOKEN", CHECK)
        .env("CHROMIUM", &chromium)
        .env("SCREENSHOT", &shot)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs (install Node.js 18 or later)");
    let started = Instant::now();
    let status = loop {
        if let Some(s) = node.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(240) {
            let _ = node.kill();
            break node.wait().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut out = String::new();
    let mut err = String::new();
    node.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    node.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    println!("{out}");
    eprintln!("{err}");
    drop(server);

    // Assert.
    assert!(
        status.success(),
        "the panel browser test failed ({status}); server log in {}:\n{out}\n{err}",
        log_path.display()
    );
    assert!(out.contains("[panel test] PASS"), "{out}");
    assert!(shot.exists(), "no screenshot at {}", shot.display());
    let _ = std::fs::remove_dir_all(&config);
}
