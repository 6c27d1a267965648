//! `triplegain-bench`: the benchmark suite without the server around it (same code as
//! `triplegain bench`, which also reads candle files).
//!
//! Usage: `triplegain-bench [--events N] [--window N] [--repeats N] [--only bus,indicators,risk,pipeline]
//! [--risk-samples N] [--pipeline-samples N] [--seed N] [--days N] [--candles [SYMBOL=]FILE]... [--json FILE]
//! [--generate DIR]`. `triplegain bench` runs this binary with its own options.

use std::process::ExitCode;
use triplegain_bench::{load_series, run_suite, write_candle_files, SuiteOptions};

/// The suite's options, then `--json`, `--generate` and the `--candles` files.
type Parsed = (SuiteOptions, Option<String>, Option<String>, Vec<std::path::PathBuf>);

fn parse() -> Result<Parsed, String> {
    let mut opts = SuiteOptions {
        events: 1_000_000,
        window: 1024,
        repeats: 3,
        bus: true,
        indicators: true,
        risk: true,
        risk_samples: 100_000,
        pipeline: true,
        pipeline_samples: 5_000,
        seed: 42,
        days: 365,
        series: None,
    };
    let (mut json, mut generate, mut candles) = (None, None, Vec::new());
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = |v: &str| v.parse::<u64>().map_err(|_| format!("{flag}: {v:?} is not a number"));
        match flag.as_str() {
            "--events" => opts.events = num(&value)?,
            "--window" => opts.window = num(&value)?,
            "--repeats" => opts.repeats = usize::try_from(num(&value)?).map_err(|e| e.to_string())?,
            "--risk-samples" => opts.risk_samples = usize::try_from(num(&value)?).map_err(|e| e.to_string())?,
            "--pipeline-samples" => {
                opts.pipeline_samples = usize::try_from(num(&value)?).map_err(|e| e.to_string())?;
            }
            "--seed" => opts.seed = num(&value)?,
            "--days" => opts.days = u32::try_from(num(&value)?).map_err(|e| e.to_string())?,
            "--only" => {
                let parts: Vec<String> = value.split(',').map(|p| p.trim().to_ascii_lowercase()).collect();
                opts.bus = parts.iter().any(|p| p == "bus");
                opts.indicators = parts.iter().any(|p| p == "indicators");
                opts.risk = parts.iter().any(|p| p == "risk");
                opts.pipeline = parts.iter().any(|p| p == "pipeline");
            }
            "--json" => json = Some(value),
            "--generate" => generate = Some(value),
            "--candles" => candles.push(std::path::PathBuf::from(value)),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok((opts, json, generate, candles))
}

fn main() -> ExitCode {
    let (mut opts, json, generate, candles) = match parse() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let result = if let Some(dir) = generate {
        write_candle_files(std::path::Path::new(&dir), opts.seed, opts.days).map(|files| {
            for (symbol, path, rows) in files {
                println!("{symbol}: {rows} candles -> {}", path.display());
            }
        })
    } else {
        let series = if candles.is_empty() {
            Ok(None)
        } else {
            load_series(&candles).map(Some)
        };
        series
            .and_then(|series| {
                opts.series = series;
                run_suite(&opts)
            })
            .and_then(|report| {
                if let Some(path) = json {
                    std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")?;
                    println!("results written to {path}");
                }
                Ok(())
            })
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
