//! Where remediation decisions go: the audit log ([`AuditLog`], implemented by the state
//! store and by [`MemoryAuditLog`] for tests) and the notifier ([`DecisionSink`]: one
//! message per recorded decision, and escalation pages).
//!
//! Both receive only what the remediator recorded: identical consecutive skips are
//! recorded once (see [`super::engine`]), so a 15 s evaluation loop cannot write a row
//! per evaluation.

use super::BoxFuture;
use std::collections::VecDeque;
use std::sync::Mutex;
use warden_rules::labels::Labels;

pub use crate::store::AuditEntry;

/// Why the audit log could not store an entry (the message names no entry content).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit log: {0}")]
pub struct AuditError(pub String);

/// The remediation audit log.
pub trait AuditLog: Send + Sync {
    /// Stores `e`, returning its id.
    fn record(&self, e: AuditEntry) -> BoxFuture<'_, Result<i64, AuditError>>;
}

/// An in-memory audit log keeping the newest `cap` entries (tests, and a fallback when
/// no store is configured).
#[derive(Debug)]
pub struct MemoryAuditLog {
    entries: Mutex<(i64, VecDeque<AuditEntry>)>,
    cap: usize,
}

impl MemoryAuditLog {
    /// A log keeping at most `cap` entries.
    pub fn new(cap: usize) -> MemoryAuditLog {
        MemoryAuditLog { entries: Mutex::new((0, VecDeque::new())), cap: cap.max(1) }
    }

    /// The entries kept, oldest first.
    pub fn entries(&self) -> Vec<AuditEntry> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).1.iter().cloned().collect()
    }
}

impl AuditLog for crate::store::Store {
    fn record(&self, e: AuditEntry) -> BoxFuture<'_, Result<i64, AuditError>> {
        Box::pin(async move { self.record_action(&e).await.map_err(|e| AuditError(e.to_string())) })
    }
}

impl AuditLog for MemoryAuditLog {
    fn record(&self, e: AuditEntry) -> BoxFuture<'_, Result<i64, AuditError>> {
        let mut g = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        g.0 += 1;
        let id = g.0;
        if g.1.len() == self.cap {
            g.1.pop_front();
        }
        g.1.push_back(e);
        Box::pin(std::future::ready(Ok(id)))
    }
}

/// A decision or escalation handed to the notifier.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionEvent {
    /// The audit entry (for an escalation, `action` is `escalate`).
    pub entry: AuditEntry,
    /// The policy that decided.
    pub policy: String,
    /// True for an escalation page (a human must act), false for an informational
    /// decision message.
    pub escalation: bool,
    /// The triggering alert's labels, for routing (`team`, `severity`, ...).
    pub alert_labels: Labels,
}

/// Receives every recorded decision. Implementations must not block: the notifier
/// queues (bounded) and returns.
pub trait DecisionSink: Send + Sync {
    /// Takes one event.
    fn deliver(&self, event: DecisionEvent);
}

/// A sink that drops everything (no notifier configured).
#[derive(Debug, Default, Clone, Copy)]
pub struct NullSink;

impl DecisionSink for NullSink {
    fn deliver(&self, _event: DecisionEvent) {}
}

/// A sink that keeps the newest `cap` events (tests).
#[derive(Debug)]
pub struct RecordingSink {
    events: Mutex<VecDeque<DecisionEvent>>,
    cap: usize,
}

impl RecordingSink {
    /// A sink keeping at most `cap` events.
    pub fn new(cap: usize) -> RecordingSink {
        RecordingSink { events: Mutex::new(VecDeque::new()), cap: cap.max(1) }
    }

    /// The events kept, oldest first.
    pub fn events(&self) -> Vec<DecisionEvent> {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }

    /// The escalation pages kept.
    pub fn escalations(&self) -> Vec<DecisionEvent> {
        self.events().into_iter().filter(|e| e.escalation).collect()
    }
}

impl DecisionSink for RecordingSink {
    fn deliver(&self, event: DecisionEvent) {
        let mut g = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if g.len() == self.cap {
            g.pop_front();
        }
        g.push_back(event);
    }
}
