//! The coordinator's decision trail, written in order by one task: a flow queues its records and
//! goes on (the risk engine validates while they are written); it waits once, for whatever is
//! still queued, before an order request goes out, so the trail keeps the coordinator's stages
//! ahead of the execution manager's.

use crate::ports::{AuditStore, DecisionRecord};
use futures::channel::{mpsc, oneshot};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;

/// Store attempts per record before it is logged as lost.
const ATTEMPTS: u32 = 3;

enum Work {
    Record(Box<DecisionRecord>),
    /// Answered once every record queued before it is written (or given up).
    Flush(oneshot::Sender<()>),
}

/// One ordered writer of decision records. Cheap to clone; the task ends when every clone is gone
/// and the queue is written.
#[derive(Clone)]
pub struct AuditWriter {
    tx: mpsc::UnboundedSender<Work>,
}

impl AuditWriter {
    /// Starts the writer task on the current arbiter.
    pub fn start(store: Arc<dyn AuditStore>) -> Self {
        let (tx, mut rx) = mpsc::unbounded::<Work>();
        actix::spawn(async move {
            while let Some(work) = rx.next().await {
                match work {
                    Work::Flush(done) => {
                        let _ = done.send(());
                    }
                    Work::Record(rec) => {
                        for attempt in 1..=ATTEMPTS {
                            match store.record_decision((*rec).clone()).await {
                                Ok(()) => break,
                                Err(e) if attempt < ATTEMPTS => {
                                    tracing::warn!(cid = %rec.correlation_id, stage = %rec.stage, error = %e, attempt,
                                        "decision not recorded; retrying");
                                    actix::clock::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                                }
                                Err(e) => {
                                    tracing::error!(cid = %rec.correlation_id, stage = %rec.stage, error = %e,
                                        "decision not recorded");
                                }
                            }
                        }
                    }
                }
            }
        });
        Self { tx }
    }

    /// Queues a record; returns at once.
    pub fn record(&self, rec: DecisionRecord) {
        if self.tx.unbounded_send(Work::Record(Box::new(rec))).is_err() {
            tracing::error!("decision writer stopped; record lost");
        }
    }

    /// Resolves once every record queued before it is written.
    pub fn flush(&self) -> impl std::future::Future<Output = ()> + 'static {
        let (done, wait) = oneshot::channel();
        let sent = self.tx.unbounded_send(Work::Flush(done)).is_ok();
        async move {
            if sent {
                let _ = wait.await;
            }
        }
    }
}
