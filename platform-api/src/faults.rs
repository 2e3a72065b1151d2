//! Fault injection for remediation tests: added latency, errors, readiness failure, a hung
//! health endpoint and memory growth. Only present with `--enable-fault-injection`, only
//! reachable by admins, and cleared with one call.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::watch;
use utoipa::ToSchema;

/// The faults in force. Every field is optional in a `PUT`; omitted fields keep their value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultSettings {
    /// Latency added to each `/v1` request that is picked, in milliseconds (0..=60000).
    #[serde(default)]
    pub latency_ms: Option<u64>,
    /// Probability that a `/v1` request gets the added latency (0..=1; default 1).
    #[serde(default)]
    pub latency_probability: Option<f64>,
    /// Fraction of `/v1` requests answered with 500 (0..=1).
    #[serde(default)]
    pub error_rate: Option<f64>,
    /// `/readyz` answers 503 while true.
    #[serde(default)]
    pub readiness_failure: Option<bool>,
    /// `/healthz` never answers while true.
    #[serde(default)]
    pub health_hang: Option<bool>,
    /// Memory the process allocates and keeps, per second, in MiB (0..=1024).
    #[serde(default)]
    pub memory_growth_mb_per_sec: Option<u64>,
    /// Cap on memory held by the growth fault, in MiB (default 256, at most 4096).
    #[serde(default)]
    pub memory_max_mb: Option<u64>,
}

/// Current faults plus what the memory fault holds now.
#[derive(Debug, Serialize, ToSchema)]
pub struct FaultStatus {
    /// Settings in force.
    pub settings: FaultSettings,
    /// MiB held by the memory growth fault.
    pub memory_held_mb: u64,
}

/// Shared fault state.
pub struct Faults {
    settings: RwLock<FaultSettings>,
    memory: Mutex<Vec<Vec<u8>>>,
    /// Bumped on every change, so a hung health check can notice it was cleared.
    changed: watch::Sender<u64>,
    metrics: Arc<crate::telemetry::Metrics>,
}

const MIB: usize = 1024 * 1024;

impl Faults {
    /// No faults active.
    pub fn new(metrics: Arc<crate::telemetry::Metrics>) -> Self {
        let (changed, _) = watch::channel(0);
        Self { settings: RwLock::new(FaultSettings::default()), memory: Mutex::new(Vec::new()), changed, metrics }
    }

    /// The settings in force.
    pub fn settings(&self) -> FaultSettings {
        self.settings.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Merges `update` into the settings after validating it.
    pub fn update(&self, update: FaultSettings) -> Result<FaultSettings, ApiError> {
        validate(&update)?;
        let mut s = self.settings.write().unwrap_or_else(|p| p.into_inner());
        macro_rules! merge {
            ($($f:ident),*) => { $( if update.$f.is_some() { s.$f = update.$f; } )* };
        }
        merge!(
            latency_ms,
            latency_probability,
            error_rate,
            readiness_failure,
            health_hang,
            memory_growth_mb_per_sec,
            memory_max_mb
        );
        let now = s.clone();
        drop(s);
        self.publish(&now);
        Ok(now)
    }

    /// Clears every fault and frees the memory the growth fault held.
    pub fn clear(&self) {
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = FaultSettings::default();
        self.memory.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.publish(&FaultSettings::default());
    }

    fn publish(&self, s: &FaultSettings) {
        let g = &self.metrics.faults_active;
        g.with_label_values(&["latency"]).set(i64::from(s.latency_ms.unwrap_or(0) > 0));
        g.with_label_values(&["errors"]).set(i64::from(s.error_rate.unwrap_or(0.0) > 0.0));
        g.with_label_values(&["readiness"]).set(i64::from(s.readiness_failure.unwrap_or(false)));
        g.with_label_values(&["health_hang"]).set(i64::from(s.health_hang.unwrap_or(false)));
        g.with_label_values(&["memory"]).set(i64::from(s.memory_growth_mb_per_sec.unwrap_or(0) > 0));
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// The status shown by `GET /admin/faults`.
    pub fn status(&self) -> FaultStatus {
        let held = self.memory.lock().unwrap_or_else(|p| p.into_inner()).len() as u64;
        FaultStatus { settings: self.settings(), memory_held_mb: held }
    }

    /// Whether `/readyz` must fail.
    pub fn readiness_failure(&self) -> bool {
        self.settings().readiness_failure.unwrap_or(false)
    }

    /// Waits while the health hang is active (bounded, so a forgotten fault cannot pin a
    /// connection forever).
    pub async fn wait_health_hang(&self) {
        let mut rx = self.changed.subscribe();
        let wait = async {
            while self.settings().health_hang.unwrap_or(false) {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(600), wait).await;
    }

    /// One tick of the memory growth fault: allocates and touches this tick's share.
    fn grow(&self, tick: Duration) {
        let s = self.settings();
        let rate = s.memory_growth_mb_per_sec.unwrap_or(0);
        if rate == 0 {
            return;
        }
        let max = s.memory_max_mb.unwrap_or(256) as usize;
        let per_tick = ((rate as f64) * tick.as_secs_f64()).ceil().max(1.0) as usize;
        let mut held = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        for _ in 0..per_tick {
            if held.len() >= max {
                break;
            }
            // Filled with a non-zero byte so the pages are really resident.
            held.push(vec![0xA5u8; MIB]);
        }
    }

    /// Runs the memory growth fault until `shutdown` fires.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let tick = Duration::from_millis(100);
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = interval.tick() => self.grow(tick),
                _ = shutdown.changed() => return,
            }
        }
    }
}

fn validate(s: &FaultSettings) -> Result<(), ApiError> {
    let prob = |name: &str, v: Option<f64>| match v {
        Some(p) if !(0.0..=1.0).contains(&p) || p.is_nan() => {
            Err(ApiError::validation(format!("`{name}` must be between 0 and 1")))
        }
        _ => Ok(()),
    };
    prob("latency_probability", s.latency_probability)?;
    prob("error_rate", s.error_rate)?;
    if s.latency_ms.is_some_and(|v| v > 60_000) {
        return Err(ApiError::validation("`latency_ms` must be at most 60000"));
    }
    if s.memory_growth_mb_per_sec.is_some_and(|v| v > 1024) {
        return Err(ApiError::validation("`memory_growth_mb_per_sec` must be at most 1024"));
    }
    if s.memory_max_mb.is_some_and(|v| v > 4096) {
        return Err(ApiError::validation("`memory_max_mb` must be at most 4096"));
    }
    Ok(())
}

/// Middleware on `/v1` routes: applies latency and error faults.
pub async fn inject(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(faults) = &state.faults {
        let s = faults.settings();
        let (delay, fail) = {
            let mut rng = rand::rng();
            let delay = s.latency_ms.filter(|ms| *ms > 0 && rng.random_bool(s.latency_probability.unwrap_or(1.0)));
            let fail = s.error_rate.is_some_and(|r| r > 0.0 && rng.random_bool(r));
            (delay, fail)
        };
        if let Some(ms) = delay {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if fail {
            return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "injected_fault", "injected fault")
                .into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_merges_and_clear_resets() {
        let f = Faults::new(Arc::new(crate::telemetry::Metrics::new()));
        f.update(FaultSettings { latency_ms: Some(200), ..Default::default() }).unwrap();
        let s = f.update(FaultSettings { error_rate: Some(0.5), ..Default::default() }).unwrap();
        assert_eq!((s.latency_ms, s.error_rate), (Some(200), Some(0.5)));
        assert!(f.update(FaultSettings { error_rate: Some(1.5), ..Default::default() }).is_err());
        assert!(f.update(FaultSettings { latency_probability: Some(f64::NAN), ..Default::default() }).is_err());
        f.update(FaultSettings { memory_growth_mb_per_sec: Some(10), memory_max_mb: Some(3), ..Default::default() })
            .unwrap();
        for _ in 0..10 {
            f.grow(Duration::from_millis(100));
        }
        assert_eq!(f.status().memory_held_mb, 3, "growth stops at the cap");
        f.clear();
        assert_eq!(f.settings(), FaultSettings::default());
        assert_eq!(f.status().memory_held_mb, 0);
    }
}
