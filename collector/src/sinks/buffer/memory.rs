//! The in-memory buffer: a bounded FIFO of batches, counted in items.
//!
//! Room is a semaphore of `max_events` permits: a batch takes one permit per item (a
//! batch larger than `max_events` takes them all, so it is accepted, alone, instead of
//! waiting forever). `block` waits for permits in arrival order (the semaphore is fair),
//! `drop_newest` refuses at once. Permits come back when the runner takes the batch out;
//! the batch in delivery is therefore held in addition to `max_events`.
//!
//! Guarantee: the source's acknowledgement travels with the batch and is resolved by the
//! runner only after delivery, so a batch lost with the process (crash, shutdown before
//! delivery) was never acknowledged and the source re-reads it.

use super::{Pending, WhenFull, approx_size};
use crate::redact::Redacted;
use crate::signal::Batch;
use crate::sinks::runner::{DropReason, SinkMetrics};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

struct Entry {
    batch: Redacted<Batch>,
    enqueued: Instant,
    permits: u32,
    bytes: u64,
}

/// A bounded queue shared by a sink's inputs and its runner.
pub(crate) struct MemoryQueue {
    room: Semaphore,
    max: u32,
    when_full: WhenFull,
    queue: Mutex<VecDeque<Entry>>,
    ready: Notify,
    metrics: Arc<SinkMetrics>,
}

impl MemoryQueue {
    pub(crate) fn new(max_events: usize, when_full: WhenFull, metrics: Arc<SinkMetrics>) -> Arc<MemoryQueue> {
        let max = max_events.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize)) as u32;
        Arc::new(MemoryQueue {
            room: Semaphore::new(max as usize),
            max,
            when_full,
            queue: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
            metrics,
        })
    }

    /// Enqueues `batch`; `Err` hands it back when the sink has stopped.
    pub(crate) async fn push(
        &self,
        mut batch: Redacted<Batch>,
        shutdown: &CancellationToken,
    ) -> Result<(), Redacted<Batch>> {
        let items = batch.get().len();
        let want = items.min(self.max as usize) as u32;
        let permit = match self.when_full {
            WhenFull::Block => tokio::select! {
                p = self.room.acquire_many(want) => p,
                _ = shutdown.cancelled() => return Err(batch),
            },
            WhenFull::DropNewest => match self.room.try_acquire_many(want) {
                Ok(p) => Ok(p),
                Err(tokio::sync::TryAcquireError::NoPermits) => {
                    self.metrics.add_dropped(DropReason::BufferFull, items as u64);
                    if let Some(ack) = batch.take_ack() {
                        ack.done();
                    }
                    return Ok(());
                }
                Err(tokio::sync::TryAcquireError::Closed) => return Err(batch),
            },
        };
        let Ok(permit) = permit else { return Err(batch) };
        // The permits now belong to the entry; they are returned when it is taken out.
        permit.forget();
        let bytes = approx_size(batch.get());
        self.metrics.add_buffer(items as i64, bytes as i64);
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).push_back(Entry {
            batch,
            enqueued: Instant::now(),
            permits: want,
            bytes,
        });
        self.ready.notify_one();
        Ok(())
    }

    /// The oldest batch, waiting for one; `None` once `shutdown` fires.
    pub(crate) async fn pop(&self, shutdown: &CancellationToken) -> Option<Pending> {
        loop {
            if shutdown.is_cancelled() {
                return None;
            }
            let entry = self.queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
            if let Some(e) = entry {
                self.room.add_permits(e.permits as usize);
                self.metrics.add_buffer(-(e.batch.get().len() as i64), -(e.bytes as i64));
                return Some(Pending { batch: e.batch, enqueued: e.enqueued, commit: None });
            }
            tokio::select! {
                _ = self.ready.notified() => {}
                _ = shutdown.cancelled() => return None,
            }
        }
    }

    /// Refuses further pushes and releases waiting senders (they get `Err`).
    /// Queued batches are dropped with their tokens undecided (`Failed`: the source
    /// re-reads them).
    pub(crate) fn close(&self) {
        self.room.close();
        let dropped: Vec<Entry> = self.queue.lock().unwrap_or_else(|e| e.into_inner()).drain(..).collect();
        for e in &dropped {
            self.metrics.add_buffer(-(e.batch.get().len() as i64), -(e.bytes as i64));
        }
        drop(dropped);
    }
}
