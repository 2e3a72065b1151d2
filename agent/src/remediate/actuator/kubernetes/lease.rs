//! Leader election through a `coordination.k8s.io/v1` Lease, after client-go's
//! `leaderelection` package:
//!
//! - `GET` the Lease. Not found: `POST` one naming this agent (acquired). Found and held
//!   by another holder whose record changed less than `leaseDurationSeconds` ago (measured
//!   on this agent's clock from when it last saw the record change, so clock skew does not
//!   matter): not leader.
//! - Otherwise `PUT` the updated record with the `resourceVersion` read, so a concurrent
//!   writer makes it fail with 409 Conflict (optimistic concurrency).
//! - A leader renews every `retry_period`. It steps down at once when the Lease names
//!   someone else or an update conflicts, and when it could not renew for
//!   `renew_deadline`; [`KubeLease::is_leader`] is also false once `lease.duration` passed
//!   since the last successful renewal, whatever the background task is doing.

use super::{KubeClient, KubeError, micro_time, parse_time_ms};
use crate::remediate::config::LeaseConfig;
use crate::remediate::leader::LeaderElection;
use crate::remediate::{BoxFuture, Clock, duration_ms};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// A Lease's spec, as read or written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseRecord {
    /// Current holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_identity: Option<String>,
    /// Lease duration in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_duration_seconds: Option<i64>,
    /// When the holder acquired it (MicroTime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acquire_time: Option<String>,
    /// When the holder last renewed it (MicroTime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_time: Option<String>,
    /// Holder changes so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_transitions: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct Lease {
    metadata: Meta,
    #[serde(default)]
    spec: LeaseRecord,
}

#[derive(Debug, Deserialize)]
struct Meta {
    #[serde(default, rename = "resourceVersion")]
    resource_version: String,
}

#[derive(Debug, Default)]
struct State {
    leader: bool,
    /// Last successful acquire or renew (ms, this agent's clock).
    renewed_at: Option<i64>,
    /// The record last seen and when it was first seen in that form.
    observed: Option<(LeaseRecord, i64)>,
}

/// A Lease elector for one target (see the module docs).
pub struct KubeLease {
    client: KubeClient,
    namespace: String,
    name: String,
    identity: String,
    config: LeaseConfig,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

impl KubeLease {
    /// An elector for Lease `name` in `namespace`, as `identity`.
    pub fn new(
        client: KubeClient,
        namespace: &str,
        name: &str,
        identity: &str,
        config: LeaseConfig,
        clock: Arc<dyn Clock>,
    ) -> Arc<KubeLease> {
        Arc::new(KubeLease {
            client,
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            config,
            clock,
            state: Mutex::new(State::default()),
        })
    }

    /// Runs [`Self::try_acquire_or_renew`] every `retry_period` until `shutdown`.
    pub fn spawn(self: &Arc<Self>, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                me.try_acquire_or_renew().await;
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(me.config.retry_period) => {}
                }
            }
            me.lock().leader = false;
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lease_path(&self) -> String {
        format!("/apis/coordination.k8s.io/v1/namespaces/{}/leases/{}", self.namespace, self.name)
    }

    fn body(&self, record: &LeaseRecord, resource_version: Option<&str>) -> Vec<u8> {
        let mut metadata = serde_json::json!({"name": self.name, "namespace": self.namespace});
        if let Some(rv) = resource_version {
            metadata["resourceVersion"] = serde_json::Value::String(rv.to_string());
        }
        serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": record,
        })
        .to_string()
        .into_bytes()
    }

    /// One election round; returns whether this agent leads afterwards.
    pub async fn try_acquire_or_renew(&self) -> bool {
        let now = self.clock.now_ms();
        let ok = match self.attempt(now).await {
            Ok(true) => true,
            Ok(false) => {
                self.step_down("the lease is held by another agent");
                false
            }
            Err(e) if e.status() == Some(409) => {
                self.step_down("the lease was updated concurrently (409 Conflict)");
                false
            }
            Err(e) => {
                tracing::warn!(lease = %self.name, error = %e, "remediation leader: lease request failed");
                let mut s = self.lock();
                if s.leader && s.renewed_at.is_none_or(|r| now - r >= duration_ms(self.config.renew_deadline)) {
                    s.leader = false;
                    tracing::warn!(lease = %self.name, "remediation leader: could not renew within the deadline; stepping down");
                }
                false
            }
        };
        if ok {
            let mut s = self.lock();
            if !s.leader {
                tracing::info!(lease = %self.name, identity = %self.identity, "remediation leader: acquired lease");
            }
            s.leader = true;
            s.renewed_at = Some(now);
        }
        ok
    }

    fn step_down(&self, why: &str) {
        let mut s = self.lock();
        if s.leader {
            tracing::warn!(lease = %self.name, reason = why, "remediation leader: lost lease");
        }
        s.leader = false;
    }

    async fn attempt(&self, now: i64) -> Result<bool, KubeError> {
        let secs = i64::try_from(self.config.duration.as_secs()).unwrap_or(i64::MAX);
        let fresh = |acquire: String, transitions: i64| LeaseRecord {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(secs),
            acquire_time: Some(acquire),
            renew_time: Some(micro_time(now)),
            lease_transitions: Some(transitions),
        };
        let existing: Result<Lease, KubeError> =
            self.client.request_json(Method::GET, &self.lease_path(), None, None).await;
        let lease = match existing {
            Err(e) if e.status() == Some(404) => {
                let record = fresh(micro_time(now), 0);
                let path = format!("/apis/coordination.k8s.io/v1/namespaces/{}/leases", self.namespace);
                self.client
                    .request(Method::POST, &path, Some("application/json"), Some(self.body(&record, None)))
                    .await?;
                self.lock().observed = Some((record, now));
                return Ok(true);
            }
            other => other?,
        };
        let old = lease.spec;
        let observed_at = {
            let mut s = self.lock();
            match &s.observed {
                Some((r, at)) if *r == old => *at,
                _ => {
                    s.observed = Some((old.clone(), now));
                    now
                }
            }
        };
        let holder = old.holder_identity.clone().unwrap_or_default();
        let i_hold = holder == self.identity;
        let duration_ms = old.lease_duration_seconds.unwrap_or(secs).saturating_mul(1000);
        if !holder.is_empty() && !i_hold && observed_at.saturating_add(duration_ms) > now {
            return Ok(false);
        }
        let transitions = old.lease_transitions.unwrap_or(0);
        let record = if i_hold {
            fresh(old.acquire_time.clone().unwrap_or_else(|| micro_time(now)), transitions)
        } else {
            fresh(micro_time(now), transitions + 1)
        };
        self.client
            .request(
                Method::PUT,
                &self.lease_path(),
                Some("application/json"),
                Some(self.body(&record, Some(&lease.metadata.resource_version))),
            )
            .await?;
        self.lock().observed = Some((record, now));
        Ok(true)
    }

    /// The renew time of the record last seen, in ms (tests, status).
    pub fn observed_renew_ms(&self) -> Option<i64> {
        self.lock().observed.as_ref().and_then(|(r, _)| r.renew_time.as_deref().and_then(parse_time_ms))
    }
}

impl LeaderElection for KubeLease {
    fn is_leader(&self, _target: &str) -> bool {
        let s = self.lock();
        s.leader && s.renewed_at.is_some_and(|r| self.clock.now_ms() - r < duration_ms(self.config.duration))
    }

    fn confirm<'a>(&'a self, target: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(std::future::ready(self.is_leader(target)))
    }

    fn kind(&self, _target: &str) -> &'static str {
        "kubernetes_lease"
    }
}
