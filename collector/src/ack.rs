//! End-to-end acknowledgement: how a source learns that a batch was delivered.
//!
//! A source that must not lose data (the file tailer advances its checkpoints only after
//! delivery) attaches an [`AckToken`] to each batch. Every consumer that takes a share of
//! the batch (one per sink on fan-out) holds a clone and calls [`AckToken::done`] once its
//! share is safely delivered or buffered. When the last clone is gone the callback runs
//! once with the outcome: `Delivered` if every clone called `done`, `Failed` if any clone
//! called [`AckToken::fail`] or was dropped without deciding (a task that panicked or was
//! cancelled mid-delivery counts as a failure, so the source re-reads rather than loses).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The outcome a source's callback receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// Every holder reported the batch delivered (or deliberately discarded, e.g. a record
    /// the redactor dropped).
    Delivered,
    /// At least one holder failed or gave up; the source should resend.
    Failed,
}

type Callback = Box<dyn FnOnce(AckOutcome) + Send + Sync>;

struct Inner {
    failed: AtomicBool,
    callback: std::sync::Mutex<Option<Callback>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let cb = self.callback.get_mut().ok().and_then(Option::take);
        if let Some(cb) = cb {
            let outcome = if self.failed.load(Ordering::Acquire) { AckOutcome::Failed } else { AckOutcome::Delivered };
            cb(outcome);
        }
    }
}

/// A share of responsibility for one batch; see the module docs.
pub struct AckToken {
    inner: Arc<Inner>,
    decided: bool,
}

impl AckToken {
    /// A token whose callback runs once, when the last clone is resolved or dropped.
    /// The callback must be cheap and must not block (it runs on the consumer's task).
    pub fn new(callback: impl FnOnce(AckOutcome) + Send + Sync + 'static) -> AckToken {
        AckToken {
            inner: Arc::new(Inner {
                failed: AtomicBool::new(false),
                callback: std::sync::Mutex::new(Some(Box::new(callback))),
            }),
            decided: false,
        }
    }

    /// This holder's share is delivered.
    pub fn done(mut self) {
        self.decided = true;
    }

    /// This holder's share failed; the whole batch is reported `Failed`.
    pub fn fail(mut self) {
        self.inner.failed.store(true, Ordering::Release);
        self.decided = true;
    }
}

impl Clone for AckToken {
    fn clone(&self) -> AckToken {
        AckToken { inner: Arc::clone(&self.inner), decided: false }
    }
}

impl Drop for AckToken {
    fn drop(&mut self) {
        if !self.decided {
            self.inner.failed.store(true, Ordering::Release);
        }
    }
}

impl fmt::Debug for AckToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AckToken").field("holders", &Arc::strong_count(&self.inner)).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn probe() -> (AckToken, Arc<Mutex<Vec<AckOutcome>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = Arc::clone(&seen);
        (AckToken::new(move |o| s.lock().unwrap().push(o)), seen)
    }

    #[test]
    fn all_done_is_delivered_once() {
        let (t, seen) = probe();
        let t2 = t.clone();
        t.done();
        assert!(seen.lock().unwrap().is_empty(), "callback must wait for the last holder");
        t2.done();
        assert_eq!(*seen.lock().unwrap(), vec![AckOutcome::Delivered]);
    }

    #[test]
    fn one_failure_fails_the_batch() {
        let (t, seen) = probe();
        let t2 = t.clone();
        t2.fail();
        t.done();
        assert_eq!(*seen.lock().unwrap(), vec![AckOutcome::Failed]);
    }

    #[test]
    fn dropped_without_deciding_is_a_failure() {
        let (t, seen) = probe();
        let t2 = t.clone();
        t.done();
        drop(t2);
        assert_eq!(*seen.lock().unwrap(), vec![AckOutcome::Failed]);
    }
}
