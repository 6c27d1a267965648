//! The feed loop: pulls candles from a [`MarketFeed`], moves the business clock to their close
//! time and delivers them to the market data actor with `send().await`, so the feed runs only as
//! fast as the actor consumes (back-pressure, nothing dropped).

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use std::collections::BTreeSet;
use std::time::Duration;
use triplegain_actors::clock::ManualClock;
use triplegain_actors::domain::{Candle, Symbol};
use triplegain_actors::market::CandleBatch;
use triplegain_actors::ports::{FeedError, FeedItem, MarketFeed};

/// How the loop treats the business clock.
#[derive(Debug, Clone)]
pub enum FeedClock {
    /// The wall clock drives business time (live Kraken feed): nothing to move.
    Wall,
    /// A manual clock moved forward to each batch's close time (simulated market).
    Follow(ManualClock),
    /// As `Follow`, but first set to the first batch's close time, even backwards (a replay of
    /// the past starts its business time at its first candle).
    Replay(ManualClock),
}

/// Close time of the newest candle of `candles`.
pub fn batch_close_time(candles: &[Candle]) -> Option<DateTime<Utc>> {
    candles
        .iter()
        .map(|c| c.open_time + ChronoDuration::seconds(c.timeframe.seconds()))
        .max()
}

/// Runs `feed` until it ends or fails for good. `symbols` limits the delivered candles (empty =
/// all); `idle` is the pause after an idle poll or a transient source error.
pub async fn drive_feed(
    mut feed: Box<dyn MarketFeed>,
    market: actix::Recipient<CandleBatch>,
    clock: FeedClock,
    symbols: Vec<Symbol>,
    idle: Duration,
) {
    let allowed: BTreeSet<Symbol> = symbols.into_iter().collect();
    let mut first = true;
    let mut caught_up = false;
    let mut delivered: u64 = 0;
    loop {
        let item = feed.next().await;
        match item {
            Ok(FeedItem::Candles(mut candles)) => {
                if !allowed.is_empty() {
                    candles.retain(|c| allowed.contains(&c.symbol));
                }
                let Some(close) = batch_close_time(&candles) else {
                    continue;
                };
                match &clock {
                    FeedClock::Wall => {}
                    FeedClock::Follow(c) => {
                        c.set(close);
                        if !caught_up && close >= Utc::now() {
                            caught_up = true;
                            tracing::info!(
                                candles = delivered,
                                "market warm-up done; the feed is paced from now on"
                            );
                        }
                    }
                    FeedClock::Replay(c) if first => c.reset(close),
                    FeedClock::Replay(c) => c.set(close),
                }
                first = false;
                let n = candles.len() as u64;
                match market.send(CandleBatch(candles)).await {
                    Ok(Ok(_)) => delivered += n,
                    Ok(Err(e)) => tracing::warn!(error = %e, "market data refused a batch"),
                    Err(e) => {
                        tracing::warn!(error = %e, "market data not reachable; batch lost");
                        actix::clock::sleep(idle).await;
                    }
                }
            }
            Ok(FeedItem::Idle) => actix::clock::sleep(idle).await,
            Ok(FeedItem::End) => {
                tracing::info!(candles = delivered, "market feed finished");
                return;
            }
            Err(FeedError::Malformed(msg)) => {
                tracing::error!(error = %msg, candles = delivered, "market feed stopped: malformed data");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "market feed error; retrying");
                actix::clock::sleep(idle).await;
            }
        }
    }
}
