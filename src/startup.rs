//! The one place that builds the pool, starts and wires the actors, and binds HTTP.

use crate::db;
pub use crate::routes::state::AppState;
use crate::routes::{self, auth::TokenTable};
use crate::settings::MarketSource;
use crate::settings::Settings;
use actix_web::{web, App, HttpServer};
use anyhow::Context as _;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::net::TcpListener;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tracing_actix_web::TracingLogger;
use triplegain_actors::bus::Bus;
use triplegain_actors::clock::{ManualClock, SharedClock, SystemClock};
use triplegain_actors::coordinator::Coordinator;
use triplegain_actors::domain::TradingMode;
use triplegain_actors::execution::manager::{ManagerDeps, OrderExecutionManager};
use triplegain_actors::execution::paper::PaperExchange;
use triplegain_actors::ports::Exchange;
use triplegain_actors::risk::{RiskEngine, RiskEngineConfig};
use triplegain_actors::supervision::{start_supervised, Registry, RestartPolicy};

/// Mailbox capacity of actors subscribed to per-candle topics (snapshots, ticks, candles): large
/// enough to absorb the simulated market's warm-up burst without dropping events.
const FEED_SUBSCRIBER_MAILBOX: usize = 16_384;

/// Connects the live Kraken exchange (pairs and precision loaded from AssetPairs).
async fn connect_kraken(settings: &Settings) -> anyhow::Result<crate::kraken::KrakenExchange> {
    use crate::kraken::{KrakenClient, KrakenConfig, KrakenCredentials, KrakenExchange, Tier};
    let (Some(key), Some(secret)) = (&settings.kraken.api_key, &settings.kraken.api_secret) else {
        anyhow::bail!("live mode requires KRAKEN_API_KEY and KRAKEN_API_SECRET");
    };
    let config = KrakenConfig {
        base_url: settings.kraken.base_url.clone(),
        timeout: Duration::from_secs(settings.kraken.timeout_secs),
        tier: Tier::parse(&settings.kraken.tier).map_err(|e| anyhow::anyhow!("kraken.tier: {e}"))?,
        calls_per_minute: settings.kraken.calls_per_minute,
        order_calls_per_minute: settings.kraken.order_calls_per_minute,
        reserved_rest_points: settings.kraken.reserved_rest_points,
        reserved_calls: settings.kraken.reserved_calls_per_minute,
        start_charged: settings.kraken.start_charged,
        ..KrakenConfig::default()
    };
    let client = KrakenClient::new(config, Some(KrakenCredentials::new(key.expose(), secret.expose())))
        .map_err(|e| anyhow::anyhow!("kraken client: {e}"))?;
    let symbols: Vec<triplegain_actors::domain::Symbol> = settings
        .market
        .symbols
        .iter()
        .filter_map(|s| triplegain_actors::domain::Symbol::parse(s).ok())
        .collect();
    KrakenExchange::connect(client, &symbols)
        .await
        .map_err(|e| anyhow::anyhow!("connecting to Kraken: {e}"))
}

fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Histograms as Prometheus histograms (with buckets), not summaries.
            let builder = PrometheusBuilder::new();
            let builder = match builder.set_buckets(&crate::observability::LATENCY_BUCKETS) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "histogram buckets not set; latencies render as summaries");
                    PrometheusBuilder::new()
                }
            };
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::debug!("metrics recorder already installed");
            }
            handle
        })
        .clone()
}

/// The running application: HTTP server plus actor system.
pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    state: web::Data<AppState>,
    drain_deadline: Duration,
    // -- fleet (issue 18): event export and the per-account single-instance lock --
    export: Option<crate::export::ExportHandle>,
    account_lock: Option<db::account::AccountLock>,
}

/// The running actor system without HTTP: what `serve` exposes over the API and `backtest`
/// drives directly.
pub struct System {
    pub state: AppState,
    /// The business clock moved by the market feed (every source but Kraken).
    pub feed_clock: Option<ManualClock>,
    /// Notified when a store transaction wrote events to the export outbox (wakes the relay).
    pub outbox_wake: Arc<tokio::sync::Notify>,
}

/// Builds the stores (and migrations) and starts and wires every actor.
///
/// # Errors
/// When the database is unreachable, migrations fail or a setting is unusable.
pub async fn build_system(settings: &Settings) -> anyhow::Result<System> {
    build_system_at(settings, None).await
}

/// As [`build_system`], with the business clock starting at `start` instead of now (a replay of
/// the past starts at its first candle, so no actor ever sees the wall clock's date).
///
/// # Errors
/// As [`build_system`].
pub async fn build_system_at(
    settings: &Settings,
    start: Option<chrono::DateTime<chrono::Utc>>,
) -> anyhow::Result<System> {
    build_system_with(settings, start, crate::analysis::ModelSource::Providers).await
}

/// As [`build_system_at`], with the agents' models from `models` (a backtest: none, or a
/// recorded run's answers).
///
/// # Errors
/// As [`build_system`].
pub async fn build_system_with(
    settings: &Settings,
    start: Option<chrono::DateTime<chrono::Utc>>,
    models: crate::analysis::ModelSource,
) -> anyhow::Result<System> {
    let (stores, pool) = match &settings.database.url {
        Some(url) => {
            // One schema per account (db::account); `default` stays in `public`.
            let account = &settings.app.account;
            let pool = db::account::build_account_pool(url.expose(), &settings.database, account)?;
            db::account::prepare_account_schema(&pool, account, settings.database.run_migrations).await?;
            if settings.database.run_migrations {
                let applied = db::migrate(&pool).await?;
                tracing::info!(applied = applied.len(), account = %account, "database migrations up to date");
            }
            // With the event export on, the audit store appends to the outbox in its transactions.
            let stores = if settings.export.enabled {
                db::pg_stores_with_outbox(pool.clone())
            } else {
                db::pg_stores(pool.clone())
            };
            (stores, Some(pool))
        }
        None => {
            tracing::warn!("no DATABASE_URL: paper mode on the in-memory store; nothing survives a restart");
            (db::memory_stores_with(settings.database.memory_max_records), None)
        }
    };

    // ---- time and bus -------------------------------------------------------------
    // The market feed drives business time: replay and the simulated market move a manual
    // clock candle by candle; the Kraken feed runs on the wall clock.
    // -- operators area: paper and simulated runs on a database resume their business clock --
    let keeps_clock = start.is_none()
        && pool.is_some()
        && settings.app.mode == TradingMode::Paper
        && matches!(settings.market.source, MarketSource::Simulated | MarketSource::External);
    let resumed = if keeps_clock {
        crate::business_clock::saved(&stores.state).await
    } else {
        None
    };
    let (clock, feed_clock): (SharedClock, Option<ManualClock>) = match settings.market.source {
        MarketSource::Kraken | MarketSource::KrakenWs => (Arc::new(SystemClock), None),
        MarketSource::Simulated | MarketSource::Replay | MarketSource::External => {
            let manual = ManualClock::new(
                start.unwrap_or_else(|| crate::business_clock::resume_from(resumed, chrono::Utc::now())),
            );
            if let Some(t) = resumed.filter(|t| *t > chrono::Utc::now()) {
                tracing::info!(business_time = %t, "business clock resumed where the last run stopped");
            }
            (Arc::new(manual.clone()), Some(manual))
        }
    };
    // A dropped delivery is a bug signal: counted per subscriber in the registry and in metrics.
    let drop_sink: Arc<OnceLock<Registry>> = Arc::default();
    let bus = {
        let sink = drop_sink.clone();
        Bus::with_drop_hook(move |name| {
            metrics::counter!("triplegain_bus_drops_total", "subscriber" => name.to_owned()).increment(1);
            if let Some(registry) = sink.get() {
                registry.record_drop(name);
            }
        })
    };
    let policy = RestartPolicy {
        max_restarts: settings.supervision.max_restarts,
        window_secs: settings.supervision.window_secs,
    };
    let registry = Registry::new(policy, bus.risk_alerts.clone(), clock.clone());
    let _ = drop_sink.set(registry.clone());
    crate::observability::MetricsRecorder::start(&registry, &bus);
    if keeps_clock {
        crate::business_clock::ClockKeeper::start(&registry, clock.clone(), stores.state.clone());
    }
    let mut core_actors: Vec<String> = Vec::new();

    // ---- exchange --------------------------------------------------------------------
    let paper = match settings.app.mode {
        TradingMode::Paper => {
            let paper = PaperExchange::new(settings.execution.paper.clone(), clock.clone())
                .map_err(|e| anyhow::anyhow!("execution.paper: {e}"))?;
            if paper.load_from(stores.state.as_ref()).await.unwrap_or(false) {
                tracing::info!("paper exchange balances and open orders restored");
            }
            Some(paper)
        }
        TradingMode::Live => None,
    };
    // Live: one process per API key (advisory lock), then Kraken over the WebSocket in front of REST.
    let mut live: Option<crate::live::LiveKraken> = None;
    let exchange: Arc<dyn Exchange> = match &paper {
        Some(p) => Arc::new(p.clone()),
        None => {
            let key_lock = match (&pool, &settings.kraken.api_key) {
                (Some(pool), Some(key)) => Some(crate::live::take_key_lock(pool, key.expose()).await?),
                _ => None,
            };
            let rest = connect_kraken(settings).await?;
            let ws = settings.kraken.websocket.then(|| {
                crate::kraken::KrakenWs::spawn(
                    rest.clone(),
                    crate::kraken::WsConfig {
                        private_url: settings.kraken.ws_private_url.clone(),
                        reply_timeout: Duration::from_millis(settings.kraken.ws_reply_timeout_ms),
                        rest_every: Duration::from_secs(settings.kraken.rest_safety_net_secs),
                        ..crate::kraken::WsConfig::default()
                    },
                )
            });
            let exchange: Arc<dyn Exchange> = match &ws {
                Some(ws) => Arc::new(crate::kraken::KrakenLive::new(rest.clone(), ws.clone())),
                None => Arc::new(rest.clone()),
            };
            live = Some(crate::live::LiveKraken {
                rest,
                ws,
                dead_mans_switch: parking_lot::Mutex::new(None),
                key_lock: parking_lot::Mutex::new(key_lock),
                confirm_deadline: Duration::from_secs(settings.kraken.shutdown_confirm_secs),
            });
            exchange
        }
    };

    // ---- risk engine -------------------------------------------------------------------
    let risk = {
        let cfg = RiskEngineConfig {
            limits: settings.risk.clone(),
            store: stores.state.clone(),
            alerts: bus.risk_alerts.clone(),
            clock: clock.clone(),
        };
        // Proposals are valued at the engine's own prices: the feed's snapshots and, in paper
        // mode, the paper exchange's last trades.
        let paper_prices = paper.clone();
        start_supervised(&registry, "risk_engine", true, FEED_SUBSCRIBER_MAILBOX, move |sup| {
            let engine = RiskEngine::new(sup, cfg);
            match paper_prices {
                Some(p) => engine.with_price_source(Arc::new(p)),
                None => engine,
            }
        })
    };
    core_actors.push("risk_engine".into());
    // Equity, drawdown and exposure come from the execution manager's valuations alone (the
    // rebalancer reports its holdings on a topic of their own).
    // Money events reach the risk engine reliably: its loss streak, daily P&L and breakers
    // depend on every position close (a full mailbox queues, never drops).
    bus.portfolio_updates
        .subscribe_reliable("risk_engine", risk.clone().recipient());
    bus.execution_events
        .subscribe_reliable("risk_engine", risk.clone().recipient());
    bus.regime_updates.subscribe("risk_engine", risk.clone().recipient());
    bus.market_data.subscribe("risk_engine", risk.clone().recipient());
    // Halted means halted everywhere: the engine learns coordinator halts and escalations.
    bus.system_events
        .subscribe_reliable("risk_engine", risk.clone().recipient());
    bus.risk_alerts
        .subscribe_filtered_reliable("risk_engine", risk.clone().recipient(), |a| {
            a.alert_type == triplegain_actors::messages::AlertType::ActorEscalated
        });

    // ---- execution: order execution manager, position tracker ------------------------
    // With the event export on, the manager writes its events to the outbox in the transaction
    // of the order, fill or position they describe (the bridge only relays the rest).
    let outbox_wake = Arc::new(tokio::sync::Notify::new());
    let outbox_sink = crate::export::manager_outbox(settings, pool.is_some(), outbox_wake.clone());
    let execution = {
        let deps = ManagerDeps {
            config: settings.execution.manager_config(paper.is_some()),
            exchange: exchange.clone(),
            paper: paper.clone(),
            // In paper mode the finest closed candles move the paper exchange.
            feed_paper: paper.is_some(),
            orders: stores.orders.clone(),
            state: stores.state.clone(),
            audit: stores.audit.clone(),
            events: bus.execution_events.clone(),
            portfolio: bus.portfolio_updates.clone(),
            alerts: bus.risk_alerts.clone(),
            clock: clock.clone(),
            outbox: outbox_sink,
        };
        start_supervised(
            &registry,
            "execution_manager",
            true,
            FEED_SUBSCRIBER_MAILBOX,
            move |sup| OrderExecutionManager::new(sup, deps),
        )
    };
    core_actors.push("execution_manager".into());
    bus.candles
        .subscribe("execution_manager", execution.clone().recipient());
    // Live: Kraken cancels every order unless the switch is refreshed in time; execution updates
    // on the socket wake the manager at once instead of at its next poll.
    if let Some(live) = &live {
        let handle = crate::kraken::spawn_dead_mans_switch(
            exchange.clone(),
            crate::kraken::DeadMansSwitchConfig {
                timeout_secs: settings.kraken.dead_mans_switch_secs,
                refresh_every: Duration::from_secs(settings.kraken.dead_mans_switch_refresh_secs),
            },
        )
        .map_err(|e| anyhow::anyhow!("kraken.dead_mans_switch_secs: {e}"))?;
        *live.dead_mans_switch.lock() = Some(handle);
        if let Some(ws) = &live.ws {
            crate::live::wake_on_updates(ws, execution.clone());
        }
    }

    // ---- market data and analysis agents ------------------------------------------------
    let analysis = crate::analysis::start(
        settings,
        &registry,
        &bus,
        clock.clone(),
        feed_clock.clone(),
        stores.audit.clone(),
        models,
    )?;
    core_actors.push("market_data".into());

    // ---- coordinator ----------------------------------------------------------------------
    let coordinator = {
        let store = stores.state.clone();
        let clock = clock.clone();
        let orchestration = settings.orchestration.clone();
        let ephemeral = settings.ephemeral;
        let coordinator_bus = bus.clone();
        let audit = stores.audit.clone();
        // Conflicts go to the configured model chain when a provider of it has a key;
        // otherwise the deterministic rules resolve them.
        let signals = &settings.orchestration.signals;
        let resolver = crate::llm::ModelConflictResolver::from_models(
            &signals.resolution_models,
            &crate::analysis::model_clients(settings),
            Duration::from_millis(signals.resolution_timeout_ms),
            signals.resolution_max_tokens,
        );
        match &resolver {
            Some(r) => tracing::info!(models = r.len(), "conflicts resolved by the model chain"),
            None => tracing::info!("no conflict model configured; conflicts resolved by the deterministic rules"),
        }
        // Agents and execution are connected with `Connect` once they are started.
        let links = triplegain_actors::coordinator::CoordinatorLinks {
            risk: Some(risk.clone().recipient()),
            agents: analysis.agents.clone(),
            resolver: resolver.map(|r| Arc::new(r) as Arc<dyn triplegain_actors::coordinator::ConflictResolver>),
            ..Default::default()
        };
        start_supervised(&registry, "coordinator", true, FEED_SUBSCRIBER_MAILBOX, move |sup| {
            Coordinator::new(sup, store, clock)
                .with_persistence(!ephemeral)
                .with_settings(orchestration)
                .with_bus(coordinator_bus)
                .with_audit(audit)
                .with_links(links)
        })
    };
    core_actors.push("coordinator".into());
    // Alerts (halts, breakers) and valuations reach the coordinator reliably.
    bus.risk_alerts
        .subscribe_reliable("coordinator", coordinator.clone().recipient());
    bus.trading_signals
        .subscribe("coordinator", coordinator.clone().recipient());
    bus.ta_signals.subscribe("coordinator", coordinator.clone().recipient());
    bus.regime_updates
        .subscribe("coordinator", coordinator.clone().recipient());
    bus.sentiment_updates
        .subscribe("coordinator", coordinator.clone().recipient());
    bus.market_data
        .subscribe("coordinator", coordinator.clone().recipient());
    bus.portfolio_updates
        .subscribe_reliable("coordinator", coordinator.clone().recipient());
    bus.business_ticks
        .subscribe("coordinator", coordinator.clone().recipient());

    // ---- portfolio: rebalancer, hodl bags ----------------------------------------------
    // Checks come from the coordinator's portfolio_check task (or the API); the execution
    // manager is connected with `ConnectExecution` once it runs.
    settings.portfolio.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    settings.hodl.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    let portfolio = {
        use triplegain_actors::portfolio::{PortfolioRebalancer, PortfolioRebalancerConfig, PriceSource};
        let prices = paper
            .clone()
            .map(|p| Arc::new(move |s: &triplegain_actors::domain::Symbol| p.last_price(s)) as Arc<dyn PriceSource>);
        let cfg = PortfolioRebalancerConfig {
            portfolio: settings.portfolio.clone(),
            hodl: settings.hodl.clone(),
            exchange: exchange.clone(),
            store: stores.portfolio.clone(),
            risk: risk.clone().recipient(),
            execution: Some(execution.clone().recipient()),
            updates: bus.holdings_reports.clone(),
            clock: clock.clone(),
            prices,
            advisor: None,
            // On a business clock moved by the feed, candles drive due batches; a wall-clock tick
            // would make replays depend on machine speed.
            tick_interval: if feed_clock.is_some() {
                Duration::from_secs(365 * 86_400)
            } else {
                Duration::from_secs(60)
            },
        };
        start_supervised(
            &registry,
            "portfolio_rebalancer",
            false,
            FEED_SUBSCRIBER_MAILBOX,
            move |sup| PortfolioRebalancer::new(sup, cfg),
        )
    };
    bus.candles
        .subscribe("portfolio_rebalancer", portfolio.clone().recipient());
    // Batch fills reach the rebalancer reliably (a lost fill would leave a batch executing).
    bus.execution_events
        .subscribe_reliable("portfolio_rebalancer", portfolio.clone().recipient());
    // The rebalancer runs no batch before the execution manager's first valuation reached the
    // risk engine (which sizes the batch against that equity).
    bus.portfolio_updates
        .subscribe_reliable("portfolio_rebalancer", portfolio.clone().recipient());

    // ---- links between areas -------------------------------------------------------------
    coordinator.do_send(triplegain_actors::coordinator::Connect(
        triplegain_actors::coordinator::CoordinatorLinks {
            portfolio_check: Some(portfolio.clone().recipient()),
            execution: Some(triplegain_actors::coordinator::ExecutionLinks {
                execute: execution.clone().recipient(),
                close: execution.clone().recipient(),
                close_all: execution.clone().recipient(),
                positions: execution.clone().recipient(),
            }),
            ..Default::default()
        },
    ));

    // The HTTP layer's stores: in PostgreSQL when there is a database, in memory otherwise.
    let (api_audit, idempotency): (
        Arc<dyn db::api_audit::ApiAuditStore>,
        Arc<dyn db::idempotency::IdempotencyStore>,
    ) = match &pool {
        Some(pool) => (
            Arc::new(db::api_audit::PgApiAuditStore::new(pool.clone())),
            Arc::new(db::idempotency::PgIdempotencyStore::new(pool.clone())),
        ),
        None => (
            Arc::new(db::api_audit::MemoryApiAuditStore::new(
                settings.database.memory_max_records,
            )),
            Arc::new(db::idempotency::MemoryIdempotencyStore::default()),
        ),
    };
    let state = AppState {
        registry,
        coordinator,
        stores,
        pool,
        bus,
        clock,
        fault_injection: settings.fault_injection(),
        mode: settings.app.mode,
        core_actors,
        risk,
        exchange,
        paper,

        // -- execution area (values) --
        execution,
        live,

        // -- analysis area (values) --
        market: analysis.market,
        agents: analysis.agents,
        analysis_caches: analysis.caches,
        analysis_symbols: analysis.symbols,

        // -- coordinator area (values) --

        // -- portfolio area (values) --
        portfolio,
        portfolio_config: settings.portfolio.clone(),
        metrics: metrics_handle(),
        // -- operators area (values) --
        business_clock: feed_clock.clone(),
        sse_keep_alive: Duration::from_secs(settings.server.sse_keep_alive_secs),
        api_audit,
        idempotency,
    };
    Ok(System {
        state,
        feed_clock,
        outbox_wake,
    })
}

impl Application {
    /// Builds everything: stores (and migrations), actors, HTTP listener.
    ///
    /// # Errors
    /// When the database is unreachable, migrations fail or the address cannot be bound.
    pub async fn build(mut settings: Settings) -> anyhow::Result<Self> {
        // One process per account on a database: refuse to start beside another.
        let account_lock = match &settings.database.url {
            Some(url) => {
                Some(db::account::AccountLock::acquire(url.expose(), &settings.database, &settings.app.account).await?)
            }
            None => None,
        };
        // -- operators area: first-run admin token, trade log, notifier --
        crate::first_run::ensure_admin_token(&mut settings)?;
        let system = build_system(&settings).await?;
        crate::trade_log::TradeLog::start(
            &system.state.registry,
            &system.state.bus,
            system.state.stores.orders.clone(),
        );
        crate::notifier::Notifier::start(
            &system.state.registry,
            &system.state.bus,
            &settings.notifications,
            system.state.stores.orders.clone(),
        );
        let listener = TcpListener::bind(&settings.server.bind)
            .with_context(|| format!("binding server.bind {}", settings.server.bind))?;
        let port = listener.local_addr()?.port();

        let outbox_wake = system.outbox_wake.clone();
        let state = web::Data::new(system.state);
        let token_table = Arc::new(TokenTable::new(&settings.api.tokens));
        let token_table_for_export = token_table.clone();
        let tokens = web::Data::new(token_table.clone());
        // One limiter per server (shared by its workers).
        let rate_limits = web::Data::new(
            routes::limits::RateLimits::new(settings.api.rate_limit, token_table).with_guards(settings.api.guards),
        );
        let max_body = settings.server.max_body_bytes;
        let app_state = state.clone();
        let server = HttpServer::new(move || {
            // The last `wrap` runs first: tracing, then metrics (so refused requests count too),
            // then the rate limit, which answers before any handler runs.
            App::new()
                .wrap(actix_web::middleware::from_fn(routes::limits::rate_limit))
                .wrap(actix_web::middleware::from_fn(crate::observability::http_metrics))
                .wrap(TracingLogger::default())
                .app_data(tokens.clone())
                .app_data(rate_limits.clone())
                .app_data(web::PayloadConfig::new(max_body))
                .app_data(
                    web::JsonConfig::default()
                        .limit(max_body)
                        .error_handler(routes::error::json_error),
                )
                .app_data(web::PathConfig::default().error_handler(routes::error::path_error))
                .app_data(web::QueryConfig::default().error_handler(routes::error::query_error))
                .configure(|cfg| routes::configure(cfg, app_state.clone()))
                .default_service(web::route().to(routes::error::not_found))
        })
        .workers(settings.server.workers)
        .disable_signals()
        .shutdown_timeout(settings.server.shutdown_deadline_secs)
        .listen(listener)?
        .run();

        let export = crate::export::start(&settings, state.clone(), token_table_for_export, outbox_wake).await?;

        tracing::info!(port, mode = %settings.app.mode, account = %settings.app.account, "TripleGain listening");
        Ok(Self {
            port,
            server,
            state,
            drain_deadline: Duration::from_secs(settings.supervision.drain_deadline_secs),
            export,
            account_lock,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Counters of the event export (when on).
    pub fn export_stats(&self) -> Option<Arc<crate::export::ExportStats>> {
        self.export.as_ref().map(|e| e.stats.clone())
    }

    /// Serves until `shutdown` resolves, then stops HTTP gracefully and drains the actors.
    ///
    /// # Errors
    /// When the HTTP server fails.
    pub async fn run_until_stopped(self, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        let handle = self.server.handle();
        // The server future must keep being polled for a stop command to be processed.
        let mut server = actix_web::rt::spawn(self.server);
        tokio::select! {
            res = &mut server => {
                res.context("HTTP server task failed")?.context("HTTP server failed")?;
            }
            () = shutdown => {
                tracing::info!("shutdown requested: stopping HTTP");
                handle.stop(true).await;
                let _ = server.await;
            }
        }
        tracing::info!(deadline_secs = self.drain_deadline.as_secs(), "draining actors");
        let drained = self.state.registry.drain_all(self.drain_deadline).await;
        // Live: the stops stay on Kraken — confirmed there, then the dead man's switch disarmed.
        if let Some(live) = &self.state.live {
            live.shutdown(self.state.stores.orders.clone(), self.state.exchange.clone())
                .await;
        }
        if let Some(export) = self.export {
            export.shutdown(self.drain_deadline).await;
        }
        if let Some(lock) = self.account_lock {
            lock.release().await;
        }
        tracing::info!(drained, "shutdown complete");
        Ok(())
    }
}
