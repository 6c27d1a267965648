use clap::Parser;
use std::process::ExitCode;
use triplegain::cli::{Cli, Command};
use triplegain::settings::Settings;
use triplegain::startup::Application;
use triplegain::{db, telemetry};

/// The allocator: the actors pass many small messages (candles, events, orders), and
/// mimalloc's thread-local free lists measured faster than the system allocator on the
/// backtest (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for configuration errors.
const EXIT_CONFIG: u8 = 2;
/// Exit code after a fatal panic.
const EXIT_PANIC: u8 = 70;

/// Writes `text` to stdout. A reader that went away (`triplegain analyze | head`) ends the
/// command quietly instead of a panic with a backtrace.
fn print_out(text: &str) -> ExitCode {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: writing the output: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load(cli: &Cli) -> Result<Settings, ExitCode> {
    Settings::load(&cli.config).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}

/// `triplegain bench --generate DIR` writes candle files; otherwise `triplegain bench` runs the
/// `triplegain-bench` binary built next to this one, so the server binary carries no benchmark
/// code (`cargo build --release -p triplegain-bench` builds it).
fn run_bench(args: &triplegain::cli::BenchArgs) -> ExitCode {
    if let Some(dir) = &args.generate {
        return match triplegain::market::generate::write_candle_files(dir, args.seed, args.days) {
            Ok(files) => {
                for (symbol, path, rows) in files {
                    println!("{symbol}: {rows} candles -> {}", path.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let name = format!("triplegain-bench{}", std::env::consts::EXE_SUFFIX);
    let Some(exe) = std::env::current_exe()
        .ok()
        .and_then(|me| me.parent().map(|dir| dir.join(&name)))
        .filter(|p| p.is_file())
    else {
        eprintln!(
            "error: {name} is not next to this binary; build it with `cargo build --release -p triplegain-bench`"
        );
        return ExitCode::FAILURE;
    };
    let mut cmd = std::process::Command::new(&exe);
    cmd.arg("--events").arg(args.events.to_string());
    cmd.arg("--window").arg(args.window.to_string());
    cmd.arg("--repeats").arg(args.repeats.to_string());
    cmd.arg("--only").arg(args.only.join(","));
    cmd.arg("--risk-samples").arg(args.risk_samples.to_string());
    cmd.arg("--pipeline-samples").arg(args.pipeline_samples.to_string());
    cmd.arg("--seed").arg(args.seed.to_string());
    cmd.arg("--days").arg(args.days.to_string());
    for file in &args.candles {
        cmd.arg("--candles").arg(file);
    }
    if let Some(file) = &args.json {
        cmd.arg("--json").arg(file);
    }
    match cmd.status() {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("error: {} exited with {status}", exe.display());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: cannot run {}: {e}", exe.display());
            ExitCode::FAILURE
        }
    }
}

async fn run_backtest(cli: &Cli, args: &triplegain::cli::BacktestArgs) -> ExitCode {
    use triplegain::backtest::{self, report};
    let settings = match load(cli) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let parse = |flag: &str, v: &Option<String>| {
        v.as_deref()
            .map(backtest::parse_time)
            .transpose()
            .map_err(|e| format!("{flag}: {e}"))
    };
    let (from, to) = match (parse("--from", &args.from), parse("--to", &args.to)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let opts = backtest::BacktestOptions {
        candles: args.candles.clone(),
        from,
        to,
        seed: args.seed,
        llm_replay: args.llm_replay.clone(),
        minute_by_minute: args.minute_by_minute,
    };
    let result = async {
        let bar = backtest::progress_bar(&opts.candles);
        let outcome = backtest::run(settings, &opts, |n| {
            if let Some(bar) = &bar {
                bar.set_position(n);
            }
        })
        .await;
        if let Some(bar) = &bar {
            bar.finish_and_clear();
        }
        let outcome = outcome?;
        let json = outcome.report.to_json()?;
        match &args.out {
            Some(path) => std::fs::write(path, json)?,
            None => {
                use std::io::Write as _;
                let mut out = std::io::stdout().lock();
                match out.write_all(json.as_bytes()).and_then(|()| out.flush()) {
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                    other => other?,
                }
            }
        }
        if let Some(path) = &args.equity_csv {
            report::write_equity_csv(path, &outcome.input.equity)?;
        }
        if let Some(path) = &args.plot {
            report::plot_equity(path, &outcome.input)?;
        }
        if let Some(path) = &args.trades_csv {
            backtest::run::write_trades_csv(path, &outcome.input)?;
        }
        eprintln!("{}", outcome.report.summary());
        anyhow::Ok(())
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[actix_web::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::Analyze {
            candles,
            symbol,
            timeframe,
        } => {
            let tf = match timeframe
                .as_deref()
                .map(triplegain_actors::domain::Timeframe::parse)
                .transpose()
            {
                Ok(tf) => tf,
                Err(e) => {
                    eprintln!("error: --timeframe: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            match triplegain::analysis::analyze_file(candles, symbol.as_deref(), tf) {
                Ok(doc) => print_out(&format!("{doc}\n")),
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Bench(args) => run_bench(args),
        Command::BenchExport { events } => {
            let settings = match load(&cli) {
                Ok(s) => s,
                Err(code) => return code,
            };
            let Some(url) = &settings.database.url else {
                eprintln!("error: DATABASE_URL is not set; the outbox measurements need PostgreSQL");
                return ExitCode::from(EXIT_CONFIG);
            };
            match triplegain::export::bench::run(&settings.export, url.expose(), *events).await {
                Ok(lines) => {
                    println!(
                        "{:<44} {:>8} {:>9} {:>12}",
                        "measurement", "events", "seconds", "events/s"
                    );
                    for m in lines {
                        println!("{:<44} {:>8} {:>9.3} {:>12.0}", m.name, m.events, m.secs, m.per_sec);
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Tail(args) => {
            let settings = match load(&cli) {
                Ok(s) => s,
                Err(code) => return code,
            };
            let opts = triplegain::export::tail::TailOptions {
                account: args.account.clone(),
                topic: args.topic.clone(),
                from_start: args.from_start,
                count: args.count,
            };
            let mut out = std::io::stdout().lock();
            match triplegain::export::tail::run(&settings.export, &opts, &mut out).await {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Backtest(args) => run_backtest(&cli, args).await,
        Command::CheckConfig => match load(&cli) {
            Ok(settings) => match settings.redacted_yaml() {
                Ok(yaml) => print_out(&yaml),
                Err(e) => {
                    eprintln!("error: cannot print settings: {e}");
                    ExitCode::FAILURE
                }
            },
            Err(code) => code,
        },
        Command::Migrate => {
            let settings = match load(&cli) {
                Ok(s) => s,
                Err(code) => return code,
            };
            telemetry::init(&settings.logging);
            let Some(url) = &settings.database.url else {
                eprintln!("error: DATABASE_URL is not set; nothing to migrate");
                return ExitCode::from(EXIT_CONFIG);
            };
            let result = async {
                let account = &settings.app.account;
                let pool = db::account::build_account_pool(url.expose(), &settings.database, account)?;
                db::account::prepare_account_schema(&pool, account, true).await?;
                db::migrate(&pool).await
            }
            .await;
            match result {
                Ok(applied) => {
                    println!(
                        "migrations applied: {}",
                        if applied.is_empty() {
                            "none (up to date)".into()
                        } else {
                            applied.join(", ")
                        }
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve { bind } => {
            let mut settings = match load(&cli) {
                Ok(s) => s,
                Err(code) => return code,
            };
            if let Some(bind) = bind {
                settings.server.bind.clone_from(bind);
                if let Err(e) = settings.validate() {
                    eprintln!("error: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            }
            telemetry::init(&settings.logging);
            telemetry::install_panic_hook();
            let app = match Application::build(settings).await {
                Ok(app) => app,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "startup failed");
                    eprintln!("error: {e:#}");
                    // A second process on the same Kraken key is a configuration error.
                    if e.downcast_ref::<triplegain::live::KeyLockHeld>().is_some() {
                        return ExitCode::from(EXIT_CONFIG);
                    }
                    return ExitCode::FAILURE;
                }
            };
            let mut fatal = telemetry::fatal_panics();
            let fatal_seen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let flag = fatal_seen.clone();
            let stop = async move {
                tokio::select! {
                    () = shutdown_signal() => {}
                    _ = fatal.changed() => {
                        flag.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            };
            if let Err(e) = app.run_until_stopped(stop).await {
                tracing::error!(error = %format!("{e:#}"), "server failed");
                return ExitCode::FAILURE;
            }
            if fatal_seen.load(std::sync::atomic::Ordering::SeqCst) {
                return ExitCode::from(EXIT_PANIC);
            }
            ExitCode::SUCCESS
        }
    }
}
