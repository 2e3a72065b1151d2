//! The `remediation:` section of the agent config: serde types (`deny_unknown_fields`,
//! durations as humantime strings) and a pure [`RemediationConfig::validate`] that reports
//! every problem with its path relative to the section (`targets.api.max_replicas: ...`;
//! the agent's config loader prefixes `remediation.`).
//!
//! ```yaml
//! remediation:
//!   dry_run: false
//!   targets:
//!     api:
//!       actuator:
//!         process:
//!           command: /usr/local/bin/platform-api
//!           # Every replica binds the same port (SO_REUSEPORT); the kernel balances them.
//!           args: ["--listen", "127.0.0.1:8080", "--data-dir", "/var/lib/platform"]
//!           # Probes need a port per replica when max_replicas > 1: a service that can
//!           # listen on a second address gets "{replica_port}" (replica_port_base + slot).
//!           termination_grace: 30s
//!       min_replicas: 1
//!       max_replicas: 4
//!       cooldown: 3m                        # default
//!       max_actions: {count: 6, window: 1h} # default
//!       scale_down_stabilization: 5m        # default
//!       tolerance: 0.1                      # default
//!       restart_backoff: {initial: 10s, max: 5m}
//!       escalate_after: 10m                 # default
//!     web:
//!       actuator:
//!         kubernetes: {deployment: web, namespace: shop}   # in-cluster service account
//!       max_replicas: 20
//!   policies:
//!     - name: api-latency
//!       # Alertmanager matchers, as in the notifier's routes (one or more per string)
//!       matchers: ['alertname="PlatformApiHighLatency"', 'severity=~"page|warning"']
//!       action: scale_up          # scale_up | scale_down | scale_to | restart | exec
//!       target: api
//!       step: 1
//!     - name: web-utilisation
//!       matchers: ['alertname="WebCpuHigh"']
//!       action: scale_to
//!       target: web
//!       ratio_from: {target_value: 0.6}
//!     - name: web-stuck-pod
//!       matchers: ['alertname="PodStuck"']
//!       action: restart
//!       target: web
//!       instance_label: pod
//! ```
//!
//! `scale_to` takes `replicas: N` or `ratio_from: {target_value: X}` (HPA's proportional
//! rule: `ceil(current × alert value / X)`, nothing done within `tolerance`); `ratio_from`
//! also works with `scale_up`/`scale_down`, which then only move in their direction.
//! `restart` may name `instance_label`: the alert label holding the replica (process) or
//! pod (kubernetes) to restart; without it the whole target restarts (rolling). `exec` runs
//! `command: {argv: [...], timeout: 30s}`.

use crate::notify::matcher::Matcher;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Largest `max_replicas` accepted.
pub const MAX_REPLICAS_LIMIT: i64 = 1000;
/// Largest `max_replicas` a `process` target may have (each replica is a child process).
pub const MAX_PROCESS_REPLICAS: i64 = 64;

/// The whole `remediation:` section.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemediationConfig {
    /// Decide and audit everything, act on nothing (default false).
    #[serde(default)]
    pub dry_run: bool,
    /// What can be acted on, by name.
    #[serde(default)]
    pub targets: BTreeMap<String, TargetConfig>,
    /// Which alerts trigger which action on which target, in order.
    #[serde(default)]
    pub policies: Vec<PolicyConfig>,
    /// Leader election settings.
    #[serde(default)]
    pub leader: LeaderConfig,
}

/// Leader election settings (see [`super::leader`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaderConfig {
    /// How often a follower tries to take leadership and a PostgreSQL leader checks its
    /// connection (default 2s).
    #[serde(default = "default_leader_retry", deserialize_with = "de_duration")]
    pub retry_period: Duration,
    /// This agent's identity in Kubernetes Leases (default `$HOSTNAME`, else `warden-<pid>`).
    #[serde(default)]
    pub identity: Option<String>,
}

impl Default for LeaderConfig {
    fn default() -> Self {
        LeaderConfig { retry_period: default_leader_retry(), identity: None }
    }
}

/// One target: how to act on it and the guardrails around it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// What acts on the target.
    pub actuator: ActuatorConfig,
    /// Fewest replicas a scale action may leave (default 1).
    #[serde(default = "default_min_replicas")]
    pub min_replicas: i64,
    /// Most replicas a scale action may create; required when a scale policy names the
    /// target.
    #[serde(default)]
    pub max_replicas: Option<i64>,
    /// Least time between two actions on the target (default 3m).
    #[serde(default = "default_cooldown", deserialize_with = "de_duration")]
    pub cooldown: Duration,
    /// Most actions in a sliding window; more pages a human instead (default 6 per 1h).
    #[serde(default)]
    pub max_actions: MaxActions,
    /// A scale-down goes no lower than the highest recommendation of this window (HPA's
    /// `--horizontal-pod-autoscaler-downscale-stabilization`, default 5m).
    #[serde(default = "default_stabilization", deserialize_with = "de_duration")]
    pub scale_down_stabilization: Duration,
    /// Proportional scaling does nothing while `|value/target − 1|` is at most this
    /// (default 0.1, as HPA).
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// Delay before a repeated restart, doubling from `initial` to `max`.
    #[serde(default)]
    pub restart_backoff: Backoff,
    /// Page when the alert is still firing this long after the first action (default 10m).
    #[serde(default = "default_escalate_after", deserialize_with = "de_duration")]
    pub escalate_after: Duration,
}

/// A sliding-window action budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaxActions {
    /// Actions allowed in the window (default 6).
    #[serde(default = "default_max_count")]
    pub count: u32,
    /// The window (default 1h).
    #[serde(default = "default_max_window", deserialize_with = "de_duration")]
    pub window: Duration,
}

impl Default for MaxActions {
    fn default() -> Self {
        MaxActions { count: default_max_count(), window: default_max_window() }
    }
}

/// An exponential backoff from `initial`, doubling up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    /// First delay (default 10s).
    #[serde(default = "default_backoff_initial", deserialize_with = "de_duration")]
    pub initial: Duration,
    /// Largest delay (default 5m).
    #[serde(default = "default_backoff_max", deserialize_with = "de_duration")]
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { initial: default_backoff_initial(), max: default_backoff_max() }
    }
}

impl Backoff {
    /// The delay after `previous` (None: the first one).
    pub fn next(&self, previous: Option<Duration>) -> Duration {
        match previous {
            None => self.initial,
            Some(p) => p.saturating_mul(2).min(self.max),
        }
    }
}

/// The actuator of a target (exactly one key).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ActuatorConfig {
    /// Warden supervises replicas of a command.
    Process(ProcessConfig),
    /// A Kubernetes Deployment.
    Kubernetes(KubernetesConfig),
    /// Commands run for restart / scale.
    Exec(ExecActuatorConfig),
}

impl ActuatorConfig {
    /// `process`, `kubernetes` or `exec`.
    pub fn kind(&self) -> &'static str {
        match self {
            ActuatorConfig::Process(_) => "process",
            ActuatorConfig::Kubernetes(_) => "kubernetes",
            ActuatorConfig::Exec(_) => "exec",
        }
    }
}

/// The `process` actuator: N replicas of one command, sharing a port through
/// SO_REUSEPORT (the command binds it), supervised like a kubelet supervises containers.
///
/// In `args` and `env` values, `{replica}` is the replica's slot (0, 1, ...),
/// `{replica_port}` is `replica_port_base + slot`, and `{target}` the target's name.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessConfig {
    /// The program (a path, or a name looked up on `PATH`).
    pub command: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment variables (the agent's own environment is inherited).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory (default: the agent's).
    #[serde(default)]
    pub working_dir: Option<PathBuf>,
    /// Replicas started with the agent (default `min_replicas`).
    #[serde(default)]
    pub initial_replicas: Option<i64>,
    /// First port of `{replica_port}`: each replica's own port for probes, when the service
    /// can listen on one beside the shared port.
    #[serde(default)]
    pub replica_port_base: Option<u16>,
    /// A replica failing it `failure_threshold` times in a row is restarted.
    #[serde(default)]
    pub liveness_probe: Option<ProbeConfig>,
    /// Whether a replica is ready (reported, and awaited by a rolling restart).
    #[serde(default)]
    pub readiness_probe: Option<ProbeConfig>,
    /// Time between SIGTERM and SIGKILL (default 30s, as Kubernetes).
    #[serde(default = "default_grace", deserialize_with = "de_duration")]
    pub termination_grace: Duration,
    /// Delay before restarting a replica that exited or failed liveness: doubling from
    /// `initial` to `max` (default 10s → 5m, kubelet's CrashLoopBackOff).
    #[serde(default)]
    pub crash_backoff: Backoff,
    /// A replica that ran this long resets its crash backoff (default 10m, as kubelet).
    #[serde(default = "default_backoff_reset", deserialize_with = "de_duration")]
    pub backoff_reset_after: Duration,
    /// The per-target output log (`<data_dir>/logs/<target>.log`) rotates past this size
    /// (default 64 MiB; one rotated file `.1` is kept).
    #[serde(default = "default_log_max_bytes")]
    pub log_max_bytes: u64,
}

/// A Kubernetes-style HTTP probe.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// The request.
    pub http_get: HttpGet,
    /// Delay after the start before the first probe (default 0s).
    #[serde(default, deserialize_with = "de_duration")]
    pub initial_delay: Duration,
    /// Time between probes (default 10s).
    #[serde(default = "default_probe_period", deserialize_with = "de_duration")]
    pub period: Duration,
    /// Per-probe timeout (default 1s).
    #[serde(default = "default_probe_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// Consecutive failures that count (default 3).
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: u32,
}

/// `GET http://<host>:<port><path>`; 200–399 is success.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpGet {
    /// Request path (default `/`).
    #[serde(default = "default_probe_path")]
    pub path: String,
    /// A port number, or `"{replica_port}"` for each replica's own port.
    pub port: ProbePort,
    /// Host (default 127.0.0.1).
    #[serde(default = "default_probe_host")]
    pub host: String,
}

/// A probe's port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbePort {
    /// A fixed port.
    Fixed(u16),
    /// `{replica_port}`: each replica's own port.
    Replica,
}

impl<'de> Deserialize<'de> for ProbePort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u16),
            S(String),
        }
        match Raw::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected a port number (1-65535) or \"{replica_port}\""))?
        {
            Raw::N(0) => Err(serde::de::Error::custom("port must be 1-65535")),
            Raw::N(n) => Ok(ProbePort::Fixed(n)),
            Raw::S(s) if s == "{replica_port}" => Ok(ProbePort::Replica),
            Raw::S(s) => match s.parse::<u16>() {
                Ok(n) if n > 0 => Ok(ProbePort::Fixed(n)),
                _ => Err(serde::de::Error::custom("expected a port number (1-65535) or \"{replica_port}\"")),
            },
        }
    }
}

/// The `kubernetes` actuator: one Deployment.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// The Deployment's name.
    pub deployment: String,
    /// Its namespace (default: the kubeconfig context's, else the service account's, else
    /// `default`).
    #[serde(default)]
    pub namespace: Option<String>,
    /// A kubeconfig file; without it the in-cluster service account is used.
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default its `current-context`).
    #[serde(default)]
    pub context: Option<String>,
    /// An API server URL used as is, without credentials (e.g. `kubectl proxy`'s
    /// `http://127.0.0.1:8001`); overrides `kubeconfig` and in-cluster discovery.
    #[serde(default)]
    pub api_server: Option<String>,
    /// Timeout of each API request (default 10s).
    #[serde(default = "default_kube_timeout", deserialize_with = "de_duration")]
    pub request_timeout: Duration,
    /// Leader election through a `coordination.k8s.io/v1` Lease.
    #[serde(default)]
    pub lease: LeaseConfig,
}

/// Lease-based leader election for a kubernetes target (client-go's defaults).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseConfig {
    /// Elect through a Lease (default true); false: this agent always acts.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The Lease's name (default `warden-remediate-<target>`).
    #[serde(default)]
    pub name: Option<String>,
    /// `leaseDurationSeconds` (default 15s).
    #[serde(default = "default_lease_duration", deserialize_with = "de_duration")]
    pub duration: Duration,
    /// A leader that could not renew for this long steps down (default 10s).
    #[serde(default = "default_renew_deadline", deserialize_with = "de_duration")]
    pub renew_deadline: Duration,
    /// Time between attempts to acquire or renew (default 2s).
    #[serde(default = "default_retry_period", deserialize_with = "de_duration")]
    pub retry_period: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            enabled: true,
            name: None,
            duration: default_lease_duration(),
            renew_deadline: default_renew_deadline(),
            retry_period: default_retry_period(),
        }
    }
}

/// The `exec` actuator: commands for what a target can do.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecActuatorConfig {
    /// Run for `restart` (`WARDEN_INSTANCE` holds the instance, if any).
    #[serde(default)]
    pub restart: Option<CommandSpec>,
    /// Run for scale actions; `{replicas}` in `argv` is the new count.
    #[serde(default)]
    pub scale: Option<CommandSpec>,
    /// Prints the current replica count (an integer) on stdout.
    #[serde(default)]
    pub replicas: Option<CommandSpec>,
}

/// A command: an argument vector run without a shell, unless `shell: true` (then `argv`
/// is one string given to `/bin/sh -c`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandSpec {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Run `argv[0]` with `/bin/sh -c` (default false).
    #[serde(default)]
    pub shell: bool,
    /// Killed after this long (default 30s).
    #[serde(default = "default_exec_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Bytes of stdout and of stderr kept for the audit log (default 4096 each).
    #[serde(default = "default_output_limit")]
    pub output_limit_bytes: usize,
}

/// What a policy does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Add `step` replicas (or the proportional count).
    ScaleUp,
    /// Remove `step` replicas (or the proportional count).
    ScaleDown,
    /// Scale to `replicas` (or the proportional count).
    ScaleTo,
    /// Restart the target (rolling) or one instance of it.
    Restart,
    /// Run a command.
    Exec,
}

impl ActionKind {
    /// The name used in configs and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::ScaleUp => "scale_up",
            ActionKind::ScaleDown => "scale_down",
            ActionKind::ScaleTo => "scale_to",
            ActionKind::Restart => "restart",
            ActionKind::Exec => "exec",
        }
    }

    /// Whether this is one of the scale actions.
    pub fn is_scale(self) -> bool {
        matches!(self, ActionKind::ScaleUp | ActionKind::ScaleDown | ActionKind::ScaleTo)
    }
}

/// One policy: matching firing alerts → an action on a target.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Unique name (in the audit log).
    pub name: String,
    /// Alertmanager-style matchers on the alert's labels, all of which must match.
    #[serde(default)]
    pub matchers: Vec<String>,
    /// The action.
    pub action: ActionKind,
    /// The target's name.
    pub target: String,
    /// Replicas added or removed by `scale_up` / `scale_down` (default 1).
    #[serde(default)]
    pub step: Option<i64>,
    /// The count of `scale_to`.
    #[serde(default)]
    pub replicas: Option<i64>,
    /// Proportional scaling from the alert's value.
    #[serde(default)]
    pub ratio_from: Option<RatioFrom>,
    /// The command of `exec`.
    #[serde(default)]
    pub command: Option<CommandSpec>,
    /// For `restart`: the alert label naming the replica or pod to restart.
    #[serde(default)]
    pub instance_label: Option<String>,
}

/// HPA's proportional rule: `desired = ceil(current × value / target_value)`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatioFrom {
    /// The alert value at which the current replica count is right.
    pub target_value: f64,
}

impl RemediationConfig {
    /// Every problem with this section, each message starting with its path.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        if self.leader.retry_period < Duration::from_millis(100) || self.leader.retry_period > Duration::from_secs(60) {
            errors.push("leader.retry_period: must be between 100ms and 1m".to_string());
        }
        if let Some(id) = &self.leader.identity
            && (id.is_empty() || id.len() > 128)
        {
            errors.push("leader.identity: must be 1-128 characters".to_string());
        }
        for (name, t) in &self.targets {
            let p = format!("targets.{name}");
            if !valid_target_name(name) {
                errors.push(format!(
                    "{p}: target names must be 1-63 characters of A-Z a-z 0-9 _ . - and start with a letter or digit"
                ));
            }
            t.validate(&p, &mut errors);
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, pol) in self.policies.iter().enumerate() {
            let p = format!("policies[{i}]");
            if pol.name.is_empty() || pol.name.len() > 128 {
                errors.push(format!("{p}.name: must be 1-128 characters"));
            } else if !names.insert(pol.name.as_str()) {
                errors.push(format!("{p}.name: duplicate policy name {:?}", pol.name));
            }
            pol.validate(&p, self.targets.get(&pol.target), &mut errors);
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

impl TargetConfig {
    fn validate(&self, p: &str, errors: &mut Vec<String>) {
        let max = self.max_replicas;
        if self.min_replicas < 0 {
            errors.push(format!("{p}.min_replicas: must be >= 0"));
        }
        if let Some(max) = max {
            if !(1..=MAX_REPLICAS_LIMIT).contains(&max) {
                errors.push(format!("{p}.max_replicas: must be between 1 and {MAX_REPLICAS_LIMIT}"));
            } else if max < self.min_replicas {
                errors.push(format!("{p}.max_replicas: must be >= min_replicas ({})", self.min_replicas));
            }
        }
        if self.cooldown > Duration::from_secs(86_400) {
            errors.push(format!("{p}.cooldown: must be at most 24h"));
        }
        if self.max_actions.count == 0 || self.max_actions.count > 10_000 {
            errors.push(format!("{p}.max_actions.count: must be between 1 and 10000"));
        }
        if self.max_actions.window.is_zero() || self.max_actions.window > Duration::from_secs(7 * 86_400) {
            errors.push(format!("{p}.max_actions.window: must be between 1ms and 7d"));
        }
        if self.scale_down_stabilization > Duration::from_secs(3600) {
            errors.push(format!("{p}.scale_down_stabilization: must be at most 1h"));
        }
        if !(0.0..1.0).contains(&self.tolerance) {
            errors.push(format!("{p}.tolerance: must be >= 0 and < 1"));
        }
        validate_backoff(&self.restart_backoff, &format!("{p}.restart_backoff"), errors);
        if self.escalate_after.is_zero() || self.escalate_after > Duration::from_secs(7 * 86_400) {
            errors.push(format!("{p}.escalate_after: must be between 1ms and 7d"));
        }
        match &self.actuator {
            ActuatorConfig::Process(c) => c.validate(&format!("{p}.actuator.process"), p, self, errors),
            ActuatorConfig::Kubernetes(c) => c.validate(&format!("{p}.actuator.kubernetes"), errors),
            ActuatorConfig::Exec(c) => {
                let q = format!("{p}.actuator.exec");
                for (field, spec) in [("restart", &c.restart), ("scale", &c.scale), ("replicas", &c.replicas)] {
                    if let Some(spec) = spec {
                        spec.validate(&format!("{q}.{field}"), errors);
                    }
                }
                if c.scale.is_some() != c.replicas.is_some() {
                    errors.push(format!("{q}: `scale` and `replicas` go together (a scale needs the current count)"));
                }
            }
        }
    }
}

impl ProcessConfig {
    fn validate(&self, p: &str, target_path: &str, target: &TargetConfig, errors: &mut Vec<String>) {
        if self.command.is_empty() {
            errors.push(format!("{p}.command: must not be empty"));
        }
        let max = target.max_replicas.unwrap_or(target.min_replicas.max(1));
        if max > MAX_PROCESS_REPLICAS {
            errors.push(format!(
                "{target_path}.max_replicas: a process target supervises at most {MAX_PROCESS_REPLICAS} replicas"
            ));
        }
        if let Some(n) = self.initial_replicas
            && (n < target.min_replicas || n > max)
        {
            errors.push(format!("{p}.initial_replicas: must be between min_replicas and max_replicas"));
        }
        for k in self.env.keys() {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                errors.push(format!("{p}.env: invalid variable name {k:?}"));
            }
        }
        let uses_replica_port = self.args.iter().chain(self.env.values()).any(|s| s.contains("{replica_port}"));
        let probes = [("liveness_probe", &self.liveness_probe), ("readiness_probe", &self.readiness_probe)];
        let probe_uses_replica_port =
            probes.iter().any(|(_, pr)| pr.as_ref().is_some_and(|pr| pr.http_get.port == ProbePort::Replica));
        if (uses_replica_port || probe_uses_replica_port) && self.replica_port_base.is_none() {
            errors.push(format!("{p}.replica_port_base: required when {{replica_port}} is used"));
        }
        if let Some(base) = self.replica_port_base
            && (base == 0 || i64::from(base) + max > 65_536)
        {
            errors.push(format!("{p}.replica_port_base: base + max_replicas must stay within 1-65535"));
        }
        for (field, probe) in probes {
            let Some(probe) = probe else { continue };
            let q = format!("{p}.{field}");
            if !probe.http_get.path.starts_with('/') || probe.http_get.path.chars().any(|c| c.is_whitespace()) {
                errors.push(format!("{q}.http_get.path: must start with / and contain no spaces"));
            }
            if probe.http_get.host.is_empty() || probe.http_get.host.contains(['/', ' ', '@']) {
                errors.push(format!("{q}.http_get.host: must be a host name or address"));
            }
            if max > 1 && probe.http_get.port != ProbePort::Replica {
                errors.push(format!(
                    "{q}.http_get.port: with max_replicas > 1 a fixed port reaches whichever replica the kernel picks; \
                     give each replica its own port with \"{{replica_port}}\""
                ));
            }
            if probe.period < Duration::from_millis(10) || probe.period > Duration::from_secs(3600) {
                errors.push(format!("{q}.period: must be between 10ms and 1h"));
            }
            if probe.timeout < Duration::from_millis(10) || probe.timeout > Duration::from_secs(300) {
                errors.push(format!("{q}.timeout: must be between 10ms and 5m"));
            }
            if probe.initial_delay > Duration::from_secs(3600) {
                errors.push(format!("{q}.initial_delay: must be at most 1h"));
            }
            if probe.failure_threshold == 0 || probe.failure_threshold > 1000 {
                errors.push(format!("{q}.failure_threshold: must be between 1 and 1000"));
            }
        }
        if self.termination_grace > Duration::from_secs(3600) {
            errors.push(format!("{p}.termination_grace: must be at most 1h"));
        }
        validate_backoff(&self.crash_backoff, &format!("{p}.crash_backoff"), errors);
        if self.log_max_bytes < 4096 {
            errors.push(format!("{p}.log_max_bytes: must be at least 4096"));
        }
    }
}

impl KubernetesConfig {
    fn validate(&self, p: &str, errors: &mut Vec<String>) {
        if !valid_dns_subdomain(&self.deployment) {
            errors.push(format!("{p}.deployment: must be a DNS-1123 subdomain (lowercase a-z 0-9 - ., at most 253)"));
        }
        if let Some(ns) = &self.namespace
            && !valid_dns_label(ns)
        {
            errors.push(format!("{p}.namespace: must be a DNS-1123 label (lowercase a-z 0-9 -, at most 63)"));
        }
        if let Some(url) = &self.api_server
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            errors.push(format!("{p}.api_server: must be an http:// or https:// URL"));
        }
        if self.request_timeout.is_zero() || self.request_timeout > Duration::from_secs(300) {
            errors.push(format!("{p}.request_timeout: must be between 1ms and 5m"));
        }
        let l = &self.lease;
        if let Some(name) = &l.name
            && !valid_dns_subdomain(name)
        {
            errors.push(format!("{p}.lease.name: must be a DNS-1123 subdomain"));
        }
        if l.duration < Duration::from_secs(1) || l.duration > Duration::from_secs(3600) {
            errors.push(format!("{p}.lease.duration: must be between 1s and 1h"));
        }
        if l.renew_deadline.is_zero() || l.renew_deadline >= l.duration {
            errors.push(format!("{p}.lease.renew_deadline: must be > 0 and < lease.duration"));
        }
        if l.retry_period.is_zero() || l.retry_period >= l.renew_deadline {
            errors.push(format!("{p}.lease.retry_period: must be > 0 and < lease.renew_deadline"));
        }
    }
}

impl CommandSpec {
    /// Checks the command; problems are pushed with `p` as their path.
    pub fn validate(&self, p: &str, errors: &mut Vec<String>) {
        if self.argv.is_empty() || self.argv[0].is_empty() {
            errors.push(format!("{p}.argv: must name a program"));
        }
        if self.shell && self.argv.len() != 1 {
            errors.push(format!("{p}.argv: with shell: true, argv is one script string"));
        }
        if self.argv.iter().any(|a| a.contains('\0')) {
            errors.push(format!("{p}.argv: must not contain NUL"));
        }
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(3600) {
            errors.push(format!("{p}.timeout: must be between 1ms and 1h"));
        }
        if self.output_limit_bytes > 1 << 20 {
            errors.push(format!("{p}.output_limit_bytes: must be at most 1048576"));
        }
        for k in self.env.keys() {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                errors.push(format!("{p}.env: invalid variable name {k:?}"));
            }
        }
    }
}

impl PolicyConfig {
    fn validate(&self, p: &str, target: Option<&TargetConfig>, errors: &mut Vec<String>) {
        for (j, m) in self.matchers.iter().enumerate() {
            if let Err(e) = Matcher::parse_list(m) {
                errors.push(format!("{p}.matchers[{j}]: {e}"));
            }
        }
        let a = self.action;
        let name = a.as_str();
        if !matches!(a, ActionKind::ScaleUp | ActionKind::ScaleDown) && self.step.is_some() {
            errors.push(format!("{p}.step: only for scale_up and scale_down, not {name}"));
        }
        if let Some(s) = self.step
            && !(1..=MAX_REPLICAS_LIMIT).contains(&s)
        {
            errors.push(format!("{p}.step: must be between 1 and {MAX_REPLICAS_LIMIT}"));
        }
        if a != ActionKind::ScaleTo && self.replicas.is_some() {
            errors.push(format!("{p}.replicas: only for scale_to, not {name}"));
        }
        if !a.is_scale() && self.ratio_from.is_some() {
            errors.push(format!("{p}.ratio_from: only for scale actions, not {name}"));
        }
        if a == ActionKind::ScaleTo && self.replicas.is_some() == self.ratio_from.is_some() {
            errors.push(format!("{p}: scale_to needs exactly one of `replicas` and `ratio_from`"));
        }
        if matches!(a, ActionKind::ScaleUp | ActionKind::ScaleDown) && self.step.is_some() && self.ratio_from.is_some()
        {
            errors.push(format!("{p}: `step` and `ratio_from` exclude each other"));
        }
        if let Some(r) = self.replicas
            && !(0..=MAX_REPLICAS_LIMIT).contains(&r)
        {
            errors.push(format!("{p}.replicas: must be between 0 and {MAX_REPLICAS_LIMIT}"));
        }
        if let Some(r) = self.ratio_from
            && !(r.target_value.is_finite() && r.target_value > 0.0)
        {
            errors.push(format!("{p}.ratio_from.target_value: must be a positive number"));
        }
        match (a, &self.command) {
            (ActionKind::Exec, None) => errors.push(format!("{p}.command: required for exec")),
            (ActionKind::Exec, Some(c)) => c.validate(&format!("{p}.command"), errors),
            (_, Some(_)) => errors.push(format!("{p}.command: only for exec, not {name}")),
            _ => {}
        }
        if let Some(l) = &self.instance_label {
            if a != ActionKind::Restart {
                errors.push(format!("{p}.instance_label: only for restart, not {name}"));
            } else if !valid_label_name(l) {
                errors.push(format!("{p}.instance_label: not a valid label name"));
            }
        }
        let Some(t) = target else {
            errors.push(format!("{p}.target: no target named {:?}", self.target));
            return;
        };
        if a.is_scale() && t.max_replicas.is_none() {
            errors.push(format!("{p}.target: target {:?} needs max_replicas for {name}", self.target));
        }
        if let (Some(r), Some(max)) = (self.replicas, t.max_replicas)
            && (r < t.min_replicas || r > max)
        {
            errors.push(format!("{p}.replicas: outside the target's min_replicas..max_replicas"));
        }
        if let ActuatorConfig::Exec(e) = &t.actuator {
            if a.is_scale() && e.scale.is_none() {
                errors.push(format!("{p}.action: exec target {:?} has no `scale` command", self.target));
            }
            if a == ActionKind::Restart && e.restart.is_none() {
                errors.push(format!("{p}.action: exec target {:?} has no `restart` command", self.target));
            }
        }
    }
}

fn validate_backoff(b: &Backoff, p: &str, errors: &mut Vec<String>) {
    if b.initial.is_zero() {
        errors.push(format!("{p}.initial: must be > 0"));
    }
    if b.max < b.initial || b.max > Duration::from_secs(86_400) {
        errors.push(format!("{p}.max: must be >= initial and at most 24h"));
    }
}

/// Whether `s` is a Prometheus label name.
pub fn valid_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Target names end up in file names and lock keys: `[A-Za-z0-9][A-Za-z0-9_.-]{0,62}`.
pub fn valid_target_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// A DNS-1123 label: lowercase alphanumerics and `-`, at most 63, alphanumeric at both ends.
pub fn valid_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A DNS-1123 subdomain: dot-separated labels, at most 253 characters.
pub fn valid_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && !s.is_empty() && s.split('.').all(valid_dns_label)
}

/// Deserializes a humantime duration (`15s`, `1m30s`, `250ms`).
pub fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?}: {e}")))
}

fn default_true() -> bool {
    true
}
fn default_leader_retry() -> Duration {
    Duration::from_secs(2)
}
fn default_min_replicas() -> i64 {
    1
}
fn default_cooldown() -> Duration {
    Duration::from_secs(180)
}
fn default_max_count() -> u32 {
    6
}
fn default_max_window() -> Duration {
    Duration::from_secs(3600)
}
fn default_stabilization() -> Duration {
    Duration::from_secs(300)
}
fn default_tolerance() -> f64 {
    0.1
}
fn default_backoff_initial() -> Duration {
    Duration::from_secs(10)
}
fn default_backoff_max() -> Duration {
    Duration::from_secs(300)
}
fn default_escalate_after() -> Duration {
    Duration::from_secs(600)
}
fn default_grace() -> Duration {
    Duration::from_secs(30)
}
fn default_backoff_reset() -> Duration {
    Duration::from_secs(600)
}
fn default_log_max_bytes() -> u64 {
    64 << 20
}
fn default_probe_period() -> Duration {
    Duration::from_secs(10)
}
fn default_probe_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_failure_threshold() -> u32 {
    3
}
fn default_probe_path() -> String {
    "/".to_string()
}
fn default_probe_host() -> String {
    "127.0.0.1".to_string()
}
fn default_kube_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_lease_duration() -> Duration {
    Duration::from_secs(15)
}
fn default_renew_deadline() -> Duration {
    Duration::from_secs(10)
}
fn default_retry_period() -> Duration {
    Duration::from_secs(2)
}
fn default_exec_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_output_limit() -> usize {
    4096
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<RemediationConfig, String> {
        serde_saphyr::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_fill_in() {
        let c = parse(
            "targets:\n  api:\n    actuator: {exec: {restart: {argv: [/bin/true]}}}\npolicies:\n  - {name: r, action: restart, target: api}\n",
        )
        .unwrap();
        c.validate().unwrap();
        let t = &c.targets["api"];
        assert_eq!(t.cooldown, Duration::from_secs(180));
        assert_eq!(t.max_actions, MaxActions { count: 6, window: Duration::from_secs(3600) });
        assert_eq!(t.scale_down_stabilization, Duration::from_secs(300));
        assert_eq!(t.tolerance, 0.1);
        assert_eq!(t.restart_backoff, Backoff { initial: Duration::from_secs(10), max: Duration::from_secs(300) });
        assert_eq!(t.escalate_after, Duration::from_secs(600));
        assert!(!c.dry_run);
    }

    /// The example of the module docs parses and validates.
    #[test]
    fn documented_example_is_valid() {
        let doc: String = include_str!("config.rs")
            .lines()
            .skip_while(|l| !l.starts_with("//! ```yaml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| format!("{}\n", l.strip_prefix("//! ").unwrap_or(l.trim_start_matches("//!"))))
            .collect();
        #[derive(serde::Deserialize)]
        struct Wrapper {
            remediation: RemediationConfig,
        }
        let w: Wrapper = serde_saphyr::from_str(&doc).unwrap_or_else(|e| panic!("{e}\n{doc}"));
        w.remediation.validate().unwrap();
        assert_eq!(w.remediation.policies.len(), 3);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = parse("targets: {}\npolicys: []\n").unwrap_err();
        assert!(e.contains("policys"), "{e}");
        let e = parse("targets:\n  a:\n    actuator: {exec: {}}\n    cooldwn: 1m\n").unwrap_err();
        assert!(e.contains("cooldwn"), "{e}");
    }

    #[test]
    fn validate_reports_every_error_with_its_path() {
        let c = parse(
            r#"
targets:
  "bad name":
    actuator: {exec: {}}
  api:
    actuator:
      process:
        command: ""
        args: ["--listen", "127.0.0.1:{replica_port}"]
        liveness_probe: {http_get: {path: healthz, port: 8080}, failure_threshold: 0}
    min_replicas: 3
    max_replicas: 2
    tolerance: 1.5
    max_actions: {count: 0}
    restart_backoff: {initial: 1m, max: 10s}
  k8s:
    actuator: {kubernetes: {deployment: "Web_App", lease: {duration: 5s, renew_deadline: 6s}}}
policies:
  - {name: p1, action: scale_up, target: api, matchers: ['alertname=~"("'], replicas: 3}
  - {name: p1, action: scale_to, target: nowhere}
  - {name: p3, action: exec, target: k8s}
  - {name: p4, action: scale_down, target: k8s, step: 0, instance_label: pod}
"#,
        )
        .unwrap();
        let errors = c.validate().unwrap_err();
        let expected = [
            "targets.bad name: target names",
            "targets.api.max_replicas: must be >= min_replicas (3)",
            "targets.api.max_actions.count: must be between 1 and 10000",
            "targets.api.tolerance: must be >= 0 and < 1",
            "targets.api.restart_backoff.max: must be >= initial",
            "targets.api.actuator.process.command: must not be empty",
            "targets.api.actuator.process.replica_port_base: required when {replica_port} is used",
            "targets.api.actuator.process.liveness_probe.http_get.path: must start with /",
            "targets.api.actuator.process.liveness_probe.http_get.port: with max_replicas > 1",
            "targets.api.actuator.process.liveness_probe.failure_threshold: must be between 1 and 1000",
            "targets.k8s.actuator.kubernetes.deployment: must be a DNS-1123 subdomain",
            "targets.k8s.actuator.kubernetes.lease.renew_deadline: must be > 0 and < lease.duration",
            "policies[0].matchers[0]: matcher 1: invalid regular expression",
            "policies[0].replicas: only for scale_to, not scale_up",
            "policies[0].replicas: outside the target's min_replicas..max_replicas",
            "policies[1].name: duplicate policy name \"p1\"",
            "policies[1]: scale_to needs exactly one of `replicas` and `ratio_from`",
            "policies[1].target: no target named \"nowhere\"",
            "policies[2].command: required for exec",
            "policies[3].step: must be between 1 and 1000",
            "policies[3].instance_label: only for restart, not scale_down",
            "policies[3].target: target \"k8s\" needs max_replicas for scale_down",
        ];
        for want in expected {
            assert!(errors.iter().any(|e| e.starts_with(want)), "missing {want:?} in {errors:#?}");
        }
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");
    }

    #[test]
    fn probe_ports() {
        let probe = |port: &str| -> Result<ProbePort, String> {
            let c: ProbeConfig =
                serde_saphyr::from_str(&format!("http_get: {{port: {port}}}")).map_err(|e| e.to_string())?;
            Ok(c.http_get.port)
        };
        assert_eq!(probe("8080"), Ok(ProbePort::Fixed(8080)));
        assert_eq!(probe("\"{replica_port}\""), Ok(ProbePort::Replica));
        assert!(probe("0").is_err());
        assert!(probe("70000").is_err());
        assert!(probe("\"{port}\"").is_err());
    }

    #[test]
    fn names() {
        assert!(valid_target_name("platform-api.v2_a"));
        assert!(!valid_target_name("../x"));
        assert!(!valid_target_name(""));
        assert!(valid_dns_subdomain("web-7d4b9c.default"));
        assert!(!valid_dns_subdomain("Web"));
        assert!(!valid_dns_label("-a"));
        assert!(!valid_dns_subdomain("a..b"));
    }

    #[test]
    fn backoff_doubles_up_to_max() {
        let b = Backoff { initial: Duration::from_secs(10), max: Duration::from_secs(30) };
        let mut d = None;
        let mut seen = vec![];
        for _ in 0..4 {
            let n = b.next(d);
            seen.push(n.as_secs());
            d = Some(n);
        }
        assert_eq!(seen, [10, 20, 30, 30]);
    }
}
