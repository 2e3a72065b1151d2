//! The [`Remediator`]: firing alerts in, guarded actions out, every decision audited.
//!
//! Each evaluation ([`Remediator::evaluate`]) takes the rule engine's active alerts. For
//! every policy (in config order) with at least one firing alert matching its matchers,
//! one alert represents the policy (the highest value for proportional scaling, else the
//! one active longest) and one decision is made through the guardrails, in this order,
//! the first that applies giving the reason:
//!
//! 1. `paused` / `target_paused`: the global or per-target pause switch (API).
//! 2. `not_leader`: another agent leads the target ([`super::leader`]).
//! 3. `cooldown`: the target acted less than `cooldown` ago.
//! 4. `max_actions`: the target used its `max_actions.count` in the last `window`; this
//!    also pages a human (once, until the target acts again).
//! 5. Scale actions read the current count, compute the desired one (`step`, `replicas`
//!    or HPA's `ceil(current × value / target_value)`), then: `within_tolerance` (HPA's
//!    10 % band), `at_max_replicas` (pages once) / `at_min_replicas` (a desired count
//!    beyond the bounds is clamped; a target already at the bound is skipped),
//!    `no_change`, and `stabilization`: a scale-down goes no lower than the highest
//!    recommendation of the last `scale_down_stabilization` (as HPA). Recommendations are
//!    every computed desired count, every count set by a scale action, and, while a
//!    scale-up policy is held back by rules 1–4, the last known count.
//! 6. `restart_backoff`: a repeated restart waits `restart_backoff` (doubling from
//!    `initial` to `max`; reset when the policy's alerts resolve or after twice `max`
//!    without restarts).
//! 7. Dry run: the decision is `dry_run` — it counts for cooldown, max actions and
//!    backoff exactly as a live action would, so the audit log shows what a live run would
//!    have done; escalations are then informational, not pages.
//! 8. The leader is confirmed once more (a PostgreSQL ping), the action runs (bounded by
//!    [`ACTION_TIMEOUT`]), and the decision is `taken` or `failed` (a failed attempt counts
//!    like a taken one, so a broken actuator is not hammered every evaluation).
//!
//! Escalation: when a policy's alerts still fire `escalate_after` after its first action
//! (taken, failed or dry run) of the episode, one page is sent; the episode ends when no
//! alert matches the policy any more.
//!
//! Dedup: a skip is recorded (audit log + decision sink) only when its reason code differs
//! from the policy's previous recorded decision; any other decision, or an evaluation in
//! which the policy's alerts are gone, resets that. A 15 s loop stuck in `cooldown` writes
//! one row, not one per evaluation; escalation pages ride on recorded skips, so they are
//! deduplicated the same way.

use super::actuator::{self, ActionOutcome, Actuator, ActuatorError, BuildContext, exec};
use super::audit::{AuditEntry, AuditLog, DecisionEvent, DecisionSink};
use super::config::{ActionKind, PolicyConfig, RemediationConfig, TargetConfig};
use super::leader::{AlwaysLeader, LeaderElection, PerTarget, PgAdvisoryLeader};
use super::{Clock, duration_ms};
use crate::notify::matcher::{Matcher, matches_all};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use warden_rules::alerting::{Alert, AlertState};
use warden_rules::labels::Labels;

/// Longest an action may run before it counts as failed.
pub const ACTION_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Most recommendations kept per target (older ones leave the window anyway).
const MAX_RECOMMENDATIONS: usize = 4096;

/// An alert as the remediator sees it (converted from the rule engine's alerts).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertInput {
    /// The alert's labels (`alertname` included).
    pub labels: Labels,
    /// Firing (pending alerts are ignored).
    pub firing: bool,
    /// The sample value of its last evaluation.
    pub value: f64,
    /// When it became active (ms).
    pub active_at_ms: i64,
    /// When it fired (ms).
    pub fired_at_ms: Option<i64>,
}

impl From<&Alert> for AlertInput {
    fn from(a: &Alert) -> Self {
        AlertInput {
            labels: a.labels.clone(),
            firing: a.state == AlertState::Firing,
            value: a.value,
            active_at_ms: a.active_at,
            fired_at_ms: a.fired_at,
        }
    }
}

impl AlertInput {
    /// A firing alert with `labels` and `value`, active since `at_ms` (tests, benches).
    pub fn firing(labels: &[(&str, &str)], value: f64, at_ms: i64) -> AlertInput {
        AlertInput {
            labels: Labels::from_pairs(labels),
            firing: true,
            value,
            active_at_ms: at_ms,
            fired_at_ms: Some(at_ms),
        }
    }

    fn display(&self) -> String {
        let name = self.labels.get("alertname").unwrap_or("");
        let rest = self.labels.without(&["alertname"]);
        if rest.is_empty() { name.to_string() } else { format!("{name}{rest}") }
    }
}

/// What the remediator needs besides its config.
#[derive(Clone)]
pub struct RemediatorDeps {
    /// One actuator per target.
    pub actuators: HashMap<String, Arc<dyn Actuator>>,
    /// The audit log.
    pub audit: Arc<dyn AuditLog>,
    /// The notifier's side.
    pub sink: Arc<dyn DecisionSink>,
    /// Who leads which target.
    pub leader: Arc<dyn LeaderElection>,
    /// The time source.
    pub clock: Arc<dyn Clock>,
}

struct Policy {
    cfg: PolicyConfig,
    matchers: Vec<Matcher>,
}

#[derive(Debug, Default)]
struct TargetState {
    /// Attempts (taken, failed, dry run) within the max-actions window.
    actions: VecDeque<i64>,
    last_action_at: Option<i64>,
    /// `(at, desired replicas)` within the stabilisation window.
    recommendations: VecDeque<(i64, i64)>,
    last_known_replicas: Option<i64>,
    /// `(last restart at, backoff in force after it)`.
    restart: Option<(i64, Duration)>,
    max_actions_paged: bool,
    at_max_paged: bool,
}

#[derive(Debug, Default)]
struct PolicyState {
    last_skip: Option<&'static str>,
    /// First action of the current episode and whether it was escalated.
    episode: Option<(i64, bool)>,
}

#[derive(Default)]
struct State {
    targets: HashMap<String, TargetState>,
    policies: Vec<PolicyState>,
}

#[derive(Debug, Default, Clone)]
struct Pause {
    global: bool,
    targets: BTreeSet<String>,
}

/// Counts of decisions since start (for the agent's `/metrics`).
#[derive(Debug, Default)]
pub struct Counters {
    /// Actions taken.
    pub taken: AtomicU64,
    /// Skips recorded.
    pub skipped: AtomicU64,
    /// Identical skips not recorded again (dedup).
    pub skips_suppressed: AtomicU64,
    /// Actions that failed.
    pub failed: AtomicU64,
    /// Dry-run decisions.
    pub dry_run: AtomicU64,
    /// Escalation pages.
    pub escalations: AtomicU64,
    /// Audit entries the audit log refused.
    pub audit_errors: AtomicU64,
}

/// One decision before it is recorded.
struct Decision {
    decision: &'static str,
    code: &'static str,
    text: String,
    from: Option<i64>,
    to: Option<i64>,
    detail: Option<String>,
    /// Page a human with this reason when the decision is recorded.
    page: Option<(&'static str, String)>,
}

impl Decision {
    fn skip(code: &'static str, text: impl Into<String>) -> Decision {
        Decision { decision: "skipped", code, text: text.into(), from: None, to: None, detail: None, page: None }
    }
    fn with_replicas(mut self, from: i64, to: i64) -> Decision {
        self.from = Some(from);
        self.to = Some(to);
        self
    }
}

/// The status of one target (for the API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetStatus {
    /// Target name.
    pub name: String,
    /// Actuator kind.
    pub actuator: &'static str,
    /// Paused (globally or by itself).
    pub paused: bool,
    /// Whether this agent leads it.
    pub leader: bool,
    /// The election in use.
    pub election: &'static str,
    /// Last attempt (ms).
    pub last_action_at_ms: Option<i64>,
    /// Attempts in the current max-actions window.
    pub actions_in_window: usize,
}

/// The remediation engine (see the module docs).
pub struct Remediator {
    dry_run: bool,
    targets: BTreeMap<String, TargetConfig>,
    policies: Vec<Policy>,
    deps: RemediatorDeps,
    state: tokio::sync::Mutex<State>,
    pause: std::sync::Mutex<Pause>,
    counters: Counters,
}

fn fmt_ms(ms: i64) -> String {
    let d = Duration::from_millis(u64::try_from(ms.max(0)).unwrap_or(0));
    // Whole seconds read better in reasons than humantime's millisecond tail.
    let d = if d >= Duration::from_secs(1) { Duration::from_secs(d.as_secs()) } else { d };
    humantime::format_duration(d).to_string()
}

impl Remediator {
    /// An engine for `config` (validated here; every problem is returned with its path).
    /// Every target needs an actuator in `deps`.
    pub fn new(config: &RemediationConfig, deps: RemediatorDeps) -> Result<Remediator, Vec<String>> {
        config.validate()?;
        let mut errors = Vec::new();
        for name in config.targets.keys() {
            if !deps.actuators.contains_key(name) {
                errors.push(format!("targets.{name}: no actuator was built for this target"));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let policies: Vec<Policy> = config
            .policies
            .iter()
            .map(|p| Policy {
                cfg: p.clone(),
                // Validation parsed every matcher already.
                matchers: p.matchers.iter().filter_map(|m| Matcher::parse_list(m).ok()).flatten().collect(),
            })
            .collect();
        let state =
            State { targets: HashMap::new(), policies: policies.iter().map(|_| PolicyState::default()).collect() };
        Ok(Remediator {
            dry_run: config.dry_run,
            targets: config.targets.clone(),
            policies,
            deps,
            state: tokio::sync::Mutex::new(state),
            pause: std::sync::Mutex::new(Pause::default()),
            counters: Counters::default(),
        })
    }

    /// Builds everything `config` needs and the engine over it: the actuators (process
    /// replicas start now), Kubernetes Lease electors for kubernetes targets, and for the
    /// other targets a PostgreSQL advisory-lock elector when `postgres` is given (the
    /// state store is PostgreSQL), else [`AlwaysLeader`]. Background tasks stop with
    /// `ctx.shutdown`; call [`Remediator::shutdown`] to stop process replicas and wait.
    pub async fn build(
        config: &RemediationConfig,
        ctx: &BuildContext,
        audit: Arc<dyn AuditLog>,
        sink: Arc<dyn DecisionSink>,
        postgres: Option<sqlx::PgPool>,
    ) -> Result<Remediator, Vec<String>> {
        config.validate()?;
        let mut ctx = ctx.clone();
        if let Some(id) = &config.leader.identity {
            ctx.identity = id.clone();
        }
        let mut actuators: HashMap<String, Arc<dyn Actuator>> = HashMap::new();
        let mut leases: HashMap<String, Arc<dyn LeaderElection>> = HashMap::new();
        let mut errors = Vec::new();
        for (name, t) in &config.targets {
            match actuator::build(name, t, &ctx).await {
                Ok(b) => {
                    actuators.insert(name.clone(), b.actuator);
                    if let Some(l) = b.leader {
                        leases.insert(name.clone(), l);
                    }
                }
                Err(e) => errors.push(format!("targets.{name}.actuator: {e}")),
            }
        }
        if !errors.is_empty() {
            for a in actuators.values() {
                a.shutdown().await;
            }
            return Err(errors);
        }
        let default: Arc<dyn LeaderElection> = match postgres {
            Some(pool) => {
                let others = config.targets.keys().filter(|n| !leases.contains_key(*n)).cloned();
                let pg = PgAdvisoryLeader::new(pool, others, config.leader.retry_period);
                pg.spawn(ctx.shutdown.child_token());
                pg
            }
            None => Arc::new(AlwaysLeader),
        };
        let leader: Arc<dyn LeaderElection> = Arc::new(PerTarget::new(leases, default));
        Remediator::new(config, RemediatorDeps { actuators, audit, sink, leader, clock: Arc::clone(&ctx.clock) })
    }

    /// Decision counts since start.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Whether decisions are dry runs.
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    fn pause_lock(&self) -> std::sync::MutexGuard<'_, Pause> {
        self.pause.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Pauses everything (`None`) or one target. Errors on an unknown target.
    pub fn pause(&self, target: Option<&str>) -> Result<(), String> {
        let mut p = self.pause_lock();
        match target {
            None => p.global = true,
            Some(t) if self.targets.contains_key(t) => {
                p.targets.insert(t.to_string());
            }
            Some(_) => return Err("unknown target".to_string()),
        }
        tracing::info!(target = target.unwrap_or("*"), "remediation paused");
        Ok(())
    }

    /// Resumes everything (`None`: the global switch and every target) or one target.
    pub fn resume(&self, target: Option<&str>) -> Result<(), String> {
        let mut p = self.pause_lock();
        match target {
            None => *p = Pause::default(),
            Some(t) if self.targets.contains_key(t) => {
                p.targets.remove(t);
            }
            Some(_) => return Err("unknown target".to_string()),
        }
        tracing::info!(target = target.unwrap_or("*"), "remediation resumed");
        Ok(())
    }

    /// `(global pause, paused targets)`.
    pub fn paused(&self) -> (bool, Vec<String>) {
        let p = self.pause_lock();
        (p.global, p.targets.iter().cloned().collect())
    }

    /// Every target's status.
    pub async fn status(&self) -> Vec<TargetStatus> {
        let now = self.deps.clock.now_ms();
        let pause = self.pause_lock().clone();
        let st = self.state.lock().await;
        self.targets
            .iter()
            .map(|(name, t)| {
                let ts = st.targets.get(name);
                let since = now - duration_ms(t.max_actions.window);
                TargetStatus {
                    name: name.clone(),
                    actuator: t.actuator.kind(),
                    paused: pause.global || pause.targets.contains(name),
                    leader: self.deps.leader.is_leader(name),
                    election: self.deps.leader.kind(name),
                    last_action_at_ms: ts.and_then(|s| s.last_action_at),
                    actions_in_window: ts.map(|s| s.actions.iter().filter(|a| **a > since).count()).unwrap_or(0),
                }
            })
            .collect()
    }

    /// Stops every actuator (process replicas); waits for them.
    pub async fn shutdown(&self) {
        for a in self.deps.actuators.values() {
            a.shutdown().await;
        }
    }

    /// One evaluation: decides (and acts) for every policy with firing alerts; returns
    /// what was recorded (decisions and escalations), in order. Actions run inside, so
    /// the caller should not block its rule evaluation on this.
    pub async fn evaluate(&self, alerts: &[AlertInput]) -> Vec<AuditEntry> {
        let now = self.deps.clock.now_ms();
        let pause = self.pause_lock().clone();
        let mut st = self.state.lock().await;
        let mut recorded = Vec::new();
        for (pi, policy) in self.policies.iter().enumerate() {
            let matching: Vec<&AlertInput> =
                alerts.iter().filter(|a| a.firing && matches_all(&policy.matchers, &a.labels)).collect();
            let target = policy.cfg.target.as_str();
            if matching.is_empty() {
                let ps = &mut st.policies[pi];
                ps.last_skip = None;
                if ps.episode.take().is_some() && policy.cfg.action == ActionKind::Restart {
                    // The restarts helped: the next one starts from the initial backoff.
                    if let Some(ts) = st.targets.get_mut(target) {
                        ts.restart = None;
                    }
                }
                continue;
            }
            let alert = representative(&matching, &policy.cfg);
            let t = &self.targets[target];
            if let Some((first, false)) = st.policies[pi].episode
                && now - first >= duration_ms(t.escalate_after)
            {
                st.policies[pi].episode = Some((first, true));
                let text = format!(
                    "unresolved: alert still firing {} after the first action (escalate_after {})",
                    fmt_ms(now - first),
                    humantime::format_duration(t.escalate_after)
                );
                recorded.push(self.escalate(&policy.cfg, alert, now, text).await);
            }
            let d = self.decide(&mut st, pi, alert, now, &pause).await;
            let ps = &mut st.policies[pi];
            if d.decision == "skipped" {
                if ps.last_skip == Some(d.code) {
                    self.counters.skips_suppressed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                ps.last_skip = Some(d.code);
            } else {
                ps.last_skip = None;
                if ps.episode.is_none() {
                    ps.episode = Some((now, false));
                }
            }
            let page = d.page.clone();
            recorded.push(self.record(&policy.cfg, alert, now, d).await);
            if let Some((_, text)) = page {
                recorded.push(self.escalate(&policy.cfg, alert, now, text).await);
            }
        }
        recorded
    }

    async fn decide(&self, st: &mut State, pi: usize, alert: &AlertInput, now: i64, pause: &Pause) -> Decision {
        let pol = &self.policies[pi].cfg;
        let name = pol.target.as_str();
        let t = &self.targets[name];
        let ts = st.targets.entry(name.to_string()).or_default();
        let action = pol.action;
        // A scale-up held back still says "keep at least what we have" to stabilisation.
        let hold = |ts: &mut TargetState| {
            if action == ActionKind::ScaleUp
                && let Some(n) = ts.last_known_replicas
            {
                push_recommendation(ts, now, n, t);
            }
        };

        if pause.global {
            hold(ts);
            return Decision::skip("paused", "paused: remediation is paused");
        }
        if pause.targets.contains(name) {
            hold(ts);
            return Decision::skip("target_paused", format!("target_paused: target {name} is paused"));
        }
        if !self.deps.leader.is_leader(name) {
            hold(ts);
            return Decision::skip("not_leader", "not_leader: another agent leads this target");
        }
        if let Some(last) = ts.last_action_at {
            let cooldown = duration_ms(t.cooldown);
            if now - last < cooldown {
                hold(ts);
                return Decision::skip(
                    "cooldown",
                    format!(
                        "cooldown: last action {} ago, cooldown {}",
                        fmt_ms(now - last),
                        humantime::format_duration(t.cooldown)
                    ),
                );
            }
        }
        let window = duration_ms(t.max_actions.window);
        while ts.actions.front().is_some_and(|a| *a <= now - window) {
            ts.actions.pop_front();
        }
        if ts.actions.len() >= t.max_actions.count as usize {
            hold(ts);
            let text = format!(
                "max_actions: {} actions in the last {} (limit {})",
                ts.actions.len(),
                humantime::format_duration(t.max_actions.window),
                t.max_actions.count
            );
            let mut d = Decision::skip("max_actions", text.clone());
            if !ts.max_actions_paged {
                ts.max_actions_paged = true;
                d.page = Some(("max_actions", format!("{text}; a human must look at target {name}")));
            }
            return d;
        }
        let Some(actuator) = self.deps.actuators.get(name) else {
            return Decision {
                decision: "failed",
                ..Decision::skip("no_actuator", "no_actuator: target has no actuator")
            };
        };

        let mut instance = None;
        let (from, to) = match action {
            ActionKind::Restart => {
                if let Some((last, backoff)) = ts.restart {
                    if now - last >= 2 * duration_ms(t.restart_backoff.max) {
                        ts.restart = None;
                    } else if now - last < duration_ms(backoff) {
                        return Decision::skip(
                            "restart_backoff",
                            format!(
                                "restart_backoff: last restart {} ago, backoff {}",
                                fmt_ms(now - last),
                                humantime::format_duration(backoff)
                            ),
                        );
                    }
                }
                if let Some(label) = &pol.instance_label {
                    match alert.labels.get(label) {
                        Some(v) => instance = Some(v.to_string()),
                        None => {
                            return Decision::skip("no_instance", format!("no_instance: alert has no label {label}"));
                        }
                    }
                }
                (None, None)
            }
            ActionKind::Exec => (None, None),
            ActionKind::ScaleUp | ActionKind::ScaleDown | ActionKind::ScaleTo => {
                let current = match tokio::time::timeout(ACTION_TIMEOUT, actuator.current_replicas()).await {
                    Ok(Ok(n)) => n,
                    Ok(Err(e)) => return failed("reading replicas", e),
                    Err(_) => return failed("reading replicas", ActuatorError::new("timed out")),
                };
                ts.last_known_replicas = Some(current);
                match self.desired(pol, t, ts, alert, current, now) {
                    Ok(to) => (Some(current), Some(to)),
                    Err(d) => return *d,
                }
            }
        };

        let verb = match (action, to) {
            (ActionKind::Restart, _) => match &instance {
                Some(i) => format!("restart instance {i}"),
                None => "restart".to_string(),
            },
            (ActionKind::Exec, _) => "run the command".to_string(),
            (_, Some(to)) => format!("scale from {} to {to}", from.unwrap_or(0)),
            _ => action.as_str().to_string(),
        };
        if self.dry_run {
            self.note_attempt(ts, action, t, now, to);
            return Decision {
                decision: "dry_run",
                code: "dry_run",
                text: format!("dry_run: would {verb}"),
                from,
                to,
                detail: None,
                page: None,
            };
        }
        if !self.deps.leader.confirm(name).await {
            return Decision::skip("not_leader", "not_leader: leadership lost before acting");
        }
        self.note_attempt(ts, action, t, now, to);
        let run = async {
            match (action, to) {
                (ActionKind::Restart, _) => actuator.restart(instance.clone()).await,
                (ActionKind::Exec, _) => self.run_exec(pol, alert).await,
                (_, Some(n)) => actuator.scale_to(n).await,
                _ => Err(ActuatorError::new("scale action without a count")),
            }
        };
        let result = match tokio::time::timeout(ACTION_TIMEOUT, run).await {
            Ok(r) => r,
            Err(_) => {
                Err(ActuatorError::new(format!("timed out after {}", humantime::format_duration(ACTION_TIMEOUT))))
            }
        };
        match result {
            Ok(ActionOutcome { detail }) => {
                if let Some(n) = to {
                    ts.last_known_replicas = Some(n);
                }
                Decision {
                    decision: "taken",
                    code: "taken",
                    text: format!("taken: {verb}"),
                    from,
                    to,
                    detail,
                    page: None,
                }
            }
            Err(e) => Decision {
                decision: "failed",
                code: "failed",
                text: format!("failed: {verb}: {}", e.message),
                from,
                to,
                detail: e.detail,
                page: None,
            },
        }
    }

    /// The scale target after the count rules, or the skip that stops it.
    fn desired(
        &self,
        pol: &PolicyConfig,
        t: &TargetConfig,
        ts: &mut TargetState,
        alert: &AlertInput,
        current: i64,
        now: i64,
    ) -> Result<i64, Box<Decision>> {
        let min = t.min_replicas;
        let max = t.max_replicas.unwrap_or(min);
        let step = pol.step.unwrap_or(1);
        let mut desired = if let Some(r) = pol.ratio_from {
            if !alert.value.is_finite() || alert.value < 0.0 {
                return Err(Box::new(Decision::skip(
                    "alert_value",
                    "alert_value: the alert's value is not a usable number",
                )));
            }
            let ratio = alert.value / r.target_value;
            if (ratio - 1.0).abs() <= t.tolerance {
                push_recommendation(ts, now, current, t);
                return Err(Box::new(
                    Decision::skip(
                        "within_tolerance",
                        format!("within_tolerance: value/target {ratio:.3} is within {} of 1", t.tolerance),
                    )
                    .with_replicas(current, current),
                ));
            }
            // From zero replicas the proportion has nothing to multiply: start from one.
            let base = current.max(1) as f64;
            let d = (base * ratio).ceil().min(super::config::MAX_REPLICAS_LIMIT as f64) as i64;
            match pol.action {
                ActionKind::ScaleUp if d <= current => {
                    push_recommendation(ts, now, current, t);
                    return Err(Box::new(
                        Decision::skip(
                            "no_change",
                            format!("no_change: proportional count {d} is not above {current}"),
                        )
                        .with_replicas(current, current),
                    ));
                }
                ActionKind::ScaleDown if d >= current => {
                    return Err(Box::new(
                        Decision::skip(
                            "no_change",
                            format!("no_change: proportional count {d} is not below {current}"),
                        )
                        .with_replicas(current, current),
                    ));
                }
                _ => d,
            }
        } else {
            match pol.action {
                ActionKind::ScaleUp => current.saturating_add(step),
                ActionKind::ScaleDown => current.saturating_sub(step),
                _ => pol.replicas.unwrap_or(current),
            }
        };
        if desired > max {
            if current >= max {
                push_recommendation(ts, now, max, t);
                let text = format!("at_max_replicas: {current} replicas, max_replicas {max}");
                let mut d = Decision::skip("at_max_replicas", text.clone()).with_replicas(current, desired);
                if !ts.at_max_paged {
                    ts.at_max_paged = true;
                    d.page = Some(("at_max_replicas", format!("{text}; scaling cannot help any further")));
                }
                return Err(Box::new(d));
            }
            desired = max;
        }
        if current < max {
            ts.at_max_paged = false;
        }
        if desired < min {
            if current <= min {
                return Err(Box::new(
                    Decision::skip(
                        "at_min_replicas",
                        format!("at_min_replicas: {current} replicas, min_replicas {min}"),
                    )
                    .with_replicas(current, desired),
                ));
            }
            desired = min;
        }
        push_recommendation(ts, now, desired, t);
        if desired == current {
            return Err(Box::new(
                Decision::skip("no_change", format!("no_change: already at {current} replicas"))
                    .with_replicas(current, current),
            ));
        }
        if desired < current {
            let highest = ts.recommendations.iter().map(|(_, n)| *n).max().unwrap_or(desired);
            if highest >= current {
                return Err(Box::new(
                    Decision::skip(
                        "stabilization",
                        format!(
                            "stabilization: highest recommendation of the last {} is {highest}",
                            humantime::format_duration(t.scale_down_stabilization)
                        ),
                    )
                    .with_replicas(current, desired),
                ));
            }
            desired = desired.max(highest);
        }
        Ok(desired)
    }

    fn note_attempt(&self, ts: &mut TargetState, action: ActionKind, t: &TargetConfig, now: i64, to: Option<i64>) {
        ts.last_action_at = Some(now);
        ts.actions.push_back(now);
        while ts.actions.len() > t.max_actions.count as usize + 1 {
            ts.actions.pop_front();
        }
        ts.max_actions_paged = false;
        if action == ActionKind::Restart {
            let prev = ts.restart.map(|(_, b)| b);
            ts.restart = Some((now, t.restart_backoff.next(prev)));
        }
        if let Some(n) = to {
            push_recommendation(ts, now, n, t);
        }
    }

    async fn run_exec(&self, pol: &PolicyConfig, alert: &AlertInput) -> Result<ActionOutcome, ActuatorError> {
        let Some(cmd) = &pol.command else {
            return Err(ActuatorError::new("exec policy has no command"));
        };
        let labels: serde_json::Map<String, serde_json::Value> =
            alert.labels.iter().map(|l| (l.name.clone(), serde_json::Value::String(l.value.clone()))).collect();
        let env = [
            ("WARDEN_TARGET", pol.target.clone()),
            ("WARDEN_POLICY", pol.name.clone()),
            ("WARDEN_ALERTNAME", alert.labels.get("alertname").unwrap_or("").to_string()),
            ("WARDEN_ALERT_VALUE", alert.value.to_string()),
            ("WARDEN_ALERT_LABELS", serde_json::Value::Object(labels).to_string()),
        ];
        let out = exec::run(cmd, &env, &[]).await?;
        if out.success() {
            Ok(ActionOutcome { detail: Some(out.detail()) })
        } else {
            let why = if out.timed_out {
                "timed out".to_string()
            } else {
                out.detail().lines().next().unwrap_or("").to_string()
            };
            Err(ActuatorError { message: format!("command failed: {why}"), detail: Some(out.detail()) })
        }
    }

    async fn record(&self, pol: &PolicyConfig, alert: &AlertInput, now: i64, d: Decision) -> AuditEntry {
        let c = &self.counters;
        match d.decision {
            "taken" => c.taken.fetch_add(1, Ordering::Relaxed),
            "failed" => c.failed.fetch_add(1, Ordering::Relaxed),
            "dry_run" => c.dry_run.fetch_add(1, Ordering::Relaxed),
            _ => c.skipped.fetch_add(1, Ordering::Relaxed),
        };
        let detail = match d.detail {
            Some(x) => format!("policy {}\n{x}", pol.name),
            None => format!("policy {}", pol.name),
        };
        let entry = AuditEntry {
            at_ms: now,
            target: pol.target.clone(),
            action: pol.action.as_str().to_string(),
            decision: d.decision.to_string(),
            reason: d.text,
            alert: alert.display(),
            from_replicas: d.from,
            to_replicas: d.to,
            detail: Some(detail),
        };
        let level_warn = d.decision == "failed";
        if level_warn {
            tracing::warn!(policy = %pol.name, target = %pol.target, action = pol.action.as_str(), reason = d.code, "remediation action failed");
        } else {
            tracing::info!(policy = %pol.name, target = %pol.target, action = pol.action.as_str(), decision = d.decision, reason = d.code, "remediation decision");
        }
        self.emit(pol, alert, entry.clone(), false).await;
        entry
    }

    async fn escalate(&self, pol: &PolicyConfig, alert: &AlertInput, now: i64, text: String) -> AuditEntry {
        let page = !self.dry_run;
        if page {
            self.counters.escalations.fetch_add(1, Ordering::Relaxed);
        }
        let code = text.split(':').next().unwrap_or("escalate").to_string();
        tracing::warn!(policy = %pol.name, target = %pol.target, reason = %code, page, "remediation escalation");
        let entry = AuditEntry {
            at_ms: now,
            target: pol.target.clone(),
            action: "escalate".to_string(),
            decision: if page { "taken" } else { "dry_run" }.to_string(),
            reason: text,
            alert: alert.display(),
            from_replicas: None,
            to_replicas: None,
            detail: Some(format!("policy {}", pol.name)),
        };
        self.emit(pol, alert, entry.clone(), page).await;
        entry
    }

    async fn emit(&self, pol: &PolicyConfig, alert: &AlertInput, entry: AuditEntry, escalation: bool) {
        if let Err(e) = self.deps.audit.record(entry.clone()).await {
            self.counters.audit_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(policy = %pol.name, target = %pol.target, error = %e, "remediation decision not written to the audit log");
        }
        self.deps.sink.deliver(DecisionEvent {
            entry,
            policy: pol.name.clone(),
            escalation,
            alert_labels: alert.labels.clone(),
        });
    }
}

fn failed(what: &str, e: ActuatorError) -> Decision {
    Decision {
        decision: "failed",
        code: "failed",
        text: format!("failed: {what}: {}", e.message),
        from: None,
        to: None,
        detail: e.detail,
        page: None,
    }
}

fn push_recommendation(ts: &mut TargetState, now: i64, n: i64, t: &TargetConfig) {
    let window = duration_ms(t.scale_down_stabilization);
    while ts.recommendations.front().is_some_and(|(at, _)| *at < now - window) {
        ts.recommendations.pop_front();
    }
    if ts.recommendations.len() >= MAX_RECOMMENDATIONS {
        ts.recommendations.pop_front();
    }
    ts.recommendations.push_back((now, n));
}

/// The alert a policy decides on: the highest value for proportional scaling (HPA takes
/// the largest proposal), else the one active longest; ties by labels.
fn representative<'a>(alerts: &[&'a AlertInput], pol: &PolicyConfig) -> &'a AlertInput {
    let mut best = alerts[0];
    for a in &alerts[1..] {
        let better = if pol.ratio_from.is_some() {
            a.value > best.value || (a.value == best.value && a.labels < best.labels)
        } else {
            a.active_at_ms < best.active_at_ms || (a.active_at_ms == best.active_at_ms && a.labels < best.labels)
        };
        if better {
            best = a;
        }
    }
    best
}
