//! The manager's ordered store writer: every store write of the manager, in the order the actor
//! made it, with the paper exchange's snapshot saved before the store learns what happened on it.

use super::ManagerDeps;
use crate::domain::OrderStatus;
use crate::execution::core::Op;
use crate::execution::paper::PaperExchange;
use crate::ports::{FillWrite, OutboxEvent, StateStore, StoreError};
use futures::channel::{mpsc, oneshot};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;

struct Write {
    op: Op,
    ack: Option<oneshot::Sender<Result<(), StoreError>>>,
}

/// Work for the paper exchange's saver.
enum PaperWrite {
    Save,
    /// Answered once every save queued before it is done.
    Flush(oneshot::Sender<()>),
}

/// One ordered writer: every store write of the manager, in the order the actor made it.
///
/// The paper exchange is the venue: like Kraken, it must never be behind the order store after
/// a crash (an order the store knows by its exchange id that the restored exchange never saw
/// leaves a position without its stop, and balances that miss a fill refuse the next orders).
/// So before an order, status, position, trade or fill write, the writer saves the paper
/// exchange's snapshot if it changed since its last save ([`PaperSaver`]); the exchange may be
/// ahead of the store (the manager reconciles that at start, as with Kraken), never behind.
/// Changes no store write follows (prices, resting orders untouched) go to a throttled saver of
/// their own. The snapshot is serialised on a blocking thread so the actors sharing this
/// thread keep running. A `Flush` waits for both.
#[derive(Clone)]
pub(super) struct Writer {
    tx: mpsc::UnboundedSender<Write>,
    paper_tx: Option<mpsc::UnboundedSender<PaperWrite>>,
    /// A paper save is queued and not yet started: a burst of changes is saved once.
    save_queued: Arc<std::sync::atomic::AtomicBool>,
}

const STORE_ATTEMPTS: u32 = 3;

/// A state write as one transaction together with the events that describe it.
fn with_events(op: Op, events: Vec<OutboxEvent>) -> FillWrite {
    let mut fill = FillWrite::default();
    match op {
        Op::Order(o) => fill.orders.push(*o),
        Op::Status(t) => fill.statuses.push(t),
        Op::Position(p) => fill.positions.push(*p),
        Op::Trade(t) => fill.trades.push(t),
        Op::Fill(f) => fill = *f,
        Op::Event(e) => fill.events.push(*e),
        Op::Snapshot(_) | Op::Decision(_) | Op::SavePaper | Op::Flush | Op::FlushAll => {}
    }
    fill.events.extend(events);
    fill
}
/// Shortest time between two paper exchange saves. A crash loses at most this much of the paper
/// exchange's changes (the manager reconciles against what was saved); a graceful stop saves all.
const PAPER_SAVE_INTERVAL: Duration = Duration::from_millis(500);

/// Serialises the paper exchange's snapshot on a blocking thread and saves it, retrying the store.
/// Returns whether it was saved.
async fn save_paper(paper: &PaperExchange, state: &dyn StateStore) -> bool {
    let p = paper.clone();
    let value = match tokio::task::spawn_blocking(move || serde_json::to_value(p.snapshot())).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "paper exchange snapshot not serialisable; save lost");
            return false;
        }
        Err(e) => {
            tracing::error!(error = %e, "paper exchange snapshot task failed; save lost");
            return false;
        }
    };
    for attempt in 1..=STORE_ATTEMPTS {
        match state
            .save_state(crate::execution::paper::STATE_KEY, value.clone())
            .await
        {
            Ok(()) => return true,
            Err(e) if attempt < STORE_ATTEMPTS => {
                tracing::warn!(error = %e, attempt, "paper exchange save failed; retrying");
                actix::clock::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            }
            Err(e) => tracing::error!(error = %e, "paper exchange save lost"),
        }
    }
    false
}

/// Saves the paper exchange's snapshot when it changed since the last save. One lock orders the
/// saves of the writer and of the throttled saver, so an older snapshot never overwrites a newer
/// one.
#[derive(Clone)]
struct PaperSaver {
    paper: PaperExchange,
    state: Arc<dyn StateStore>,
    /// The revision the stored snapshot holds (at least).
    saved: Arc<futures::lock::Mutex<Option<u64>>>,
}

impl PaperSaver {
    async fn save_if_changed(&self) {
        let mut saved = self.saved.lock().await;
        // Read before the snapshot is taken: the snapshot holds at least this revision.
        let revision = self.paper.revision();
        if *saved == Some(revision) {
            return;
        }
        if save_paper(&self.paper, self.state.as_ref()).await {
            *saved = Some(revision);
        }
    }
}

impl Writer {
    pub(super) fn start(deps: &ManagerDeps) -> Self {
        let (tx, mut rx) = mpsc::unbounded::<Write>();
        let orders = deps.orders.clone();
        let audit = deps.audit.clone();
        let state = deps.state.clone();
        let saver = deps
            .paper
            .clone()
            .filter(|_| deps.config.persist_paper)
            .map(|paper| PaperSaver {
                paper,
                state: state.clone(),
                saved: Arc::default(),
            });
        let save_queued = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let paper_tx = saver.clone().map(|saver| {
            let (ptx, mut prx) = mpsc::unbounded::<PaperWrite>();
            let queued = save_queued.clone();
            actix::spawn(async move {
                // At most one save per PAPER_SAVE_INTERVAL: a burst of changes is saved once, and
                // a flush saves what is pending at once.
                let mut pending = false;
                let mut last = std::time::Instant::now() - PAPER_SAVE_INTERVAL;
                let save = |last: &mut std::time::Instant| {
                    // Changes made from here on queue a new save.
                    queued.store(false, std::sync::atomic::Ordering::SeqCst);
                    *last = std::time::Instant::now();
                    let saver = saver.clone();
                    async move { saver.save_if_changed().await }
                };
                loop {
                    let next = if pending {
                        let wait = (last + PAPER_SAVE_INTERVAL).saturating_duration_since(std::time::Instant::now());
                        match actix::clock::timeout(wait, prx.next()).await {
                            Ok(next) => next,
                            Err(_) => {
                                pending = false;
                                save(&mut last).await;
                                continue;
                            }
                        }
                    } else {
                        prx.next().await
                    };
                    match next {
                        Some(PaperWrite::Save) => pending = true,
                        Some(PaperWrite::Flush(ack)) => {
                            if pending {
                                pending = false;
                                save(&mut last).await;
                            }
                            let _ = ack.send(());
                        }
                        None => {
                            if pending {
                                save(&mut last).await;
                            }
                            break;
                        }
                    }
                }
            });
            ptx
        });
        let paper_flush = paper_tx.clone();
        let outbox = deps.outbox.clone();
        actix::spawn(async move {
            // A write taken from the queue while looking for the events that follow a state write.
            let mut held: Option<Write> = None;
            loop {
                let w = match held.take() {
                    Some(w) => w,
                    None => match rx.next().await {
                        Some(w) => w,
                        None => break,
                    },
                };
                if let (Op::FlushAll, Some(ptx)) = (&w.op, &paper_flush) {
                    let (ack, done) = oneshot::channel();
                    if ptx.unbounded_send(PaperWrite::Flush(ack)).is_ok() {
                        let _ = done.await;
                    }
                }
                // The venue is saved before the store learns what happened on it. A record still
                // `pending` (written before it is sent) tells nothing the venue knows.
                let learns = match &w.op {
                    Op::Order(o) => o.view.status != OrderStatus::Pending,
                    Op::Status(t) => t.to != OrderStatus::Pending,
                    Op::Position(_) | Op::Trade(_) | Op::Fill(_) => true,
                    _ => false,
                };
                if let (true, Some(saver)) = (learns, &saver) {
                    saver.save_if_changed().await;
                }
                // The events published right after a state write (queued behind it by the same
                // handler) describe it: they go into its transaction.
                let mut events = Vec::new();
                let mut w = w;
                if matches!(
                    w.op,
                    Op::Order(_) | Op::Status(_) | Op::Position(_) | Op::Trade(_) | Op::Fill(_) | Op::Event(_)
                ) {
                    loop {
                        match rx.try_recv() {
                            Ok(Write { op: Op::Event(e), .. }) => events.push(*e),
                            Ok(next) => {
                                held = Some(next);
                                break;
                            }
                            Err(_) => break, // empty, or closed
                        }
                    }
                }
                if !events.is_empty() || matches!(w.op, Op::Event(_)) {
                    w.op = Op::Fill(Box::new(with_events(w.op, events)));
                }
                let wrote_events = matches!(&w.op, Op::Fill(f) if !f.events.is_empty());
                let mut attempt = 0;
                let res = loop {
                    let r = match &w.op {
                        Op::Order(o) => orders.upsert_order((**o).clone()).await,
                        Op::Status(t) => orders.append_status(t.clone()).await,
                        Op::Position(p) => orders.upsert_position((**p).clone()).await,
                        Op::Trade(t) => orders.insert_trade(t.clone()).await,
                        Op::Fill(f) => orders.record_fill((**f).clone()).await,
                        Op::Snapshot(s) => orders.insert_snapshot(s.clone()).await,
                        Op::Decision(d) => audit.record_decision(d.clone()).await,
                        Op::Event(_) | Op::SavePaper | Op::Flush | Op::FlushAll => Ok(()),
                    };
                    attempt += 1;
                    match r {
                        Err(e) if attempt < STORE_ATTEMPTS => {
                            tracing::warn!(error = %e, attempt, "execution store write failed; retrying");
                            actix::clock::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                        }
                        other => break other,
                    }
                };
                if let Err(e) = &res {
                    tracing::error!(error = %e, "execution store write lost");
                }
                if let (true, Ok(()), Some(sink)) = (wrote_events, &res, &outbox) {
                    (sink.committed)();
                }
                if let Some(ack) = w.ack {
                    let _ = ack.send(res);
                }
            }
        });
        Self {
            tx,
            paper_tx,
            save_queued,
        }
    }

    pub(super) fn send(&self, op: Op) {
        if matches!(op, Op::SavePaper) {
            let Some(ptx) = &self.paper_tx else { return };
            if self.save_queued.swap(true, std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            if ptx.unbounded_send(PaperWrite::Save).is_err() {
                tracing::error!("paper exchange saver stopped; save lost");
            }
            return;
        }
        if self.tx.unbounded_send(Write { op, ack: None }).is_err() {
            tracing::error!("execution store writer stopped; write lost");
        }
    }

    pub(super) fn acked(&self, op: Op) -> impl std::future::Future<Output = Result<(), StoreError>> + 'static {
        let (ack, rx) = oneshot::channel();
        let sent = self.tx.unbounded_send(Write { op, ack: Some(ack) }).is_ok();
        async move {
            if !sent {
                return Err(StoreError::Unavailable("execution store writer stopped".into()));
            }
            rx.await
                .unwrap_or_else(|_| Err(StoreError::Unavailable("execution store writer stopped".into())))
        }
    }
}
