//! The state every handler shares.

use crate::audit::AuditLog;
use crate::auth::{LoginLimiter, TokenCache};
use crate::db::Db;
use crate::faults::Faults;
use crate::telemetry::Metrics;
use std::sync::Arc;
use std::time::Duration;

/// Shared, cheaply cloned handler state.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub db: Db,
    /// The service's metrics.
    pub metrics: Arc<Metrics>,
    /// Whether request metrics and spans are on.
    pub telemetry: bool,
    /// Lifetime of new bearer tokens.
    pub token_ttl: Duration,
    /// Recently validated tokens.
    pub token_cache: Arc<TokenCache>,
    /// Login attempt limits.
    pub login_limiter: Arc<LoginLimiter>,
    /// Fault injection, when enabled.
    pub faults: Option<Arc<Faults>>,
    /// The audit trail of health-record access.
    pub audit: AuditLog,
}
