//! Auto-remediation: policies that turn firing alerts into actions on named targets,
//! through guardrails, with every decision audited.
//!
//! The pieces, in the order an alert meets them:
//!
//! - [`config`]: the `remediation:` section of the agent config (targets, their actuator and
//!   guardrail settings, policies) and its validation, which reports every error with its
//!   path.
//! - Policies match alerts with the notifier's Alertmanager matchers
//!   ([`crate::notify::matcher`]), so routes and policies share one grammar.
//! - [`engine`]: the [`Remediator`]. Fed each rule evaluation's alerts, it matches
//!   policies and decides through the guardrails (pause, leader, cooldown, max actions per
//!   window, min/max replicas, HPA tolerance, scale-down stabilisation, restart backoff,
//!   dry-run), acts, and escalates when an action did not help.
//! - [`audit`]: where decisions go: the [`AuditLog`] (the state store's remediation audit
//!   table) and the [`DecisionSink`] (the notifier: a message per decision and escalation
//!   pages).
//! - [`leader`]: one leader per target (PostgreSQL advisory lock, Kubernetes Lease, or
//!   always the leader for a single agent).
//! - [`actuator`]: what acts: `process` (supervised replicas of a command sharing one
//!   port), `kubernetes` (Deployment scale and rollout restart, pod delete, Leases) and
//!   `exec` (a command with a timeout).
//!
//! Invariant: no action is taken without an audit entry, and no guardrail is skipped for
//! a dry run (a dry run records what a live run would have done).
//!
//! Invariant: nothing this module logs or returns as an error carries an alert's label
//! values or annotations; those go only to the audit log and the decision sink, which
//! already hold alert data.

pub mod actuator;
pub mod audit;
pub mod config;
pub mod engine;
pub mod leader;

pub use audit::{AuditEntry, AuditLog, DecisionEvent, DecisionSink, MemoryAuditLog, RecordingSink};
pub use config::RemediationConfig;
pub use engine::{AlertInput, Remediator, RemediatorDeps};
pub use leader::LeaderElection;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};

/// A boxed, sendable future: what the object-safe traits of this module return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The time source of the remediator and of what it stamps (Lease renew times, restart
/// annotations), so tests can run minutes of decisions on a simulated clock.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock reading `ms`.
    pub fn new(ms: i64) -> ManualClock {
        ManualClock(AtomicI64::new(ms))
    }

    /// Sets the time.
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }

    /// Moves the time forward by `d`.
    pub fn advance(&self, d: std::time::Duration) {
        self.0.fetch_add(duration_ms(d), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// `d` in whole milliseconds, saturating.
pub(crate) fn duration_ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
