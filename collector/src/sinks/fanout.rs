//! Fan-out: one redacted batch to every sink that takes some of its signals.
//!
//! Each receiving sink gets `batch.select(its signals)`: only the signals it takes, with
//! a clone of the batch's [`AckToken`](crate::ack::AckToken). A sink that takes none of
//! the batch's signals is not handed anything and so never holds up its acknowledgement.
//! The source's callback therefore fires exactly once, after every receiving sink has
//! resolved its share (delivered it, or written it to its disk buffer), and `Failed` if
//! any of them gave up or stopped.
//!
//! Sends run concurrently: a sink whose buffer is full (policy `block`) does not keep
//! the batch from the others, but [`Fanout::send`] returns only when every receiving sink
//! has taken its share, so a blocked sink backpressures the caller (and through it the
//! source) instead of letting memory grow. Shares are built before any is sent, so at
//! most one copy per receiving sink exists per call; the last receiver that takes every
//! signal in the batch gets the batch itself, not a copy.

use crate::redact::Redacted;
use crate::signal::Batch;
use crate::sinks::SignalSet;
use crate::sinks::runner::SinkInput;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

/// Routes batches to a fixed set of sinks.
#[derive(Debug, Clone)]
pub struct Fanout {
    sinks: Vec<(SignalSet, SinkInput)>,
}

type SendFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

impl Fanout {
    /// A fan-out to `sinks`, each with the signals it takes.
    pub fn new(sinks: Vec<(SignalSet, SinkInput)>) -> Fanout {
        Fanout { sinks }
    }

    /// The sinks, in configuration order.
    pub fn sinks(&self) -> &[(SignalSet, SinkInput)] {
        &self.sinks
    }

    /// Hands each sink `batch.select(its signals)` (skipping sinks that take none of it)
    /// and resolves the batch's own token clone as done, so the source's callback fires
    /// only when every receiving sink has resolved its share. Returns once every
    /// receiving sink has taken its share (or refused it because it stopped, which fails
    /// the acknowledgement).
    pub async fn send(&self, mut batch: Redacted<Batch>) {
        let b = batch.get();
        let present =
            SignalSet { metrics: !b.metrics.is_empty(), logs: !b.logs.is_empty(), traces: !b.spans.is_empty() };
        let receivers: Vec<&(SignalSet, SinkInput)> =
            self.sinks.iter().filter(|(set, _)| !set.intersect(present).is_empty()).collect();
        let Some(((last_set, last_input), others)) = receivers.split_last() else {
            // Nobody takes any of it (or it is empty): nothing to wait for.
            if let Some(ack) = batch.take_ack() {
                ack.done();
            }
            return;
        };
        let mut shares: Vec<(&SinkInput, Redacted<Batch>)> = Vec::with_capacity(receivers.len());
        for (set, input) in others {
            if let Some(share) = batch.select(*set) {
                shares.push((input, share));
            }
        }
        if last_set.intersect(present) == present {
            // The last receiver takes everything in the batch: hand over the batch itself
            // (with the original token) instead of a copy.
            shares.push((last_input, batch));
        } else {
            if let Some(share) = batch.select(*last_set) {
                shares.push((last_input, share));
            }
            // Every share holds its clone now; resolving ours leaves the outcome to them.
            if let Some(ack) = batch.take_ack() {
                ack.done();
            }
            drop(batch);
        }
        if shares.len() == 1 {
            let (input, share) = shares.pop().expect("one share");
            send_one(input, share).await;
            return;
        }
        let futures: Vec<SendFuture<'_>> =
            shares.into_iter().map(|(input, share)| Box::pin(send_one(input, share)) as SendFuture<'_>).collect();
        join_all(futures).await;
    }
}

async fn send_one(input: &SinkInput, share: Redacted<Batch>) {
    if let Err(e) = input.send(share).await {
        tracing::debug!(error = %e, "share not taken; the source will be told the batch failed");
    }
}

/// Polls every future until all have finished.
async fn join_all(mut futures: Vec<SendFuture<'_>>) {
    let mut done = vec![false; futures.len()];
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, d) in futures.iter_mut().zip(done.iter_mut()) {
            if !*d {
                if f.as_mut().poll(cx).is_ready() {
                    *d = true;
                } else {
                    pending = true;
                }
            }
        }
        if pending { Poll::Pending } else { Poll::Ready(()) }
    })
    .await
}
