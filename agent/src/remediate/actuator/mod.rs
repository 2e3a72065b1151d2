//! Actuators: what carries out a remediation action on a target.
//!
//! - [`process`]: Warden supervises N replicas of a command (shared port through
//!   SO_REUSEPORT, probes, crash backoff, graceful stop).
//! - [`kubernetes`]: a Deployment through the Kubernetes API (scale subresource, rollout
//!   restart, pod delete) and Lease-based leader election.
//! - [`exec`]: commands with a timeout and captured output.
//!
//! [`build`] turns a target's config into its actuator (and, for kubernetes, its Lease
//! elector).

pub mod exec;
pub mod kubernetes;
pub mod process;

use super::BoxFuture;
use super::config::{ActuatorConfig, TargetConfig};
use super::leader::LeaderElection;
use super::{Clock, SystemClock};
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What an action produced, for the audit log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionOutcome {
    /// Free text for the audit entry's detail (command output, the API's answer).
    pub detail: Option<String>,
}

/// Why an action failed. The message names the operation and the cause (status, OS
/// error, timeout); `detail` may carry captured command output for the audit log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ActuatorError {
    /// What failed.
    pub message: String,
    /// Captured output or response text, for the audit log only.
    pub detail: Option<String>,
}

impl ActuatorError {
    /// An error with a message and no detail.
    pub fn new(message: impl Into<String>) -> ActuatorError {
        ActuatorError { message: message.into(), detail: None }
    }
}

/// Carries out actions on one target.
pub trait Actuator: Send + Sync {
    /// `process`, `kubernetes` or `exec`.
    fn kind(&self) -> &'static str;
    /// The replica count the target is set to now.
    fn current_replicas(&self) -> BoxFuture<'_, Result<i64, ActuatorError>>;
    /// Sets the replica count.
    fn scale_to(&self, replicas: i64) -> BoxFuture<'_, Result<ActionOutcome, ActuatorError>>;
    /// Restarts one instance (a replica slot, a pod name) or, with `None`, the whole
    /// target (rolling where the actuator can).
    fn restart(&self, instance: Option<String>) -> BoxFuture<'_, Result<ActionOutcome, ActuatorError>>;
    /// Stops what the actuator runs (process replicas); waits for it.
    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// What [`build`] needs from the agent.
#[derive(Clone)]
pub struct BuildContext {
    /// The agent's data directory (`logs/<target>.log` for process targets).
    pub data_dir: PathBuf,
    /// Stops background tasks (replicas, Lease renewal).
    pub shutdown: CancellationToken,
    /// Time source for timestamps written to APIs.
    pub clock: Arc<dyn Clock>,
    /// This agent's identity for Leases.
    pub identity: String,
}

impl BuildContext {
    /// A context with the system clock and the default identity.
    pub fn new(data_dir: PathBuf, shutdown: CancellationToken) -> BuildContext {
        BuildContext { data_dir, shutdown, clock: Arc::new(SystemClock), identity: default_identity() }
    }
}

/// `$HOSTNAME` (a pod's name in Kubernetes), else `warden-<pid>`.
pub fn default_identity() -> String {
    match std::env::var("HOSTNAME") {
        Ok(h) if !h.is_empty() && h.len() <= 128 => h,
        _ => format!("warden-{}", std::process::id()),
    }
}

/// A target's actuator and, when it brings one, its leader elector.
pub struct Built {
    /// The actuator.
    pub actuator: Arc<dyn Actuator>,
    /// The Lease elector of a kubernetes target (already running), if enabled.
    pub leader: Option<Arc<dyn LeaderElection>>,
}

/// Builds (and for `process`, starts) the actuator of target `name`.
pub async fn build(name: &str, target: &TargetConfig, ctx: &BuildContext) -> Result<Built, ActuatorError> {
    match &target.actuator {
        ActuatorConfig::Process(c) => {
            let initial = c.initial_replicas.unwrap_or(target.min_replicas);
            let a =
                process::ProcessActuator::start(name, c.clone(), &ctx.data_dir, initial, ctx.shutdown.child_token())
                    .await?;
            Ok(Built { actuator: Arc::new(a), leader: None })
        }
        ActuatorConfig::Kubernetes(c) => {
            let client = kubernetes::KubeClient::from_config(c, &kubernetes::SystemEnv)
                .map_err(|e| ActuatorError::new(format!("target {name}: {e}")))?;
            let ns = client.namespace().to_string();
            let leader: Option<Arc<dyn LeaderElection>> = if c.lease.enabled {
                let lease_name =
                    c.lease.name.clone().unwrap_or_else(|| format!("warden-remediate-{}", lease_suffix(name)));
                let lease = kubernetes::KubeLease::new(
                    client.clone(),
                    &ns,
                    &lease_name,
                    &ctx.identity,
                    c.lease.clone(),
                    Arc::clone(&ctx.clock),
                );
                lease.spawn(ctx.shutdown.child_token());
                Some(lease)
            } else {
                None
            };
            let a = kubernetes::DeploymentActuator::new(client, &ns, &c.deployment, Arc::clone(&ctx.clock));
            Ok(Built { actuator: Arc::new(a), leader })
        }
        ActuatorConfig::Exec(c) => {
            Ok(Built { actuator: Arc::new(exec::ExecActuator::new(name, c.clone())), leader: None })
        }
    }
}

/// A target name made into a DNS-1123 label fragment for a default Lease name.
fn lease_suffix(name: &str) -> String {
    let s: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    s.trim_matches('-').to_string()
}
