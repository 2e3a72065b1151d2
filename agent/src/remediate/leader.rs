//! One leader per target, so that several agents watching the same service never act
//! twice on it.
//!
//! - [`PgAdvisoryLeader`]: when the state store is PostgreSQL. A dedicated connection
//!   (detached from the store's pool) takes `pg_try_advisory_lock(key(target))` for each
//!   target; a session lock lives exactly as long as the connection, so a lost connection
//!   is lost leadership on both sides: the server releases the lock, and this side drops
//!   its flags as soon as a ping fails (every `retry_period`, and before every action).
//! - the Kubernetes Lease ([`super::actuator::kubernetes::KubeLease`]) for targets acted
//!   on through the Kubernetes API.
//! - [`AlwaysLeader`]: a single agent with SQLite.
//!
//! [`PerTarget`] combines them: one elector per target, a default for the rest.

use super::BoxFuture;
use sqlx::{Connection as _, PgConnection, PgPool};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Who may act on a target.
pub trait LeaderElection: Send + Sync {
    /// Whether this agent currently leads `target` (cheap; no I/O).
    fn is_leader(&self, target: &str) -> bool;
    /// Re-checks leadership right before an action (may do bounded I/O).
    fn confirm<'a>(&'a self, target: &'a str) -> BoxFuture<'a, bool>;
    /// `postgres`, `kubernetes_lease` or `single` (for status output).
    fn kind(&self, target: &str) -> &'static str;
}

/// Always the leader: one agent, no shared store.
#[derive(Debug, Default, Clone, Copy)]
pub struct AlwaysLeader;

impl LeaderElection for AlwaysLeader {
    fn is_leader(&self, _target: &str) -> bool {
        true
    }
    fn confirm<'a>(&'a self, _target: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(std::future::ready(true))
    }
    fn kind(&self, _target: &str) -> &'static str {
        "single"
    }
}

/// A leader elector per target, with a default for targets not listed.
pub struct PerTarget {
    by_target: HashMap<String, Arc<dyn LeaderElection>>,
    default: Arc<dyn LeaderElection>,
}

impl PerTarget {
    /// `default` for every target not in `by_target`.
    pub fn new(by_target: HashMap<String, Arc<dyn LeaderElection>>, default: Arc<dyn LeaderElection>) -> PerTarget {
        PerTarget { by_target, default }
    }

    fn get(&self, target: &str) -> &Arc<dyn LeaderElection> {
        self.by_target.get(target).unwrap_or(&self.default)
    }
}

impl LeaderElection for PerTarget {
    fn is_leader(&self, target: &str) -> bool {
        self.get(target).is_leader(target)
    }
    fn confirm<'a>(&'a self, target: &'a str) -> BoxFuture<'a, bool> {
        self.get(target).confirm(target)
    }
    fn kind(&self, target: &str) -> &'static str {
        self.get(target).kind(target)
    }
}

/// The advisory lock key of a target: FNV-1a 64 of `warden.remediate/<target>` (stable
/// across versions and machines, unlike std's hasher).
pub fn lock_key(target: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in "warden.remediate/".bytes().chain(target.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h as i64
}

/// Bound on every query of the elector.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Leader election through PostgreSQL session advisory locks (see the module docs).
pub struct PgAdvisoryLeader {
    pool: PgPool,
    held: HashMap<String, AtomicBool>,
    conn: tokio::sync::Mutex<Option<PgConnection>>,
    retry_period: Duration,
}

impl PgAdvisoryLeader {
    /// An elector for `targets` on connections taken from `pool`. Call [`Self::spawn`] (or
    /// [`Self::step`] in tests) to take part.
    pub fn new(pool: PgPool, targets: impl IntoIterator<Item = String>, retry_period: Duration) -> Arc<Self> {
        Arc::new(PgAdvisoryLeader {
            pool,
            held: targets.into_iter().map(|t| (t, AtomicBool::new(false))).collect(),
            conn: tokio::sync::Mutex::new(None),
            retry_period,
        })
    }

    /// Runs [`Self::step`] every `retry_period` until `shutdown`, then releases the locks.
    pub fn spawn(self: &Arc<Self>, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                me.step().await;
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(me.retry_period) => {}
                }
            }
            me.release().await;
        })
    }

    /// One round: (re)connect if needed, check the connection, try the locks not held.
    pub async fn step(&self) {
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            match tokio::time::timeout(QUERY_TIMEOUT, self.pool.acquire()).await {
                Ok(Ok(c)) => *guard = Some(c.detach()),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "remediation leader election: cannot connect to PostgreSQL");
                    return;
                }
                Err(_) => {
                    tracing::warn!("remediation leader election: connecting to PostgreSQL timed out");
                    return;
                }
            }
        }
        let Some(conn) = guard.as_mut() else { return };
        if !ping(conn).await {
            self.lose_all(&mut guard);
            return;
        }
        for (target, flag) in &self.held {
            if flag.load(Ordering::SeqCst) {
                continue;
            }
            let Some(conn) = guard.as_mut() else { return };
            let q = sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)").bind(lock_key(target));
            match tokio::time::timeout(QUERY_TIMEOUT, q.fetch_one(&mut *conn)).await {
                Ok(Ok(true)) => {
                    flag.store(true, Ordering::SeqCst);
                    tracing::info!(target = %target, "remediation leader: acquired PostgreSQL advisory lock");
                }
                Ok(Ok(false)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(target = %target, error = %e, "remediation leader: lock query failed");
                    self.lose_all(&mut guard);
                    return;
                }
                Err(_) => {
                    tracing::warn!(target = %target, "remediation leader: lock query timed out");
                    self.lose_all(&mut guard);
                    return;
                }
            }
        }
    }

    /// Unlocks everything and closes the connection (shutdown).
    pub async fn release(&self) {
        let mut guard = self.conn.lock().await;
        if let Some(mut conn) = guard.take() {
            let q = sqlx::query("SELECT pg_advisory_unlock_all()");
            let _ = tokio::time::timeout(QUERY_TIMEOUT, q.execute(&mut conn)).await;
            let _ = tokio::time::timeout(QUERY_TIMEOUT, conn.close()).await;
        }
        for flag in self.held.values() {
            flag.store(false, Ordering::SeqCst);
        }
    }

    fn lose_all(&self, guard: &mut Option<PgConnection>) {
        // Dropping the connection closes the socket; the server drops the session's locks.
        *guard = None;
        for (target, flag) in &self.held {
            if flag.swap(false, Ordering::SeqCst) {
                tracing::warn!(target = %target, "remediation leader: lost PostgreSQL connection, no longer leader");
            }
        }
    }
}

async fn ping(conn: &mut PgConnection) -> bool {
    matches!(tokio::time::timeout(QUERY_TIMEOUT, conn.ping()).await, Ok(Ok(())))
}

impl LeaderElection for PgAdvisoryLeader {
    fn is_leader(&self, target: &str) -> bool {
        self.held.get(target).is_some_and(|f| f.load(Ordering::SeqCst))
    }

    fn confirm<'a>(&'a self, target: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            if !self.is_leader(target) {
                return false;
            }
            let mut guard = self.conn.lock().await;
            let alive = match guard.as_mut() {
                Some(conn) => ping(conn).await,
                None => false,
            };
            if !alive {
                self.lose_all(&mut guard);
            }
            alive && self.is_leader(target)
        })
    }

    fn kind(&self, _target: &str) -> &'static str {
        "postgres"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_are_stable_and_distinct() {
        // Fixed value: the key must not change between versions, or two agents of
        // different versions would both lead.
        assert_eq!(lock_key("api"), lock_key("api"));
        assert_ne!(lock_key("api"), lock_key("api2"));
        assert_eq!(lock_key("api") as u64, 0xd140_f010_b08e_02fd);
    }
}
