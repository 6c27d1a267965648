//! The simulated market as a paced feed.

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use std::time::Duration;
use tokio::time::Instant;
use triplegain_actors::domain::Symbol;
use triplegain_actors::market::SimulatedMarket;
use triplegain_actors::ports::{FeedError, FeedItem, MarketFeed};

/// Yields one simulated minute (three candles) per `next()`.
///
/// Pacing follows `market.simulated.speed`: `speed` simulated minutes per wall-clock minute, so
/// 60 gives one simulated minute per second, 1 runs in real time and 0 yields as fast as polled.
/// Minutes that open before [`SimulatedFeed::unpaced_until`] are never paced, which lets a run
/// start with a few days of history for the indicators and then continue at the chosen speed.
pub struct SimulatedFeed {
    market: SimulatedMarket,
    period: Duration,
    unpaced_until: Option<DateTime<Utc>>,
    next_due: Option<Instant>,
}

impl SimulatedFeed {
    /// `speed` ≤ 0 or not finite means unpaced.
    pub fn new(market: SimulatedMarket, speed: f64) -> Self {
        let period = if speed.is_finite() && speed > 0.0 {
            Duration::from_secs_f64((60.0 / speed).min(3600.0))
        } else {
            Duration::ZERO
        };
        Self {
            market,
            period,
            unpaced_until: None,
            next_due: None,
        }
    }

    /// Seeded market starting at `start` with default prices.
    pub fn seeded(seed: u64, start: DateTime<Utc>, speed: f64) -> Self {
        Self::new(SimulatedMarket::new(seed, start), speed)
    }

    /// Minutes opening before `t` are produced without waiting.
    #[must_use]
    pub fn unpaced_until(mut self, t: DateTime<Utc>) -> Self {
        self.unpaced_until = Some(t);
        self
    }

    /// Wall-clock time per simulated minute (zero when unpaced).
    pub fn period(&self) -> Duration {
        self.period
    }

    pub fn market(&self) -> &SimulatedMarket {
        &self.market
    }

    async fn pace(&mut self) {
        if self.period.is_zero() {
            return;
        }
        if self.unpaced_until.is_some_and(|t| self.market.next_open_time() < t) {
            return;
        }
        let now = Instant::now();
        let due = match self.next_due {
            // A consumer that fell more than a minute behind resumes from now instead of bursting.
            Some(due) if due + self.period >= now => due,
            _ => now + self.period,
        };
        tokio::time::sleep_until(due).await;
        self.next_due = Some(due + self.period);
    }
}

impl MarketFeed for SimulatedFeed {
    fn symbols(&self) -> Vec<Symbol> {
        self.market.symbols()
    }

    fn next(&mut self) -> BoxFuture<'_, Result<FeedItem, FeedError>> {
        Box::pin(async move {
            self.pace().await;
            Ok(FeedItem::Candles(self.market.step()))
        })
    }
}
