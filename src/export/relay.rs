//! Publishing to JetStream: the outbox relay (money and audit topics, in order, deleted only
//! after the acknowledgement) and the analysis publisher (best effort, counted drops).

use super::{ensure_stream, headers, subject, ExportSettings, ExportStats};
use crate::db::outbox;
use deadpool_postgres::Pool;
use futures::stream::FuturesOrdered;
use futures::StreamExt;
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Notify};

use super::bridge::ExportEvent;

/// Most analysis publishes awaiting their acknowledgement at once.
const ANALYSIS_IN_FLIGHT: usize = 1024;
/// Longest pause between relay attempts while NATS or the stream is unavailable.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Relays `event_outbox` to JetStream.
pub struct Relay {
    pub pool: Pool,
    pub js: async_nats::jetstream::Context,
    pub settings: ExportSettings,
    pub account: String,
    pub stats: Arc<ExportStats>,
    pub wake: Arc<Notify>,
}

/// The result of one relay round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Round {
    /// Rows acknowledged and deleted.
    pub relayed: usize,
    /// Of those, acknowledged as duplicates.
    pub duplicates: usize,
}

impl Relay {
    /// Relays until `stop`; then makes one last round and ends.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(100);
        let poll = Duration::from_millis(self.settings.relay_poll_ms);
        let mut failing_since: Option<Instant> = None;
        loop {
            if *stop.borrow() {
                if let Err(e) = self.round().await {
                    tracing::warn!(error = %format!("{e:#}"), "last outbox relay round failed; the next start relays it");
                }
                return;
            }
            match self.round().await {
                Ok(r) => {
                    if let Some(since) = failing_since.take() {
                        tracing::info!(after_ms = since.elapsed().as_millis() as u64, "outbox relay recovered");
                    }
                    backoff = Duration::from_millis(100);
                    if r.relayed > 0 {
                        continue; // more may wait
                    }
                    tokio::select! {
                        () = self.wake.notified() => {}
                        () = tokio::time::sleep(poll) => {}
                        _ = stop.changed() => {}
                    }
                }
                Err(e) => {
                    ExportStats::add(&self.stats.failures, 1);
                    metrics::counter!("triplegain_export_errors_total", "stage" => "relay").increment(1);
                    if failing_since.is_none() {
                        failing_since = Some(Instant::now());
                        tracing::warn!(error = %format!("{e:#}"), "outbox relay failing; events wait in PostgreSQL");
                    } else {
                        tracing::debug!(error = %format!("{e:#}"), "outbox relay still failing");
                    }
                    // A deleted or never-created stream is created again from the settings.
                    if let Err(e) = ensure_stream(&self.js, &self.settings).await {
                        tracing::debug!(error = %format!("{e:#}"), "stream not ensured yet");
                    }
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// One round: publishes the oldest `relay_batch` rows in order, awaits their
    /// acknowledgements in order and deletes the acknowledged ones. After a failure the rest of
    /// the round is sent again later; the stream drops any copy already stored by its id.
    ///
    /// # Errors
    /// The database is unreachable, or nothing of the round was acknowledged.
    pub async fn round(&self) -> anyhow::Result<Round> {
        let client = self.pool.get().await?;
        let limit = i64::try_from(self.settings.relay_batch).unwrap_or(i64::MAX);
        let rows = outbox::pending(&**client, limit).await?;
        if rows.is_empty() {
            metrics::gauge!("triplegain_export_outbox_backlog").set(0.0);
            return Ok(Round::default());
        }
        let timeout = Duration::from_millis(self.settings.ack_timeout_ms);
        let prefix = &self.settings.subject_prefix;
        let mut pending_acks = Vec::with_capacity(rows.len());
        let mut failure: Option<anyhow::Error> = None;
        for row in &rows {
            let subject = subject(prefix, &self.account, &row.topic, row.symbol.as_deref());
            let h = headers(&row.event_id.to_string(), &row.topic, &self.account, Some(row.seq));
            let sent = tokio::time::timeout(
                timeout,
                self.js.publish_with_headers(subject, h, row.payload.clone().into()),
            )
            .await;
            match sent {
                Ok(Ok(ack)) => pending_acks.push((row.seq, ack)),
                Ok(Err(e)) => {
                    failure = Some(anyhow::anyhow!("publishing: {e}"));
                    break;
                }
                Err(_) => {
                    failure = Some(anyhow::anyhow!("publishing: timed out"));
                    break;
                }
            }
        }
        let mut acked = Vec::with_capacity(pending_acks.len());
        let mut round = Round::default();
        for (seq, ack) in pending_acks {
            match tokio::time::timeout(timeout, ack.into_future()).await {
                Ok(Ok(a)) => {
                    if a.duplicate {
                        round.duplicates += 1;
                    }
                    acked.push(seq);
                }
                Ok(Err(e)) => {
                    failure.get_or_insert_with(|| anyhow::anyhow!("acknowledgement: {e}"));
                    break;
                }
                Err(_) => {
                    failure.get_or_insert_with(|| anyhow::anyhow!("acknowledgement: timed out"));
                    break;
                }
            }
        }
        let deleted = outbox::delete_relayed(&**client, &acked).await?;
        round.relayed = acked.len();
        let n = deleted;
        ExportStats::add(&self.stats.relayed, n);
        ExportStats::add(&self.stats.published, n);
        ExportStats::add(&self.stats.duplicates, round.duplicates as u64);
        metrics::counter!("triplegain_export_published_total", "path" => "outbox").increment(n);
        metrics::counter!("triplegain_export_duplicates_total").increment(round.duplicates as u64);
        if let Ok(left) = outbox::backlog(&**client).await {
            metrics::gauge!("triplegain_export_outbox_backlog").set(left as f64);
        }
        match failure {
            Some(e) if acked.is_empty() => Err(e),
            Some(e) => {
                tracing::debug!(error = %format!("{e:#}"), relayed = acked.len(), "outbox round partly relayed");
                Ok(round)
            }
            None => Ok(round),
        }
    }
}

/// Publishes analysis events as they come, up to [`ANALYSIS_IN_FLIGHT`] awaiting their
/// acknowledgement; a failed publish is dropped and counted.
pub async fn publish_analysis(
    js: async_nats::jetstream::Context,
    mut rx: mpsc::Receiver<ExportEvent>,
    prefix: String,
    account: String,
    stats: Arc<ExportStats>,
    mut stop: watch::Receiver<bool>,
) {
    let mut in_flight = FuturesOrdered::new();
    let dropped = |topic: &'static str| {
        ExportStats::add(&stats.dropped, 1);
        metrics::counter!("triplegain_export_dropped_total", "topic" => topic).increment(1);
    };
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            Some((topic, res)) = in_flight.next(), if !in_flight.is_empty() => {
                match res {
                    Ok(Ok(ack)) => {
                        let ack: async_nats::jetstream::publish::PublishAck = ack;
                        ExportStats::add(&stats.published, 1);
                        if ack.duplicate {
                            ExportStats::add(&stats.duplicates, 1);
                        }
                        metrics::counter!("triplegain_export_published_total", "path" => "direct").increment(1);
                    }
                    _ => dropped(topic),
                }
            }
            ev = rx.recv(), if in_flight.len() < ANALYSIS_IN_FLIGHT => {
                let Some(ev) = ev else { return };
                let subject = subject(&prefix, &account, ev.topic, ev.symbol.as_deref());
                let h = headers(&ev.id.to_string(), ev.topic, &account, None);
                let Ok(payload) = serde_json::to_vec(&ev.payload) else {
                    dropped(ev.topic);
                    continue;
                };
                match tokio::time::timeout(Duration::from_secs(5), js.publish_with_headers(subject, h, payload.into())).await {
                    Ok(Ok(ack)) => {
                        let topic = ev.topic;
                        in_flight.push_back(async move {
                            (topic, tokio::time::timeout(Duration::from_secs(10), ack.into_future()).await)
                        });
                    }
                    _ => dropped(ev.topic),
                }
            }
        }
    }
}
