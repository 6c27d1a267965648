//! Bus throughput next to a raw tokio mpsc channel (see the `triplegain-bench` crate for the method).
//! `cargo bench --bench bus`; `triplegain bench --only bus` prints the same scenarios as a table.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;
use triplegain_bench::{mpsc_run, topic_run, CHAIN_HOPS};

/// Events per measured run.
const EVENTS: u64 = 200_000;
/// Events in flight at most.
const WINDOW: u64 = 1024;

fn timed(run: impl Fn() -> anyhow::Result<triplegain_bench::Throughput>, iters: u64) -> Duration {
    (0..iters)
        .map(|_| match run() {
            Ok(t) => Duration::from_secs_f64(t.seconds),
            Err(e) => {
                eprintln!("bench run failed: {e:#}");
                std::process::exit(1);
            }
        })
        .sum()
}

fn bus(c: &mut Criterion) {
    let mut g = c.benchmark_group("bus");
    g.throughput(Throughput::Elements(EVENTS));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_millis(500));
    g.bench_function("mpsc_1sub", |b| {
        b.iter_custom(|n| timed(|| mpsc_run(EVENTS, WINDOW, 1), n))
    });
    g.bench_function("topic_1sub", |b| {
        b.iter_custom(|n| timed(|| topic_run(EVENTS, WINDOW, 1), n))
    });
    g.bench_function("mpsc_chain5", |b| {
        b.iter_custom(|n| timed(|| mpsc_run(EVENTS, WINDOW, CHAIN_HOPS), n))
    });
    g.bench_function("topic_chain5", |b| {
        b.iter_custom(|n| timed(|| topic_run(EVENTS, WINDOW, CHAIN_HOPS), n))
    });
    g.finish();
}

criterion_group!(benches, bus);
criterion_main!(benches);
