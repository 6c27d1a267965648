//! Test harness: the whole app on port 0 against a fresh PostgreSQL database per test, cloned
//! from a template migrated once.

use deadpool_postgres::Pool;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::{oneshot, OnceCell};
use tokio_postgres::NoTls;
use triplegain::settings::{ApiToken, Role, Secret, Settings};
use triplegain::startup::{AppState, Application};

pub const VIEWER: &str = "viewer-token-0123456789";
pub const OPERATOR: &str = "operator-token-0123456789";
pub const ADMIN: &str = "admin-token-0123456789abc";

pub fn admin_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn url_for(db: &str) -> String {
    let base = admin_url();
    match base.rfind('/') {
        Some(i) if !base[..i].ends_with('/') => format!("{}/{db}", &base[..i]),
        _ => format!("{base}/{db}"),
    }
}

async fn admin_client() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&admin_url(), NoTls)
        .await
        .expect("connect to PostgreSQL (DATABASE_URL)");
    actix_web::rt::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// The template's name depends on the migrations, so a changed schema gets a new template.
fn template_name() -> String {
    let mut h = Sha256::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .expect("migrations dir")
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        h.update(std::fs::read(f).unwrap());
    }
    let d = h.finalize();
    format!("tg_template_{:02x}{:02x}{:02x}{:02x}", d[0], d[1], d[2], d[3])
}

static TEMPLATE: OnceCell<String> = OnceCell::const_new();

/// Creates (once, under an advisory lock shared by every test process) the migrated template.
async fn template() -> String {
    TEMPLATE
        .get_or_init(|| async {
            let name = template_name();
            let admin = admin_client().await;
            admin.execute("SELECT pg_advisory_lock(727274)", &[]).await.unwrap();
            let exists = admin
                .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
                .await
                .unwrap()
                .is_some();
            if !exists {
                let building = format!("{name}_building");
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{building}\" WITH (FORCE)"))
                    .await
                    .unwrap();
                admin
                    .batch_execute(&format!("CREATE DATABASE \"{building}\""))
                    .await
                    .unwrap();
                let pool = pool_for(&building);
                triplegain::db::migrate(&pool).await.expect("migrate template");
                pool.close();
                drop(pool);
                admin
                    .batch_execute(&format!("ALTER DATABASE \"{building}\" RENAME TO \"{name}\""))
                    .await
                    .unwrap();
            }
            admin.execute("SELECT pg_advisory_unlock(727274)", &[]).await.unwrap();
            name
        })
        .await
        .clone()
}

pub fn pool_for(db: &str) -> Pool {
    let settings = triplegain::settings::DatabaseSettings::default();
    triplegain::db::build_pool(&url_for(db), &settings).expect("pool")
}

/// A fresh database cloned from the template; dropped when the guard goes.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn new() -> Self {
        let template = template().await;
        let name = format!("tg_test_{}", uuid::Uuid::new_v4().simple());
        let admin = admin_client().await;
        let mut tries = 0;
        loop {
            match admin
                .batch_execute(&format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""))
                .await
            {
                Ok(()) => break,
                Err(e) if tries < 20 => {
                    tries += 1;
                    eprintln!("retrying CREATE DATABASE: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("CREATE DATABASE failed: {e}"),
            }
        }
        Self {
            url: url_for(&name),
            name,
        }
    }

    /// An empty database without migrations.
    pub async fn empty() -> Self {
        let name = format!("tg_test_{}", uuid::Uuid::new_v4().simple());
        admin_client()
            .await
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap();
        Self {
            url: url_for(&name),
            name,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let url = admin_url();
        // Drop needs async I/O: do it on a private runtime in a plain thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok((client, conn)) = tokio_postgres::connect(&url, NoTls).await {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

pub struct TestApp {
    pub address: String,
    pub db: Option<TestDb>,
    pub pool: Option<Pool>,
    pub client: reqwest::Client,
    #[allow(dead_code, reason = "used by later route tests")]
    pub state: actix_web::web::Data<AppState>,
    stop: Option<oneshot::Sender<()>>,
    done: Option<oneshot::Receiver<()>>,
}

pub fn test_settings() -> Settings {
    let mut s = Settings::load_with_env(&PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/config")), |_| None)
        .expect("config/ loads");
    s.server.bind = "127.0.0.1:0".into();
    s.server.workers = 1;
    s.server.fault_injection = Some(true);
    // Tests drive prices themselves; a test that wants a feed sets one.
    s.market.source = triplegain::settings::MarketSource::External;
    // Tests pin the reference schedule (only TA runs at start) rather than the shipped config's.
    s.orchestration.tasks = Default::default();
    // Tests poll the API in loops; the rate limit tests set their own low limits.
    s.api.rate_limit = triplegain::settings::RateLimitSettings {
        reads_per_minute: 0,
        control_per_minute: 0,
    };
    // Live-mode tests never reach Kraken's real WebSocket: nothing listens here, so REST answers
    // (tests of the socket point this at the WebSocket fake).
    s.kraken.ws_private_url = "ws://127.0.0.1:9/v2".into();
    // Tests make many unauthenticated requests; the throttle test sets its own limit.
    s.api.guards.auth_failures_per_minute = 0;
    // Model answers are not recorded into the working tree; tests of recording set a path.
    s.llm.record_path = String::new();
    s.api.tokens = vec![
        ApiToken {
            name: "viewer".into(),
            token: Secret::new(VIEWER),
            role: Role::Viewer,
        },
        ApiToken {
            name: "operator".into(),
            token: Secret::new(OPERATOR),
            role: Role::Operator,
        },
        ApiToken {
            name: "admin".into(),
            token: Secret::new(ADMIN),
            role: Role::Admin,
        },
    ];
    s
}

/// The app on a fresh database.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let db = TestDb::new().await;
    let mut settings = test_settings();
    settings.database.url = Some(Secret::new(db.url.clone()));
    tweak(&mut settings);
    let mut app = spawn_with_settings(settings).await;
    app.pool = Some(pool_for(&db.name));
    app.db = Some(db);
    app
}

/// The app on whatever database `settings` name (or the memory store).
pub async fn spawn_with_settings(settings: Settings) -> TestApp {
    let app = Application::build(settings).await.expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    actix_web::rt::spawn(async move {
        let _ = app
            .run_until_stopped(async move {
                let _ = stop_rx.await;
            })
            .await;
        let _ = done_tx.send(());
    });
    TestApp {
        address,
        db: None,
        pool: None,
        client: reqwest::Client::new(),
        state,
        stop: Some(stop_tx),
        done: Some(done_rx),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut r = self.client.get(self.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().await.expect("request")
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Option<serde_json::Value>) -> reqwest::Response {
        let mut r = self.client.post(self.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send().await.expect("request")
    }

    /// Stops HTTP and drains the actors, as a SIGTERM would.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            let _ = tokio::time::timeout(Duration::from_secs(15), done).await;
        }
    }
}

/// Turns every coordinator schedule off, for tests that run agents or checks by hand.
pub fn no_schedules(s: &mut Settings) {
    let t = &mut s.orchestration.tasks;
    for task in [
        &mut t.ta_analysis,
        &mut t.regime_detection,
        &mut t.sentiment_analysis,
        &mut t.trading_decision,
        &mut t.portfolio_check,
    ] {
        task.enabled = false;
    }
}
